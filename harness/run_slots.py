"""Pool slots of runs executed in-process: a dead run never keeps one, and no run waits for one for ever.

With a daemon, Dagster's run monitoring fails dead runs and frees their slots. Runs executed in-process
(`mediaembed demo`, the tests, the bench, anything through `harness.runner.run_job`) have no daemon: a
SIGKILLed one keeps its pool slot, and Dagster's in-process executor then polls for that slot in a loop that
never sleeps and defers SIGTERM, so every later run spins at 100% CPU for ever. Hence, for each local run:

- the run carries its owning process (host, pid, process start time) as a tag, so a later run can tell
  whether that process still exists even after its pid was reused;
- before it starts, runs of gone processes are marked failed with the reason and their slots freed through
  the event log storage, as run monitoring does (storage is never deleted); runs of live processes, of
  other hosts and runs without the tag (launched by a daemon) are left alone;
- it takes its pool slots before Dagster's executor looks for them, polling with backoff for a bounded
  time, saying which run holds the slot; Ctrl-C and SIGTERM end the wait.
"""

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import uuid4

import dagster as dg
import psutil

from resources.storage.clock import REAL_CLOCK, Clock

OWNER_TAG = "mediaembed/owner_process"
MAX_WAIT_ENV = "MEDIAEMBED_MAX_SLOT_WAIT_SEC"
DEFAULT_MAX_WAIT_SEC = 900.0
# Start times read twice for one process agree to the clock tick; a reused pid starts at another time.
START_TIME_TOLERANCE_SEC = 1.0
# A claim is taken a moment before its run is created; one with no run after this long lost its process.
UNRECORDED_CLAIM_GRACE_SEC = 60.0
# Dagster's run monitoring default for `free_slots_after_run_end_seconds` when none is configured.
FREE_SLOTS_AFTER_RUN_END_SEC = 300.0
FIRST_POLL_SEC = 0.1
MAX_POLL_SEC = 2.0
REPEAT_WAIT_MESSAGE_SEC = 30.0
# The statuses an in-process run passes through before it ends (it is never queued).
LIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


class PoolSlotTimeout(RuntimeError):
    """A run waited its maximum for a pool slot; the message names the run holding it."""


@dataclass(frozen=True)
class ProcessIdentity:
    """One process, across pid reuse: a pid names a process only together with its host and start time."""

    host: str
    pid: int
    started_at: float

    @classmethod
    def current(cls) -> "ProcessIdentity":
        return cls(socket.gethostname(), os.getpid(), psutil.Process().create_time())

    def to_tag(self) -> str:
        return json.dumps({"host": self.host, "pid": self.pid, "started_at": self.started_at}, sort_keys=True)

    @classmethod
    def from_tag(cls, value: str | None) -> "ProcessIdentity | None":
        """The identity in a run's tag; None when there is none or it is not one of ours."""
        if not value:
            return None
        try:
            data = json.loads(value)
            return cls(str(data["host"]), int(data["pid"]), float(data["started_at"]))
        except (ValueError, TypeError, KeyError):
            return None


class Liveness(Enum):
    ALIVE = "alive"
    GONE = "gone"
    UNKNOWN = "unknown"


def process_started_at(pid: int) -> float | None:
    """Start time of the running process with this pid; None if there is none (a zombie is none)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied as error:
        raise PermissionError(f"cannot inspect process {pid}") from error


def judge_owner(
    owner: ProcessIdentity | None,
    host: str,
    started_at_of: Callable[[int], float | None] = process_started_at,
) -> Liveness:
    """Whether the process that owns a run still runs. Only a process of this host can be judged gone."""
    if owner is None or owner.host != host:
        return Liveness.UNKNOWN
    try:
        started_at = started_at_of(owner.pid)
    except PermissionError:
        return Liveness.UNKNOWN
    if started_at is None:
        return Liveness.GONE
    if abs(started_at - owner.started_at) > START_TIME_TOLERANCE_SEC:
        return Liveness.GONE  # the pid was reused by another process
    return Liveness.ALIVE


def owner_tags() -> dict[str, str]:
    """Tags that let a later run judge whether this process still owns its runs."""
    return {OWNER_TAG: ProcessIdentity.current().to_tag()}


def free_slots_of_dead_runs(
    instance: dg.DagsterInstance,
    host: str | None = None,
    started_at_of: Callable[[int], float | None] = process_started_at,
) -> list[str]:
    """Fail the live-looking runs whose owning process is gone and free every slot nobody can use any more.

    Returns one line per run failed or freed. Slots freed: those of the runs failed here, of finished runs
    that ran in-process (no step outlives them), of other finished runs after run monitoring's delay, and
    claims whose run was never created. Everything else is left to its owner or to the daemon.
    """
    host = host or socket.gethostname()
    storage = instance.event_log_storage
    lines: list[str] = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=LIVE_RUN_STATUSES)):
        owner = ProcessIdentity.from_tag(run.tags.get(OWNER_TAG))
        if owner is None or judge_owner(owner, host, started_at_of) is not Liveness.GONE:
            continue
        reason = (
            f"process {owner.pid} on {owner.host} that ran it is gone (killed?); "
            "marked failed and its pool slots freed by a later local run"
        )
        instance.report_run_failed(run, f"Run {run.run_id}: {reason}")
        if storage.supports_global_concurrency_limits:
            storage.free_concurrency_slots_for_run(run.run_id)
        lines.append(f"run {run.run_id} ({run.job_name}) failed: {reason}")
    if not storage.supports_global_concurrency_limits:
        return lines

    first_claimed = _first_claim_by_run(storage)
    monitoring = instance.run_monitoring_settings
    end_delay = float(monitoring.get("free_slots_after_run_end_seconds") or FREE_SLOTS_AFTER_RUN_END_SEC)
    now = time.time()
    for run_id, claimed_at in first_claimed.items():
        record = instance.get_run_record_by_id(run_id)
        if record is None:
            if claimed_at is not None and now - claimed_at.timestamp() > UNRECORDED_CLAIM_GRACE_SEC:
                storage.free_concurrency_slots_for_run(run_id)
                lines.append(f"freed the pool slots of {run_id}: claimed, but its run was never created")
            continue
        run = record.dagster_run
        if not run.is_finished:
            continue
        in_process = OWNER_TAG in run.tags
        ended_at = record.end_time or record.update_timestamp.timestamp()
        if in_process or now - ended_at > end_delay:
            storage.free_concurrency_slots_for_run(run_id)
            lines.append(f"freed the pool slots still held by run {run_id} ({run.job_name}, ended)")
    return lines


def _first_claim_by_run(storage: Any) -> dict[str, datetime | None]:
    """Every run id holding or queued for a slot, with when it first queued (None if unknown)."""
    claims: dict[str, datetime | None] = {}
    infos = storage.get_concurrency_infos(sorted(storage.get_concurrency_keys()))
    for info in infos.values():
        for slot in info.claimed_slots:
            claims.setdefault(slot.run_id, None)
        for step in info.pending_steps:
            queued = step.enqueued_timestamp
            earliest = claims.get(step.run_id)
            claims[step.run_id] = queued if earliest is None else min(earliest, queued)
    return claims


@dataclass(frozen=True)
class SlotNeed:
    pool: str
    step_key: str


def pool_slot_needs(instance: dg.DagsterInstance, job: dg.JobDefinition) -> list[SlotNeed]:
    """The limited pools the job's steps claim, with the first step claiming each, as Dagster would."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    config = storage.get_pool_config()
    if getattr(config.pool_granularity, "value", None) == "run":
        return []  # slots are then taken when a run is dequeued, never inside an executing run
    first_step: dict[str, str] = {}
    for node in job.nodes_in_topological_order:
        pool = getattr(node.definition, "pool", None)
        if pool:
            first_step.setdefault(pool, node.name)
    if not first_step:
        return []
    default_limit = config.default_pool_limit
    limits = {limit.name: limit for limit in storage.get_pool_limits()}
    stale = [
        pool
        for pool in first_step
        if default_limit is not None
        and (pool not in limits or (limits[pool].from_default and limits[pool].limit != default_limit))
    ]
    for pool in stale:
        storage.initialize_concurrency_limit_to_default(pool)
    if stale:
        limits = {limit.name: limit for limit in storage.get_pool_limits()}
    return [SlotNeed(pool, step) for pool, step in sorted(first_step.items()) if pool in limits]


def _claim_all(storage: Any, needs: list[SlotNeed], run_id: str) -> bool:
    """Claim every slot or none: never hold one pool while waiting for another (no deadlock between runs)."""
    for need in needs:
        if not storage.claim_concurrency_slot(need.pool, run_id, need.step_key).is_claimed:
            storage.free_concurrency_slots_for_run(run_id)
            return False
    return True


def _blocking(instance: dg.DagsterInstance, needs: list[SlotNeed], run_id: str) -> tuple[str, str | None]:
    """A one-line account of what holds the first pool this run cannot have, and that run's id."""
    storage = instance.event_log_storage
    for need in needs:
        info = storage.get_concurrency_info(need.pool)
        holders = [slot.run_id for slot in info.claimed_slots if slot.run_id != run_id]
        holders += [
            step.run_id
            for step in info.pending_steps
            if step.assigned_timestamp is not None and step.run_id != run_id and step.run_id not in holders
        ]
        if holders:
            run = instance.get_run_by_id(holders[0])
            described = f"{run.job_name}, {run.status.value}" if run else "no run recorded yet"
            return f"pool {need.pool} (limit {info.limit}) held by run {holders[0]} ({described})", holders[0]
        if not info.limit:
            return f"pool {need.pool} has limit 0 (`dagster instance concurrency set {need.pool} 1`)", None
    return "a pool slot being handed over", None


def _max_wait_sec(environ: Mapping[str, str] = os.environ) -> float:
    value = environ.get(MAX_WAIT_ENV, "")
    try:
        return float(value) if value else DEFAULT_MAX_WAIT_SEC
    except ValueError:
        return DEFAULT_MAX_WAIT_SEC


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def holding_pool_slots(
    instance: dg.DagsterInstance,
    job: dg.JobDefinition,
    run_id: str,
    max_wait_sec: float | None = None,
    say: Callable[[str], None] = _say,
    clock: Clock = REAL_CLOCK,
) -> Iterator[None]:
    """Free what dead runs hold, then hold this run's pool slots while it executes, then release them.

    Waiting polls with exponential backoff (never a busy loop) and ends: when the slots come, on Ctrl-C or
    SIGTERM (nothing is held between polls), or after `max_wait_sec` (env `MEDIAEMBED_MAX_SLOT_WAIT_SEC`,
    default 900) with a `PoolSlotTimeout` naming the run that holds the slot.
    """
    max_wait = _max_wait_sec() if max_wait_sec is None else max_wait_sec
    for line in free_slots_of_dead_runs(instance):
        say(line)
    needs = pool_slot_needs(instance, job)
    storage = instance.event_log_storage
    try:
        deadline = clock.monotonic() + max_wait
        delay = FIRST_POLL_SEC
        said, said_at = "", 0.0
        while needs and not _claim_all(storage, needs, run_id):
            account, holder = _blocking(instance, needs, run_id)
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                advice = "if that run is stuck, fail it in the Dagster UI (make dev)" if holder else "fix it"
                raise PoolSlotTimeout(
                    f"gave up after {max_wait:.0f} s waiting for {account}: {advice}, "
                    f"or wait longer with {MAX_WAIT_ENV}"
                )
            if account != said or clock.monotonic() - said_at >= REPEAT_WAIT_MESSAGE_SEC:
                say(f"waiting for {account}; giving up in {remaining:.0f} s (Ctrl-C stops)")
                said, said_at = account, clock.monotonic()
            clock.sleep(min(delay, remaining))
            delay = min(delay * 2, MAX_POLL_SEC)
            for line in free_slots_of_dead_runs(instance):
                say(line)
        yield
    finally:
        if needs:
            storage.free_concurrency_slots_for_run(run_id)  # the slots of steps that never ran


def execute_holding_slots(
    instance: dg.DagsterInstance, job: dg.JobDefinition, **kwargs: Any
) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process` on `instance`, tagged with this process and holding its pool slots."""
    run_id = kwargs.pop("run_id", None) or str(uuid4())
    tags = {**(kwargs.pop("tags", None) or {}), **owner_tags()}
    with holding_pool_slots(instance, job, run_id), sigterm_kept():
        return job.execute_in_process(instance=instance, run_id=run_id, tags=tags, **kwargs)


@contextmanager
def sigterm_kept() -> Iterator[None]:
    """Leave SIGTERM as it was. Dagster's in-process execution points SIGTERM at SIGINT's handler and
    leaves it there: in a process started with SIGINT ignored (a background job of a script, a CI step,
    an xdist worker) SIGTERM is then ignored too, by this process and every child it starts later, so
    `kill` no longer stops the demo or its emulators."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, handler)
