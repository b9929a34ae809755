"""The deployed topology on one machine, as docs/deployment.md's local steps start it, for the tests.

Every piece is a process of its own: Postgres (tests/postgres.py) holds the runs, event logs, schedules and
sensor cursors; `dagster code-server start` serves the code location over gRPC; `dagster-daemon run`
loads it through `deploy/local/workspace.yaml` (a `grpc_server` entry) and runs the schedules, the sensor,
the run queue with its pools, backfills and run monitoring; the code server starts every run in a process
of its own (the default run launcher); the webserver answers the UI's GraphQL. Each of them is started by
running the documented shell blocks as written (`bash -c`, the settings block then the process's block),
with only the ports and paths the blocks read from the environment set by the test.

The emulators run in the test's own process (emulators/stack.py): S3 (moto) with the lake and the index on
it, Bedrock and the TwelveLabs API. Their request hooks let a fault test hold a worker's next call and
SIGKILL the worker there, and their records say what was billed.

Everything is stopped at teardown, on failure too: each documented process's group (Ctrl-C, then SIGKILL
after a bounded wait), then any process still serving this instance, and the test fails if one was left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import psutil

from emulators.bedrock_runtime.models import ACCOUNT_ID
from emulators.stack import LocalStack
from tests.postgres import URL_VARIABLE, free_port

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
BEGIN, END = "<!-- local topology: begin -->", "<!-- local topology: end -->"
SETTINGS, INSTANCE = "settings", "instance"
CODE_SERVER, DAEMON, WEBSERVER = "code server", "daemon", "webserver"
STEPS = (SETTINGS, INSTANCE, CODE_SERVER, DAEMON, WEBSERVER)
LOCATION = "mediaembed"
MEDIA_BUCKET, DATA_BUCKET = "media", "lake"
# Bounds that end a test instead of hanging it; none is waited out when things work.
START_TIMEOUT_SEC = 240.0  # the code server imports the pipeline: a minute on a loaded 2-core machine
STOP_TIMEOUT_SEC = 60.0
GRAPHQL_TIMEOUT_SEC = 120.0
POLL_SEC = 0.5
ACTIVE_RUN_STATUSES = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)
RUN_PID = re.compile(r"Started process for run \(pid: (\d+)\)")

T = TypeVar("T")


def wait_for(
    what: str,
    timeout_sec: float,
    probe: Callable[[], T | None],
    every_sec: float = POLL_SEC,
    explain: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something other than None (or False), or fail naming what never
    happened within `timeout_sec` (and what `explain` says of the state then)."""
    deadline = time.monotonic() + timeout_sec
    while True:
        found = probe()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            state = f": {explain()}" if explain is not None else ""
            raise AssertionError(f"{what} did not happen within {timeout_sec:.0f} s{state}")
        time.sleep(every_sec)


def documented_steps(doc: Path = DEPLOYMENT_DOC) -> dict[str, str]:
    """The shell blocks of the doc's local-topology section, by the marker before each."""
    text = doc.read_text()
    _, begin, rest = text.partition(BEGIN)
    section, end, _ = rest.partition(END)
    assert begin and end, f"{doc.name} has no {BEGIN} ... {END} section"
    steps = {}
    for name in STEPS:
        _, marker, after = section.partition(f"<!-- local topology: {name} -->")
        assert marker, f"{doc.name}'s local topology has no {name} block"
        block = after.lstrip()
        assert block.startswith("```sh\n"), f"the {name} marker is not followed by a ```sh block"
        steps[name] = block.removeprefix("```sh\n").partition("```")[0]
    return steps


def processes_of(home: Path) -> list[psutil.Process]:
    """Every live process whose DAGSTER_HOME is `home`: the documented processes and what they started."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get("DAGSTER_HOME") == str(home):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def pipeline_settings(stack: LocalStack, **overrides: str) -> dict[str, str]:
    """What the code server's shell holds: the emulators' endpoints and keys, the pipeline's settings with
    the lake and the index on the S3 emulator, the sensor ticking as often as the daemon does, and the
    schedules every minute (the shortest cron; docs/configuration.md)."""
    return {
        **stack.env(),
        "MEDIAEMBED_MEDIA_URI": f"s3://{MEDIA_BUCKET}/",
        "MEDIAEMBED_ASYNC_OUTPUT_URI": f"s3://{DATA_BUCKET}/marengo-async",
        "MEDIAEMBED_LAKE_URI": f"s3://{DATA_BUCKET}/warehouse",
        "MEDIAEMBED_INDEX_URI": f"s3://{DATA_BUCKET}/lancedb",
        "MEDIAEMBED_BUCKET_OWNER": ACCOUNT_ID,
        "MEDIAEMBED_SENSOR_INTERVAL_SEC": "1",
        "MEDIAEMBED_EMBED_SCHEDULE": "* * * * *",
        "MEDIAEMBED_DESCRIBE_SCHEDULE": "* * * * *",
        **overrides,
    }


@dataclass
class Step:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout_sec: float = STOP_TIMEOUT_SEC) -> None:
        """`sig` to the step's process group (what Ctrl-C in its shell sends), then SIGKILL to what is left
        of the group after `timeout_sec`."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_sec)
        deadline = time.monotonic() + (timeout_sec if sig != signal.SIGKILL else 0)
        with suppress(ProcessLookupError):
            while time.monotonic() < deadline:
                os.killpg(self.process.pid, 0)  # raises once no process of the group is left
                time.sleep(POLL_SEC)
            os.killpg(self.process.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_sec)


@dataclass
class Topology:
    """The documented processes of one instance (DAGSTER_HOME `home`, Postgres `postgres_url`)."""

    home: Path
    env: dict[str, str]  # the shells' environment: the documented variables and the pipeline's settings
    logs: Path
    steps: dict[str, str] = field(default_factory=documented_steps)
    running: dict[str, Step] = field(default_factory=dict)
    started: int = 0

    @property
    def webserver_url(self) -> str:
        return f"http://127.0.0.1:{self.env['DAGSTER_WEBSERVER_PORT']}"

    # --- the documented processes ----------------------------------------------------------------------

    def _script(self, name: str) -> str:
        return f"set -eu\n{self.steps[SETTINGS]}\n{self.steps[name]}"

    def prepare(self) -> None:
        """The one-time block: the instance's folder and its dagster.yaml."""
        done = subprocess.run(
            ["bash", "-c", self._script(INSTANCE)], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr

    def start(self, name: str) -> Step:
        """Run the settings block and then `name`'s block, as written, in a shell of its own."""
        assert name in (CODE_SERVER, DAEMON, WEBSERVER) and name not in self.running, name
        self.started += 1
        log = self.logs / f"{self.started:02d}-{name.replace(' ', '-')}.log"
        script = self._script(name)
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", "-c", script],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: what one shell's Ctrl-C reaches
            )
        step = Step(name, process, log)
        self.running[name] = step
        return step

    def stop(self, name: str, sig: int = signal.SIGINT) -> None:
        step = self.running.pop(name)
        step.stop(sig)

    def instance(self) -> dg.DagsterInstance:
        """The instance as the processes see it (the caller has DAGSTER_POSTGRES_URL set, as they do)."""
        return dg.DagsterInstance.from_config(str(self.home))

    def up(self, daemon: bool = True) -> None:
        """The instance's folder, the code server and the webserver serving the location; then the daemon,
        beating."""
        self.prepare()
        for name in (CODE_SERVER, WEBSERVER):
            self.start(name)
        wait_for("the code location loaded in the webserver", START_TIMEOUT_SEC, self._location_loaded, 1.0)
        if daemon:
            self.start_daemon()

    def start_daemon(self) -> None:
        started = time.time()
        self.start(DAEMON)
        with self.instance() as instance:

            def beating() -> bool:
                self.check_alive()
                beats = instance.get_daemon_heartbeats()
                return bool(beats) and all(b.timestamp > started for b in beats.values())

            wait_for("the daemon's first heartbeats", START_TIMEOUT_SEC, beating, 1.0)

    def check_alive(self) -> None:
        for step in self.running.values():
            assert step.alive(), f"the {step.name} exited ({step.process.returncode}):\n{step.tail()}"

    def _location_loaded(self) -> bool:
        self.check_alive()
        try:
            data = self.graphql(WORKSPACE)
        except (urllib.error.URLError, OSError, AssertionError):
            return False
        entries = data["workspaceOrError"]["locationEntries"]
        loaded = [e for e in entries if e["name"] == LOCATION and e["loadStatus"] == "LOADED"]
        if loaded and loaded[0]["locationOrLoadError"]["__typename"] != "RepositoryLocation":
            # Loading failed (e.g. the server was not up yet): ask the webserver to load it again.
            with suppress(urllib.error.URLError, OSError, AssertionError):
                self.graphql(RELOAD, {"name": LOCATION})
            return False
        return bool(loaded)

    def teardown(self) -> list[str]:
        """Stop every documented process (the webserver, the daemon, then the code server, which waits for
        the runs it started), then anything left serving this instance; what had to be killed so."""
        for name in (WEBSERVER, DAEMON, CODE_SERVER):
            if name in self.running:
                self.stop(name)
        left = []
        for process in processes_of(self.home):
            with suppress(psutil.NoSuchProcess):
                left.append(f"{process.pid} {' '.join(process.cmdline())[:160]}")
                process.kill()
        return left

    # --- the UI's API ----------------------------------------------------------------------------------

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The webserver's /graphql, as the UI calls it; fails on a GraphQL error."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            f"{self.webserver_url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=GRAPHQL_TIMEOUT_SEC) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            said = error.read().decode(errors="replace")
            error.msg = f"{error.msg}: {' '.join(said.split())[:600]}"
            raise
        assert "errors" not in answer, answer["errors"]
        return dict(answer["data"])

    def launch(
        self, job: str, partition: str | None = None, run_config: Mapping[str, Any] | None = None
    ) -> str:
        """One run of `job`, as the launchpad launches it (to the instance's queue); its run id."""
        tags = [{"key": "dagster/partition", "value": partition}] if partition else []
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "jobName": job,
            },
            "runConfigData": dict(run_config or {}),
            "executionMetadata": {"tags": tags},
        }
        answer = self.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
        assert answer["__typename"] == "LaunchRunSuccess", answer
        return str(answer["run"]["runId"])

    def reexecute(self, run_id: str) -> str:
        """The UI's "Re-execute from failure" of a failed run; the new run's id."""
        params = {"parentRunId": run_id, "strategy": "FROM_FAILURE"}
        answer = self.graphql(REEXECUTE, {"params": params})["launchRunReexecution"]
        assert answer["__typename"] == "LaunchRunSuccess", answer
        return str(answer["run"]["runId"])

    def backfill(self, asset_path: list[str], partitions: list[str]) -> str:
        """A backfill of `partitions` of one asset, as the UI's Partitions view submits it; its id."""
        params = {
            "assetSelection": [{"path": asset_path}],
            "partitionNames": partitions,
            "fromFailure": False,
        }
        answer = self.graphql(BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert answer["__typename"] == "LaunchBackfillSuccess", answer
        return str(answer["backfillId"])

    def set_automation(self, running: bool, schedules: tuple[str, ...], sensors: tuple[str, ...]) -> None:
        """Start or stop schedules and sensors, as their toggles in the UI do."""
        for name in schedules:
            selector = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__"}
            if running:
                answer = self.graphql(START_SCHEDULE, {"selector": {**selector, "scheduleName": name}})
                assert answer["startSchedule"]["__typename"] == "ScheduleStateResult", answer
            else:
                state = self.graphql(SCHEDULE_STATE, {"selector": {**selector, "scheduleName": name}})
                origin = state["scheduleOrError"]["scheduleState"]
                answer = self.graphql(STOP_SCHEDULE, {"id": origin["id"]})
                assert answer["stopRunningSchedule"]["__typename"] == "ScheduleStateResult", answer
        for name in sensors:
            selector = {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "sensorName": name,
            }
            if running:
                answer = self.graphql(START_SENSOR, {"selector": selector})
                assert answer["startSensor"]["__typename"] == "Sensor", answer
            else:
                state = self.graphql(SENSOR_STATE, {"selector": selector})["sensorOrError"]["sensorState"]
                answer = self.graphql(STOP_SENSOR, {"id": state["id"]})
                assert answer["stopSensor"]["__typename"] == "StopSensorMutationResult", answer

    def runs_via_ui(self) -> list[dict[str, Any]]:
        """The runs page's query: id, job and status of the latest runs."""
        return list(self.graphql(RUNS)["runsOrError"]["results"])

    def backfill_status(self, backfill_id: str) -> str:
        answer = self.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        assert answer["__typename"] == "PartitionBackfill", answer
        return str(answer["status"])

    def backfills(self, status: str) -> list[str]:
        """The ids of the backfills in `status` (REQUESTED: still being run by the daemon)."""
        answer = self.graphql(BACKFILLS, {"status": status})["partitionBackfillsOrError"]
        return [str(b["id"]) for b in answer["results"]]

    # --- what the instance holds -----------------------------------------------------------------------

    def runs(self) -> list[dg.DagsterRun]:
        with self.instance() as instance:
            return list(instance.get_runs())

    def run_pid(self, run_id: str) -> int | None:
        """The pid of a run's worker, from the engine event its process logs as it starts."""
        with self.instance() as instance:
            for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                found = RUN_PID.search(entry.message or "")
                if found:
                    return int(found.group(1))
        return None

    def sigkill_run_worker(self, run_id: str) -> int:
        """SIGKILL the process of a run: no handler, no finally, no flush runs. Only a process of this
        instance (its DAGSTER_HOME) is ever killed. Returns its pid."""
        pid = wait_for(f"the worker of run {run_id} started", START_TIMEOUT_SEC, lambda: self.run_pid(run_id))
        process = psutil.Process(pid)
        assert process.environ().get("DAGSTER_HOME") == str(self.home), process.cmdline()
        process.send_signal(signal.SIGKILL)
        with suppress(psutil.NoSuchProcess):
            process.wait(timeout=STOP_TIMEOUT_SEC)
        return pid

    def wait_ended(self, run_id: str, timeout_sec: float = START_TIMEOUT_SEC) -> dg.DagsterRun:
        with self.instance() as instance:

            def ended() -> dg.DagsterRun | None:
                run = instance.get_run_by_id(run_id)
                return run if run is not None and run.status not in ACTIVE_RUN_STATUSES else None

            return wait_for(f"the end of run {run_id}", timeout_sec, ended)

    def wait_quiet(self, timeout_sec: float) -> list[dg.DagsterRun]:
        """Until no run is queued or going and no backfill is requested; every run."""
        with self.instance() as instance:

            def quiet() -> list[dg.DagsterRun] | None:
                self.check_alive()
                runs = list(instance.get_runs())
                if any(r.status in ACTIVE_RUN_STATUSES for r in runs):
                    return None
                return None if self.backfills("REQUESTED") else runs

            return wait_for("every run and backfill ended", timeout_sec, quiet, 1.0)


def base_env(home: Path, postgres_url: str, logs: Path) -> dict[str, str]:
    """The documented variables (the instance's folder, Postgres, the ports), nothing of the test's own
    environment but PATH, HOME and the locale."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")}
    return {
        **keep,
        "DAGSTER_HOME": str(home),
        URL_VARIABLE: postgres_url,
        "DAGSTER_CODE_SERVER_PORT": str(free_port()),
        "DAGSTER_WEBSERVER_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@contextmanager
def deployed(
    home: Path, postgres_url: str, settings: Mapping[str, str], logs: Path, daemon: bool = True
) -> Iterator[Topology]:
    """The documented topology up (the daemon too, unless `daemon` is False); everything stopped after,
    and nothing left serving the instance."""
    logs.mkdir(parents=True, exist_ok=True)
    topology = Topology(home, {**base_env(home, postgres_url, logs), **settings}, logs)
    left: list[str] = []
    try:
        topology.up(daemon=daemon)
        yield topology
    except BaseException:
        for step in topology.running.values():
            print(f"--- {step.name} ({step.log}):\n{step.tail()}", file=sys.stderr)
        raise
    finally:
        left = topology.teardown()
    assert not processes_of(home), "a process of the topology outlived its teardown"
    assert not left, f"processes left after the documented processes stopped: {left}"


WORKSPACE = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
RELOAD = """
mutation Reload($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename } }
"""
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } ... on InvalidSubsetError { message } } }
"""
REEXECUTE = """
mutation Reexecute($params: ReexecutionParams!) { launchRunReexecution(reexecutionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
"""
BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on PartitionSetNotFoundError { message } } }
"""
RUNS = """
query { runsOrError(limit: 50) { ... on Runs { results { runId jobName status } } } }
"""
BACKFILL_STATUS = """
query B($id: String!) { partitionBackfillOrError(backfillId: $id) {
  __typename ... on PartitionBackfill { status } ... on PythonError { message } } }
"""
BACKFILLS = """
query Bs($status: BulkActionStatus) { partitionBackfillsOrError(status: $status) {
  ... on PartitionBackfills { results { id } } } }
"""
SCHEDULE_STATE = """
query S($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
  ... on Schedule { scheduleState { id selectorId status } } } }
"""
START_SCHEDULE = """
mutation Start($selector: ScheduleSelector!) { startSchedule(scheduleSelector: $selector) {
  __typename ... on PythonError { message } } }
"""
STOP_SCHEDULE = """
mutation Stop($id: String!) { stopRunningSchedule(id: $id) {
  __typename ... on PythonError { message } } }
"""
SENSOR_STATE = """
query S($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  ... on Sensor { sensorState { id selectorId status } } } }
"""
START_SENSOR = """
mutation Start($selector: SensorSelector!) { startSensor(sensorSelector: $selector) {
  __typename ... on PythonError { message } } }
"""
STOP_SENSOR = """
mutation Stop($id: String!) { stopSensor(id: $id) {
  __typename ... on PythonError { message } } }
"""
