"""What the whole-version checks of a cut-over are told: objects excluded from coverage, the probe set of
the side-by-side evaluation and its floors.

Configuration, never code: each field left unset follows its environment variable, and the launchpad can
set any of them for one run (resources.version_checks.config), so an exclusion is a decision a person makes
where everyone sees it; the checks list it in their metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

EXCLUDE_ENV = "MEDIAEMBED_MIGRATION_EXCLUDE"
PROBE_SET_ENV = "MEDIAEMBED_PROBE_SET"


class ProbeSetError(ValueError):
    """The probe set cannot be used; the message names the file and what to fix."""


@dataclass(frozen=True)
class Probe:
    """One query of the side-by-side evaluation, and the object known to be its right answer (if any): a
    full media URI, or a key relative to the media prefix (as `videos/shapes_a.mp4`)."""

    query: str
    expected: str | None = None


def parse_exclusions(text: str | None) -> tuple[str, ...]:
    """Comma-separated media URIs (whitespace and empty items ignored), sorted and once each."""
    return tuple(sorted({item.strip() for item in (text or "").split(",") if item.strip()}))


def parse_probe_set(body: Any, source: str) -> tuple[Probe, ...]:
    """Probes from a decoded JSON/YAML document: a list of {query, media_uri?} (or {"probes": [...]})."""
    entries = body.get("probes") if isinstance(body, dict) else body
    if not isinstance(entries, list) or not entries:
        raise ProbeSetError(f"{source}: give a non-empty list of {{query, media_uri}} entries")
    probes = []
    for i, entry in enumerate(entries):
        query = entry.get("query") if isinstance(entry, dict) else None
        expected = entry.get("media_uri") if isinstance(entry, dict) else None
        if not isinstance(query, str) or not query.strip():
            raise ProbeSetError(f"{source}: entry {i} has no query text; give it a non-empty 'query'")
        if expected is not None and (not isinstance(expected, str) or not expected.strip()):
            raise ProbeSetError(
                f"{source}: entry {i} ({query!r}) has an empty media_uri; give one or leave it out"
            )
        probes.append(Probe(query.strip(), expected.strip() if expected else None))
    return tuple(probes)


def load_probe_set(path: str | Path) -> tuple[Probe, ...]:
    """The probe set in a .json or .yaml/.yml file."""
    file = Path(path).expanduser()
    try:
        text = file.read_text()
    except OSError as error:
        raise ProbeSetError(
            f"cannot read the probe set {file} ({error.strerror}); fix {PROBE_SET_ENV}"
        ) from None
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            body = yaml.safe_load(text)
        else:
            body = json.loads(text)
    except ValueError as error:  # json.JSONDecodeError and yaml.YAMLError's parse errors alike
        raise ProbeSetError(f"{file} is not valid {file.suffix.lstrip('.') or 'JSON'}: {error}") from None
    return parse_probe_set(body, str(file))


class VersionCheckSettings(dg.ConfigurableResource):
    exclude: list[str] = Field(
        default_factory=list,
        description="Media URIs the coverage check does not count (objects a person decided to leave out), "
        "as a list in the launchpad: exclude: [s3://media/a.mp4]. Added to those of exclude_setting.",
    )
    exclude_setting: str | None = Field(
        default=None,
        description=f"Comma-separated media URIs to leave out, bound from {EXCLUDE_ENV} where it is set; "
        "unset or empty: none.",
    )
    probe_set: str | None = Field(
        default=None,
        description="Path of the side-by-side probe set (.json or .yaml: a list of {query, media_uri?}). "
        f"Bound from {PROBE_SET_ENV} where it is set; unset or empty: the one shipped for the sample media.",
    )
    probe_k: int = Field(default=10, ge=1, description="Objects compared per query (overlap@k).")
    min_overlap: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="The candidate's top-k objects must share at least this share with the serving "
        "version's, on average over the probes.",
    )
    max_expected_rank: int = Field(
        default=3,
        ge=1,
        description="Every known right answer must rank at most this high among the candidate's objects.",
    )

    def excluded(self) -> tuple[str, ...]:
        """Both lists, sorted and once each."""
        return parse_exclusions(",".join([*self.exclude, self.exclude_setting or ""]))

    def exclusion_source(self) -> str:
        return f"resource config `exclude` (a list) and {EXCLUDE_ENV} (comma-separated)"

    def probe_set_path(self, default: Path) -> Path:
        """The configured probe set, else `default` (the one shipped for the sample media)."""
        return Path(self.probe_set).expanduser() if self.probe_set else default
