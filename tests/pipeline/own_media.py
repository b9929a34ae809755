"""Your own files behind `mediaembed emulate --upload`, and `mediaembed ingest` run on them as a user runs it.

Both are separate processes: the emulators on free ports, the settings taken from the `export` lines
`emulate` prints. Shared by the tests of the command on SQLite (test_ingest_command.py) and on Postgres
(test_ingest_postgres.py).
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from emulators.sample_media import Scene, make_audio, make_image, make_video

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "own-media"
START_TIMEOUT_SEC = 60
COMMAND_TIMEOUT_SEC = 300  # a hang fails the test instead of stalling the suite; ingest takes ~15 s

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
    workdir: Path  # `emulate --workdir`: Bedrock keeps its invocations in <workdir>/bedrock

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


@contextmanager
def emulate(base: Path, faults: Sequence[str] = ()) -> Iterator[Emulated]:
    """`mediaembed emulate` over `own_files`, uploaded to s3://own-media/; stopped with SIGTERM, cleanly."""
    files = own_files(base / "files")
    workdir = base / "work"
    command = [sys.executable, "-m", "mediaembed.cli", "emulate", "--s3-port", "0", "--bedrock-port", "0"]
    command += ["--bucket", BUCKET, "--upload", str(base / "files"), "--workdir", str(workdir), *faults]
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
        yield Emulated(files, {**clean, **exports, "MEDIAEMBED_SENSOR_INTERVAL_SEC": "1"}, workdir)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # stopped cleanly
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def emulator_statuses(client: Any) -> Counter[str]:
    pages = client.get_paginator("list_async_invokes").paginate()
    return Counter(s["status"] for page in pages for s in page["asyncInvokeSummaries"])
