"""`mediaembed ingest` on a directory of your own files, uploaded through `mediaembed emulate --upload`.

Both commands run as a user runs them: separate processes, the emulators on free ports, the settings taken
from the `export` lines `emulate` prints. What the summary reports is checked against what the Bedrock
emulator itself saw over the wire (its invocation records), and against the index on disk.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import boto3
import dagster as dg
import lancedb
import pytest

from assets_defs import keys
from emulators.bedrock_runtime.server import INJECTED_FAILURE_MESSAGE
from resources.index.segment_index import SegmentIndex
from resources.providers.marengo_models import MARENGO_3_0
from tests.daemons import daemons_of
from tests.pipeline.own_media import (
    BUCKET,
    COMMAND_TIMEOUT_SEC,
    INVOCATIONS,
    ROOT,
    SUMMARY,
    Emulated,
    emulate,
    emulator_statuses,
)

# With a failure rate of one half, seed 7 fails the first two invocations, completes the third, then fails
# the first object's retry and completes the second's: one object out of attempts, one embedded on its
# retry, one at the first go.
FAULTS = ["--failure-rate", "0.5", "--seed", "7", "--latency", "0.05"]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulated]:
    with emulate(tmp_path_factory.mktemp("own"), FAULTS) as world:
        yield world


def test_ingest_summary_matches_what_the_emulator_saw(emulated: Emulated) -> None:
    done = emulated.ingest(f"s3://{BUCKET}/")

    assert done.returncode == 0, done.stderr[-3000:]
    summary = SUMMARY.search(done.stdout)
    invocations = INVOCATIONS.search(done.stdout)
    assert summary and invocations, done.stdout
    counts = {k: int(v) for k, v in summary.groupdict().items()}
    seen_by_bedrock = emulator_statuses(emulated.bedrock())

    # Every file was seen; the broken one was skipped before anything was billed, with its reason.
    assert counts["seen"] == len(emulated.files)
    assert counts["skipped"] == 1
    assert re.search(rf"^  skipped s3://{BUCKET}/broken\.mp4: unreadable: .+$", done.stdout, re.MULTILINE)
    # The invocations this command submitted are exactly those the emulator created, and ended alike.
    assert int(invocations["submitted"]) == sum(seen_by_bedrock.values())
    assert int(invocations["completed"]) == seen_by_bedrock["Completed"]
    assert int(invocations["failed"]) == seen_by_bedrock["Failed"]
    assert seen_by_bedrock["InProgress"] == 0
    # Each object completes at most once: embedded objects = completed invocations; the rest failed twice.
    assert counts["embedded"] == seen_by_bedrock["Completed"]
    assert counts["embedded"] + counts["failed"] + counts["skipped"] == counts["seen"]
    assert seen_by_bedrock["Failed"] > 2 * counts["failed"] >= 2  # a failure, and a retry that completed
    failed_lines = re.findall(rf"^  failed (s3://{BUCKET}/.+?): (.+)$", done.stdout, re.MULTILINE)
    assert len(failed_lines) == counts["failed"]
    assert all(INJECTED_FAILURE_MESSAGE in reason and "(2 attempts)" in reason for _, reason in failed_lines)

    # The index holds exactly the embedded objects; the media seconds are theirs.
    table = lancedb.connect(emulated.env["MEDIAEMBED_INDEX_URI"]).open_table(
        SegmentIndex.table_name(MARENGO_3_0)
    )
    indexed = set(table.to_arrow().column("media_uri").to_pylist())
    usable = {f"s3://{BUCKET}/{key}" for key in emulated.files if key != "broken.mp4"}
    assert indexed == usable - {uri for uri, _ in failed_lines}
    seconds = {"trip/beach day.mp4": 2.0, "voice.wav": 2.0, "photo.png": 0.0}
    expected_seconds = sum(seconds[uri.removeprefix(f"s3://{BUCKET}/")] for uri in indexed)
    assert float(invocations["seconds"]) == pytest.approx(expected_seconds, abs=0.2)
    assert float(invocations["cost"]) > 0

    # Dagster's own engine ran it: the command submitted one run, the daemon's sensor requested the rest,
    # and the daemon the command started ended with it.
    home = emulated.env["DAGSTER_HOME"]
    serving = dg.AssetRecordsFilter(keys.SEARCH_SERVING_VERSION)
    with dg.DagsterInstance.from_config(home) as instance:
        runs = list(instance.get_runs())
        [shown] = [r.asset_materialization for r in instance.fetch_materializations(serving, limit=5).records]
    # The UI's serving asset shows what serves from the first ingest on, before any cut-over.
    assert shown is not None and shown.partition == MARENGO_3_0.key
    assert (shown.metadata["action"].value, shown.metadata["to"].value) == ("initial", MARENGO_3_0.key)
    by_command = [r for r in runs if r.tags.get("mediaembed/command") == "ingest"]
    assert [r.job_name for r in by_command] == ["embed_new_media"]
    requested = [r for r in runs if r.tags.get("dagster/sensor_name") == "marengo_invocation_sensor"]
    assert {r.job_name for r in requested} >= {"ingest_marengo_embeddings", "submit_marengo_invocations"}
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert not daemons_of(home), "no daemon outlives the command that started it"

    # A second run submits nothing, bills nothing and reports the same objects.
    again = emulated.ingest(f"s3://{BUCKET}/")
    assert again.returncode == 0, again.stderr[-3000:]
    assert SUMMARY.search(again.stdout).groupdict() == summary.groupdict()  # type: ignore[union-attr]
    assert "0 invocations submitted now (0 completed, 0 failed), estimated cost $0.0000" in again.stdout
    assert emulator_statuses(emulated.bedrock()) == seen_by_bedrock
    with dg.DagsterInstance.from_config(home) as instance:
        assert len(instance.fetch_materializations(serving, limit=5).records) == 1, "recorded once"
    # Not a terminal: progress is plain lines, each a full line.
    assert re.search(r"^embedding: \d+/\d+ jobs finished, ", done.stderr, re.MULTILINE)


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_missing_bucket_is_one_line_naming_what_to_do(emulated: Emulated) -> None:
    done = emulated.ingest("s3://no-such-bucket/videos/")
    assert done.returncode == 1
    assert one_line(done.stderr) == (
        "mediaembed ingest: bucket 'no-such-bucket' does not exist (s3://no-such-bucket/videos/): "
        "check the name, or create it (locally: `mediaembed emulate --bucket no-such-bucket`)"
    )
    assert done.stdout == ""


def test_unreachable_endpoint_is_one_line_naming_it(emulated: Emulated) -> None:
    done = emulated.ingest(f"s3://{BUCKET}/", AWS_ENDPOINT_URL_BEDROCK_RUNTIME="http://127.0.0.1:9")
    assert done.returncode == 1
    assert one_line(done.stderr).startswith(
        "mediaembed ingest: cannot reach Bedrock runtime at http://127.0.0.1:9: start the emulators"
    )


def test_output_bucket_in_another_region_is_one_line_before_any_run(emulated: Emulated) -> None:
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=emulated.env["AWS_ENDPOINT_URL_S3"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket="async-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    done = emulated.ingest(f"s3://{BUCKET}/", MEDIAEMBED_ASYNC_OUTPUT_URI="s3://async-eu/marengo")
    assert done.returncode == 1
    assert one_line(done.stderr).startswith(
        "mediaembed ingest: the async output bucket async-eu is in eu-west-1, but Marengo runs in us-east-1"
    )
    assert done.stdout == ""


def test_missing_settings_are_named_in_one_line(emulated: Emulated) -> None:
    env = {k: v for k, v in emulated.env.items() if k not in ("MEDIAEMBED_LAKE_URI", "DAGSTER_HOME")}
    done = subprocess.run(
        [sys.executable, "-m", "mediaembed.cli", "ingest", f"s3://{BUCKET}/"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SEC,
    )
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith("mediaembed ingest: set MEDIAEMBED_LAKE_URI (")
    assert "; DAGSTER_HOME (" in line and "MEDIAEMBED_INDEX_URI" not in line
