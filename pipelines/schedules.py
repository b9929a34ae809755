"""Keep embeddings fresh as media arrives."""

import dagster as dg

from pipelines.jobs import embed_new_media_job, holding_config
from resources.marengo_models import SERVING_MODEL_KEY


@dg.schedule(
    job=embed_new_media_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every 15 minutes: inventory the bucket and submit new or changed objects (serving model), "
        "holding the quota while objects wait. The safety net for new media; the invocation sensor "
        "submits as jobs finish."
    ),
)
def embed_new_media_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=SERVING_MODEL_KEY, run_config=holding_config())
