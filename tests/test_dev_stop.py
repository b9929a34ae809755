"""`make dev` stops with everything it started: Dagster's webserver, daemon and code servers, and the
emulators, however it is stopped. A process manager or `kill PID` sends SIGTERM to `mediaembed dev` alone,
which `dagster dev` ignores; a shell's background job starts with SIGINT ignored, which every child inherits.
"""

import os
import signal
from pathlib import Path

import pytest

from tests.dev_stack import group_left, running_dev, wait_for

STOP_SEC = 90

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sigint_ignored", [False, True])
def test_sigterm_to_mediaembed_dev_alone_stops_every_process_it_started(
    tmp_path: Path, sigint_ignored: bool
) -> None:
    with running_dev(tmp_path, sigint_ignored=sigint_ignored) as stack:
        os.kill(stack.process.pid, signal.SIGTERM)
        assert stack.process.wait(timeout=STOP_SEC) == 0, stack.log_tail()
        wait_for(
            "the end of every process mediaembed dev started",
            STOP_SEC,
            lambda: None if group_left(stack.process.pid) else True,
            every_sec=0.5,
        )
        assert "Traceback" not in stack.log_tail(), stack.log_tail()
