"""The sensor that notices finished Marengo invocations and requests the run that ingests them."""

import hashlib
import json
import time
from collections import defaultdict

import dagster as dg

from pipelines.jobs import ingest_marengo_job
from resources.lake import Lake
from resources.marengo_provider import MarengoProvider
from resources.submission_ledger import SubmissionLedger, open_jobs

# A finished invocation whose ingest run did not record it (the run failed or was cancelled) is handed
# off again after this long.
REHAND_AFTER_SEC = 15 * 60


@dg.sensor(
    job=ingest_marengo_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls the provider (a few paginated list calls per tick) for finished Marengo invocations.",
)
def marengo_invocation_sensor(
    context: dg.SensorEvaluationContext, marengo: MarengoProvider, lake: Lake
) -> dg.SensorResult | dg.SkipReason:
    """Cursor: invocation id -> when it was handed to a run, for invocations still open in the ledger."""
    pending = SubmissionLedger(lake, marengo.provider_name).in_progress()
    if pending.empty:
        return dg.SkipReason("no Marengo invocations in flight")
    handed_off: dict[str, float] = json.loads(context.cursor) if context.cursor else {}
    open_ids = set(pending["invocation_id"])
    handed_off = {k: v for k, v in handed_off.items() if k in open_ids}

    finished = marengo.finished_invocations(open_jobs(pending), pending["submitted_at"].min().to_pydatetime())
    # Handed off like finished jobs: the ingest run records them (lost: resubmitted by the next submission
    # run; unknown: read again, and failed once past the ingest's read limits), so none stays open for ever.
    for status in finished:
        if status.state == "unknown":
            context.log.warning(
                f"cannot ask {marengo.provider_name} about {status.invocation_id}: {status.failure_message}; "
                "the ingest run counts it and fails the job past its read limits"
            )
        elif status.state == "lost":
            context.log.warning(
                f"{marengo.provider_name} no longer knows {status.invocation_id} "
                f"({status.failure_message}); the ingest run records it lost for resubmission"
            )
    now = time.time()
    fresh = [
        s for s in finished if now - handed_off.get(s.invocation_id, -REHAND_AFTER_SEC) >= REHAND_AFTER_SEC
    ]
    model_of = dict(zip(pending["client_token"], pending["model_key"], strict=True))
    by_model: dict[str, list[str]] = defaultdict(list)
    for status in fresh:
        handed_off[status.invocation_id] = now
        by_model[model_of[status.client_token or ""]].append(f"{status.invocation_id}@{now}")

    run_requests = [
        dg.RunRequest(
            partition_key=model_key,
            # Invocations and hand-off time: a re-hand-off is a new run; one hand-off is one run at most.
            run_key=f"ingest-{model_key}-{hashlib.sha256(' '.join(sorted(ids)).encode()).hexdigest()[:16]}",
            tags={"mediaembed/finished_invocations": str(len(ids))},
        )
        for model_key, ids in sorted(by_model.items())
    ]
    states = {state: sum(s.state == state for s in finished) for state in ("lost", "unknown")}
    context.log.info(
        f"{len(pending)} in flight, {len(finished)} finished ({states['lost']} lost, "
        f"{states['unknown']} not readable), {len(fresh)} newly handed off"
    )
    if not run_requests:
        return dg.SensorResult(
            skip_reason=f"{len(pending)} invocations in flight, none newly finished",
            cursor=json.dumps(handed_off),
        )
    return dg.SensorResult(run_requests=run_requests, cursor=json.dumps(handed_off))
