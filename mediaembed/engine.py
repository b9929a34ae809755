"""Dagster's own engine for the commands: the daemon of DAGSTER_HOME, and runs submitted to its queue.

`mediaembed ingest` and `mediaembed serving` submit their runs as the UI's launchpad does: `dagster job
launch` creates the run on the instance and hands it to the instance's run coordinator (queued by default),
and the daemon starts it with the instance's run launcher. From then on the daemon does what it does in a
deployment: the invocation sensor requests the ingest and submission runs (each run key once), the run queue
applies the pools, and run monitoring ends runs whose worker died or that ran past `dagster/max_runtime`.

Unless a daemon already serves the instance (a heartbeat within the last minute: `dagster dev` on the same
DAGSTER_HOME, or a deployment's), the command starts `dagster-daemon run` as its child, with its log in
DAGSTER_HOME, and stops it when the command ends; a run it leaves going is then failed by run monitoring the
next time a daemon starts, and the ledger makes a re-run collect what it submitted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import dagster as dg

# The code location the commands' runs belong to: the name `dg dev` and the workspace give it.
LOCATION_NAME = "mediaembed"
DEFINITIONS_MODULE = "pipelines.definitions"
# A daemon beats every 30 s: one whose last heartbeat is older than this is gone.
HEARTBEAT_FRESH_SEC = 60.0
# Creating a run loads the code location once in a code server: seconds, or a minute on a loaded machine.
LAUNCH_TIMEOUT_SEC = 300.0
DAEMON_STOP_TIMEOUT_SEC = 60.0
ENDED_RUN_STATUSES = frozenset(
    {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
)


class EngineError(RuntimeError):
    """The daemon or a launch failed; the message is one line naming what to look at."""


def workspace_yaml() -> str:
    """The workspace of the commands' code location, loaded from the installed package."""
    return (
        "load_from:\n"
        f"  - python_module:\n      module_name: {DEFINITIONS_MODULE}\n      location_name: {LOCATION_NAME}\n"
    )


def serving_daemon(heartbeats: Mapping[str, Any], now: float, stopped_at: float | None = None) -> bool:
    """Whether a daemon of the instance beat within HEARTBEAT_FRESH_SEC of `now`, after `stopped_at` (when
    a daemon a command started was stopped: its last beats look fresh for a while, but it is gone)."""
    since = max(now - HEARTBEAT_FRESH_SEC, stopped_at or 0.0)
    return any(beat.timestamp > since for beat in heartbeats.values())


def failure_reason(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first line of why a run failed: a step's `dg.Failure` description, its error, or the run's."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        data = event.step_failure_data if event is not None else None
        if data is not None and data.user_failure_data and data.user_failure_data.description:
            return data.user_failure_data.description.strip().splitlines()[0]
        if data is not None and data.error is not None:
            return data.error.message.strip().splitlines()[0]
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE):
        if entry.message:
            return entry.message.strip().splitlines()[0]
    return "the run failed"


@dataclass
class Engine:
    """The instance of DAGSTER_HOME, the workspace file naming the code location, and the daemon's child
    process when this command started one."""

    instance: dg.DagsterInstance
    home: Path
    workspace: Path
    daemon: subprocess.Popen[bytes] | None = None

    def launch(
        self,
        job_name: str,
        *,
        partition_key: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Submit one run of `job_name` to the instance's queue, as the launchpad does; its run id."""
        run_id = str(uuid4())
        all_tags = {**(tags or {}), **({"dagster/partition": partition_key} if partition_key else {})}
        command = [
            _dagster("dagster"),
            "job",
            "launch",
            "-w",
            str(self.workspace),
            "-j",
            job_name,
            "--run-id",
            run_id,
            "--tags",
            json.dumps(all_tags),
            "--config-json",
            json.dumps(dict(run_config or {})),
        ]
        # Output to a file, not a pipe: the code server the launch starts may hold a pipe open after the
        # launch itself has exited, and reading one to its end would wait for that server too.
        with tempfile.TemporaryFile("w+") as output:
            try:
                done = subprocess.run(
                    command,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=LAUNCH_TIMEOUT_SEC,
                )
            except subprocess.TimeoutExpired:
                raise EngineError(
                    f"launching {job_name} took over {LAUNCH_TIMEOUT_SEC:.0f} s: check that the code "
                    "location loads (`dg check defs`), then run again"
                ) from None
            output.seek(0)
            printed = output.read()
        if done.returncode != 0 or self.instance.get_run_by_id(run_id) is None:
            raise EngineError(f"could not launch {job_name}: {_last_line(printed)}")
        return run_id

    def status(self, run_id: str) -> dg.DagsterRunStatus:
        run = self.instance.get_run_by_id(run_id)
        if run is None:
            raise EngineError(f"run {run_id} is gone from the instance at {self.home}")
        return run.status

    def keep_daemon(self) -> None:
        """Start a daemon unless one serves the instance, and raise if the one this command started has
        exited (nothing would start the queued runs). Checked at every poll: a daemon that stopped without a
        word (killed) looks alive for up to a minute, and then this command starts its own."""
        if self.daemon is not None:
            if self.daemon.poll() is not None:
                raise EngineError(
                    f"the dagster-daemon this command started exited ({self.daemon.returncode}): see "
                    f"{self.daemon_log}"
                )
            return
        if not serving_daemon(self.instance.get_daemon_heartbeats(), time.time(), self._stopped_at()):
            self._start_daemon()

    @property
    def daemon_log(self) -> Path:
        # Not under DAGSTER_HOME/logs: Dagster's telemetry clears that folder.
        return self.home / "mediaembed" / "daemon.log"

    @property
    def _stopped_marker(self) -> Path:
        return self.home / "mediaembed" / "daemon-stopped-at"

    def _stopped_at(self) -> float | None:
        try:
            return float(self._stopped_marker.read_text())
        except (OSError, ValueError):
            return None

    def _start_daemon(self) -> None:
        self.daemon_log.parent.mkdir(parents=True, exist_ok=True)
        with self.daemon_log.open("ab") as log:
            self.daemon = subprocess.Popen(
                [_dagster("dagster-daemon"), "run", "-w", str(self.workspace), "--log-level", "warning"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches this command, which stops the daemon in order
                preexec_fn=_end_with_parent,
            )

    def _stop_daemon(self) -> None:
        if self.daemon is None or self.daemon.poll() is not None:
            return
        self.daemon.send_signal(signal.SIGINT)  # the daemon's own clean shutdown
        try:
            self.daemon.wait(timeout=DAEMON_STOP_TIMEOUT_SEC)
        except subprocess.TimeoutExpired:
            os.killpg(self.daemon.pid, signal.SIGKILL)
            self.daemon.wait()
        self._stopped_marker.write_text(repr(time.time()))


def _end_with_parent() -> None:
    """In the daemon's process, before it starts: Linux sends it SIGTERM when this command's process dies,
    even by SIGKILL, so no daemon outlives the command that started it. Elsewhere: stopped on exit only.

    SIGINT and SIGTERM are set back to their defaults first: a command started in the background by a shell
    ignores them, and an ignored signal would stay ignored in the daemon."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _dagster(command: str) -> str:
    """A Dagster command of this interpreter's environment, wherever the command line was started from."""
    return str(Path(sys.executable).with_name(command))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


@contextmanager
def dagster_engine(home: Path) -> Iterator[Engine]:
    """The instance of `home` (DAGSTER_HOME, which the launches and the daemon inherit) with a daemon
    serving it: the one already running, or a child of this process for as long as the block runs."""
    with tempfile.TemporaryDirectory(prefix="mediaembed-") as folder:
        workspace = Path(folder) / "workspace.yaml"
        workspace.write_text(workspace_yaml())
        # Opened (and its databases created) here first: a daemon and a launch creating the same new
        # SQLite storage at once can leave its schema with two migration heads.
        with dg.DagsterInstance.from_config(str(home)) as instance:
            engine = Engine(instance, home, workspace)
            engine.keep_daemon()
            try:
                yield engine
            finally:
                engine._stop_daemon()
