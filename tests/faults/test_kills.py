"""SIGKILL of a worker process at exact points: mid-submission before and after the first ledger flush,
mid-ingest, mid-commit, and a `mediaembed serving cut-over` mid-run. Each kill is made where the test holds
the worker's next call (no sleeping), the state it leaves is checked, and the next local run on the same
instance fails the dead run and frees its pool slots; the pipeline then converges without billing anything
twice.
"""

import time

import dagster as dg

from assets_defs.marengo.ingest_run import FETCH_THREADS
from assets_defs.marengo.submission_run import LEDGER_FLUSH_EVERY
from mediaembed.cli import main as cli
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0, marengo_model
from resources.tables.embedding_table import EmbeddingTable
from tests.daemons import daemons_of
from tests.faults.conftest import MakeWorld
from tests.faults.world import Child, FaultWorld, extra_images

MODEL = marengo_model(MARENGO_3_0.key)


def assert_killed_run_failed_and_slots_free(world: FaultWorld, child: Child) -> None:
    [killed] = world.runs_of(child)
    run = world.instance.get_run_by_id(killed.run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.FAILURE, "the re-run failed the dead run"
    assert world.instance.event_log_storage.get_concurrency_run_ids() == set(), "no slot is held"


def kill_mid_submission(world: FaultWorld, objects: int, allow: int) -> Child:
    """A submission worker killed while its calls after number `allow` are on the wire (it sends a batch
    at once). The provider accepts them after the kill: jobs billed that no ledger has heard of, which the
    re-run must not bill again.
    """
    world.put(extra_images(objects))
    with world.gate_submissions(allow) as gate:
        child = world.spawn("submit", {"max_in_flight": objects})
        gate.wait_held(1, child.alive)
        assert world.bedrock.created_invocations == allow
        flushed = len(world.ledger().submissions())
        assert flushed == LEDGER_FLUSH_EVERY * (allow // LEDGER_FLUSH_EVERY)
        child.kill()
        on_the_wire = gate.held
    assert on_the_wire >= 1 and world.bedrock.created_invocations == allow + on_the_wire
    return child


def test_sigkill_mid_submission_before_the_first_ledger_flush(make_world: MakeWorld) -> None:
    world = make_world()
    child = kill_mid_submission(world, objects=10, allow=4)
    assert world.ledger().submissions().empty
    world.converge()
    counts = world.check("SIGKILL mid-submission, before the first ledger flush")
    assert (counts.seen, counts.embedded, counts.jobs_created) == (10, 10, 10)
    assert_killed_run_failed_and_slots_free(world, child)
    assert world.errors == []


def test_sigkill_mid_submission_after_the_first_ledger_flush(make_world: MakeWorld) -> None:
    world = make_world()
    objects = LEDGER_FLUSH_EVERY + 4
    child = kill_mid_submission(world, objects=objects, allow=LEDGER_FLUSH_EVERY + 2)
    assert len(world.ledger().submissions()) == LEDGER_FLUSH_EVERY
    world.converge(max_in_flight=objects)
    counts = world.check("SIGKILL mid-submission, after the first ledger flush")
    assert (counts.seen, counts.embedded, counts.jobs_created) == (objects, objects, objects)
    assert_killed_run_failed_and_slots_free(world, child)
    assert world.errors == []


def test_sigkill_mid_ingest(make_world: MakeWorld) -> None:
    world = make_world()
    objects, read = 12, 4
    world.put(extra_images(objects))
    assert world.submit()["submitted"] == objects
    world.bedrock.wait_until_idle()
    with world.gate_output_reads(read) as gate:
        child = world.spawn("ingest")
        gate.wait_held(FETCH_THREADS, child.alive)  # every fetch thread waits: the first reads are done
        table = EmbeddingTable(world.lake, MODEL)
        assert table.version() == 0 and table.read().num_rows == 0, (
            "created; nothing committed before all reads"
        )
        assert world.ledger().outcomes().empty, "no outcome recorded yet"
        child.kill()
    assert world.converge() == 1, "nothing to submit again"
    counts = world.check("SIGKILL mid-ingest (4 of 12 outputs read)")
    assert (counts.seen, counts.embedded, counts.jobs_created) == (objects, objects, objects)
    assert_killed_run_failed_and_slots_free(world, child)
    assert world.errors == []


def test_sigkill_mid_commit_leaves_the_embedding_table_at_its_previous_version(make_world: MakeWorld) -> None:
    world = make_world(lake_on_s3=True)
    first, more = 4, 6
    world.put(extra_images(first))
    world.converge()
    table = EmbeddingTable(world.lake, MODEL)
    before_version, before = table.version(), table.read().sort_by("segment_id")
    assert before_version == 1 and before.num_rows == first

    world.put((f"more/{key}", body) for key, body in extra_images(first + more)[first:])
    assert world.submit()["submitted"] == more
    world.bedrock.wait_until_idle()
    with world.gate_table_commits(allow=0) as gate:
        child = world.spawn("ingest")
        gate.wait_held(1, child.alive)  # the data files are written; the commit is on the wire
        child.kill()
    assert table.version() == before_version, "the commit never happened"
    assert table.read().sort_by("segment_id").equals(before), "the current rows are exactly the previous ones"
    assert world.ledger().outcomes()["status"].eq("completed").sum() == first, "no outcome of the dead run"

    assert world.converge() == 1, "nothing to submit again"
    counts = world.check("SIGKILL mid-commit of the embedding table (S3 lake)")
    assert (counts.seen, counts.embedded, counts.jobs_created) == (first + more,) * 3
    committed = table.open(before_version + 1)
    assert committed is not None
    objects = set(committed.to_pyarrow_table(columns=["media_uri"]).column("media_uri").to_pylist())
    assert len(objects) == first + more, "the next run committed every object in one commit"
    assert table.read().num_rows == committed.to_pyarrow_table(columns=["media_uri"]).num_rows, (
        "what followed (the compaction) changed no rows"
    )
    assert_killed_run_failed_and_slots_free(world, child)
    assert world.errors == []


RUN_END_LIMIT_SEC = 300.0


def wait_for_end(world: FaultWorld, run_id: str) -> dg.DagsterRunStatus:
    """The run's status once it has ended, polled on the instance (its worker is another process)."""
    limit = time.monotonic() + RUN_END_LIMIT_SEC
    while True:
        run = world.instance.get_run_by_id(run_id)
        assert run is not None
        if run.is_finished:
            return run.status
        assert time.monotonic() < limit, f"run {run_id} still {run.status.value} after {RUN_END_LIMIT_SEC} s"
        time.sleep(0.2)


def test_sigkill_of_the_cut_over_command_leaves_its_run_to_the_engine(make_world: MakeWorld) -> None:
    """`mediaembed serving cut-over` killed while its run reads the lake: the run is not the command's but
    the instance's, in a run worker of its own, so it goes on to its end without the command, and the
    daemon the command started ends with the command; the next command is answered as usual."""
    world = make_world(lake_on_s3=True)

    def cut_over_started() -> bool:
        runs = world.instance.get_runs(dg.RunsFilter(job_name="cut_over_serving_version"))
        return any(run.status == dg.DagsterRunStatus.STARTED for run in runs)

    with world.gate_lake(lambda method, key: cut_over_started()) as gate:
        child = world.spawn("cut-over", {"key": MARENGO_2_7.key})
        gate.wait_held(1, child.alive)  # a read of the cut-over's run, in its own worker
        [run] = world.instance.get_runs(dg.RunsFilter(job_name="cut_over_serving_version"))
        child.kill()
    assert wait_for_end(world, run.run_id) in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
    assert not daemons_of(world.env["DAGSTER_HOME"]), "the command's daemon ended with it"
    world.read_output()
    assert cli(["serving"]) == 0, "the next command is answered"
    assert "serves search" in world.read_output()
