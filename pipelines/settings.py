"""Every `MEDIAEMBED_*` setting the project reads, and a one-line warning for one it does not know.

A misspelled setting (`MEDIAEMBED_PROVIDER` for `MEDIAEMBED_PROVIDERS`) used to be ignored without a word.
The code location and the `mediaembed` command both warn, naming the closest known setting. A test keeps
this list complete: every `MEDIAEMBED_*` name in production code must be here. Free of Dagster at import, so
the command can check before it loads anything (a schedule's cron, where one is set, is held to Dagster's own
rules).

`OPTIONAL_SETTINGS` are the resource fields pipelines/definitions.py binds only where their variable is set
(an unset `dg.EnvVar` fails the resource even for an optional field); `use_model_settings` applies the one
setting that is not a resource field, Marengo 3.5's vector length, which every model lookup needs.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from resources.media.probe_batch import parse_probe_batch
from resources.providers.marengo_models import (
    MARENGO_3_5_DIMENSION_ENV,
    parse_matryoshka_dimension,
    use_marengo_3_5_dimension,
)

PREFIX = "MEDIAEMBED_"


@dataclass(frozen=True)
class Setting:
    """One setting: what it means, an example value, and what `make demo` / `make dev` use."""

    meaning: str
    example: str = ""
    local: str = "unset"


KNOWN_SETTINGS: dict[str, Setting] = {
    "MEDIAEMBED_MEDIA_URI": Setting(
        "the s3:// prefix media teams drop objects into", "s3://media/", "`s3://media/`"
    ),
    "MEDIAEMBED_ASYNC_OUTPUT_URI": Setting(
        "the s3:// prefix Bedrock writes async results to",
        "s3://outputs/marengo-async",
        "`s3://lake/marengo-async`",
    ),
    "MEDIAEMBED_LAKE_URI": Setting(
        "a directory or s3:// prefix for the tables (Delta and Parquet) and the ledger", "", "`.local/lake`"
    ),
    "MEDIAEMBED_INDEX_URI": Setting(
        "a directory or s3:// prefix for the LanceDB index", "", "`.local/index`"
    ),
    "MEDIAEMBED_BUCKET_OWNER": Setting(
        "the account id that owns the media buckets (bucketOwner); unset, the caller's account (STS)",
        "111122223333",
        "the emulators' account",
    ),
    "MEDIAEMBED_PROVIDERS": Setting(
        "which provider serves each Marengo version (docs/providers.md)",
        "marengo-3.0=twelvelabs,marengo-3.5=twelvelabs",
        "Bedrock for 2.7 and 3.0, the TwelveLabs API for 3.5",
    ),
    "MEDIAEMBED_QUOTAS": Setting(
        "invocations in flight per version: your account's async quota (docs/architecture.md)",
        "marengo-3.0=30,marengo-2.7=30",
        "30 per version",
    ),
    "MEDIAEMBED_PRICES": Setting(
        "USD per media second or per image of a route, over the published prices (the cost estimates)",
        "bedrock/marengo-3.0:video=0.0007,audio=0.00014,image=0.0001;twelvelabs/marengo-3.5:video=0.0005",
        "the published Bedrock prices; none for the TwelveLabs API",
    ),
    "MEDIAEMBED_BUDGET_USD": Setting(
        "a submission run sends nothing when what is left to embed for a version is estimated over this",
        "250",
    ),
    "MEDIAEMBED_BUDGET_MEDIA_SECONDS": Setting("the same limit in media seconds", "360000"),
    "MEDIAEMBED_MARENGO_3_5_DIMENSION": Setting(
        "Marengo 3.5's vector length (1-512, Matryoshka); part of the job identity", "256", "512"
    ),
    "MEDIAEMBED_SERVING_VERSION": Setting(
        "the version that serves search before the first cut-over (docs/migration.md)",
        "marengo-2.7",
        "`marengo-3.0`",
    ),
    "MEDIAEMBED_MIGRATION_EXCLUDE": Setting(
        "objects the cut-over's coverage check leaves out, comma-separated s3:// URIs",
        "s3://media/corrupt.mp4",
    ),
    "MEDIAEMBED_PROBE_SET": Setting(
        "a JSON or YAML probe set for the side-by-side check",
        "probes.yaml",
        "`assets_defs/migration/probe_set.json`",
    ),
    "MEDIAEMBED_PEGASUS_PROMPTS": Setting(
        "a JSON or YAML file of Pegasus prompts (docs/pegasus.md)",
        "prompts.yaml",
        "summary, chapters, keywords",
    ),
    "MEDIAEMBED_PEGASUS_TRANSPORT": Setting("how Pegasus gets the video: s3 or base64", "base64", "s3"),
    "MEDIAEMBED_PEGASUS_PROFILE": Setting(
        "the Pegasus inference profile: geographic (us./eu./apac.) or global", "global", "geographic"
    ),
    "MEDIAEMBED_MAX_SLOT_WAIT_SEC": Setting(
        "how long a run `mediaembed` executes in-process waits for a pool slot", "1800", "900"
    ),
    "MEDIAEMBED_SENSOR_INTERVAL_SEC": Setting(
        "seconds between the invocation sensor's ticks (the daemon ticks at most every 5 s)", "60", "30"
    ),
    "MEDIAEMBED_MEDIA_QUEUE_URL": Setting(
        "the SQS queue the media bucket's event notifications go to; unset, every inventory run lists",
        "https://sqs.us-east-1.amazonaws.com/111122223333/media-events",
    ),
    "MEDIAEMBED_PROBE_BATCH_OBJECTS": Setting(
        "new objects a listing probes itself; more are written pending and probed by probe_media runs of "
        "this many each",
        "5000",
        "2000",
    ),
    "MEDIAEMBED_RECONCILE_SCHEDULE": Setting(
        "cron of the full listing that reconciles the inventory with the bucket (catches missed events)",
        "0 3 * * *",
        "`0 3 * * *`",
    ),
    "MEDIAEMBED_EMBED_SCHEDULE": Setting(
        "cron of the schedule that inventories the bucket and submits new media for the serving version",
        "0 * * * *",
        "`*/15 * * * *`",
    ),
    "MEDIAEMBED_DESCRIBE_SCHEDULE": Setting(
        "cron of the schedule that describes new videos with Pegasus", "30 * * * *", "`7,22,37,52 * * * *`"
    ),
    "MEDIAEMBED_API_TOKEN": Setting(
        "the bearer token `mediaembed serve` requires (`Authorization: Bearer ...`); needed to bind an "
        "address other than 127.0.0.1",
        "a long random secret",
    ),
    "MEDIAEMBED_DEBUG": Setting("the search page and commands show errors in full", "1"),
    "MEDIAEMBED_TRACEBACK": Setting("mediaembed ingest prints a traceback after its one-line error", "1"),
}


# Bound to resource fields only where set, so unset they take the field's default (and "" reads as unset).
OPTIONAL_SETTINGS: tuple[str, ...] = (
    "MEDIAEMBED_BUCKET_OWNER",
    "MEDIAEMBED_PROVIDERS",
    "MEDIAEMBED_QUOTAS",
    "MEDIAEMBED_PRICES",
    "MEDIAEMBED_BUDGET_USD",
    "MEDIAEMBED_BUDGET_MEDIA_SECONDS",
    "MEDIAEMBED_SERVING_VERSION",
    "MEDIAEMBED_MEDIA_QUEUE_URL",
    "MEDIAEMBED_PROBE_BATCH_OBJECTS",
    "MEDIAEMBED_MIGRATION_EXCLUDE",
    "MEDIAEMBED_PROBE_SET",
    "MEDIAEMBED_PEGASUS_PROMPTS",
    "MEDIAEMBED_PEGASUS_TRANSPORT",
    "MEDIAEMBED_PEGASUS_PROFILE",
)


def use_model_settings(environ: Mapping[str, str]) -> int:
    """Choose Marengo 3.5's vector length for this process from MEDIAEMBED_MARENGO_3_5_DIMENSION (unset:
    512), before anything looks a model up; returns it. A bad value is one line naming the variable."""
    dimension = parse_matryoshka_dimension(environ.get(MARENGO_3_5_DIMENSION_ENV))
    use_marengo_3_5_dimension(dimension)
    return dimension


DEFAULT_SENSOR_INTERVAL_SEC = 30


def sensor_interval_sec(environ: Mapping[str, str] = os.environ) -> int:
    """MEDIAEMBED_SENSOR_INTERVAL_SEC: how often the invocation sensor asks the providers (default 30 s).
    Read when the sensor is defined (its interval is part of its definition); the command checks it first,
    so a bad value is one line there, not a traceback from loading the code location."""
    raw = environ.get("MEDIAEMBED_SENSOR_INTERVAL_SEC", "").strip()
    if not raw:
        return DEFAULT_SENSOR_INTERVAL_SEC
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(
            f"MEDIAEMBED_SENSOR_INTERVAL_SEC={raw!r} is not a whole number of seconds: set 1 or more"
        )
    return int(raw)


# The schedules' crons, read where each schedule is defined (a cron is part of its definition).
DEFAULT_SCHEDULES = {
    "MEDIAEMBED_EMBED_SCHEDULE": "*/15 * * * *",
    "MEDIAEMBED_RECONCILE_SCHEDULE": "0 3 * * *",
    "MEDIAEMBED_DESCRIBE_SCHEDULE": "7,22,37,52 * * * *",
}


def schedule_cron(name: str, environ: Mapping[str, str] = os.environ) -> str:
    """A schedule's cron from its setting (DEFAULT_SCHEDULES names them and their defaults), held to
    Dagster's own cron rules. Read when the schedule is defined; the command checks it first, so a bad value
    is one line there, not a traceback from loading the code location."""
    raw = " ".join(environ.get(name, "").split())
    if not raw:
        return DEFAULT_SCHEDULES[name]
    import dagster as dg  # deferred: only where the setting is set (every command imports this module)

    try:
        dg.ScheduleDefinition(name="cron_check", cron_schedule=raw, job_name="cron_check")
    except dg.DagsterInvalidDefinitionError:
        raise ValueError(
            f"{name}={raw!r} is not a cron schedule Dagster accepts: give minute (0-59), hour (0-23), day "
            f"(1-31), month (1-12) and weekday (0-7), as {DEFAULT_SCHEDULES[name]!r}"
        ) from None
    return raw


def check_definition_settings(environ: Mapping[str, str]) -> None:
    """Raise ValueError, one line naming the variable, for a setting read as the code location loads (or,
    the probe batch, as a run starts)."""
    sensor_interval_sec(environ)
    parse_probe_batch(environ.get("MEDIAEMBED_PROBE_BATCH_OBJECTS"))
    for name in DEFAULT_SCHEDULES:
        schedule_cron(name, environ)


def configuration_table() -> str:
    """The settings as the Markdown table docs/configuration.md holds (`make docs` writes it there)."""
    rows = [
        "| variable | meaning | example | local default (`make demo`/`make dev`) |",
        "| --- | --- | --- | --- |",
    ]
    for name, setting in KNOWN_SETTINGS.items():
        example = f"`{setting.example}`" if setting.example else ""
        rows.append(f"| `{name}` | {setting.meaning} | {example} | {setting.local} |")
    return "\n".join(rows) + "\n"


def unknown_setting_warnings(environ: Mapping[str, str]) -> list[str]:
    """One line per `MEDIAEMBED_*` variable that no code reads, naming the closest known one."""
    lines = []
    for name in sorted(n for n in environ if n.startswith(PREFIX) and n not in KNOWN_SETTINGS):
        # Compared without the prefix they all share, which would make any two look alike.
        close = difflib.get_close_matches(
            name.removeprefix(PREFIX), [k.removeprefix(PREFIX) for k in KNOWN_SETTINGS], 1, 0.75
        )
        known = PREFIX + close[0] if close else None
        hint = f"did you mean {known} ({KNOWN_SETTINGS[known].meaning})?" if known else "nothing reads it"
        lines.append(f"{name} is not a mediaembed setting and is ignored: {hint}")
    return lines


BEGIN, END = (
    "<!-- BEGIN settings: generated from pipelines/settings.py by `make docs` -->",
    "<!-- END settings -->",
)


def with_configuration_table(page: str) -> str:
    """`page` with the text between its BEGIN and END markers replaced by the current table."""
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{configuration_table()}{END}{tail}"


if __name__ == "__main__":  # python -m pipelines.settings docs/configuration.md
    target = Path(sys.argv[1])
    target.write_text(with_configuration_table(target.read_text()))
