"""Marengo async invocations: one StartAsyncInvoke per media object not yet embedded for a model version."""

from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from assets_defs.media_inventory import media_inventory, read_inventory
from assets_defs.metadata import preview
from assets_defs.partitions import marengo_model_partitions
from assets_defs.submission_plan import plan_submissions
from resources.embedding_jobs import EmbeddingJob, EmbeddingOptions, Submission, SubmissionRefused
from resources.lake import Lake
from resources.marengo_models import marengo_model
from resources.marengo_provider import MarengoProvider
from resources.submission_ledger import Outcome, SubmissionLedger

LEDGER_FLUSH_EVERY = 50
# This many set-up refusals in a row with one reason and no acceptance stop the run's submissions.
# Refusals about one object (bad media) never count: they say nothing about the next object.
SETUP_PROBLEM_AFTER = 3


class InvocationConfig(dg.Config):
    segmentation: Literal["dynamic", "fixed"] = Field(
        default="dynamic", description="dynamic: scene-aligned clips (video); fixed: equal clips."
    )
    min_segment_sec: float = Field(default=4.0, ge=1, le=10, description="Shortest dynamic clip, seconds.")
    fixed_segment_sec: float = Field(default=6.0, ge=1, le=10, description="Fixed clip length, seconds.")
    max_in_flight: int = Field(
        default=30, ge=1, description="Keep at most this many invocations running (the provider's quota)."
    )
    max_attempts: int = Field(default=2, ge=1, description="Attempts per object before a failure is final.")
    max_lost: int = Field(
        default=3,
        ge=1,
        description=(
            "Jobs the provider lost (no longer knows) are resubmitted without using up an attempt, "
            "up to this many times per object."
        ),
    )

    def options(self) -> EmbeddingOptions:
        return EmbeddingOptions(self.segmentation, self.min_segment_sec, self.fixed_segment_sec)


def _rejection(job: EmbeddingJob, reason: str) -> Outcome:
    return Outcome(
        job_key=job.job_key,
        client_token=job.client_token,
        model_key=job.model.key,
        media_uri=job.media_uri,
        etag=job.etag,
        invocation_id=None,
        status="rejected",
        reason=reason,
    )


@dg.asset(
    key=["marengo", "invocations"],
    deps=[media_inventory],
    partitions_def=marengo_model_partitions,
    group_name="marengo",
    kinds={"bedrock"},
    pool="marengo_submit",
    check_specs=[
        dg.AssetCheckSpec(
            "provider_accepts_requests",
            asset=["marengo", "invocations"],
            description=(
                "Fails when the provider refused several requests in a row for the same set-up reason and "
                "accepted none: a setup problem (model access, region, buckets). Refusals about one object "
                "(bad media) never count."
            ),
        )
    ],
)
def marengo_invocations(
    context: dg.AssetExecutionContext, config: InvocationConfig, marengo: MarengoProvider, lake: Lake
) -> dg.MaterializeResult:
    """Starts an async embedding job for every usable media object not yet handled for this model version.

    Each job carries a client token derived from the object's ETag, the model and the options, and every
    submission is written to the ledger as it goes, so a re-run, a crash or a backfill never bills twice.
    Objects the provider refuses are recorded with its reason; when the provider is busy the rest wait.
    """
    model = marengo_model(context.partition_key)
    inventory = read_inventory(lake)
    ledger = SubmissionLedger(lake, marengo.provider_name)
    ledger_jobs = ledger.jobs(model.key)
    plan = plan_submissions(
        inventory, ledger_jobs, model, config.options(), config.max_attempts, config.max_lost
    )
    in_flight = int((ledger_jobs["status"] == "in_progress").sum()) if not ledger_jobs.empty else 0
    seconds = dict(zip(inventory["media_uri"], inventory["duration_sec"], strict=True))
    seconds = {uri: (None if pd.isna(s) else float(s)) for uri, s in seconds.items()}

    submitted: list[Submission] = []
    unflushed: list[Submission] = []
    rejected = [_rejection(job, reason) for job, reason in plan.over_limit]
    deferred = 0
    busy_reason = None
    same_refusals: list[str] = []  # consecutive set-up refusals, with the object's URI masked
    object_refusals = 0
    setup_problem = None
    try:
        for i, job in enumerate(plan.due):
            if in_flight + len(submitted) >= config.max_in_flight:
                deferred = len(plan.due) - i
                busy_reason = f"{config.max_in_flight} invocations in flight (max_in_flight)"
                break
            try:
                submission = marengo.submit(job)
            except SubmissionRefused as refusal:
                if refusal.permanent:
                    context.log.warning(
                        f"{job.media_uri}: rejected by {marengo.provider_name}: {refusal.reason}"
                    )
                    rejected.append(_rejection(job, refusal.reason))
                    if refusal.object_specific:
                        object_refusals += 1
                        continue
                    same_refusals.append(refusal.reason.replace(job.media_uri, "<media>"))
                    if (
                        not submitted
                        and len(same_refusals) >= SETUP_PROBLEM_AFTER
                        and len(set(same_refusals)) == 1
                    ):
                        deferred = len(plan.due) - i - 1
                        setup_problem = same_refusals[0]
                        break
                    continue
                deferred = len(plan.due) - i
                busy_reason = refusal.reason
                break
            same_refusals.clear()
            submitted.append(submission)
            unflushed.append(submission)
            if len(unflushed) >= LEDGER_FLUSH_EVERY:
                ledger.record_submissions(unflushed, seconds, context.run_id)
                unflushed = []
    finally:
        ledger.record_submissions(unflushed, seconds, context.run_id)
        ledger.record_outcomes(rejected, context.run_id)

    if busy_reason:
        context.log.info(f"{deferred} objects wait for a later run: {busy_reason}")
    if setup_problem:
        busy_reason = f"stopped: every request refused with the same reason: {setup_problem}"
        context.log.error(
            f"{busy_reason}; {deferred} objects wait. Check the model access, region and buckets."
        )
    media_seconds = sum(seconds.get(s.job.media_uri) or 0.0 for s in submitted)
    cost = sum(model.estimated_cost_usd(s.job.modality, seconds.get(s.job.media_uri)) for s in submitted)
    rejected_frame = pd.DataFrame([{"media_uri": r.media_uri, "reason": r.reason} for r in rejected])
    submitted_frame = pd.DataFrame(
        [
            {"media_uri": s.job.media_uri, "attempt": s.job.attempt, "invocation": s.invocation_id}
            for s in submitted
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "model": model.base_model_id,
            "submitted": len(submitted),
            "already_handled": plan.already_handled,
            "in_flight_before": in_flight,
            "deferred": deferred,
            "deferred_reason": busy_reason or "",
            "rejected": len(rejected),
            "rejected_for_the_object": object_refusals,
            "resubmitted_after_lost": sum(s.job.job_key in plan.after_lost for s in submitted),
            "out_of_attempts": len(plan.out_of_attempts),
            "media_seconds_submitted": round(media_seconds, 3),
            "estimated_cost_usd": round(cost, 4),
            "submitted_preview": preview(submitted_frame),
            "rejected_preview": preview(rejected_frame),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="provider_accepts_requests",
                passed=setup_problem is None,
                metadata={
                    "consecutive_identical_refusals": len(same_refusals),
                    "refusals_about_one_object": object_refusals,
                    "reason": setup_problem or "",
                },
            )
        ],
    )
