"""Keep embeddings fresh as media arrives."""

import dagster as dg

from assets_defs import keys
from pipelines.jobs import (
    describe_media_job,
    embed_new_media_job,
    holding_config,
    inventory_config,
    steps_config,
)
from pipelines.run_statuses import ACTIVE_RUN_STATUSES
from pipelines.sensors import due_work, latest_materialization
from pipelines.settings import schedule_cron
from resources.media.event_queue import MediaEventQueue
from resources.storage.lake import Lake


@dg.schedule(
    job=embed_new_media_job,
    cron_schedule=schedule_cron("MEDIAEMBED_EMBED_SCHEDULE"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every 15 minutes (MEDIAEMBED_EMBED_SCHEDULE): inventory the bucket and submit new or changed "
        "objects for the version serving search (the lake's serving record); the sensor then submits them "
        "for every other version kept up, holding the quota while objects wait. The safety net for new "
        "media; the invocation sensor submits as jobs finish. Where S3 events feed the inventory it "
        "launches a run only when something changed since the last submission run planned (the media "
        "change sensor's runs plan as changes come; the daily reconciliation plans in any case)."
    ),
)
def embed_new_media_schedule(
    context: dg.ScheduleEvaluationContext, lake: Lake, media_events: MediaEventQueue
) -> dg.RunRequest | dg.SkipReason:
    serving = lake.serving_versions().current().serving
    if media_events.configured:
        last = latest_materialization(
            context.instance, dg.AssetRecordsFilter(keys.MARENGO_INVOCATIONS, asset_partitions=[serving])
        )
        if last is not None and due_work(context.instance, serving, last) is None:
            return dg.SkipReason(
                f"{serving}: nothing changed since submission run {last.run_id[:8]} planned "
                "(S3 events feed the inventory; its runs plan as changes come)"
            )
    return dg.RunRequest(partition_key=serving, run_config=holding_config())


@dg.schedule(
    job=embed_new_media_job,
    cron_schedule=schedule_cron("MEDIAEMBED_RECONCILE_SCHEDULE"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Daily at 03:00 (MEDIAEMBED_RECONCILE_SCHEDULE), where S3 events feed the inventory: list the whole "
        "prefix against the inventory, which catches events that never came (new, changed and removed "
        "objects), then submit what is new. Without a queue every embed run lists, and this one skips."
    ),
)
def reconcile_media_inventory_schedule(
    context: dg.ScheduleEvaluationContext, lake: Lake, media_events: MediaEventQueue
) -> dg.RunRequest | dg.SkipReason:
    if not media_events.configured:
        return dg.SkipReason("no S3 event queue (MEDIAEMBED_MEDIA_QUEUE_URL): every embed run lists already")
    serving = lake.serving_versions().current().serving
    config = steps_config(inventory_config(reconcile=True), holding_config())
    return dg.RunRequest(partition_key=serving, run_config=config)


@dg.schedule(
    job=describe_media_job,
    cron_schedule=schedule_cron("MEDIAEMBED_DESCRIBE_SCHEDULE"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every 15 minutes, between the embedding runs (MEDIAEMBED_DESCRIBE_SCHEDULE): describe and chapter "
        "with Pegasus what the inventory holds that is not described yet (new videos, changed ETags, "
        "changed prompts); a run with nothing new makes no call."
    ),
)
def describe_new_media_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    # Two runs at once would both plan, and pay for, the same backlog: the pool is a setting one can forget.
    busy = context.instance.get_run_records(
        dg.RunsFilter(job_name=describe_media_job.name, statuses=ACTIVE_RUN_STATUSES), limit=1
    )
    if busy:
        return dg.SkipReason(f"describe_media run {busy[0].dagster_run.run_id} is still going")
    return dg.RunRequest()
