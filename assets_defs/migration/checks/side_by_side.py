"""The side-by-side evaluation of a candidate version against the serving one, as pure functions of the
probes' ranked objects: overlap@k, the right answers' ranks, the floors, and the table shown in the UI."""

from dataclasses import dataclass
from typing import Any

import dagster as dg

from assets_defs.migration.checks.outcome import CheckOutcome
from resources.migration.check_settings import PROBE_SET_ENV, Probe


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe run against both versions: objects in rank order, and where the right answer ranks."""

    probe: Probe
    right: tuple[str, ...]  # the expected answer as URIs of the library (none: not judged)
    serving: tuple[str, ...] | None  # None: the serving version has no index to compare with
    candidate: tuple[str, ...]


def ranked_objects(media_uris: list[str]) -> tuple[str, ...]:
    """Distinct objects in the order of their best segment: spans differ across versions, objects not."""
    return tuple(dict.fromkeys(media_uris))


def resolve_expected(expected: str | None, library: set[str]) -> tuple[str, ...]:
    """The library's URIs an expected answer names: itself, or those ending in `/<key>`."""
    if expected is None:
        return ()
    if expected in library:
        return (expected,)
    return tuple(sorted(u for u in library if u.endswith("/" + expected.lstrip("/"))))


def rank_of(objects: tuple[str, ...] | None, right: tuple[str, ...]) -> int | None:
    """1-based rank of the first right object, None when it is not among `objects`."""
    for i, uri in enumerate(objects or ()):
        if uri in right:
            return i + 1
    return None


def overlap_at_k(a: tuple[str, ...], b: tuple[str, ...], k: int) -> float:
    """Shared share of the two top-k object lists (of the longer one, when the library has fewer than k)."""
    top_a, top_b = set(a[:k]), set(b[:k])
    return len(top_a & top_b) / max(len(top_a), len(top_b), 1)


@dataclass(frozen=True)
class Evaluation:
    mean_overlap: float | None
    failures: list[str]  # one line per broken floor, naming the query


def evaluate(outcomes: list[ProbeOutcome], k: int, min_overlap: float, max_rank: int) -> Evaluation:
    """The floors: mean overlap@k with the serving version, and every judged right answer within
    `max_rank` of the candidate's objects."""
    failures = []
    for o in outcomes:
        if not o.right:
            continue
        rank = rank_of(o.candidate[:k], o.right)
        if rank is None or rank > max_rank:
            where = "not in the top" if rank is None else f"at rank {rank}, past"
            failures.append(f"{o.probe.query!r}: {o.probe.expected} {where} {max_rank if rank else k}")
    compared = [overlap_at_k(o.serving, o.candidate, k) for o in outcomes if o.serving is not None]
    mean = sum(compared) / len(compared) if compared else None
    if mean is not None and mean < min_overlap:
        failures.append(f"mean overlap@{k} with the serving version {mean:.2f} is under {min_overlap:.2f}")
    return Evaluation(mean, failures)


def probe_table_md(outcomes: list[ProbeOutcome], k: int, serving: str, candidate: str) -> str:
    def rank(objects: tuple[str, ...] | None, right: tuple[str, ...]) -> str:
        if not right:
            return "-"
        if objects is None:
            return "no index"
        found = rank_of(objects[:k], right)
        return str(found) if found else f">{k}"

    lines = [
        f"| query | right answer | rank {serving} | rank {candidate} | overlap@{k} | top {candidate} |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        expected = o.probe.expected or "-"
        if o.probe.expected and not o.right:
            expected += " (not in the library)"
        overlap = "-" if o.serving is None else f"{overlap_at_k(o.serving, o.candidate, k):.2f}"
        top = f"`{o.candidate[0]}`" if o.candidate else "(none)"
        lines.append(
            f"| {o.probe.query} | {expected} | {rank(o.serving, o.right)} | {rank(o.candidate, o.right)} "
            f"| {overlap} | {top} |"
        )
    return "\n".join(lines)


def side_by_side_outcome(
    outcomes: list[ProbeOutcome],
    floors: Evaluation,
    k: int,
    serving: str,
    candidate: str,
    base: dict[str, Any],
    serving_note: str | None,
) -> CheckOutcome:
    """Passed when no floor is broken; the side-by-side table and the broken floors in the metadata."""
    metadata: dict[str, Any] = {
        **base,
        "probes": len(outcomes),
        "probes_judged": sum(1 for o in outcomes if o.right),
        "side_by_side": dg.MetadataValue.md(probe_table_md(outcomes, k, serving, candidate)),
        "floor_failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in floors.failures) or "_(none)_"),
    }
    if floors.mean_overlap is not None:
        metadata["mean_overlap_at_k"] = dg.MetadataValue.float(round(floors.mean_overlap, 3))
    if serving_note:
        metadata["serving_note"] = serving_note
    description = None
    if floors.failures:
        description = (
            f"{len(floors.failures)} probes under the floor against {serving}: {floors.failures[0]}; "
            f"fix the candidate's embeddings, or adjust the probe set ({PROBE_SET_ENV}) or the floors "
            "(resources.version_checks)"
        )
    return CheckOutcome(passed=not floors.failures, description=description, metadata=metadata)
