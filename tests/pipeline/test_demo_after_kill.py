"""`mediaembed demo` after a `kill -9` of an earlier demo on the same workdir finishes normally.

Before the fix the killed run kept its pool slot and the second demo spun at 100% CPU for ever.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from harness.local_searcher import stop_local_searcher
from harness.run_slots import OWNER_TAG

DEMO_TIMEOUT_SEC = 300  # a hang fails the test instead of stalling the suite; the demo takes ~20 s


def demo(workdir: Path) -> list[str]:
    return [sys.executable, "-m", "mediaembed.cli", "demo", "--workdir", str(workdir)]


def started_run_holding_a_slot(instance: dg.DagsterInstance) -> str | None:
    storage = instance.event_log_storage
    for info in storage.get_concurrency_infos(sorted(storage.get_concurrency_keys())).values():
        for slot in info.claimed_slots:
            run = instance.get_run_by_id(slot.run_id)
            if run is not None and run.status == dg.DagsterRunStatus.STARTED:
                return slot.run_id
    return None


def kill_while_a_run_holds_a_slot(first: subprocess.Popen[str], home: Path) -> str:
    """SIGKILL the demo at a point it holds a pool slot in a STARTED run, checked while it is stopped."""
    assert first.stdout is not None
    for line in first.stdout:  # the instance exists once the demo has uploaded the media
        if line.startswith("uploaded "):
            break
    else:
        raise AssertionError("the first demo ended before it uploaded its media")
    deadline = time.monotonic() + DEMO_TIMEOUT_SEC
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            assert first.poll() is None, "the first demo ended before any run held a slot"
            if started_run_holding_a_slot(instance):
                os.kill(first.pid, signal.SIGSTOP)  # frozen: what we see now is what the kill leaves
                holder = started_run_holding_a_slot(instance)
                if holder:
                    os.kill(first.pid, signal.SIGKILL)
                    first.wait()
                    return holder
                os.kill(first.pid, signal.SIGCONT)
            time.sleep(0.01)
    raise AssertionError("no run of the first demo held a slot in time")


def test_demo_after_kill_9_of_an_earlier_demo_finishes_normally(tmp_path: Path) -> None:
    workdir, home = tmp_path / "local", tmp_path / "local" / "dagster"
    first = subprocess.Popen(demo(workdir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        killed_run = kill_while_a_run_holds_a_slot(first, home)
    finally:
        first.kill()
        first.wait()

    try:
        second = subprocess.run(demo(workdir), capture_output=True, text=True, timeout=DEMO_TIMEOUT_SEC)
    finally:
        stop_local_searcher(workdir)  # the finished demo started one

    assert second.returncode == 0, second.stderr[-2000:]
    assert f"run {killed_run} (embed_new_media) failed: process {first.pid} on " in second.stdout
    assert 'search "yellow triangle" (top 3):' in second.stdout
    assert "waiting for" not in second.stderr  # the dead run's slot was freed, not waited for
    with dg.DagsterInstance.from_config(str(home)) as instance:
        killed = instance.get_run_by_id(killed_run)
        assert killed is not None and killed.status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_run_ids() == set()
        runs = instance.get_runs()
        assert all(OWNER_TAG in run.tags for run in runs)
        others = {run.status for run in runs if run.run_id != killed_run}
        assert others == {dg.DagsterRunStatus.SUCCESS}
