"""Settings for the embedded local default: emulators on loopback, lake and index under a work folder.

Dagster and the emulators are imported where used: `search --local` reads only `local_index`.
"""

import os
from pathlib import Path

DAGSTER_YAML = """\
# Local instance for the demo and `make dev`.
# Written by harness/local_env.py at every start (edits here are replaced); production: docs/deployment.md.
concurrency:
  pools:
    # marengo_submit: one submitter; marengo_ingest: one ingester; lancedb_writer: one writer per LanceDB
    # table (concurrent merge_insert calls adding the same key can duplicate rows).
    default_limit: 1
# The daemon of `make dev` fails runs whose worker is gone and frees the slots that finished runs still
# hold. In-process runs (demo, tests, bench) free the slots of dead runs themselves (harness/run_slots.py).
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 120
  free_slots_after_run_end_seconds: 300
telemetry:
  enabled: false
"""


def bind_local_settings() -> None:
    """Set what the code location binds only when it is set as it loads, unless set already, before
    anything imports it: the local emulator's key (which binds the TwelveLabs provider beside Bedrock;
    MEDIAEMBED_PROVIDERS picks who serves which version) and Pegasus's bucket owner (the emulators'
    account; `local_settings` sets it again once the emulators run)."""
    from emulators.bedrock_runtime.models import ACCOUNT_ID as LOCAL_ACCOUNT_ID
    from emulators.twelvelabs_api import LOCAL_API_KEY as LOCAL_TWELVELABS_KEY

    os.environ.setdefault("TWELVELABS_API_KEY", LOCAL_TWELVELABS_KEY)
    os.environ.setdefault("MEDIAEMBED_BUCKET_OWNER", LOCAL_ACCOUNT_ID)


def local_index(workdir: Path) -> Path:
    """Where the demo and `make dev` keep the LanceDB index of a work folder."""
    return workdir.resolve() / "index"


def local_settings(workdir: Path) -> dict[str, str]:
    from emulators.bedrock_runtime.models import ACCOUNT_ID as LOCAL_ACCOUNT_ID

    workdir = workdir.resolve()
    return {
        "MEDIAEMBED_MEDIA_URI": "s3://media/",
        "MEDIAEMBED_ASYNC_OUTPUT_URI": "s3://lake/marengo-async",
        "MEDIAEMBED_LAKE_URI": str(workdir / "lake"),
        "MEDIAEMBED_INDEX_URI": str(local_index(workdir)),
        # Pegasus sends the media bucket's owner with every S3 location; locally, the emulators' account.
        "MEDIAEMBED_BUCKET_OWNER": LOCAL_ACCOUNT_ID,
        "DAGSTER_HOME": str(workdir / "dagster"),
    }


def prepare_dagster_home(settings: dict[str, str]) -> None:
    """Write the local dagster.yaml (ours: a workdir from before run monitoring gets it too), then fail
    the runs an earlier local process left behind when it was killed, so none keeps a pool slot."""
    import dagster as dg

    from harness.run_slots import free_slots_of_dead_runs

    home = Path(settings["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text().startswith(DAGSTER_YAML.splitlines()[0]):
        config.write_text(DAGSTER_YAML)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for line in free_slots_of_dead_runs(instance):
            print(line)


def apply(env: dict[str, str]) -> None:
    os.environ.update(env)
