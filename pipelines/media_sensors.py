"""The sensors that keep the inventory fresh without listing the bucket: one drains the S3 events of the
media bucket's SQS queue into inventory runs of exactly the changed keys; the other hands each probe batch
a large listing left pending to a run of its own, so a first inventory fans out over the run workers."""

from __future__ import annotations

import dagster as dg

from assets_defs import keys
from assets_defs.inventory.media_inventory import PENDING_BATCHES, ChangedObject
from pipelines.jobs import (
    embed_new_media_job,
    holding_config,
    inventory_config,
    probe_media_job,
    steps_config,
)
from pipelines.sensors import materialization_metadata, metadata_value, short_digest
from pipelines.settings import sensor_interval_sec
from resources.media.event_queue import MediaEventQueue
from resources.media.events import CREATED, MalformedEvent, ObjectChange, parse_message
from resources.media.source import MediaSource
from resources.storage.lake import Lake

# A tick takes at most this many messages (100 receives of 10); the rest wait for the next tick.
MESSAGES_PER_TICK = 1_000
# One inventory run applies the changes of at most this many messages' worth of objects: a tick's worth.
# Each run's merge into the inventory table and its planning read cost the library's size (about 6 s at
# 1M objects, bench/inventory_scale.py), and a run probes its objects on threads of its own, so fewer,
# larger runs bring new media to search sooner (1,000 uploads at 1M: 4 runs of 250, 71 s; 1 run, see
# docs/benchmarks.md).
CHANGES_PER_RUN = 1_000
# Inventory materializations a probe-sensor tick reads (each names its pending batches).
INVENTORIES_PER_TICK = 50


@dg.sensor(
    jobs=[embed_new_media_job],
    minimum_interval_seconds=sensor_interval_sec(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Drains the media bucket's S3 events from its SQS queue (MEDIAEMBED_MEDIA_QUEUE_URL), long polling, "
        "and requests an embed_new_media run for the serving version with exactly the changed keys; the run "
        "deletes the messages once their changes are committed. Without a queue it does nothing: the embed "
        "schedule lists the prefix."
    ),
)
def media_change_sensor(
    context: dg.SensorEvaluationContext, media_events: MediaEventQueue, media: MediaSource, lake: Lake
) -> dg.SensorResult | dg.SkipReason:
    if not media_events.configured:
        return dg.SkipReason("MEDIAEMBED_MEDIA_QUEUE_URL is not set: each inventory run lists the prefix")
    messages = media_events.receive(MESSAGES_PER_TICK)
    if not messages:
        return dg.SkipReason("no S3 events waiting")
    runs: list[tuple[list[ObjectChange], list[str]]] = [([], [])]
    nothing_for_us: list[str] = []
    for message in messages:
        try:
            changes = [c for c in parse_message(message.body) if media.contains(c.bucket, c.key)]
        except MalformedEvent as error:
            context.log.warning(f"SQS message {message.message_id} is not an S3 event ({error}): deleted")
            changes = []
        if not changes:  # a test event, another prefix's keys, or unreadable: nothing to commit
            nothing_for_us.append(message.receipt_handle)
            continue
        if len(runs[-1][0]) >= CHANGES_PER_RUN:
            runs.append(([], []))
        runs[-1][0].extend(changes)
        runs[-1][1].append(message.receipt_handle)
    for reason in media_events.delete(nothing_for_us):
        context.log.warning(f"an SQS message was not deleted ({reason}); it comes back and is dropped again")
    serving = lake.serving_versions().current().serving
    requests = [
        dg.RunRequest(
            job_name=embed_new_media_job.name,
            partition_key=serving,
            # Receipt handles are new at every delivery: a message redelivered after a failed run is a new
            # run (applying it again is a no-op where it had committed).
            run_key=f"changes-{short_digest(receipts)}",
            run_config=steps_config(
                inventory_config(changes=[ChangedObject.of(c) for c in changes], receipts=receipts),
                # The run plans only the objects created or overwritten: a removal submits nothing.
                holding_config(0, media_uris=sorted({c.uri for c in changes if c.change == CREATED})),
            ),
            tags={"mediaembed/object_changes": str(len(changes))},
        )
        for changes, receipts in runs
        if changes
    ]
    context.log.info(
        f"{len(messages)} messages: {sum(len(c) for c, _ in runs)} changes in {len(requests)} runs, "
        f"{len(nothing_for_us)} with nothing under the media prefix"
    )
    if not requests:
        return dg.SkipReason(f"{len(messages)} messages, none with a change under the media prefix")
    return dg.SensorResult(run_requests=requests)


@dg.sensor(
    job=probe_media_job,
    minimum_interval_seconds=sensor_interval_sec(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Requests one probe_media run per probe batch an inventory listing left pending (a first "
        "inventory of a large prefix), so the probing runs side by side on the run workers."
    ),
)
def inventory_probe_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(keys.MEDIA_INVENTORY, after_storage_id=after),
        limit=INVENTORIES_PER_TICK,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no inventory since the last tick")
    requests = [
        dg.RunRequest(
            run_key=f"probe-{batch}",
            run_config=inventory_config(probe_batch=batch),
            tags={"mediaembed/probe_batch": batch},
        )
        for record in records
        for batch in metadata_value(materialization_metadata(record), PENDING_BATCHES, "") or []
    ]
    cursor = str(records[-1].storage_id)
    if not requests:
        return dg.SensorResult(skip_reason="no probe batches pending", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
