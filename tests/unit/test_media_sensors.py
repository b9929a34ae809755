"""The probe sensor hands each batch a listing left pending to a run of its own, once."""

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
