"""Objects deleted from the bucket leave search within one sensor interval, with no unrelated work needed."""

from emulators.sample_media import SampleObject
from harness.runner import SensorDriver
from tests.faults.conftest import MakeWorld
from tests.faults.world import extra_images

SAMPLES, USABLE_SAMPLES = 9, 7


def test_deleted_objects_leave_the_table_and_the_index_at_the_next_tick(
    make_world: MakeWorld, samples: list[SampleObject]
) -> None:
    world = make_world()
    world.put_samples(samples)
    world.put(extra_images(13))  # 20 usable objects
    world.converge()
    before = world.check("deletes: before, 20 embedded")
    assert (before.seen, before.embedded) == (SAMPLES + 13, USABLE_SAMPLES + 13)
    gone = ["images/extra_000.png", "images/extra_001.png", "images/extra_002.png"]  # 15%: within the guard
    for key in gone:
        world.s3.client().delete_object(Bucket=world.bucket, Key=key)

    assert world.submit()["submitted"] == 0  # the schedule's run: the inventory sees them gone
    driver = SensorDriver(world.instance)
    launched = driver.tick()  # one sensor interval later; nothing finished, nothing to submit
    assert launched == 1, "the tick launches the run that drops them"
    [run] = driver.ingest_results
    assert run.dagster_run.tags["mediaembed/objects_removed"] == "3"
    after = world.check("deletes: 3 of 20 deleted, one tick later")
    assert (after.seen, after.embedded) == (SAMPLES + 13 - 3, 17)
    assert after.index_rows == after.table_rows < before.index_rows
    assert driver.tick() == 0, "one run per inventory"
    assert world.errors == []
