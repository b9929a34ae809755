"""Pool slots of in-process runs: is the owner alive, freeing what dead runs hold, waiting for a slot."""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from uuid import uuid4

import dagster as dg
import psutil
import pytest

from harness import run_slots
from harness.local_env import DAGSTER_YAML
from harness.run_slots import (
    OWNER_TAG,
    Liveness,
    PoolSlotTimeout,
    ProcessIdentity,
    SlotNeed,
    execute_holding_slots,
    free_slots_of_dead_runs,
    holding_pool_slots,
    judge_owner,
    pool_slot_needs,
)
from pipelines.definitions import defs
from tests.fake_clock import FakeClock

HOST = "build-host"
OWNER = ProcessIdentity(HOST, 4242, 1_700_000_000.25)
SUBMIT_JOB = defs.resolve_job_def("embed_new_media")


def started_at_table(table: dict[int, float]):  # type: ignore[no-untyped-def]
    return lambda pid: table.get(pid)


# --- judging the owner ------------------------------------------------------------------------------------


def test_owner_alive_when_its_pid_runs_with_the_same_start_time() -> None:
    assert judge_owner(OWNER, HOST, started_at_table({4242: OWNER.started_at + 0.01})) is Liveness.ALIVE


def test_owner_gone_when_no_process_has_its_pid() -> None:
    assert judge_owner(OWNER, HOST, started_at_table({})) is Liveness.GONE


def test_owner_gone_when_its_pid_now_names_a_later_process() -> None:
    reused = {4242: OWNER.started_at + 3600}
    assert judge_owner(OWNER, HOST, started_at_table(reused)) is Liveness.GONE


def test_owner_on_another_host_or_untagged_cannot_be_judged() -> None:
    assert judge_owner(OWNER, "other-host", started_at_table({})) is Liveness.UNKNOWN
    assert judge_owner(None, HOST, started_at_table({})) is Liveness.UNKNOWN


def test_owner_whose_process_cannot_be_inspected_cannot_be_judged() -> None:
    def denied(pid: int) -> float | None:
        raise PermissionError(pid)

    assert judge_owner(OWNER, HOST, denied) is Liveness.UNKNOWN


def test_identity_round_trips_through_its_tag_and_bad_tags_are_none() -> None:
    assert ProcessIdentity.from_tag(OWNER.to_tag()) == OWNER
    for bad in (
        None,
        "",
        "pid 12",
        json.dumps({"host": HOST}),
        json.dumps({"host": HOST, "pid": "x", "started_at": 1}),
    ):
        assert ProcessIdentity.from_tag(bad) is None


def test_real_processes_this_one_alive_an_exited_child_and_a_zombie_gone() -> None:
    here = socket.gethostname()
    assert judge_owner(ProcessIdentity.current(), here) is Liveness.ALIVE
    for reap in (True, False):
        child, identity = spawn_child()
        assert judge_owner(identity, here) is Liveness.ALIVE
        child.kill()
        if reap:
            child.wait()
        else:  # exited, not yet waited for: a zombie, which is no running process
            os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert judge_owner(identity, here) is Liveness.GONE
        child.wait()


def spawn_child() -> tuple[subprocess.Popen[bytes], ProcessIdentity]:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    return child, ProcessIdentity(socket.gethostname(), child.pid, psutil.Process(child.pid).create_time())


# --- freeing what dead runs hold (a real sqlite instance with pools limited to 1) ---------------------------


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dg.DagsterInstance]]:
    """One sqlite instance for the module (creating one takes seconds), with the local dagster.yaml."""
    path = tmp_path_factory.mktemp("dagster_home")
    (path / "dagster.yaml").write_text(DAGSTER_YAML)
    with dg.DagsterInstance.from_config(str(path)) as instance:
        yield path, instance


@pytest.fixture
def instance(home: tuple[Path, dg.DagsterInstance]) -> dg.DagsterInstance:
    """The shared instance with no runs and no claims left by an earlier test."""
    instance = home[1]
    for run_id in instance.event_log_storage.get_concurrency_run_ids():
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
    for run in instance.get_runs():
        instance.delete_run(run.run_id)
    return instance


def add_run(
    instance: dg.DagsterInstance,
    owner: ProcessIdentity | None,
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.STARTED,
    pool: str | None = "marengo_submit",
) -> str:
    run_id = str(uuid4())
    tags = {OWNER_TAG: owner.to_tag()} if owner else {}
    instance.add_run(dg.DagsterRun(job_name="embed_new_media", run_id=run_id, status=status, tags=tags))
    if pool:
        instance.event_log_storage.initialize_concurrency_limit_to_default(pool)
        claim = instance.event_log_storage.claim_concurrency_slot(pool, run_id, "marengo__invocations")
        assert claim.is_claimed
    return run_id


def holders(instance: dg.DagsterInstance) -> set[str]:
    return instance.event_log_storage.get_concurrency_run_ids()


def dead_owner() -> ProcessIdentity:
    """This host, a pid with no process: the owner of a run that was SIGKILLed."""
    child, identity = spawn_child()
    child.kill()
    child.wait()
    return identity


def test_a_run_whose_process_is_gone_is_failed_with_the_reason_and_its_slot_freed(
    instance: dg.DagsterInstance,
) -> None:
    dead = add_run(instance, dead_owner())
    lines = free_slots_of_dead_runs(instance)
    assert holders(instance) == set()
    run = instance.get_run_by_id(dead)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
    [failure] = instance.all_logs(dead, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "is gone" in (failure.message or "") and dead in failure.message
    assert len(lines) == 1 and dead in lines[0]


def test_runs_of_live_processes_other_hosts_and_daemon_runs_are_left_alone(
    instance: dg.DagsterInstance,
) -> None:
    live = add_run(instance, ProcessIdentity.current())
    elsewhere = add_run(instance, ProcessIdentity("another-host", 1, 1.0), pool="marengo_ingest")
    daemon_run = add_run(instance, None, pool="lancedb_writer")
    assert free_slots_of_dead_runs(instance) == []
    assert holders(instance) == {live, elsewhere, daemon_run}
    for run_id in (live, elsewhere, daemon_run):
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.STARTED


def test_a_finished_in_process_run_that_kept_its_slot_is_freed_other_finished_runs_after_the_delay(
    instance: dg.DagsterInstance,
) -> None:
    add_run(instance, ProcessIdentity.current(), dg.DagsterRunStatus.SUCCESS)
    daemons = add_run(instance, None, dg.DagsterRunStatus.SUCCESS, pool="marengo_ingest")
    free_slots_of_dead_runs(instance)
    assert holders(instance) == {daemons}  # a daemon run's step workers may outlive it: monitoring's delay


def test_a_claim_whose_run_was_never_created_is_freed_after_the_grace(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    orphan = str(uuid4())
    instance.event_log_storage.initialize_concurrency_limit_to_default("marengo_submit")
    assert instance.event_log_storage.claim_concurrency_slot("marengo_submit", orphan, "step").is_claimed
    assert free_slots_of_dead_runs(instance) == []  # within the grace: its run may be being created
    monkeypatch.setattr(run_slots, "UNRECORDED_CLAIM_GRACE_SEC", -1.0)
    assert orphan in free_slots_of_dead_runs(instance)[0]
    assert holders(instance) == set()


# --- what a job needs, and waiting for it -----------------------------------------------------------------


def test_pool_needs_follow_the_instance_limits(instance: dg.DagsterInstance) -> None:
    ingest = defs.resolve_job_def("ingest_marengo_embeddings")
    assert pool_slot_needs(instance, SUBMIT_JOB) == [SlotNeed("marengo_submit", "marengo__invocations")]
    assert pool_slot_needs(instance, ingest) == [
        SlotNeed("lancedb_writer", "search__marengo_segments"),
        SlotNeed("marengo_ingest", "marengo__embeddings"),
    ]
    assert pool_slot_needs(dg.DagsterInstance.ephemeral(), SUBMIT_JOB) == []  # no pool limits there


def test_a_run_waiting_for_a_live_run_backs_off_says_who_holds_the_slot_and_gives_up(
    instance: dg.DagsterInstance,
) -> None:
    holder = add_run(instance, ProcessIdentity.current())
    said: list[str] = []
    clock = FakeClock()
    mine = str(uuid4())
    with (
        pytest.raises(
            PoolSlotTimeout, match=f"gave up after 60 s waiting for pool marengo_submit .* run {holder}"
        ),
        holding_pool_slots(instance, SUBMIT_JOB, mine, 60.0, said.append, clock),
    ):
        raise AssertionError("the run must not start while another live run holds its slot")
    assert said and all(holder in line for line in said)
    assert "\n" not in str(said)
    assert clock.sleeps[:5] == [0.1, 0.2, 0.4, 0.8, 1.6] and max(clock.sleeps) == 2.0
    assert sum(clock.sleeps) == pytest.approx(60.0) and len(clock.sleeps) < 40
    assert holders(instance) == {holder}  # nothing of the waiting run is left queued


def test_a_waiting_run_starts_when_the_holder_ends_and_releases_its_slot_after(
    instance: dg.DagsterInstance,
) -> None:
    holder = add_run(instance, ProcessIdentity.current())

    def holder_ends_at_third_sleep(slept: int) -> None:
        if slept == 3:
            instance.event_log_storage.free_concurrency_slots_for_run(holder)

    clock = FakeClock(on_sleep=holder_ends_at_third_sleep)
    mine = str(uuid4())
    with holding_pool_slots(instance, SUBMIT_JOB, mine, 60.0, lambda line: None, clock):
        assert holders(instance) == {mine}
        claims = instance.event_log_storage.get_concurrency_info("marengo_submit").claimed_slots
        assert [(c.run_id, c.step_key) for c in claims] == [(mine, "marengo__invocations")]
    assert len(clock.sleeps) == 3 and holders(instance) == set()


def test_a_dead_holder_is_failed_and_its_slot_taken_without_waiting(instance: dg.DagsterInstance) -> None:
    dead = add_run(instance, dead_owner())
    said: list[str] = []
    clock = FakeClock()
    with holding_pool_slots(instance, SUBMIT_JOB, str(uuid4()), 60.0, said.append, clock):
        pass
    assert clock.sleeps == [] and len(said) == 1 and dead in said[0]


def test_ctrl_c_while_waiting_leaves_nothing_queued(instance: dg.DagsterInstance) -> None:
    holder = add_run(instance, ProcessIdentity.current())

    def interrupt_at_second_sleep(slept: int) -> None:
        if slept == 2:
            raise KeyboardInterrupt

    clock = FakeClock(on_sleep=interrupt_at_second_sleep)
    with (
        pytest.raises(KeyboardInterrupt),
        holding_pool_slots(instance, SUBMIT_JOB, str(uuid4()), 60.0, lambda line: None, clock),
    ):
        pass
    assert holders(instance) == {holder}


WAITER = textwrap.dedent(
    """
    import sys
    import dagster as dg
    from harness.run_slots import execute_holding_slots

    @dg.op(pool="marengo_submit")
    def submit() -> None:
        pass

    @dg.job
    def submitting() -> None:
        submit()

    with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
        execute_holding_slots(instance, submitting)
    """
)


def test_a_process_waiting_for_a_slot_says_so_and_ends_on_sigterm(
    instance: dg.DagsterInstance, home: tuple[Path, dg.DagsterInstance]
) -> None:
    """What used to spin at 100% CPU and ignore SIGTERM inside Dagster's executor (same path as run_job)."""
    holder = add_run(instance, ProcessIdentity.current())
    command = [sys.executable, "-c", WAITER, str(home[0])]
    # An ignored SIGTERM is inherited: start the waiter as a shell would, whatever this worker's is.
    waiter = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )
    try:
        assert waiter.stderr is not None
        line = first_line_starting(waiter.stderr, "waiting for", timeout_sec=120)
        assert f"held by run {holder}" in line
        waiter.send_signal(signal.SIGTERM)
        assert waiter.wait(timeout=60) == -signal.SIGTERM  # a bound for a hang, not a timing target
    finally:
        waiter.kill()
        waiter.wait()
    assert holders(instance) == {holder}


def first_line_starting(stream: IO[str], prefix: str, timeout_sec: float) -> str:
    """The first line with this prefix; "" if the stream ends or the time runs out (a hung process)."""
    found: queue.Queue[str] = queue.Queue()

    def scan() -> None:
        found.put(next((line for line in stream if line.startswith(prefix)), ""))

    threading.Thread(target=scan, daemon=True).start()
    try:
        return found.get(timeout=timeout_sec)
    except queue.Empty:
        return ""


def test_a_run_leaves_sigterm_as_it_found_it_even_with_sigint_ignored(instance: dg.DagsterInstance) -> None:
    """Dagster's in-process execution points SIGTERM at SIGINT's handler: with SIGINT ignored (a process
    started in the background by a script) SIGTERM stayed ignored, by the process and its children."""

    @dg.op
    def step() -> None:
        pass

    @dg.job
    def quick() -> None:
        step()

    before = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert quick.execute_in_process(instance=instance).success
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN, "what Dagster alone leaves behind"
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        assert execute_holding_slots(instance, quick).success
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
