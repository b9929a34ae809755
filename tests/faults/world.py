"""One fault case's world: a Bedrock emulator of its own, a media bucket, a lake, an index, a Dagster home.

The S3 emulator is shared by a module (moto keeps one state per process); everything a case writes lives in
its own media bucket, output prefix and folders, so cases never see each other's objects, jobs or tables.
The pipeline is driven through the real definitions (`harness.runner`), as the schedule and the sensor
daemon would; `check` asserts the invariants of `tests/faults/invariants.py` and records the case's counts.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import dagster as dg
import pandas as pd

from assets_defs.inventory.media_inventory import read_inventory
from assets_defs.marengo.invocations import InvocationConfig
from assets_defs.marengo.submission_plan import plan_submissions
from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.bedrock_runtime.server import Invocation
from emulators.http_base import HttpEmulator
from emulators.media_analysis import COLORS, SHAPES
from emulators.s3 import S3Emulator
from emulators.sample_media import SampleObject, Scene, make_image
from harness.run_slots import OWNER_TAG, ProcessIdentity
from harness.runner import SensorDriver, materialization_metadata, run_job
from resources.providers.marengo_models import MARENGO_3_0, marengo_model
from resources.storage.lake import Lake
from resources.storage.s3_objects import S3Uri
from resources.tables.submission_ledger import SubmissionLedger
from tests.faults.child import fork_server, work
from tests.faults.invariants import Counts, Snapshot, check_invariants

REGION = "us-east-1"
ACCESS_KEY_ID = "AKIDFAULTMATRIX"  # with the marker secret (invariants.MARKER): the pipeline's credentials
OUTPUT_BUCKET = "lake"
# Bounds that end a case instead of hanging it; none of them is waited out when things work.
IDLE_TIMEOUT_SEC = 60.0
MAX_ROUNDS = 40
MAX_DRAIN_STEPS = 20
CHILD_TIMEOUT_SEC = 120.0


def extra_images(count: int) -> list[tuple[str, bytes]]:
    """`count` distinct small PNGs (a shape of one colour on a background), keyed images/extra_<n>.png."""
    looks = [(c, s) for c, s in itertools.product(COLORS, SHAPES) if c not in ("black", "white", "gray")]
    images = []
    for n in range(count):
        color, shape = looks[n % len(looks)]
        background = ("black", "white", "gray")[(n // len(looks)) % 3]
        picture = make_image(Scene(0.0, 0.0, shape, color, background, 0.0), "png")
        images.append((f"images/extra_{n:03d}.png", picture))
    return images


def error_chain(error: BaseException) -> str:
    """The messages of an error and its causes on one line: what a failed run or tick was about."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(parts).replace("\n", " ")


class Gate:
    """WSGI middleware on an emulator's server: lets `allow` matching requests through and holds the next
    ones until released, so a test stops a client at an exact point (and SIGKILLs it) without sleeping."""

    HOLD_LIMIT_SEC = 120.0  # a held request goes on by itself after this: nothing waits for ever

    def __init__(
        self, app: Any, matches: Callable[[dict[str, Any]], bool], allow: int, drop_held: bool = False
    ) -> None:
        self.app, self.matches, self.allow, self.drop_held = app, matches, allow, drop_held
        self.passed = self.held = self.answered = self.passed_answered = 0
        self._released = False
        self._cond = threading.Condition()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self.matches(environ):
            return self.app(environ, start_response)
        with self._cond:
            hold = self.passed >= self.allow and not self._released
            if hold:
                self.held += 1
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._released, timeout=self.HOLD_LIMIT_SEC)
            else:
                self.passed += 1
        try:
            if hold and self.drop_held:  # the request never reaches the server: as if the client died first
                start_response("503 Service Unavailable", [("Content-Length", "0")])
                return [b""]
            return self.app(environ, start_response)
        finally:
            with self._cond:
                if hold:
                    self.answered += 1
                else:
                    self.passed_answered += 1
                self._cond.notify_all()

    def wait_held(self, count: int, alive: Callable[[], bool]) -> None:
        """Until `count` requests are held and each one let through is answered (a client sending several
        at once may still wait for one); fails at once if `alive()` turns false (the client ended)."""

        def settled() -> bool:
            return self.held >= count and self.passed_answered >= self.passed

        with self._cond:
            for _ in range(int(self.HOLD_LIMIT_SEC / 0.1)):
                if self._cond.wait_for(settled, timeout=0.1):
                    return
                assert alive(), f"the client ended with {self.held} of {count} requests held"
        raise AssertionError(f"only {self.held} of {count} requests reached the gate")

    def release(self) -> None:
        """Let every held request go on, and wait until the server has handled them all."""
        with self._cond:
            self._released = True
            self._cond.notify_all()
            assert self._cond.wait_for(lambda: self.answered >= self.held, timeout=60), "a request hung"


@contextmanager
def gated(
    emulator: HttpEmulator[Any] | S3Emulator,
    matches: Callable[[dict[str, Any]], bool],
    allow: int,
    drop_held: bool = False,
) -> Iterator[Gate]:
    """Put a Gate in front of a running emulator (its `intercept` hook), and take it away after."""
    gate: Gate | None = None
    try:
        with emulator.intercept(lambda app: Gate(app, matches, allow, drop_held)) as gate:
            yield gate
    finally:
        if gate is not None:
            gate.release()


@dataclass
class Child:
    """A pipeline step in a worker process of its own (tests/faults/child.py)."""

    process: Any  # multiprocessing.Process
    log: Path

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def kill(self) -> None:
        """SIGKILL: no handler, no finally, no flush runs."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.join(timeout=30)
        assert self.process.exitcode == -signal.SIGKILL

    def finish(self) -> int:
        self.process.join(timeout=CHILD_TIMEOUT_SEC)
        return int(self.process.exitcode)


@dataclass
class FaultWorld:
    s3: S3Emulator
    bedrock: BedrockRuntimeEmulator
    bucket: str
    output_prefix: str
    root: Path
    env: dict[str, str]
    instance: dg.DagsterInstance
    lake: Lake
    bedrock_workdir: Path | None
    read_output: Callable[[], str]  # what the test process printed since the last call (captured)
    record: Callable[[str, Counts], None]
    # What every Bedrock emulator of this case is started with (its keys, how it treats undecodable media).
    bedrock_settings: dict[str, Any] = field(default_factory=dict)
    printed: list[str] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # failed runs and sensor ticks, one line each
    forgotten: dict[str, Invocation] = field(default_factory=dict)  # jobs of emulators since restarted

    @property
    def output_bucket(self) -> str:
        return OUTPUT_BUCKET

    @property
    def home(self) -> Path:
        return Path(self.env["DAGSTER_HOME"])

    @property
    def lake_dir(self) -> Path:
        return Path(self.env["MEDIAEMBED_LAKE_URI"])

    @property
    def index_dir(self) -> Path:
        return Path(self.env["MEDIAEMBED_INDEX_URI"])

    # --- media ------------------------------------------------------------------------------------------

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def put(self, objects: Iterable[tuple[str, bytes]]) -> list[str]:
        client = self.s3.client()
        uris = []
        for key, body in objects:
            client.put_object(Bucket=self.bucket, Key=key, Body=body)
            uris.append(self.uri(key))
        return uris

    def put_samples(self, samples: list[SampleObject]) -> list[str]:
        return self.put((s.key, s.data) for s in samples)

    # --- the pipeline, as the schedule and the daemon drive it ------------------------------------------

    def run(
        self, job: str, run_config: dict[str, Any] | None = None, instance: dg.DagsterInstance | None = None
    ) -> dg.ExecuteInProcessResult:
        return run_job(instance or self.instance, job, MARENGO_3_0.key, run_config=run_config)

    def submit(self, instance: dg.DagsterInstance | None = None, **config: Any) -> dict[str, Any]:
        run_config = {"ops": {"marengo__invocations": {"config": config}}} if config else None
        result = self.run("embed_new_media", run_config, instance)
        return materialization_metadata(result, ["marengo", "invocations"])

    def ingest(
        self, instance: dg.DagsterInstance | None = None, **index_config: Any
    ) -> dg.ExecuteInProcessResult:
        """A manual materialization of the ingest job (the UI's button, or the sensor's later re-hand-off)."""
        run_config = {"ops": {"search__marengo_segments": {"config": index_config}}} if index_config else None
        return self.run("ingest_marengo_embeddings", run_config, instance)

    def ledger(self) -> SubmissionLedger:
        return SubmissionLedger(self.lake, None)

    def open_jobs(self) -> int:
        return len(self.ledger().in_progress(MARENGO_3_0.key))

    def drain(self, driver: SensorDriver, max_steps: int = MAX_DRAIN_STEPS) -> None:
        """Sensor ticks until no job is open. A tick that fails is tried again (the daemon ticks again in
        30 s); jobs handed to a run that failed are ingested by hand, as the sensor would 15 minutes on."""
        for _ in range(max_steps):
            try:
                driver.tick()
            except Exception as error:
                self.errors.append(f"tick: {error_chain(error)}")
            if not self.open_jobs():
                return
            try:
                self.ingest()
            except Exception as error:
                self.errors.append(f"ingest run: {error_chain(error)}")
            if not self.open_jobs():
                return
        raise AssertionError(f"{self.open_jobs()} jobs still open after {max_steps} ingest attempts")

    def due(self, **submit_config: Any) -> int:
        """Objects a submission run would submit now (the invocations asset's own pure planning rule)."""
        config = InvocationConfig(**submit_config)
        plan = plan_submissions(
            read_inventory(self.lake),
            self.jobs(),
            marengo_model(MARENGO_3_0.key),
            config.options(),
            config.max_attempts,
            config.max_lost,
        )
        return len(plan.due)

    def converge(
        self, max_rounds: int = MAX_ROUNDS, drain_steps: int = MAX_DRAIN_STEPS, **submit_config: Any
    ) -> int:
        """Submission runs and sensor ticks, as the schedule and the daemon drive them, until nothing is open
        and nothing is due: every object reached an end. Returns the number of submission runs.

        A run the provider turned away part-way (quota, throttling) after some submissions is followed by
        another submission run at once; otherwise the sensor ingests what finished before the next run.
        """
        driver = SensorDriver(self.instance)
        for runs in range(1, max_rounds + 1):
            meta = self.submit(**submit_config)
            self.bedrock.wait_until_idle(timeout=IDLE_TIMEOUT_SEC)
            if meta["submitted"] and meta["deferred"] and "(max_in_flight)" not in meta["deferred_reason"]:
                continue
            self.drain(driver, drain_steps)
            if not self.due(**submit_config):
                return runs
        raise AssertionError(f"still submitting after {max_rounds} submission runs")

    # --- the provider ------------------------------------------------------------------------------------

    def provider_jobs(self) -> list[Invocation]:
        """Every invocation the Bedrock emulator created for this case (its own records), those an emulator
        restarted without its state forgot included: they were billed all the same."""
        current = dict(self.bedrock.invocations)
        return [*current.values(), *(job for arn, job in self.forgotten.items() if arn not in current)]

    def restart_bedrock(self, **faults: Any) -> BedrockRuntimeEmulator:
        """Stop the Bedrock emulator and start another on the same port over the same workdir (none: it
        starts knowing no job, while their outputs stay in S3), with the same settings."""
        port = self.bedrock.port
        self.forgotten.update(self.bedrock.invocations)
        self.bedrock.stop()
        self.bedrock = BedrockRuntimeEmulator(
            self.s3.endpoint,
            region=REGION,
            port=port,
            workdir=self.bedrock_workdir,
            **{**self.bedrock_settings, **faults},
        ).start()
        return self.bedrock

    def gate_submissions(self, allow: int) -> Any:
        """Hold StartAsyncInvoke calls after the first `allow` (test hook on the emulator's own server)."""
        return gated(
            self.bedrock, lambda e: e["REQUEST_METHOD"] == "POST" and e["PATH_INFO"] == "/async-invoke", allow
        )

    def gate_output_reads(self, allow: int) -> Any:
        """Hold GETs of this case's output.json files after the first `allow` (on moto's server)."""
        prefix = f"/{OUTPUT_BUCKET}/{self.output_prefix}/"

        def matches(environ: dict[str, Any]) -> bool:
            path = environ["PATH_INFO"]
            return (
                environ["REQUEST_METHOD"] == "GET"
                and path.startswith(prefix)
                and path.endswith("/output.json")
            )

        return gated(self.s3, matches, allow)

    def gate_table_commits(self, allow: int) -> Any:
        """Hold the writes of Delta Lake commit files (anything under `_delta_log/`) of an s3:// lake; held
        writes never land (the writer is killed while they are on the wire)."""
        lake = self.env["MEDIAEMBED_LAKE_URI"]
        assert lake.startswith("s3://"), "make_world(lake_on_s3=True)"
        prefix = "/" + lake[len("s3://") :] + "/"

        def matches(environ: dict[str, Any]) -> bool:
            path = environ["PATH_INFO"]
            return environ["REQUEST_METHOD"] == "PUT" and path.startswith(prefix) and "/_delta_log/" in path

        return gated(self.s3, matches, allow, drop_held=True)

    def lake_request(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        """(method, key under the lake root) of an S3 request to an s3:// lake, a listing giving its
        prefix; None for any other request."""
        lake = S3Uri.parse(self.env["MEDIAEMBED_LAKE_URI"].rstrip("/") + "/")
        bucket, path = f"/{lake.bucket}", unquote(environ["PATH_INFO"])
        if path.rstrip("/") == bucket:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            key = query.get("prefix", [""])[0]
        elif path.startswith(bucket + "/"):
            key = path[len(bucket) + 1 :]
        else:
            return None
        if not key.startswith(lake.key):
            return None
        return environ["REQUEST_METHOD"], key[len(lake.key) :]

    def gate_lake(self, matches: Callable[[str, str], bool], allow: int = 0) -> Any:
        """Hold requests to an s3:// lake for which `matches(method, key under the lake root)` holds (a
        listing's key is its prefix), after the first `allow`."""
        assert self.env["MEDIAEMBED_LAKE_URI"].startswith("s3://"), "make_world(lake_on_s3=True)"

        def lake_matches(environ: dict[str, Any]) -> bool:
            request = self.lake_request(environ)
            return request is not None and matches(*request)

        return gated(self.s3, lake_matches, allow)

    # --- a worker process ----------------------------------------------------------------------------

    def spawn(self, step: str, config: dict[str, Any] | None = None) -> Child:
        """Run `step` (submit | ingest | ingest-run | cut-over) in a worker process of its own, output to a
        log file."""
        log = self.root / f"worker-{len(self.logs)}-{step}.log"
        self.logs.append(log)
        env = {**os.environ, **self.env}
        process = fork_server().Process(target=work, args=(step, config or {}, env, str(log)), daemon=True)
        process.start()
        return Child(process, log)

    def runs_of(self, child: Child) -> list[dg.DagsterRun]:
        runs = []
        for run in self.instance.get_runs():
            owner = ProcessIdentity.from_tag(run.tags.get(OWNER_TAG))
            if owner is not None and owner.pid == child.pid:
                runs.append(run)
        return runs

    # --- the invariants -----------------------------------------------------------------------------------

    def check(self, case: str, *, uris: Iterable[str] | None = None, held: Iterable[str] = ()) -> Counts:
        """Assert every invariant for the objects in scope (all by default), record the case's counts.

        `held`: media URIs no longer listed that the index keeps until their removal is confirmed."""
        return self.check_each({case: uris}, held)[case]

    def check_each(
        self, scopes: dict[str, Iterable[str] | None], held: Iterable[str] = ()
    ) -> dict[str, Counts]:
        """`check` for several scopes (case -> media URIs) of one world, reading everything once."""
        self.printed.append(self.read_output())
        snapshot = Snapshot.take(self)
        counts = {}
        for case, uris in scopes.items():
            counts[case] = check_invariants(self, snapshot, None if uris is None else set(uris), set(held))
            self.record(case, counts[case])
        return counts

    def jobs(self) -> pd.DataFrame:
        return self.ledger().jobs(MARENGO_3_0.key)
