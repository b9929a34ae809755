"""`mediaembed ingest` on a directory of your own files, uploaded through `mediaembed emulate --upload`.

Both commands run as a user runs them: separate processes, the emulators on free ports, the settings taken
from the `export` lines `emulate` prints. What the summary reports is checked against what the Bedrock
emulator itself saw over the wire (its invocation records), and against the index on disk.
"""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
import lancedb
import pytest

from emulators.bedrock_runtime.server import INJECTED_FAILURE_MESSAGE
from emulators.sample_media import Scene, make_audio, make_image, make_video
from resources.index.segment_index import SegmentIndex
from resources.providers.marengo_models import MARENGO_3_0
from tests.daemons import daemons_of

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "own-media"
START_TIMEOUT_SEC = 60
COMMAND_TIMEOUT_SEC = 300  # a hang fails the test instead of stalling the suite; ingest takes ~15 s
# With a failure rate of one half, seed 7 fails the first two invocations, completes the third, then fails
# the first object's retry and completes the second's: one object out of attempts, one embedded on its
# retry, one at the first go.
FAULTS = ["--failure-rate", "0.5", "--seed", "7", "--latency", "0.05"]


def own_files(directory: Path) -> dict[str, bytes]:
    """A few small files of "your own", in folders and with a space in a name, and one that is broken."""
    files = {
        "photo.png": make_image(Scene(0, 0, "square", "green", "white", 0.0), "png"),
        "trip/beach day.mp4": make_video((Scene(0.0, 2.0, "circle", "red", "blue", 440.0),)),
        "voice.wav": make_audio(330.0, 2.0, "wav"),
        "broken.mp4": b"\x00\x01 not a video at all " * 64,
    }
    for key, data in files.items():
        (directory / key).parent.mkdir(parents=True, exist_ok=True)
        (directory / key).write_bytes(data)
    return files


def read_exports(proc: subprocess.Popen[str], names: set[str], timeout: float) -> dict[str, str]:
    """The `export NAME=value` lines the emulator prints, read with a deadline (never a blocking read)."""
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True).start()
    exports: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while not names <= exports.keys():
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"emulate printed only {sorted(exports)} in {timeout} s") from None
        [export, assignment] = shlex.split(line)  # as a shell's `eval` reads it
        assert export == "export", line
        name, _, value = assignment.partition("=")
        exports[name] = value
    return exports


@dataclass
class Emulated:
    files: dict[str, bytes]
    env: dict[str, str]

    def bedrock(self) -> Any:
        return boto3.session.Session().client(
            "bedrock-runtime",
            endpoint_url=self.env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"],
            region_name=self.env["AWS_REGION"],
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def ingest(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mediaembed.cli", "ingest", *args],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SEC,
        )


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulated]:
    base = tmp_path_factory.mktemp("own")
    files = own_files(base / "files")
    command = [sys.executable, "-m", "mediaembed.cli", "emulate", "--s3-port", "0", "--bedrock-port", "0"]
    command += ["--bucket", BUCKET, "--upload", str(base / "files"), "--workdir", str(base / "work"), *FAULTS]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAEMBED_", "DAGSTER_"))}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=clean, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        names = {"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "MEDIAEMBED_MEDIA_URI"}
        names |= {
            "MEDIAEMBED_ASYNC_OUTPUT_URI",
            "MEDIAEMBED_LAKE_URI",
            "MEDIAEMBED_INDEX_URI",
            "DAGSTER_HOME",
        }
        exports = read_exports(proc, names, START_TIMEOUT_SEC)
        assert exports["MEDIAEMBED_MEDIA_URI"] == f"s3://{BUCKET}/"
        yield Emulated(files, {**clean, **exports, "MEDIAEMBED_SENSOR_INTERVAL_SEC": "1"})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # stopped cleanly
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


SUMMARY = re.compile(
    rf"^s3://{BUCKET}/: (?P<seen>\d+) seen, (?P<embedded>\d+) embedded, (?P<skipped>\d+) skipped, "
    r"(?P<failed>\d+) failed$",
    re.MULTILINE,
)
INVOCATIONS = re.compile(
    r"(?P<seconds>[\d.]+) media seconds embedded \(marengo-3.0\); (?P<submitted>\d+) invocations submitted "
    r"now \((?P<completed>\d+) completed, (?P<failed>\d+) failed\), estimated cost \$(?P<cost>[\d.]+)$",
    re.MULTILINE,
)


def emulator_statuses(client: Any) -> Counter[str]:
    pages = client.get_paginator("list_async_invokes").paginate()
    return Counter(s["status"] for page in pages for s in page["asyncInvokeSummaries"])


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
    with dg.DagsterInstance.from_config(home) as instance:
        runs = list(instance.get_runs())
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
