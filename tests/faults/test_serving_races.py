"""Two cut-overs racing for the serving pointer: one wins, and the loser's one line says who won and when, and
that nothing is wrong with its checks (it had just run them, and they passed).

The loser is `mediaembed serving cut-over` in a worker process; the test holds its request to the lake at an
exact moment (its write of the next record, or its first read of the pointer once its checks are done) and,
meanwhile, another writer records the winning cut-over. No sleeping: the race is forced, not hoped for.
"""

import json

import dagster as dg
import pytest

from assets_defs.search.serving import checks_not_passed_in_run
from mediaembed.cli import main as cli
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from tests.faults.conftest import MakeWorld
from tests.faults.world import FaultWorld, extra_images

CUT_OVER_JOB = "cut_over_serving_version"
RECORDS = "serving/marengo/"


def cut_over_runs(world: FaultWorld) -> list[dg.DagsterRun]:
    return list(world.instance.get_runs(dg.RunsFilter(job_name=CUT_OVER_JOB)))


def in_serving_step(world: FaultWorld) -> bool:
    """Whether a live cut-over run has reached its serving step (its checks are all done by then)."""
    for run in cut_over_runs(world):
        if run.status != dg.DagsterRunStatus.STARTED:
            continue
        starts = world.instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        if any(record.event_log_entry.step_key == "search__serving_version" for record in starts.records):
            return True
    return False


@pytest.mark.parametrize("moment", ["between its read and its write", "after its checks, before its read"])
def test_the_loser_of_two_racing_cut_overs_is_told_who_won_and_that_its_checks_passed(
    make_world: MakeWorld, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    # 3.0, embedded here, is the candidate. Set before the world builds its lake, which reads it then.
    monkeypatch.setenv("MEDIAEMBED_SERVING_VERSION", MARENGO_2_7.key)
    world = make_world(lake_on_s3=True)
    world.put(extra_images(3))
    world.converge()
    armed = [True]  # the gate holds one request of the loser; the winner's write passes

    def loser_at_the_moment(method: str, key: str) -> bool:
        if not armed[0]:
            return False
        if moment == "between its read and its write":
            return method == "PUT" and key == f"{RECORDS}00000001.json"
        return method == "GET" and key == RECORDS and in_serving_step(world)

    with world.gate_lake(loser_at_the_moment) as gate:
        loser = world.spawn("cut-over", {"key": MARENGO_3_0.key, "by": "bo"})
        gate.wait_held(1, loser.alive)
        armed[0] = False
        won = world.lake.serving_versions().cut_over(MARENGO_3_0.key, by="ana", run_id="the-other-cut-over")
    assert loser.finish() == 0
    assert json.loads(loser.log.with_suffix(".done").read_text())["exit_code"] == 1

    ours = [line for line in loser.log.read_text().splitlines() if line.startswith("mediaembed serving")]
    assert len(ours) == 1, loser.log.read_text()
    [line] = ours
    assert won.since is not None
    assert (
        f"another change won the race, cut over to {MARENGO_3_0.key} by ana at "
        f"{won.since:%Y-%m-%d %H:%M:%S} UTC (run the-other-cut-over)"
    ) in line, line
    assert "this run's whole-version checks passed, nothing is wrong with them" in line, line
    assert "nothing is left to do" in line and "did not pass" not in line, line
    assert world.lake.serving_versions().history() == [won], "the winner's record stands, alone"

    # The loser's checks are its own: another cut-over evaluating the same checks later changes nothing.
    [lost] = cut_over_runs(world)
    world.read_output()
    assert cli(["serving", "cut-over", MARENGO_3_0.key]) == 1  # runs every check again, then: serving already
    assert f"{MARENGO_3_0.key} already serves search" in world.read_output()
    assert checks_not_passed_in_run(world.instance, lost.run_id) == []
