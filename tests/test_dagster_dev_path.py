"""Your own media from `dagster dev` alone: settings in the environment, no project command.

The code location must load from `workspace.yaml` with nothing but the settings, and the schedule and the
sensor must be on from the start, so a first `dagster dev` submits and ingests without anyone switching
them on in the UI.
"""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from pipelines.definitions import defs
from pipelines.schedules import embed_new_media_schedule
from resources.media.event_queue import MediaEventQueue
from resources.providers.marengo_models import MARENGO_3_0
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "AWS_REGION": "us-east-1",
    "MEDIAEMBED_MEDIA_URI": "s3://your-media/prefix/",
    "MEDIAEMBED_ASYNC_OUTPUT_URI": "s3://your-outputs/marengo-async",
    "MEDIAEMBED_LAKE_URI": "s3://your-outputs/mediaembed/lake",
    "MEDIAEMBED_INDEX_URI": "s3://your-outputs/mediaembed/index",
}


def test_schedule_and_sensor_run_from_the_start(tmp_path: Path) -> None:
    schedule = defs.resolve_schedule_def("embed_new_media_schedule")
    sensor = defs.resolve_sensor_def("marengo_invocation_sensor")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    lake = Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))
    with dg.build_schedule_context(resources={"lake": lake, "media_events": MediaEventQueue()}) as context:
        request = embed_new_media_schedule(context)
    # A new lake has no serving record: the schedule submits for the initial version.
    assert isinstance(request, dg.RunRequest) and request.partition_key == MARENGO_3_0.key
    lake.serving_versions().cut_over("marengo-2.7", by="test")
    with dg.build_schedule_context(resources={"lake": lake, "media_events": MediaEventQueue()}) as context:
        request = embed_new_media_schedule(context)
    assert isinstance(request, dg.RunRequest) and request.partition_key == "marengo-2.7"


def test_the_code_location_loads_from_the_settings_alone(tmp_path: Path) -> None:
    """What `dg dev` loads, in a process that has only PATH, the project's venv and the settings."""
    home = tmp_path / "dagster"
    home.mkdir()
    venv = {"VIRTUAL_ENV": sys.prefix}
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DAGSTER_HOME": str(home), **venv, **SETTINGS}
    done = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "dg"), "check", "defs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "All definitions loaded successfully" in done.stdout + done.stderr
    assert "does not match" not in done.stdout + done.stderr, "dg runs in the project's own venv"
