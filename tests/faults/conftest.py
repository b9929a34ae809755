"""Fixtures of the fault suite, and the summary table of its counts (tests/faults/last_summary.md).

Every case records one row per `FaultWorld.check`. Rows go to a folder per pytest run (shared by the xdist
workers of that run, named by its `testrunuid`), and each process rewrites the table from all rows when its
session ends: the process that ends last, after every case, writes the complete table.
"""

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from botocore.retries.standard import ExponentialBackoff
from tabulate import tabulate

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.s3 import S3Emulator
from emulators.sample_media import SampleObject, generate_sample_media
from harness.local_env import DAGSTER_YAML
from pipelines.definitions import pipeline_resources
from tests.faults.invariants import MARKER, Counts
from tests.faults.world import ACCESS_KEY_ID, OUTPUT_BUCKET, REGION, FaultWorld

SUMMARY = Path(__file__).with_name("last_summary.md")
ROWS_ROOT = Path(tempfile.gettempdir()) / "mediaembed-fault-rows"
STALE_ROWS_SEC = 24 * 3600
NO_POOLS_YAML = "telemetry:\n  enabled: false\n"
# botocore waits rand(0, 1) x 1 s x 2^attempt after a throttled call. The cases keep every retry and the
# retry quota, but at a millisecond scale, as the emulators' latencies: a test never waits out real seconds.
THROTTLING_BACKOFF_SCALE_SEC = 0.001

MakeWorld = Callable[..., FaultWorld]


def _rows_dir(config: pytest.Config) -> Path:
    run = getattr(config, "workerinput", {}).get("testrunuid") or f"solo-{os.getpid()}"
    return ROWS_ROOT / str(run)


@pytest.fixture
def record_counts(request: pytest.FixtureRequest) -> Callable[[str, Counts], None]:
    folder = _rows_dir(request.config)
    folder.mkdir(parents=True, exist_ok=True)
    rows = folder / f"{os.getpid()}.jsonl"
    path, line, _ = request.node.location
    sequence = iter(range(1_000))

    def record(case: str, counts: Counts) -> None:
        entry = {"order": [path, line or 0, request.node.nodeid, next(sequence)], "row": counts.row(case)}
        with rows.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder = _rows_dir(session.config)
    entries = []
    for rows in sorted(folder.glob("*.jsonl")) if folder.exists() else []:
        entries += [json.loads(line) for line in rows.read_text().splitlines() if line]
    if not entries:
        return
    entries.sort(key=lambda e: tuple(e["order"]))
    table = tabulate([e["row"] for e in entries], headers=Counts.headers(), tablefmt="github")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = (
        f"# Fault matrix: last run\n\n{len(entries)} rows, {stamp}. Written by tests/faults/conftest.py.\n\n"
    )
    partial = SUMMARY.with_name(f".{SUMMARY.name}.{uuid.uuid4().hex}")
    partial.write_text(text + table + "\n")
    partial.replace(SUMMARY)
    for old in ROWS_ROOT.iterdir():
        if old != folder and time.time() - old.stat().st_mtime > STALE_ROWS_SEC:
            shutil.rmtree(old, ignore_errors=True)


@pytest.fixture(scope="session")
def samples() -> list[SampleObject]:
    """The sample set: 3 videos, 2 audio files, 2 images, a corrupt .mp4 and a text file."""
    return generate_sample_media()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Emulator]:
    """One moto server per module; each case has its own media bucket and output prefix in it."""
    emulator = S3Emulator(region=REGION).start()
    emulator.client().create_bucket(Bucket=OUTPUT_BUCKET)
    yield emulator
    emulator.stop()


@pytest.fixture
def make_world(
    s3: S3Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    record_counts: Callable[[str, Counts], None],
) -> Iterator[MakeWorld]:
    """`make_world(pools=True, kept_state=False, **faults)`: a fresh case on the module's S3 emulator.

    `pools`: the local instance's pool limits (1 per pool); False: none at all. `kept_state`: Bedrock keeps
    its jobs under a workdir (restarts lose none). `lake_on_s3`: the lake in the S3 emulator, where a test
    can hold its requests. `undecodable_media`: Bedrock refuses media it cannot decode at submit ("refuse")
    or accepts the job and fails it ("fail"). `faults`: the Bedrock emulator's fault options. Bedrock takes
    only the case's marker credentials, the ones the pipeline is given.
    """
    made: list[FaultWorld] = []
    monkeypatch.setitem(
        ExponentialBackoff._DEFAULT_BACKOFF_CONFIG, "throttling_base_scale", THROTTLING_BACKOFF_SCALE_SEC
    )

    def make(
        *,
        pools: bool = True,
        kept_state: bool = False,
        lake_on_s3: bool = False,
        undecodable_media: str = "refuse",
        **faults: object,
    ) -> FaultWorld:
        case = uuid.uuid4().hex[:8]
        bucket, output_prefix = f"m-{case}", f"async-{case}"
        s3.client().create_bucket(Bucket=bucket)
        home = tmp_path / "dagster"
        home.mkdir()
        (home / "dagster.yaml").write_text(DAGSTER_YAML if pools else NO_POOLS_YAML)
        workdir = tmp_path / "bedrock" if kept_state else None
        settings: dict[str, object] = {
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": MARKER,
            "undecodable_media": undecodable_media,
        }
        bedrock = BedrockRuntimeEmulator(
            s3.endpoint,
            region=REGION,
            workdir=workdir,
            **settings,
            **faults,  # type: ignore[arg-type]
        ).start()
        env = {
            "AWS_ENDPOINT_URL_S3": s3.endpoint,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": MARKER,
            "MEDIAEMBED_MEDIA_URI": f"s3://{bucket}/",
            "MEDIAEMBED_ASYNC_OUTPUT_URI": f"s3://{OUTPUT_BUCKET}/{output_prefix}",
            "MEDIAEMBED_LAKE_URI": f"s3://{OUTPUT_BUCKET}/lake-{case}"
            if lake_on_s3
            else str(tmp_path / "lake"),
            "MEDIAEMBED_INDEX_URI": str(tmp_path / "index"),
            "DAGSTER_HOME": str(home),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        instance = dg.DagsterInstance.from_config(str(home))
        with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
            lake = built.lake

        def read_output() -> str:
            out = capfd.readouterr()
            return out.out + out.err

        world = FaultWorld(
            s3,
            bedrock,
            bucket,
            output_prefix,
            tmp_path,
            env,
            instance,
            lake,
            workdir,
            read_output,
            record_counts,
            settings,
        )
        made.append(world)
        return world

    yield make
    for world in made:
        world.bedrock.stop()
        world.instance.dispose()
