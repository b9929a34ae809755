"""Settings for the embedded local default: emulators on loopback, lake and index under a work folder."""

import os
from pathlib import Path

DAGSTER_YAML = """\
# Local instance for the demo and `make dev`.
concurrency:
  pools:
    # marengo_submit: one submitter; marengo_ingest: one ingester; lancedb_writer: one writer per LanceDB
    # table (concurrent merge_insert calls adding the same key can duplicate rows).
    default_limit: 1
telemetry:
  enabled: false
"""


def local_settings(workdir: Path) -> dict[str, str]:
    workdir = workdir.resolve()
    return {
        "MEDIAEMBED_MEDIA_URI": "s3://media/",
        "MEDIAEMBED_ASYNC_OUTPUT_URI": "s3://lake/marengo-async",
        "MEDIAEMBED_LAKE_URI": str(workdir / "lake"),
        "MEDIAEMBED_INDEX_URI": str(workdir / "index"),
        "DAGSTER_HOME": str(workdir / "dagster"),
    }


def prepare_dagster_home(settings: dict[str, str]) -> None:
    home = Path(settings["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)


def apply(env: dict[str, str]) -> None:
    os.environ.update(env)
