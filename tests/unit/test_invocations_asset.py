"""The invocations asset: refusals about one object never stop the others; set-up refusals do; a run
holding the quota polls, backs off and stops on its clock (a fake one here: exact counts, no real waiting)."""

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from assets_defs.inventory.media_inventory import INVENTORY_SCHEMA
from assets_defs.marengo.invocations import InvocationConfig, build_marengo_invocations
from assets_defs.marengo.submission_run import SUBMIT_CONCURRENCY
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.errors import ListingIncomplete, PermanentError, RetryableError, SetupError
from resources.providers.marengo_models import MARENGO_3_0, MarengoModel
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import ProviderName
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.inventory_table import InventoryTable
from resources.tables.invocation_findings import InvocationFindings
from resources.tables.submission_ledger import SubmissionLedger
from tests.fake_clock import FakeClock

BAD = [f"s3://m/a{i}/zero-length.mp4" for i in range(3)]  # first in the listing
GOOD = [f"s3://m/videos/{i}.mp4" for i in range(7)]


class RefusingProvider(MarengoProvider):
    """Accepts every job except those for `refused` URIs, which it refuses the way its flags say."""

    refused: list[str]
    object_specific: bool

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock"

    def submit(self, job: EmbeddingJob) -> Submission:
        if job.media_uri in self.refused:
            reason = f"ValidationException: Unable to read media at {job.media_uri}: no decodable frames"
            raise (PermanentError if self.object_specific else SetupError)(reason)
        return Submission(job, f"arn-{job.client_token}", "s3://out/x", datetime.now(UTC))

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        raise NotImplementedError

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        raise NotImplementedError

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        raise NotImplementedError


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1"))
    rows = [
        {
            "media_uri": u,
            "etag": "e",
            "modality": "video",
            "status": "ok",
            "size_bytes": 10,
            "duration_sec": 0.0,
        }
        for u in BAD + GOOD
    ]
    InventoryTable(lake).replace_all(pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA))
    return lake


def run(
    provider: MarengoProvider,
    lake: Lake,
    config: InvocationConfig | None = None,
    clock: FakeClock | None = None,
) -> tuple[dict, dg.AssetCheckEvaluation]:
    """One run of the asset on a fake clock (any wait is instant and counted)."""
    result = dg.materialize(
        [build_marengo_invocations(clock or FakeClock())],
        partition_key=MARENGO_3_0.key,
        resources={"marengo": MarengoProviders(bedrock=provider), "lake": lake},
        run_config=dg.RunConfig(ops={"marengo__invocations": config or InvocationConfig()}),
    )
    [materialization] = result.asset_materializations_for_node("marengo__invocations")
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "provider_accepts_requests"]
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}, check


def test_three_bad_objects_first_do_not_stop_seven_good_ones(lake: Lake) -> None:
    meta, check = run(RefusingProvider(refused=BAD, object_specific=True), lake)
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (7, 3, 0)
    assert meta["rejected_for_the_object"] == 3
    assert check.passed
    jobs = SubmissionLedger(lake, None).jobs(MARENGO_3_0.key)
    assert sorted(jobs[jobs["status"] == "in_progress"]["media_uri"]) == GOOD
    rejected = jobs[jobs["status"] == "rejected"]
    assert sorted(rejected["media_uri"]) == BAD and rejected["reason"].str.contains("no decodable").all()


def test_three_identical_set_up_refusals_still_stop_the_run(lake: Lake) -> None:
    meta, check = run(RefusingProvider(refused=BAD, object_specific=False), lake)
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (0, 3, 7)
    assert not check.passed


@dataclass
class Account:
    """What a provider with a concurrency quota sees: jobs running, and the most ever running at once."""

    capacity: int
    running: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    most_running: int = 0
    refusals: int = 0
    listings: int = 0


ACCOUNT = Account(0)  # resources are copied when bound: state lives here, reset per test


class QuotaProvider(MarengoProvider):
    """Runs at most ACCOUNT.capacity jobs, refusing more like Bedrock's ServiceQuotaExceededException; each
    listing of finished jobs finds the oldest running one finished."""

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock"

    def submit(self, job: EmbeddingJob) -> Submission:
        if len(ACCOUNT.running) >= ACCOUNT.capacity:
            ACCOUNT.refusals += 1
            raise RetryableError("ServiceQuotaExceededException: too many in flight")
        ACCOUNT.running.append(job.client_token)
        ACCOUNT.most_running = max(ACCOUNT.most_running, len(ACCOUNT.running))
        return Submission(job, f"arn-{job.client_token}", "s3://out/x", datetime.now(UTC))

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        ACCOUNT.listings += 1
        if ACCOUNT.running:
            ACCOUNT.done.append(ACCOUNT.running.pop(0))
        return [
            InvocationStatus(arn, token, "completed", None, None, None, "s3://out/x")
            for token, arn in open_jobs.items()
            if token in ACCOUNT.done
        ]

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        raise NotImplementedError

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        raise NotImplementedError


@pytest.fixture
def account() -> Account:
    global ACCOUNT
    ACCOUNT = Account(capacity=2)
    return ACCOUNT


POLL_SEC = 1.0


def holding(hold_sec: float = 60.0) -> InvocationConfig:
    return InvocationConfig(hold_quota_sec=hold_sec, slot_poll_sec=POLL_SEC)


def test_without_holding_the_run_stops_at_the_configured_quota(lake: Lake, account: Account) -> None:
    clock = FakeClock()
    meta, _ = run(QuotaProvider(async_quotas="marengo-3.0=2"), lake, holding(hold_sec=0), clock)
    assert (meta["submitted"], meta["deferred"], meta["quota"]) == (2, len(BAD + GOOD) - 2, 2)
    assert meta["deferred_reason"] == "2 invocations in flight (the bedrock quota)"
    assert (account.refusals, account.listings) == (0, 0), "the quota is known: nothing refused or listed"
    assert clock.sleeps == [], "not holding: no wait at all"


def test_a_holding_run_submits_as_slots_free_and_never_over_the_quota(lake: Lake, account: Account) -> None:
    clock = FakeClock()
    meta, _ = run(QuotaProvider(async_quotas="marengo-3.0=2"), lake, holding(), clock)
    assert (meta["submitted"], meta["deferred"], meta["deferred_reason"]) == (10, 0, "")
    assert account.most_running == 2 and account.refusals == 0
    # What the UI plots per version is how far it got, not the run's settings (text, never plotted).
    assert (meta["embedded_objects"], meta["coverage_fraction"], meta["progress_in_flight"]) == (0, 0.0, 10)
    assert isinstance(meta["hold_quota_sec"], str) and meta["hold_quota_sec"].endswith(" s")
    # Two at once, then one poll per later job: each listing finds the oldest one finished.
    assert clock.sleeps == [POLL_SEC] * 8 and meta["held_sec"] == 8 * POLL_SEC
    assert meta["jobs_seen_finishing"] == meta["slot_polls"] == account.listings == 8
    # What the run found finished is in the lake for the sensor and the ingest run, which list nothing.
    found = InvocationFindings(lake).read(MARENGO_3_0.key)
    assert sorted(s.client_token or "" for s in found.statuses.values()) == sorted(account.done)
    assert {found.model_of[i] for i in found.statuses} == {MARENGO_3_0.key}


def test_a_quota_refusal_pauses_submissions_until_a_slot_frees(lake: Lake, account: Account) -> None:
    """Configured for 5 but the account runs 2: each refusal waits for a job to finish, then goes on."""
    clock = FakeClock()
    meta, _ = run(QuotaProvider(async_quotas="marengo-3.0=5"), lake, holding(), clock)
    assert (meta["submitted"], meta["deferred"], meta["quota"]) == (10, 0, 5)
    assert account.most_running == 2
    # One request, then the four slots the run believes free at once: one goes in, three are refused.
    # Then after each poll one job goes in and the next is refused: no retry before a slot frees, and only
    # what freed is sent, so one refusal per poll but the last.
    assert account.listings == meta["slot_polls"] == 8 and clock.sleeps == [POLL_SEC] * 8
    assert account.refusals == 3 + 7


def test_a_holding_run_ends_at_its_time_limit_with_the_rest_waiting(lake: Lake, account: Account) -> None:
    account.capacity = 0  # nothing ever runs: the provider refuses every request for being busy
    clock = FakeClock()
    meta, _ = run(QuotaProvider(async_quotas="marengo-3.0=2"), lake, holding(hold_sec=20 * POLL_SEC), clock)
    assert (meta["submitted"], meta["deferred"]) == (0, 10)
    assert meta["deferred_reason"] == "ServiceQuotaExceededException: too many in flight"
    # Refusals back off from slot_poll_sec, doubling: asked at 0, 1, 3, 7 and 15 s; the next would be at 31.
    assert account.refusals == 5, "refusals back off: slot_poll_sec, doubling"
    assert clock.sleeps == [POLL_SEC] * 20 and clock.now == 20 * POLL_SEC, "polls until the time limit"
    assert (meta["slot_polls"], meta["held_sec"]) == (20, 20 * POLL_SEC)


def test_jobs_found_finished_before_the_run_do_not_hold_slots(lake: Lake, account: Account) -> None:
    run(QuotaProvider(async_quotas="marengo-3.0=2"), lake, holding(hold_sec=0))
    ledger = SubmissionLedger(lake, "bedrock").in_progress(MARENGO_3_0.key)
    # The sensor found both finished; no ingest run has recorded them yet.
    statuses = [
        InvocationStatus(arn, token, "completed", None, None, None, "s3://out/x")
        for token, arn in zip(ledger["client_token"], ledger["invocation_id"], strict=True)
    ]
    InvocationFindings(lake).record(statuses, MARENGO_3_0.key, found_by="sensor")
    account.running.clear()
    meta, _ = run(QuotaProvider(async_quotas="marengo-3.0=2"), lake, holding(hold_sec=0))
    assert (meta["in_flight_before"], meta["finished_not_yet_ingested"], meta["submitted"]) == (0, 2, 2)


class ThrottledListings(QuotaProvider):
    """Every other listing is cut short by throttling before it reads anything."""

    def newly_finished(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        ACCOUNT.listings += 1
        if ACCOUNT.listings % 2:
            raise ListingIncomplete("ListAsyncInvokes (Completed): ThrottlingException after retries", [])
        ACCOUNT.listings -= 1  # counted once, by the listing itself
        return self.finished_invocations(open_jobs, submitted_after)


def test_a_holding_run_polls_through_throttled_listings(lake: Lake, account: Account) -> None:
    clock = FakeClock()
    meta, _ = run(ThrottledListings(async_quotas="marengo-3.0=2"), lake, holding(), clock)
    assert (meta["submitted"], meta["deferred"]) == (10, 0), "a throttled listing never fails the run"
    assert account.most_running == 2
    # Each job after the first two waits one throttled poll and one that finds a job finished.
    assert meta["slot_polls"] == 16 and meta["jobs_seen_finishing"] == 8


@dataclass
class Gate:
    """Lets the first request through at once, then holds the next `together` until all of them are in a
    request at the same time: a run that submits one at a time breaks the barrier (after its timeout)."""

    together: int
    seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    barrier: threading.Barrier = field(init=False)

    def __post_init__(self) -> None:
        self.barrier = threading.Barrier(self.together, timeout=30)

    def enter(self) -> None:
        with self.lock:
            self.seen += 1
            mine = self.seen
        if 1 < mine <= 1 + self.together:
            self.barrier.wait()


GATE = Gate(1)  # resources are copied when bound: the gate lives here, set per test


class ConcurrentProvider(RefusingProvider):
    def submit(self, job: EmbeddingJob) -> Submission:
        GATE.enter()
        return super().submit(job)


def test_after_the_first_acceptance_the_free_slots_are_requested_at_once(lake: Lake) -> None:
    global GATE
    GATE = Gate(SUBMIT_CONCURRENCY)
    meta, _ = run(ConcurrentProvider(refused=[], object_specific=True), lake, clock=FakeClock())
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (len(BAD + GOOD), 0, 0)
    assert GATE.seen == len(BAD + GOOD) and not GATE.barrier.broken, "eight requests in flight at once"


def test_a_run_for_named_objects_plans_and_submits_only_them(lake: Lake) -> None:
    named = [GOOD[0], GOOD[1], "s3://m/not-in-the-inventory.mp4"]
    config = InvocationConfig(media_uris=named)
    meta, _ = run(RefusingProvider(refused=[], object_specific=True), lake, config)
    assert (meta["submitted"], meta["planned_objects"], meta["plan_scope"]) == (2, 2, "3 named objects")
    assert "progress_done" not in meta, "a version's progress comes from runs that plan the library"
    jobs = SubmissionLedger(lake, None).jobs(MARENGO_3_0.key)
    assert sorted(jobs["media_uri"]) == [GOOD[0], GOOD[1]]
    meta, _ = run(RefusingProvider(refused=[], object_specific=True), lake)  # then the library
    assert (meta["submitted"], meta["already_handled"], meta["plan_scope"]) == (8, 2, "library")
    assert meta["progress_in_flight"] == len(BAD + GOOD)
