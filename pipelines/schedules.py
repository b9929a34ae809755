"""Keep embeddings fresh as media arrives."""

import dagster as dg

from pipelines.jobs import embed_new_media_job
from resources.marengo_models import SERVING_MODEL_KEY


@dg.schedule(
    job=embed_new_media_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes: inventory the bucket, submit new or changed objects (serving model).",
)
def embed_new_media_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=SERVING_MODEL_KEY)
