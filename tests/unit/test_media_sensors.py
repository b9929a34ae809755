"""The probe sensor hands each batch a listing left pending to a run of its own, once."""

import time
from pathlib import Path

import dagster as dg

from assets_defs.inventory.media_inventory import PENDING_BATCHES
from pipelines.media_sensors import inventory_probe_sensor


def inventory(instance: dg.DagsterInstance, batches: list[str]) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            ["media", "inventory"], metadata={PENDING_BATCHES: dg.MetadataValue.json(batches)}
        )
    )


def tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
        result = inventory_probe_sensor(context)
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    return result


def test_each_pending_batch_gets_one_probe_run_and_a_later_tick_does_not_ask_again() -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert isinstance(tick(instance, None), dg.SkipReason)
    inventory(instance, ["abcd1234-00000", "abcd1234-00001"])
    inventory(instance, [])
    first = tick(instance, None)
    assert isinstance(first, dg.SensorResult) and first.cursor
    requests = [r for r in first.run_requests or [] if isinstance(r, dg.RunRequest)]
    assert [r.run_key for r in requests] == ["probe-abcd1234-00000", "probe-abcd1234-00001"]
    assert isinstance(requests[0].run_config, dict)
    assert requests[0].run_config["ops"]["media__inventory"]["config"] == {"probe_batch": "abcd1234-00000"}
    again = tick(instance, first.cursor)
    assert isinstance(again, dg.SkipReason)
    inventory(instance, ["ffff0000-00000"])
    later = tick(instance, first.cursor)
    assert isinstance(later, dg.SensorResult)
    assert [r.run_key for r in later.run_requests or [] if isinstance(r, dg.RunRequest)] == [
        "probe-ffff0000-00000"
    ]


def test_an_empty_queue_setting_means_no_queue_and_the_change_sensor_skips() -> None:
    """Optional settings read "" as unset (as the local environment binds them): no receive is tried."""
    from pipelines.media_sensors import media_change_sensor
    from resources.media.event_queue import MediaEventQueue
    from resources.media.source import MediaSource
    from resources.storage.lake import Lake
    from resources.storage.s3_storage import S3Storage

    assert not MediaEventQueue(queue_url="").configured
    assert MediaEventQueue(queue_url="https://sqs.us-east-1.amazonaws.com/1/media").configured
    resources = {
        "media_events": MediaEventQueue(queue_url=""),
        "media": MediaSource(uri="s3://media/", storage=S3Storage()),
        "lake": Lake(root="/nonexistent", storage=S3Storage()),
    }
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources) as context:
        result = media_change_sensor(context)
    assert isinstance(result, dg.SkipReason) and "MEDIAEMBED_MEDIA_QUEUE_URL" in str(result.skip_message)


def test_with_events_the_embed_schedule_launches_only_when_something_changed_since_the_last_plan(
    tmp_path: Path,
) -> None:
    """A quiet library costs a schedule tick, not a run planning over every object; an inventory (or a
    failed job, or objects left waiting) since the last submission run's plan launches one."""
    from pipelines.schedules import embed_new_media_schedule
    from resources.media.event_queue import MediaEventQueue
    from resources.storage.lake import Lake
    from resources.storage.s3_storage import S3Storage

    with dg.instance_for_test() as instance:  # a schedule's context needs an instance with a ref
        lake = Lake(root=str(tmp_path / "lake"), storage=S3Storage())
        queued = MediaEventQueue(queue_url="https://sqs.us-east-1.amazonaws.com/1/media-events")

        def tick(events: MediaEventQueue) -> dg.RunRequest | dg.SkipReason:
            resources = {"lake": lake, "media_events": events}
            with dg.build_schedule_context(instance=instance, resources=resources) as context:
                result = embed_new_media_schedule(context)
            assert isinstance(result, dg.RunRequest | dg.SkipReason)
            return result

        assert isinstance(tick(queued), dg.RunRequest), "never planned: the first run"
        inventory(instance, [])
        planned = time.time()
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                ["marengo", "invocations"],
                partition="marengo-3.0",
                metadata={"deferred": 0, "planned_at": dg.MetadataValue.timestamp(planned)},
            )
        )
        quiet = tick(queued)
        assert isinstance(quiet, dg.SkipReason) and "nothing changed" in str(quiet.skip_message)
        assert isinstance(tick(MediaEventQueue()), dg.RunRequest), "without events every run lists"
        inventory(instance, [])  # an event run, or a probe batch, since the plan
        changed = tick(queued)
        assert isinstance(changed, dg.RunRequest) and changed.partition_key == "marengo-3.0"


def test_an_event_run_that_planned_its_changes_leaves_nothing_due_but_what_the_library_plan_left() -> None:
    """Event runs plan only their changed objects: their own inventory changes are planned, while an
    inventory change of another run, or objects the last library plan left waiting, are still due."""
    from assets_defs import keys
    from pipelines.sensors import due_work

    partitions = dg.StaticPartitionsDefinition(["marengo-3.0"])

    def run(instance: dg.DagsterInstance, plan: str | None, deferred: int = 0) -> None:
        """One run: an inventory change, then (unless `plan` is None: a probe run) its submission plan."""

        @dg.asset(key=keys.MEDIA_INVENTORY, partitions_def=partitions)
        def media_inventory() -> None:
            return None

        @dg.asset(key=keys.MARENGO_INVOCATIONS, partitions_def=partitions, deps=[media_inventory])
        def invocations() -> dg.MaterializeResult:
            metadata = {"plan_scope": plan, "deferred": deferred, "deferred_reason": "the quota"}
            return dg.MaterializeResult(
                metadata={**metadata, "planned_at": dg.MetadataValue.timestamp(time.time())}
            )

        assets = [media_inventory] if plan is None else [media_inventory, invocations]
        dg.materialize(assets, instance=instance, partition_key="marengo-3.0")

    def due(instance: dg.DagsterInstance) -> str | None:
        last = instance.fetch_materializations(
            dg.AssetRecordsFilter(keys.MARENGO_INVOCATIONS, asset_partitions=["marengo-3.0"]), limit=1
        ).records[0]
        return due_work(instance, "marengo-3.0", last)

    with dg.instance_for_test() as instance:
        run(instance, "library")  # a listing and its library plan
        assert due(instance) is None
        run(instance, "2 named objects")  # an event run
        assert due(instance) is None, "the event run planned its own changes"
        run(instance, None)  # a probe run: an inventory change nobody planned
        assert due(instance) == "the inventory changed since the last submission run planned"

    with dg.instance_for_test() as instance:
        run(instance, "library", deferred=5)  # the library plan left 5 behind the quota
        run(instance, "1 named objects")
        assert due(instance) == "5 objects wait (the quota)", "an event run says nothing of the others"
