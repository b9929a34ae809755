"""Keep embeddings fresh as media arrives."""

import dagster as dg

from pipelines.jobs import embed_new_media_job, holding_config
from resources.lake import Lake


@dg.schedule(
    job=embed_new_media_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every 15 minutes: inventory the bucket and submit new or changed objects for the version serving "
        "search (the lake's serving record); the sensor then submits them for every other version kept up, "
        "holding the quota while objects wait. The safety net for new media; the invocation sensor "
        "submits as jobs finish."
    ),
)
def embed_new_media_schedule(context: dg.ScheduleEvaluationContext, lake: Lake) -> dg.RunRequest:
    serving = lake.serving_versions().current().serving
    return dg.RunRequest(partition_key=serving, run_config=holding_config())
