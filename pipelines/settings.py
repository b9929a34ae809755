"""Every `MEDIAEMBED_*` setting the project reads, and a one-line warning for one it does not know.

A misspelled setting (`MEDIAEMBED_PROVIDER` for `MEDIAEMBED_PROVIDERS`) used to be ignored without a word.
The code location and the `mediaembed` command both warn, naming the closest known setting. A test keeps
this list complete: every `MEDIAEMBED_*` name in production code must be here. Free of Dagster, so the
command can check before it loads anything.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

PREFIX = "MEDIAEMBED_"

KNOWN_SETTINGS: dict[str, str] = {
    "MEDIAEMBED_MEDIA_URI": "the s3:// prefix media teams drop objects into",
    "MEDIAEMBED_ASYNC_OUTPUT_URI": "the s3:// prefix Bedrock writes async results to",
    "MEDIAEMBED_LAKE_URI": "a directory or s3:// prefix for the tables and the ledger",
    "MEDIAEMBED_INDEX_URI": "a directory or s3:// prefix for the LanceDB index",
    "MEDIAEMBED_BUCKET_OWNER": "the account id that owns the media buckets (bucketOwner)",
    "MEDIAEMBED_PROVIDERS": "which provider serves each Marengo version, e.g. marengo-3.5=twelvelabs",
    "MEDIAEMBED_QUOTAS": "invocations in flight per version, e.g. marengo-3.0=20",
    "MEDIAEMBED_PRICES": "USD per media second or per image of a route, where none is published",
    "MEDIAEMBED_BUDGET_USD": "the spending limit of a version's submissions",
    "MEDIAEMBED_BUDGET_MEDIA_SECONDS": "the media-seconds limit of a version's submissions",
    "MEDIAEMBED_MARENGO_3_5_DIMENSION": "Marengo 3.5's vector length (1-512, Matryoshka)",
    "MEDIAEMBED_SERVING_VERSION": "the version that serves search before the first cut-over",
    "MEDIAEMBED_MIGRATION_EXCLUDE": "objects the cut-over's coverage check leaves out",
    "MEDIAEMBED_PROBE_SET": "a JSON or YAML probe set for the side-by-side check",
    "MEDIAEMBED_PEGASUS_PROMPTS": "a JSON or YAML file of Pegasus prompts",
    "MEDIAEMBED_PEGASUS_TRANSPORT": "how Pegasus gets the video: s3 or base64",
    "MEDIAEMBED_PEGASUS_PROFILE": "the Pegasus inference profile",
    "MEDIAEMBED_MAX_SLOT_WAIT_SEC": "how long a local run waits for a pool slot",
    "MEDIAEMBED_DEBUG": "the search page shows errors in full",
    "MEDIAEMBED_TRACEBACK": "mediaembed ingest prints a traceback after its one-line error",
}


def unknown_setting_warnings(environ: Mapping[str, str]) -> list[str]:
    """One line per `MEDIAEMBED_*` variable that no code reads, naming the closest known one."""
    lines = []
    for name in sorted(n for n in environ if n.startswith(PREFIX) and n not in KNOWN_SETTINGS):
        # Compared without the prefix they all share, which would make any two look alike.
        close = difflib.get_close_matches(
            name.removeprefix(PREFIX), [k.removeprefix(PREFIX) for k in KNOWN_SETTINGS], 1, 0.75
        )
        known = PREFIX + close[0] if close else None
        hint = f"did you mean {known} ({KNOWN_SETTINGS[known]})?" if known else "nothing reads it"
        lines.append(f"{name} is not a mediaembed setting and is ignored: {hint}")
    return lines
