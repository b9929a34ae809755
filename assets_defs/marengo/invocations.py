"""Marengo async invocations: one async embedding job per media object not yet embedded for a model
version, at the provider configured to serve it (Bedrock StartAsyncInvoke, or a TwelveLabs embed task)."""

from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import islice

import dagster as dg
import pandas as pd
from pydantic import Field

from assets_defs import keys
from assets_defs.inventory.media_inventory import media_inventory, read_inventory
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.marengo.submission_plan import Slots, SubmissionPlan, plan_submissions
from assets_defs.marengo.submission_stop import STOP_METADATA_KEY, SubmissionStop
from assets_defs.metadata import preview
from assets_defs.migration.estimates import (
    SubmissionSettings,
    budget_problem,
    embedded_objects,
    estimate_jobs,
    version_progress,
)
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    Submission,
    options_from_canonical,
)
from resources.providers.errors import ListingIncomplete, ProviderError
from resources.providers.marengo_models import MarengoModel, marengo_model
from resources.providers.marengo_resource import MarengoProviders
from resources.storage.clock import REAL_CLOCK, Clock
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Uri
from resources.tables.invocation_findings import FREES_SLOT, InvocationFindings
from resources.tables.submission_ledger import Outcome, SubmissionLedger

LEDGER_FLUSH_EVERY = 50
# This many set-up refusals in a row with one reason and no acceptance stop the run's submissions.
# Refusals about one object (bad media) never count: they say nothing about the next object.
SETUP_PROBLEM_AFTER = 3
# How long a submission run keeps the quota full while objects wait: under the schedule's 15 minutes, so
# at most one scheduled run waits for it (pool marengo_submit); the sensor starts the next if work remains.
HOLD_QUOTA_SEC = 14 * 60
# A busy refusal with none of our jobs running (another client holds the quota, or throttling) is retried
# after slot_poll_sec, doubling up to this.
MAX_BUSY_BACKOFF_SEC = 60.0


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


def _finished_tokens(statuses: Iterable[InvocationStatus]) -> set[str]:
    return {s.client_token for s in statuses if s.client_token and s.state in FREES_SLOT}


def _bucket(job: EmbeddingJob) -> str:
    return S3Uri.parse(job.media_uri).bucket


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
        return submit_invocations(context, config, marengo, lake, clock)

    return marengo_invocations


marengo_invocations = build_marengo_invocations()


def submit_invocations(
    context: dg.AssetExecutionContext,
    config: InvocationConfig,
    marengo: MarengoProviders,
    lake: Lake,
    clock: Clock,
) -> dg.MaterializeResult:
    """The asset's work; its quota-holding loop reads and sleeps on `clock` only."""
    model = marengo_model(context.partition_key)
    provider = marengo.serving(model)
    route = provider.route(model)
    planned_at = datetime.now(UTC)
    deadline = clock.monotonic() + config.hold_quota_sec
    findings = InvocationFindings(lake)
    known = findings.read(model.key)  # before the ledger: it then holds every job these findings name
    inventory = read_inventory(lake)
    ledger = SubmissionLedger(lake, provider.provider_name)
    every_provider = SubmissionLedger(lake, None).jobs(model.key)
    seconds = dict(zip(inventory["media_uri"], inventory["duration_sec"], strict=True))
    seconds = {uri: (None if pd.isna(s) else float(s)) for uri, s in seconds.items()}

    def planned() -> SubmissionPlan:
        return plan_submissions(
            inventory,
            every_provider,
            model,
            config.options(),
            config.max_attempts,
            config.max_lost,
            provider.provider_name,
        )

    plan = planned()
    # The budget gate, before any provider call: what is still to embed for the version must fit. Jobs a
    # killed run created but never recorded count as still to embed here (a slight overestimate).
    budget = config.budget()
    estimate = estimate_jobs(plan.due, seconds, route)
    over_budget = budget_problem(estimate, budget, model.key, provider.provider_name)
    recovered: list[Submission] = []
    if provider.needs_intent and not over_budget:  # jobs a killed run created, never recorded: adopt them
        recovered = _recover_intents(provider, ledger, model, every_provider, config.options())
        if recovered:
            ledger.record_submissions(recovered, seconds, context.run.run_id)
            context.log.warning(
                f"{len(recovered)} jobs created by an earlier run that stopped before recording them were "
                f"found at {provider.provider_name} and recorded; none is created again"
            )
            every_provider = SubmissionLedger(lake, None).jobs(model.key)
            plan = planned()
    quota = config.max_in_flight or provider.max_in_flight(model)
    slots = Slots(quota)
    if not every_provider.empty:  # the quota is this provider's: only its own open jobs hold slots
        pending = every_provider[
            (every_provider["status"] == "in_progress")
            & (every_provider["provider"] == provider.provider_name)
        ]
        for row in pending.to_dict("records"):
            submitted_at = pd.Timestamp(row["submitted_at"]).to_pydatetime()
            slots.take(str(row["client_token"]), str(row["invocation_id"]), submitted_at)
    # Finished at the provider but not ingested yet: their slots are free already.
    finished_before = slots.release(_finished_tokens(known.statuses.values()))
    in_flight = len(slots.held)
    intended: set[str] = set()

    submitted: list[Submission] = []
    unflushed: list[Submission] = []
    rejected = [_rejection(job, reason) for job, reason in plan.over_limit]
    # Before any request: a set-up the provider would refuse for every job stops the run's submissions,
    # and the objects of a bucket it cannot read are skipped with the reason while the others go on.
    if over_budget:
        context.log.error(over_budget)
    setup_problem = provider.setup_problem() if plan.due and not over_budget else None
    refused_up_front = setup_problem is not None
    bucket_refusals = (
        {}
        if refused_up_front or over_budget
        else provider.unusable_buckets(sorted({_bucket(j) for j in plan.due}))
    )
    for bucket, reason in bucket_refusals.items():
        skipped = [job for job in plan.due if _bucket(job) == bucket]
        context.log.warning(f"{len(skipped)} objects in s3://{bucket}/ skipped: {reason}")
        rejected += [_rejection(job, reason) for job in skipped]
    due = deque(job for job in plan.due if _bucket(job) not in bucket_refusals)
    skipped_for_bucket = len(plan.due) - len(due)
    last_refusal: str | None = None
    same_refusals: list[str] = []  # consecutive set-up refusals, with the object's URI masked
    object_refusals = 0
    polls = seen_finishing = 0
    held_sec = 0.0
    backoff = config.slot_poll_sec

    def wait_for_slots() -> None:
        """Sleep one poll interval, then free the slots of jobs now finished: those another listing found
        (the sensor's findings), then one cheap listing for the rest, whose findings the sensor hands on."""
        nonlocal polls, seen_finishing, held_sec
        pause = max(0.0, min(config.slot_poll_sec, deadline - clock.monotonic()))
        clock.sleep(pause)
        held_sec += pause
        polls += 1
        freed = slots.release(_finished_tokens(findings.read(model.key).statuses.values()))
        still_open = slots.open_jobs()
        oldest = slots.oldest_submission()
        if still_open and oldest is not None:
            try:
                found = provider.newly_finished(still_open, oldest)
            except ListingIncomplete as cut:  # throttled: free what was read, poll again for the rest
                context.log.debug(f"listing cut short ({cut.reason}); {len(cut.found)} finished jobs read")
                found = cut.found
            listed = [s for s in found if s.client_token in still_open]
            findings.record(listed, model.key, found_by=f"submission run {context.run.run_id}")
            freed += slots.release(_finished_tokens(listed))
        seen_finishing += freed
        if freed:
            context.log.debug(f"{freed} jobs finished: {slots.free(clock.monotonic())} slots free")

    try:
        while due and not refused_up_front and not over_budget:
            now = clock.monotonic()
            if slots.free(now) == 0:
                if now >= deadline:
                    break
                if unflushed:  # the sensor and ingest runs see a job only once the ledger holds it
                    ledger.record_submissions(unflushed, seconds, context.run.run_id)
                    unflushed = []
                wait_for_slots()
                continue
            job = due.popleft()
            if provider.needs_intent and job.client_token not in intended:
                # One write for the jobs the free slots take next, before any of them is created.
                batch = [job, *list(islice(due, max(0, min(slots.free(now), LEDGER_FLUSH_EVERY) - 1)))]
                ledger.record_intents(batch, context.run.run_id)
                intended.update(j.client_token for j in batch)
            try:
                submission = provider.submit(job)
            except ProviderError as refusal:
                if refusal.permanent:
                    context.log.warning(
                        f"{job.media_uri}: rejected by {provider.provider_name}: {refusal.reason}"
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
                        setup_problem = same_refusals[0]
                        break
                    continue
                # Busy: the quota is full (or throttled). Wait until a slot frees, or stop if not holding.
                due.appendleft(job)
                last_refusal = refusal.reason
                slots.refused(now, backoff)
                backoff = min(backoff * 2, MAX_BUSY_BACKOFF_SEC)
                continue
            same_refusals.clear()
            backoff = config.slot_poll_sec
            submitted.append(submission)
            unflushed.append(submission)
            slots.take(job.client_token, submission.invocation_id, submission.submitted_at)
            if len(unflushed) >= LEDGER_FLUSH_EVERY:
                ledger.record_submissions(unflushed, seconds, context.run.run_id)
                unflushed = []
    finally:
        ledger.record_submissions(unflushed, seconds, context.run.run_id)
        ledger.record_outcomes(rejected, context.run.run_id)

    deferred = len(due)
    busy_reason = None
    stop = SubmissionStop.QUOTA if deferred else SubmissionStop.NOTHING_DEFERRED
    if over_budget:
        busy_reason, stop = over_budget, SubmissionStop.OVER_BUDGET
    elif deferred and not setup_problem:
        busy_reason = last_refusal or f"{quota} invocations in flight (the {provider.provider_name} quota)"
        context.log.info(f"{deferred} objects wait for a later run: {busy_reason}")
    if refused_up_front:
        busy_reason, stop = f"stopped before submitting: {setup_problem}", SubmissionStop.SETUP_REFUSED
        context.log.error(f"{busy_reason}; {deferred} objects wait")
    elif setup_problem:
        busy_reason = f"stopped: every request refused with the same reason: {setup_problem}"
        stop = SubmissionStop.SETUP_REFUSED
        context.log.error(
            f"{busy_reason}; {deferred} objects wait. Check the model access, region and buckets."
        )
    progress = version_progress(
        inventory,
        SubmissionLedger(lake, None).jobs(model.key),
        embedded_objects(lake, model),
        model,
        config.options(),
        config.max_attempts,
        config.max_lost,
    )
    media_seconds = sum(seconds.get(s.job.media_uri) or 0.0 for s in submitted)
    cost = sum(route.estimated_cost_usd(s.job.modality, seconds.get(s.job.media_uri)) for s in submitted)
    rejected_frame = pd.DataFrame([{"media_uri": r.media_uri, "reason": r.reason} for r in rejected])
    submitted_frame = pd.DataFrame(
        [
            {"media_uri": s.job.media_uri, "attempt": s.job.attempt, "invocation": s.invocation_id}
            for s in submitted
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "model": model.key,
            "provider": provider.provider_name,
            "provider_model_id": route.model_id,
            "priced": route.priced,
            "submitted": len(submitted),
            "recovered_after_crash": len(recovered),
            "already_handled": plan.already_handled,
            "in_flight_before": in_flight,
            "finished_not_yet_ingested": finished_before,
            "quota": quota,
            "deferred": deferred,
            "deferred_reason": busy_reason or "",
            STOP_METADATA_KEY: stop.value,
            "rejected": len(rejected),
            "rejected_for_the_object": object_refusals,
            "skipped_for_their_bucket": skipped_for_bucket,
            "resubmitted_after_lost": sum(s.job.job_key in plan.after_lost for s in submitted),
            "out_of_attempts": len(plan.out_of_attempts),
            "planned_at": dg.MetadataValue.timestamp(planned_at),
            "hold_quota_sec": config.hold_quota_sec,
            "held_sec": round(held_sec, 1),
            "slot_polls": polls,
            "jobs_seen_finishing": seen_finishing,
            "media_seconds_submitted": round(media_seconds, 3),
            "estimated_cost_usd": round(cost, 4),
            "submitted_preview": preview(submitted_frame),
            "rejected_preview": preview(rejected_frame),
            "budget": budget.describe(),
            "estimated_cost_usd_still_to_embed": round(estimate.cost_usd, 4),
            "media_seconds_still_to_embed": round(estimate.media_seconds, 3),
            **progress.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="provider_accepts_requests",
                passed=setup_problem is None,
                metadata={
                    "consecutive_identical_refusals": len(same_refusals),
                    "refusals_about_one_object": object_refusals,
                    "reason": setup_problem or "",
                    "buckets_skipped": dg.MetadataValue.json(bucket_refusals),
                },
            ),
            dg.AssetCheckResult(
                check_name="within_budget",
                passed=over_budget is None,
                description=over_budget,
                metadata={
                    "budget": budget.describe(),
                    "objects_still_to_embed": estimate.objects,
                    "estimated_cost_usd": round(estimate.cost_usd, 4),
                    "priced": estimate.priced,
                    "media_seconds": round(estimate.media_seconds, 3),
                },
            ),
        ],
    )


def _recover_intents(
    provider: MarengoProvider,
    ledger: SubmissionLedger,
    model: MarengoModel,
    jobs: pd.DataFrame,
    options: EmbeddingOptions,
) -> list[Submission]:
    """The jobs of unclaimed intents (a run stopped between creating a job and recording it) that the
    provider did create; planning then sees them in flight and creates nothing for them."""
    intents = ledger.unclaimed_intents(model.key, jobs)
    if intents.empty:
        return []
    pending = [
        (
            EmbeddingJob(
                row["media_uri"],
                row["etag"],
                row["modality"],
                model,
                options_from_canonical(row["options"]),
                int(row["attempt"]),
                provider.provider_name,
            ),
            pd.Timestamp(row["intended_at"]).to_pydatetime(),
        )
        for row in intents.to_dict("records")
    ]
    claimed = set(jobs["invocation_id"].dropna()) if "invocation_id" in jobs else set()
    return provider.find_submissions(pending, claimed)
