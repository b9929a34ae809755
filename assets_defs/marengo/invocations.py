"""Marengo async invocations: one async embedding job per media object not yet embedded for a model
version, at the provider configured to serve it (Bedrock StartAsyncInvoke, or a TwelveLabs embed task).

The asset is thin: it builds a `SubmissionRun` (assets_defs/marengo/submission_run.py), runs it, and
reports the `SubmissionReport` as metadata and check results.
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from assets_defs import keys
from assets_defs.inventory.media_inventory import media_inventory
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.marengo.submission_run import QuotaHold, SubmissionReport, SubmissionRun
from assets_defs.marengo.submission_stop import STOP_METADATA_KEY
from assets_defs.metadata import preview
from assets_defs.migration.estimates import SubmissionSettings
from resources.providers.marengo_models import marengo_model
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import cost_metadata
from resources.storage.clock import REAL_CLOCK, Clock
from resources.storage.lake import Lake

# How long a submission run keeps the quota full while objects wait: under the schedule's 15 minutes, so
# at most one scheduled run waits for it (pool marengo_submit); the sensor starts the next if work remains.
HOLD_QUOTA_SEC = 14 * 60


class InvocationConfig(SubmissionSettings):
    max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Keep at most this many invocations running. Unset: the provider's quota for the model "
            "(MEDIAEMBED_QUOTAS, else the provider's default), which nothing else caps."
        ),
    )
    hold_quota_sec: float = Field(
        default=HOLD_QUOTA_SEC,
        ge=0,
        le=24 * 3600,
        description=(
            "While objects wait for the quota, keep the run going this long, submitting as jobs finish "
            "(asking the provider every slot_poll_sec). 0: stop at the quota; the invocation sensor then "
            "starts a submission run once slots free (in-process runs of `mediaembed` default to 0)."
        ),
    )
    slot_poll_sec: float = Field(
        default=5.0,
        ge=0.01,
        le=600,
        description="While holding the quota: how often to ask the provider which jobs finished.",
    )

    media_uris: list[str] | None = Field(
        default=None,
        description=(
            "Plan only these objects (the S3 URIs an event run's changes name): their inventory rows, ledger "
            "jobs and intents are read, not the library's. Unset: plan the whole library, and report the "
            "version's progress."
        ),
    )

    def hold(self) -> QuotaHold:
        return QuotaHold(self.max_in_flight, self.hold_quota_sec, self.slot_poll_sec)


INVOCATION_CHECKS = [
    dg.AssetCheckSpec(
        "provider_accepts_requests",
        asset=keys.MARENGO_INVOCATIONS,
        description=(
            "Fails when the provider refused several requests in a row for the same set-up reason and "
            "accepted none, or when the set-up was seen to be wrong before any request (Bedrock's "
            "output bucket outside the model's region): a setup problem (model access, region, "
            "buckets). Refusals about one object (bad media) never count."
        ),
    ),
    dg.AssetCheckSpec(
        "within_budget",
        asset=keys.MARENGO_INVOCATIONS,
        description=(
            "Fails, and the run submits nothing, when what is still to embed for this version is "
            "estimated over the budget (budget_usd / MEDIAEMBED_BUDGET_USD, budget_media_seconds / "
            "MEDIAEMBED_BUDGET_MEDIA_SECONDS); the failure names the budget, the estimate and how "
            "to raise it. Not blocking: the run succeeds having submitted nothing, so the ingest of "
            "jobs already running goes on, and the sensor waits for a person."
        ),
    ),
]


def build_marengo_invocations(clock: Clock = REAL_CLOCK) -> dg.AssetsDefinition:
    """The invocations asset, waiting on `clock`: the real one in the definitions (below); a test builds it
    on a fake clock to count polls and refusals exactly."""

    @dg.asset(
        key=keys.MARENGO_INVOCATIONS,
        deps=[media_inventory],
        partitions_def=marengo_model_partitions,
        group_name="marengo",
        kinds={"bedrock", "twelvelabs"},
        pool="marengo_submit",
        check_specs=INVOCATION_CHECKS,
    )
    def marengo_invocations(
        context: dg.AssetExecutionContext, config: InvocationConfig, marengo: MarengoProviders, lake: Lake
    ) -> dg.MaterializeResult:
        """Starts an async embedding job for every usable media object not yet handled for this model version.

        Each job carries a client token derived from the object's ETag, the model and the options, and every
        submission is written to the ledger as it goes, so a re-run, a crash or a backfill never bills twice.
        Objects the provider refuses are recorded with its reason, and so are, without a request, those in
        a bucket it cannot read (Bedrock: outside the model's region).

        At most the provider's quota of jobs runs at once (jobs found finished free their slot before they
        are ingested). When it is full, or the provider refuses for being busy, the rest wait: with
        `hold_quota_sec` the run keeps going and submits as jobs finish, otherwise the invocation sensor
        starts a submission run once slots free.
        """
        model = marengo_model(context.partition_key)
        run = SubmissionRun(
            lake,
            marengo,
            model,
            config,
            config.hold(),
            context.run.run_id,
            context.log,
            clock,
            scope=config.media_uris,
        )
        return materialize_result(run.run(), config)

    return marengo_invocations


marengo_invocations = build_marengo_invocations()


def materialize_result(report: SubmissionReport, config: InvocationConfig) -> dg.MaterializeResult:
    """The report as the materialization's metadata and the two checks' results."""
    route, plan, submitted, rejected = report.route, report.plan, report.submitted, report.rejected
    budget, estimate = report.budget, report.estimate
    rejected_frame = pd.DataFrame([{"media_uri": r.media_uri, "reason": r.reason} for r in rejected])
    submitted_frame = pd.DataFrame(
        [
            {"media_uri": s.job.media_uri, "attempt": s.job.attempt, "invocation": s.invocation_id}
            for s in submitted
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "model": report.model.key,
            "provider": report.provider,
            "provider_model_id": route.model_id,
            "priced": route.priced,
            "submitted": len(submitted),
            "plan_scope": "library" if report.scope is None else f"{report.scope} named objects",
            "planned_objects": report.planned_objects,
            "recovered_after_crash": report.recovered,
            "already_handled": plan.already_handled,
            "in_flight_before": report.in_flight_before,
            "finished_not_yet_ingested": report.finished_before,
            "quota": report.quota,
            "deferred": report.deferred,
            "deferred_reason": report.deferred_reason,
            STOP_METADATA_KEY: report.stop.value,
            "rejected": len(rejected),
            "rejected_for_the_object": report.object_refusals,
            "skipped_for_their_bucket": report.skipped_for_bucket,
            "resubmitted_after_lost": sum(s.job.job_key in plan.after_lost for s in submitted),
            "out_of_attempts": len(plan.out_of_attempts),
            "planned_at": dg.MetadataValue.timestamp(report.planned_at),
            # The run's setting, as text: the UI plots numbers, and a setting would plot as a flat line.
            "hold_quota_sec": dg.MetadataValue.text(f"{config.hold_quota_sec:g} s"),
            "held_sec": round(report.held_sec, 1),
            "slot_polls": report.slot_polls,
            "jobs_seen_finishing": report.jobs_seen_finishing,
            "media_seconds_submitted": round(report.media_seconds_submitted, 3),
            "estimated_cost_usd": cost_metadata(report.estimated_cost_usd, route.priced),
            "submitted_preview": preview(submitted_frame),
            "rejected_preview": preview(rejected_frame),
            "budget": budget.describe(),
            "estimated_cost_usd_still_to_embed": cost_metadata(estimate.cost_usd, estimate.priced),
            "media_seconds_still_to_embed": round(estimate.media_seconds, 3),
            **(report.progress.metadata() if report.progress is not None else {}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="provider_accepts_requests",
                passed=report.setup_problem is None,
                metadata={
                    "consecutive_identical_refusals": report.consecutive_identical_refusals,
                    "refusals_about_one_object": report.object_refusals,
                    "reason": report.setup_problem or "",
                    "buckets_skipped": dg.MetadataValue.json(report.bucket_refusals),
                },
            ),
            dg.AssetCheckResult(
                check_name="within_budget",
                passed=report.over_budget is None,
                description=report.over_budget,
                metadata={
                    "budget": budget.describe(),
                    "objects_still_to_embed": estimate.objects,
                    "estimated_cost_usd": cost_metadata(estimate.cost_usd, estimate.priced),
                    "priced": estimate.priced,
                    "media_seconds": round(estimate.media_seconds, 3),
                },
            ),
        ],
    )
