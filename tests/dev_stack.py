"""`mediaembed dev` (what `make dev` runs) on free loopback ports, for the tests that drive its UI or stop it:
started in a session of its own, so a stop reaches every process it started, and each wait bounded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from tests.postgres import free_port
from tests.topology import wait_for as poll_until

ROOT = Path(__file__).resolve().parents[1]
START_SEC = 240
POLL_SEC = 2.0

T = TypeVar("T")


def wait_for(what: str, timeout_sec: float, probe: Callable[[], T | None], every_sec: float = POLL_SEC) -> T:
    """The topology tests' bounded poll, at the dev stack's pace (its UI is polled through GraphQL)."""
    return poll_until(what, timeout_sec, probe, every_sec)


@dataclass
class DevStack:
    url: str
    workdir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer["errors"]
        return dict(answer["data"])

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    @property
    def lake(self) -> Lake:
        return Lake(root=str(self.workdir / "lake"), storage=S3Storage(region_name="us-east-1"))


def _stop(process: subprocess.Popen[bytes]) -> None:
    """The whole process group: `dagster dev`, its webserver, daemon, code servers and run workers.

    Ctrl-C first (what stops `make dev`: dagster dev shuts its children down, the emulators stop), then a
    kill of whatever is left of the group after a bounded wait."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=60)
    deadline = time.monotonic() + 30
    with suppress(ProcessLookupError):
        while time.monotonic() < deadline and group_left(process.pid):
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)


def group_left(pid: int) -> bool:
    """Whether any process of the session `pid` leads is left."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def running_dev(tmp_path: Path, *, sigint_ignored: bool = False) -> Iterator[DevStack]:
    """`mediaembed dev` (what `make dev` runs) on free loopback ports with its work folder under tmp_path,
    until its webserver answers; stopped with its whole session after. `sigint_ignored`: started as a
    shell starts a background job (`make dev &`), SIGINT ignored, which its children inherit."""
    port = free_port()
    workdir = tmp_path / "work"
    log = tmp_path / "dev.log"
    mediaembed = Path(sys.executable).with_name("mediaembed")
    command = [str(mediaembed), "dev", "--workdir", str(workdir), "--port", str(port)]
    command += ["--emulator-ports", "0", "0", "0"]
    if sigint_ignored:
        command = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command]
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    stack = DevStack(f"http://127.0.0.1:{port}", workdir, process, log)
    try:

        def serving() -> bool | None:
            if process.poll() is not None:
                pytest.fail(f"mediaembed dev exited with {process.returncode}:\n{stack.log_tail()}")
            try:
                with urllib.request.urlopen(f"{stack.url}/server_info", timeout=5) as response:
                    return True if response.status == 200 else None
            except (urllib.error.URLError, OSError):
                return None

        wait_for("the Dagster webserver of mediaembed dev answering", START_SEC, serving)
        yield stack
    finally:
        _stop(process)


@pytest.fixture
def dev_stack(tmp_path: Path) -> Iterator[DevStack]:
    with running_dev(tmp_path) as stack:
        yield stack
