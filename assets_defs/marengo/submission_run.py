"""One submission run of a Marengo version: plan what is due, gate it on the budget and the set-up, then
submit while keeping the provider's quota full. Plain code: the asset `marengo/invocations` builds a
`SubmissionRun`, runs it, and turns its `SubmissionReport` into a materialization.

Every submission reaches the ledger (intents before a job is created where the provider needs them, the
jobs in batches of at most LEDGER_FLUSH_EVERY), so a re-run, a crash or a backfill never bills twice.

A run plans the whole library, or only the objects an event run names (`scope`): then it reads only their
inventory rows, ledger jobs and intents, so its cost follows the change, not the library. Either way the
quota's slots are every open job of the provider (the live ledger events), and its progress figures are
left to the runs that plan the library.
"""

import logging
from collections import deque
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice

import pandas as pd

from assets_defs.inventory.media_inventory import read_inventory
from assets_defs.marengo.submission_plan import Slots, SubmissionPlan, plan_submissions
from assets_defs.marengo.submission_stop import SubmissionStop
from assets_defs.migration.estimates import (
    COST_JOB_COLUMNS,
    Budget,
    Estimate,
    SubmissionSettings,
    VersionProgress,
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
)
from resources.providers.errors import ListingIncomplete, ProviderError
from resources.providers.marengo_models import MarengoModel
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import ModelRoute
from resources.storage.clock import REAL_CLOCK, Clock
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Uri
from resources.tables.invocation_findings import FREES_SLOT, InvocationFindings
from resources.tables.submission_ledger import PLANNING_JOB_COLUMNS, Outcome, SubmissionLedger

LEDGER_FLUSH_EVERY = 50
# Requests in flight at once once the provider has accepted a job of the run (until then, one at a time, so
# a set-up it refuses costs SETUP_PROBLEM_AFTER requests). Each is one HTTP call of tens of milliseconds:
# at a quota of hundreds, one at a time would be what limits the throughput. boto3 clients and the
# TwelveLabs SDK's are thread-safe.
SUBMIT_CONCURRENCY = 8
# This many set-up refusals in a row with one reason and no acceptance stop the run's submissions.
# Refusals about one object (bad media) never count: they say nothing about the next object.
SETUP_PROBLEM_AFTER = 3
# A busy refusal with none of our jobs running (another client holds the quota, or throttling) is retried
# after the poll interval, doubling up to this.
MAX_BUSY_BACKOFF_SEC = 60.0


# The inventory columns planning and progress read (plan_submissions, object_states, durations).
PLANNING_COLUMNS = ["media_uri", "media_id", "etag", "modality", "status", "duration_sec", "size_bytes"]


@dataclass(frozen=True)
class QuotaHold:
    """How a run waits for the quota: at most `max_in_flight` jobs (None: the provider's quota), and while
    objects wait, for up to `hold_sec`, asking the provider every `poll_sec` which jobs finished."""

    max_in_flight: int | None
    hold_sec: float
    poll_sec: float


@dataclass(frozen=True)
class SubmissionReport:
    """What one submission run did and why it stopped, for its materialization and its checks."""

    model: MarengoModel
    provider: str
    route: ModelRoute
    planned_at: datetime
    plan: SubmissionPlan
    submitted: list[Submission]
    recovered: int
    rejected: list[Outcome]
    object_refusals: int
    skipped_for_bucket: int
    bucket_refusals: dict[str, str]
    in_flight_before: int
    finished_before: int
    quota: int
    deferred: int
    deferred_reason: str
    stop: SubmissionStop
    setup_problem: str | None
    consecutive_identical_refusals: int
    over_budget: str | None
    budget: Budget
    estimate: Estimate
    held_sec: float
    slot_polls: int
    jobs_seen_finishing: int
    media_seconds: dict[str, float | None]
    progress: VersionProgress | None  # None: the run planned only `scope`
    scope: int | None  # objects the run was asked to plan (an event run's changes); None: the library
    planned_objects: int  # the inventory rows it planned

    @property
    def media_seconds_submitted(self) -> float:
        return sum(self.media_seconds.get(s.job.media_uri) or 0.0 for s in self.submitted)

    @property
    def estimated_cost_usd(self) -> float:
        seconds = self.media_seconds
        return sum(
            self.route.estimated_cost_usd(s.job.modality, seconds.get(s.job.media_uri))
            for s in self.submitted
        )


@dataclass
class _Refusals:
    """The provider's permanent refusals so far: set-up ones in a row (the object's URI masked), and those
    about one object, which never count towards a set-up problem."""

    same: list[str] = field(default_factory=list)
    about_one_object: int = 0
    last_busy: str | None = None


@dataclass
class _Ramp:
    """How many create requests to send at once. One until the provider accepts a job (a set-up it refuses
    costs SETUP_PROBLEM_AFTER requests, not a batch); then as many as the free slots. After a busy refusal
    the provider's own capacity is what frees: as many as finished, then one at a time, back to the free
    slots once SUBMIT_CONCURRENCY are accepted in a row (a throttle that passed)."""

    accepted: int = 0
    after_busy: bool = False
    in_a_row: int = 0
    unsent_freed: int = 0

    def size(self, room: int) -> int:
        """The next batch, where `room` requests could go (free slots, up to the next ledger flush)."""
        if not self.accepted:
            return 1
        if self.after_busy:
            size, self.unsent_freed = max(1, self.unsent_freed), 0
            return min(room, size)
        return room

    def answered(self, accepted: bool) -> None:
        self.accepted += accepted
        self.in_a_row = self.in_a_row + 1 if accepted else 0
        if self.after_busy and self.in_a_row >= SUBMIT_CONCURRENCY:
            self.after_busy = False

    def busy(self) -> None:
        self.after_busy, self.in_a_row = True, 0

    def freed(self, slots: int) -> None:
        self.unsent_freed += slots


class SubmissionRun:
    """Submit every job due for `model` at the provider serving it, holding the quota as `hold` says.

    Its waits read and sleep on `clock` only, so a test counts polls and refusals exactly.
    """

    def __init__(
        self,
        lake: Lake,
        providers: MarengoProviders,
        model: MarengoModel,
        settings: SubmissionSettings,
        hold: QuotaHold,
        run_id: str,
        log: logging.Logger,
        clock: Clock = REAL_CLOCK,
        scope: Collection[str] | None = None,
    ):
        self.lake, self.model, self.settings, self.hold = lake, model, settings, hold
        self.scope = None if scope is None else frozenset(scope)
        self.run_id, self.log, self.clock = run_id, log, clock
        self.provider: MarengoProvider = providers.serving(model)
        self.budget_defaults = (providers.budget_usd, providers.budget_media_seconds)
        self.ledger = SubmissionLedger(lake, self.provider.provider_name)
        self.findings = InvocationFindings(lake)
        self.refusals = _Refusals()
        self.ramp = _Ramp()
        self.polls = self.seen_finishing = 0
        self.held_sec = 0.0

    def run(self) -> SubmissionReport:
        model, provider, settings = self.model, self.provider, self.settings
        route = provider.route(model)
        planned_at = datetime.now(UTC)
        self.deadline = self.clock.monotonic() + self.hold.hold_sec
        known = self.findings.read(model.key)  # before the ledger: it then holds every job these name
        scope = self.scope
        inventory = read_inventory(self.lake, PLANNING_COLUMNS, scope)
        every_provider = SubmissionLedger(self.lake, None).jobs(model.key, scope, PLANNING_JOB_COLUMNS)
        plan = self._plan(inventory, every_provider)
        # The durations of the objects not settled (those a submission or a recovered job can be of).
        self.seconds = plan.media_seconds
        # The budget gate, before any provider call: what is still to embed for the version must fit. Jobs
        # a killed run created but never recorded count as still to embed here (a slight overestimate).
        budget = settings.budget(*self.budget_defaults)
        estimate = estimate_jobs(plan.due, self.seconds, route)
        over_budget = budget_problem(estimate, budget, model.key, provider.provider_name)
        recovered: list[Submission] = []
        if provider.needs_intent and not over_budget:  # jobs a killed run created, never recorded
            recovered = _recover_intents(
                provider, self.ledger, model, every_provider, settings.options(), scope
            )
            if recovered:
                self.ledger.record_submissions(recovered, self.seconds, self.run_id)
                self.log.warning(
                    f"{len(recovered)} jobs created by an earlier run that stopped before recording them "
                    f"were found at {provider.provider_name} and recorded; none is created again"
                )
                every_provider = SubmissionLedger(self.lake, None).jobs(
                    model.key, scope, PLANNING_JOB_COLUMNS
                )
                plan = self._plan(inventory, every_provider)
        quota = self.hold.max_in_flight or provider.max_in_flight(model)
        self.slots = self._slots(quota)
        # Finished at the provider but not ingested yet: their slots are free already.
        finished_before = self.slots.release(_finished_tokens(known.statuses.values()))
        in_flight = len(self.slots.held)

        self.rejected = [_rejection(job, reason) for job, reason in plan.over_limit]
        # Before any request: a set-up the provider would refuse for every job stops the run's submissions,
        # and the objects of a bucket it cannot read are skipped with the reason while the others go on.
        if over_budget:
            self.log.error(over_budget)
        setup_problem = provider.setup_problem() if plan.due and not over_budget else None
        refused_up_front = setup_problem is not None
        bucket_refusals = (
            {}
            if refused_up_front or over_budget
            else provider.unusable_buckets(sorted({_bucket(j) for j in plan.due}))
        )
        for bucket, reason in bucket_refusals.items():
            skipped = [job for job in plan.due if _bucket(job) == bucket]
            self.log.warning(f"{len(skipped)} objects in s3://{bucket}/ skipped: {reason}")
            self.rejected += [_rejection(job, reason) for job in skipped]
        due = deque(job for job in plan.due if _bucket(job) not in bucket_refusals)
        skipped_for_bucket = len(plan.due) - len(due)
        self.submitted: list[Submission] = []
        try:
            if not refused_up_front and not over_budget:
                setup_problem = self._submit(due)
        finally:
            self.ledger.record_outcomes(self.rejected, self.run_id)

        deferred = len(due)
        busy_reason = None
        stop = SubmissionStop.QUOTA if deferred else SubmissionStop.NOTHING_DEFERRED
        if over_budget:
            busy_reason, stop = over_budget, SubmissionStop.OVER_BUDGET
        elif deferred and not setup_problem:
            busy_reason = (
                self.refusals.last_busy
                or f"{quota} invocations in flight (the {provider.provider_name} quota)"
            )
            self.log.info(f"{deferred} objects wait for a later run: {busy_reason}")
        if refused_up_front:
            busy_reason, stop = f"stopped before submitting: {setup_problem}", SubmissionStop.SETUP_REFUSED
            self.log.error(f"{busy_reason}; {deferred} objects wait")
        elif setup_problem:
            busy_reason = f"stopped: every request refused with the same reason: {setup_problem}"
            stop = SubmissionStop.SETUP_REFUSED
            self.log.error(
                f"{busy_reason}; {deferred} objects wait. Check the model access, region and buckets."
            )
        # Submissions, recovered jobs and refusals change the ledger; else progress plans what this run did.
        wrote_ledger = bool(self.submitted or recovered or self.rejected)
        return SubmissionReport(
            model=model,
            provider=provider.provider_name,
            route=route,
            planned_at=planned_at,
            plan=plan,
            submitted=self.submitted,
            recovered=len(recovered),
            rejected=self.rejected,
            object_refusals=self.refusals.about_one_object,
            skipped_for_bucket=skipped_for_bucket,
            bucket_refusals=bucket_refusals,
            in_flight_before=in_flight,
            finished_before=finished_before,
            quota=quota,
            deferred=deferred,
            deferred_reason=busy_reason or "",
            stop=stop,
            setup_problem=setup_problem,
            consecutive_identical_refusals=len(self.refusals.same),
            over_budget=over_budget,
            budget=budget,
            estimate=estimate,
            held_sec=self.held_sec,
            slot_polls=self.polls,
            jobs_seen_finishing=self.seen_finishing,
            media_seconds=self.seconds,
            progress=None
            if scope is not None
            else version_progress(
                inventory,
                SubmissionLedger(self.lake, None).jobs(
                    model.key, columns=[*PLANNING_JOB_COLUMNS, *COST_JOB_COLUMNS]
                )
                if wrote_ledger
                else every_provider,
                embedded_objects(self.lake, model),
                model,
                settings.options(),
                settings.max_attempts,
                settings.max_lost,
                None if wrote_ledger else plan,  # the same inputs: planned once
                prices=self.provider.prices or "",
            ),
            scope=None if scope is None else len(scope),
            planned_objects=len(inventory),
        )

    def _plan(self, inventory: pd.DataFrame, every_provider: pd.DataFrame) -> SubmissionPlan:
        s = self.settings
        return plan_submissions(
            inventory,
            every_provider,
            self.model,
            s.options(),
            s.max_attempts,
            s.max_lost,
            self.provider.provider_name,
        )

    def _slots(self, quota: int) -> Slots:
        """The quota is this provider's: its own open jobs hold slots, whatever the run plans (the live
        events hold every open job: a compaction moves only ended ones to the closed state)."""
        slots = Slots(quota)
        pending = self.ledger.in_progress(self.model.key)
        for row in pending.to_dict("records"):
            slots.take(
                str(row["client_token"]),
                str(row["invocation_id"]),
                pd.Timestamp(row["submitted_at"]).to_pydatetime(),
            )
        return slots

    def _submit(self, due: deque[EmbeddingJob]) -> str | None:
        """Submit from `due` while slots are free, waiting for them until the deadline. Returns a set-up
        problem seen in the refusals, if any; what is left in `due` waits for a later run.

        One request at a time until the provider accepts one; then as many as the free slots, up to the
        next ledger flush, SUBMIT_CONCURRENCY at once, their answers handled in the order of `due`."""
        slots, clock = self.slots, self.clock
        unflushed: list[Submission] = []
        intended: set[str] = set()
        backoff = self.hold.poll_sec
        pool = ThreadPoolExecutor(SUBMIT_CONCURRENCY, thread_name_prefix="submit")
        try:
            while due:
                now = clock.monotonic()
                free = slots.free(now)
                if free == 0:
                    if now >= self.deadline:
                        return None
                    if unflushed:  # the sensor and ingest runs see a job only once the ledger holds it
                        self.ledger.record_submissions(unflushed, self.seconds, self.run_id)
                        unflushed = []
                    self._wait_for_slots()
                    continue
                # A batch ends where the ledger's next flush is due, so flushes come every LEDGER_FLUSH_EVERY.
                room = min(free, LEDGER_FLUSH_EVERY - len(unflushed))
                batch = [due.popleft() for _ in range(min(self.ramp.size(room), len(due)))]
                if self.provider.needs_intent and any(j.client_token not in intended for j in batch):
                    # One write for the jobs the free slots take next, before any of them is created.
                    ahead = [*batch, *islice(due, max(0, min(free, LEDGER_FLUSH_EVERY) - len(batch)))]
                    fresh = [j for j in ahead if j.client_token not in intended]
                    self.ledger.record_intents(fresh, self.run_id)
                    intended.update(j.client_token for j in fresh)
                answers = (
                    list(pool.map(self._attempt, batch)) if len(batch) > 1 else [self._attempt(batch[0])]
                )
                busy: list[EmbeddingJob] = []
                surprise: BaseException | None = None
                for job, answer in zip(batch, answers, strict=True):
                    self.ramp.answered(isinstance(answer, Submission))
                    if isinstance(answer, Submission):
                        self.refusals.same.clear()
                        backoff = self.hold.poll_sec
                        self.submitted.append(answer)
                        unflushed.append(answer)
                        slots.take(job.client_token, answer.invocation_id, answer.submitted_at)
                    elif not isinstance(answer, ProviderError):
                        surprise = surprise or answer
                        busy.append(job)  # never sent, as far as we know: it waits (its token is safe)
                    elif answer.permanent:
                        problem = self._refused(job, answer)
                        if problem is not None:  # one request at a time until then: nothing else pending
                            return problem
                    else:  # busy: the quota is full (or throttled); wait until a slot frees, or stop
                        self.ramp.busy()
                        busy.append(job)
                        self.refusals.last_busy = answer.reason
                due.extendleft(reversed(busy))
                if surprise is not None:
                    raise surprise
                if busy:
                    slots.refused(now, backoff)
                    backoff = min(backoff * 2, MAX_BUSY_BACKOFF_SEC)
                if len(unflushed) >= LEDGER_FLUSH_EVERY:
                    self.ledger.record_submissions(unflushed, self.seconds, self.run_id)
                    unflushed = []
            return None
        finally:
            pool.shutdown(wait=True)
            self.ledger.record_submissions(unflushed, self.seconds, self.run_id)

    def _attempt(self, job: EmbeddingJob) -> Submission | BaseException:
        """One create request; its refusal or surprise as a value, so a batch's other answers are kept."""
        try:
            return self.provider.submit(job)
        except Exception as error:
            return error

    def _refused(self, job: EmbeddingJob, refusal: ProviderError) -> str | None:
        """Record a permanent refusal; the set-up problem once it is the same one SETUP_PROBLEM_AFTER times
        in a row with nothing accepted."""
        self.log.warning(f"{job.media_uri}: rejected by {self.provider.provider_name}: {refusal.reason}")
        self.rejected.append(_rejection(job, refusal.reason))
        if refusal.object_specific:
            self.refusals.about_one_object += 1
            return None
        same = self.refusals.same
        same.append(refusal.reason.replace(job.media_uri, "<media>"))
        if not self.submitted and len(same) >= SETUP_PROBLEM_AFTER and len(set(same)) == 1:
            return same[0]
        return None

    def _wait_for_slots(self) -> None:
        """Sleep one poll interval, then free the slots of jobs now finished: those another listing found
        (the sensor's findings), then one cheap listing for the rest, whose findings the sensor hands on."""
        slots, model = self.slots, self.model
        pause = max(0.0, min(self.hold.poll_sec, self.deadline - self.clock.monotonic()))
        self.clock.sleep(pause)
        self.held_sec += pause
        self.polls += 1
        freed = slots.release(_finished_tokens(self.findings.read(model.key).statuses.values()))
        still_open = slots.open_jobs()
        oldest = slots.oldest_submission()
        if still_open and oldest is not None:
            try:
                found = self.provider.newly_finished(still_open, oldest)
            except ListingIncomplete as cut:  # throttled: free what was read, poll again for the rest
                self.log.debug(f"listing cut short ({cut.reason}); {len(cut.found)} finished jobs read")
                found = cut.found
            listed = [s for s in found if s.client_token in still_open]
            self.findings.record(listed, model.key, found_by=f"submission run {self.run_id}")
            freed += slots.release(_finished_tokens(listed))
        self.seen_finishing += freed
        self.ramp.freed(freed)
        if freed:
            self.log.debug(f"{freed} jobs finished: {slots.free(self.clock.monotonic())} slots free")


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


def _recover_intents(
    provider: MarengoProvider,
    ledger: SubmissionLedger,
    model: MarengoModel,
    jobs: pd.DataFrame,
    options: EmbeddingOptions,
    scope: Collection[str] | None,
) -> list[Submission]:
    """The jobs of unclaimed intents (a run stopped between creating a job and recording it) that the
    provider did create; planning then sees them in flight and creates nothing for them. With `scope`,
    `jobs` are those objects' only, and so are the intents reconciled (a later run reconciles the rest)."""
    intents = ledger.unclaimed_intents(model.key, jobs, scope)
    if intents.empty:
        return []
    pending = [
        (
            EmbeddingJob.from_record(row, model, provider.provider_name),
            pd.Timestamp(row["intended_at"]).to_pydatetime(),
        )
        for row in intents.to_dict("records")
    ]
    # The provider's tasks the ledger holds already (read only now: planning reads no invocation ids).
    recorded = ledger.jobs(model.key, scope, ["invocation_id"])["invocation_id"]
    return provider.find_submissions(pending, set(recorded.dropna()))
