"""Two submission runs at once and two ingest runs at once, with no pool limits anywhere: what an instance
whose pools were never set does. Nothing is billed twice (the client token) and no segment is indexed twice
(the index writer lock), whatever the interleaving.

Each run is a worker process of its own, as two run workers would be (Dagster's in-process execution is not
meant to share one process between runs). The gates hold both runs' first provider or output calls until
both are in flight, so the runs truly overlap instead of merely starting close together.
"""

from assets_defs.marengo.ingest_run import FETCH_THREADS
from emulators.sample_media import SampleObject
from tests.faults.conftest import MakeWorld
from tests.faults.world import extra_images

USABLE = 12  # 7 usable samples and 5 extra images; the corrupt .mp4 and the text file are skipped


def test_two_submission_runs_and_two_ingests_at_once_without_pools(
    make_world: MakeWorld, samples: list[SampleObject]
) -> None:
    world = make_world(pools=False)
    world.put_samples(samples)
    world.put(extra_images(USABLE - 7))
    assert world.instance.event_log_storage.get_pool_limits() == []

    with world.gate_submissions(allow=0) as gate:
        children = [world.spawn("submit"), world.spawn("submit")]
        # A submission run calls the provider one object at a time: two held calls are one from each run.
        gate.wait_held(2, lambda: all(child.alive() for child in children))
    assert [child.finish() for child in children] == [0, 0]
    assert world.bedrock.created_invocations == USABLE, "the second call of each token got the first's job"
    world.bedrock.wait_until_idle()

    with world.gate_output_reads(allow=0) as gate:
        children = [world.spawn("ingest-run"), world.spawn("ingest-run")]
        # One run reads at most FETCH_THREADS outputs at a time: one more held read is the other run's.
        gate.wait_held(FETCH_THREADS + 1, lambda: all(child.alive() for child in children))
    assert [child.finish() for child in children] == [0, 0]

    assert world.converge() == 1, "nothing was left to submit"
    counts = world.check("2 submission runs + 2 ingests at once, no pools")
    assert (counts.seen, counts.embedded, counts.skipped, counts.jobs_created) == (14, USABLE, 2, USABLE)
    assert world.errors == []
