"""The invocation sensor: which runs it requests, what it asks the provider, and what its cursor remembers."""

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from assets_defs.marengo.submission_stop import STOP_METADATA_KEY, SubmissionStop
from pipelines import sensors
from pipelines.sensors import (
    FROM_FINDINGS,
    SCOPED_INDEX_MAX_OBJECTS,
    SensorState,
    handed_off_config,
    marengo_invocation_sensor,
)
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.errors import ListingIncomplete
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0, MarengoModel
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import ProviderName
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.invocation_findings import InvocationFindings
from resources.tables.submission_ledger import Outcome, SubmissionLedger

# (how, tokens asked about) per call; resources are copied when bound, so not a field
LISTINGS: list[tuple[str, int]] = []


class FinishedListProvider(MarengoProvider):
    """Reports a fixed set of invocation ids as finished, like a ListAsyncInvokes page would."""

    completed_ids: list[str]
    state: str = "completed"
    message: str | None = None

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock"

    def submit(self, job: EmbeddingJob) -> Submission:
        raise NotImplementedError

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        LISTINGS.append(("thorough", len(open_jobs)))
        return self._finished(open_jobs, submitted_after)

    def newly_finished(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        LISTINGS.append(("cheap", len(open_jobs)))
        return self._finished(open_jobs, submitted_after)

    def _finished(self, open_jobs: Mapping[str, str], submitted_after: datetime) -> list[InvocationStatus]:
        return [
            InvocationStatus(arn, token, self.state, submitted_after, None, self.message, f"s3://out/{token}")  # type: ignore[arg-type]
            for token, arn in open_jobs.items()
            if arn in self.completed_ids
        ]

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        raise NotImplementedError

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        raise NotImplementedError


def submit(ledger: SubmissionLedger, uri: str, model: MarengoModel = MARENGO_3_0) -> Submission:
    job = EmbeddingJob(uri, "etag", "video", model, EmbeddingOptions())
    submission = Submission(job, f"arn:{job.client_token}", "s3://out/x", datetime.now(UTC))
    ledger.record_submissions([submission], {}, "run")
    return submission


def record(ledger: SubmissionLedger, submission: Submission, status: str = "completed") -> None:
    job = submission.job
    outcome = Outcome(
        job.job_key,
        job.client_token,
        job.model.key,
        job.media_uri,
        "etag",
        submission.invocation_id,
        status,  # type: ignore[arg-type]
    )
    ledger.record_outcomes([outcome], "ingest")


@pytest.fixture(autouse=True)
def _clear_listings() -> None:
    LISTINGS.clear()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1"))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


Tick = Callable[[MarengoProvider, str | None], dg.SensorResult | dg.SkipReason]


@pytest.fixture
def tick(instance: dg.DagsterInstance, lake: Lake) -> Tick:
    def tick(provider: MarengoProvider, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
        resources = {"marengo": MarengoProviders(bedrock=provider), "lake": lake}
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            result = marengo_invocation_sensor(context)
        assert isinstance(result, dg.SensorResult | dg.SkipReason)
        return result

    return tick


def requests(result: dg.SensorResult | dg.SkipReason, job: str) -> list[dg.RunRequest]:
    assert isinstance(result, dg.SensorResult)
    return [r for r in result.run_requests or [] if isinstance(r, dg.RunRequest) and r.job_name == job]


def handed_off(result: dg.SensorResult | dg.SkipReason) -> set[str]:
    assert isinstance(result, dg.SensorResult)
    return set(SensorState.load(result.cursor).handed_off)


def test_nothing_in_flight_asks_the_provider_nothing(tick: Tick) -> None:
    result = tick(FinishedListProvider(completed_ids=[]), None)
    assert isinstance(result, dg.SensorResult) and not result.run_requests and LISTINGS == []


def test_finished_invocations_become_one_ingest_run_per_model_once(tick: Tick, lake: Lake) -> None:
    ledger = SubmissionLedger(lake, "bedrock")
    a = submit(ledger, "s3://m/a.mp4")
    b = submit(ledger, "s3://m/b.mp4", MARENGO_2_7)
    still_running = submit(ledger, "s3://m/c.mp4")
    provider = FinishedListProvider(completed_ids=[a.invocation_id, b.invocation_id])

    first = tick(provider, None)
    ingests = requests(first, "ingest_marengo_embeddings")
    assert sorted((r.partition_key, r.tags["mediaembed/finished_invocations"]) for r in ingests) == [
        ("marengo-2.7", "1"),
        ("marengo-3.0", "1"),
    ]
    assert LISTINGS == [("thorough", 3)], "one check for all in-flight tokens, thorough on the first tick"
    # The ingest runs take the sensor's findings and list nothing themselves; their index update audits the
    # objects handed over only.
    handed_uris = {"marengo-3.0": ["s3://m/a.mp4"], "marengo-2.7": ["s3://m/b.mp4"]}
    for request in ingests:
        assert request.run_config == {
            "ops": {
                "marengo__embeddings": {"config": {"list_provider": False}},
                "search__marengo_segments": {
                    "config": {"media_uris": handed_uris[str(request.partition_key)]}
                },
            }
        }
    found = InvocationFindings(lake).read()
    assert {i: found.model_of[i] for i in found.statuses} == {
        a.invocation_id: "marengo-3.0",
        b.invocation_id: "marengo-2.7",
    }
    assert handed_off(first) == {a.invocation_id, b.invocation_id}

    second = tick(provider, first.cursor)
    assert isinstance(second, dg.SensorResult) and not second.run_requests
    assert LISTINGS[1:] == [("cheap", 1)], "later ticks ask cheaply, and only about jobs not found yet"

    # The ingest run records `a`; the cursor forgets it, while the still-running job is never in it.
    record(ledger, a)
    third = tick(provider, second.cursor)
    assert handed_off(third) == {b.invocation_id}
    assert still_running.invocation_id not in (third.cursor or "")


def test_the_thorough_check_runs_now_and_then_and_asks_again_about_unrecorded_jobs(
    tick: Tick,
    lake: Lake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = SubmissionLedger(lake, "bedrock")
    a, b = submit(ledger, "s3://m/a.mp4"), submit(ledger, "s3://m/b.mp4")
    provider = FinishedListProvider(completed_ids=[a.invocation_id])
    first = tick(provider, None)
    # The ingest run read `a` and consumed the finding, but could not record it (its status was unreadable).
    store = InvocationFindings(lake)
    store.consume(store.read().files)
    assert isinstance(first, dg.SensorResult)
    old = SensorState.load(first.cursor)
    old.reconciled_at = old.handed_off[a.invocation_id] = 0.0
    monkeypatch.setattr(sensors, "REHAND_AFTER_SEC", 60)
    LISTINGS.clear()
    again = tick(provider, old.dump())
    assert LISTINGS == [("thorough", 2)], "asked again about `a`, and about `b` as always"
    [ingest] = requests(again, "ingest_marengo_embeddings")
    # A new run key: the daemon runs each run key at most once, so reusing it would drop the retry.
    assert ingest.run_key != requests(first, "ingest_marengo_embeddings")[0].run_key
    assert b.invocation_id not in handed_off(again)


def test_an_unrecorded_handoff_is_handed_off_again_from_the_findings(
    tick: Tick,
    lake: Lake,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a = submit(SubmissionLedger(lake, "bedrock"), "s3://m/a.mp4")
    provider = FinishedListProvider(completed_ids=[a.invocation_id])
    first = tick(provider, None)
    stale = f'{{"{a.invocation_id}": 0.0}}'  # a cursor of the old form: handed off long ago, never recorded
    monkeypatch.setattr(sensors, "REHAND_AFTER_SEC", 60)
    LISTINGS.clear()
    again = tick(provider, stale)
    [ingest] = requests(again, "ingest_marengo_embeddings")
    assert ingest.run_key != requests(first, "ingest_marengo_embeddings")[0].run_key
    assert LISTINGS == [], "its finding is still in the lake: nothing to ask"


@pytest.mark.parametrize(
    ("state", "logged"),
    [
        ("lost", "no longer knows"),
        ("unknown", "cannot ask bedrock about"),
    ],
)
def test_lost_and_unaskable_jobs_are_logged_and_handed_to_an_ingest_run(
    tick: Tick,
    lake: Lake,
    capfd: pytest.CaptureFixture[str],
    state: str,
    logged: str,
) -> None:
    a = submit(SubmissionLedger(lake, "bedrock"), "s3://m/a.mp4")
    provider = FinishedListProvider(
        completed_ids=[a.invocation_id], state=state, message="GetAsyncInvoke: AccessDeniedException: no"
    )
    result = tick(provider, None)
    assert requests(result, "ingest_marengo_embeddings"), "the ingest run records and bounds it"
    warnings = [line for line in capfd.readouterr().err.splitlines() if " - WARNING - " in line]
    assert any(logged in w and a.invocation_id in w and "AccessDeniedException" in w for w in warnings), (
        warnings
    )


# --- completion-driven submission ---------------------------------------------------------------------


def last_submission_run(
    instance: dg.DagsterInstance,
    deferred: int,
    reason: str = "2 invocations in flight (the bedrock quota)",
    stop: SubmissionStop = SubmissionStop.QUOTA,
) -> None:
    """What the last submission run of marengo-3.0 reported, as its materialization would."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            ["marengo", "invocations"],
            partition="marengo-3.0",
            metadata={
                "deferred": deferred,
                "deferred_reason": reason,
                STOP_METADATA_KEY: (stop if deferred else SubmissionStop.NOTHING_DEFERRED).value,
                "planned_at": dg.MetadataValue.timestamp(datetime.now(UTC)),
            },
        )
    )


def test_a_freed_slot_with_objects_waiting_requests_a_holding_submission_run(
    tick: Tick,
    lake: Lake,
    instance: dg.DagsterInstance,
) -> None:
    ledger = SubmissionLedger(lake, "bedrock")
    a, b = submit(ledger, "s3://m/a.mp4"), submit(ledger, "s3://m/b.mp4")
    last_submission_run(instance, deferred=5)
    quota = "marengo-3.0=2"

    full = tick(FinishedListProvider(completed_ids=[], async_quotas=quota), None)
    assert requests(full, "submit_marengo_invocations") == [], "both slots held: nothing to submit into"

    freed = tick(FinishedListProvider(completed_ids=[a.invocation_id], async_quotas=quota), full.cursor)
    assert len(requests(freed, "ingest_marengo_embeddings")) == 1
    [submission] = requests(freed, "submit_marengo_invocations")
    assert submission.partition_key == "marengo-3.0"
    assert submission.tags["mediaembed/free_slots"] == "1"
    assert submission.tags["mediaembed/waiting"].startswith("5 objects wait")
    assert submission.run_config == {"ops": {"marengo__invocations": {"config": {"hold_quota_sec": 840}}}}

    # The same slot window is the same run key, so the daemon starts it once however often it is asked.
    same = tick(FinishedListProvider(completed_ids=[a.invocation_id], async_quotas=quota), freed.cursor)
    assert [r.run_key for r in requests(same, "submit_marengo_invocations")] == [submission.run_key]
    # Another job finishing is another window.
    both = [a.invocation_id, b.invocation_id]
    later = tick(FinishedListProvider(completed_ids=both, async_quotas=quota), same.cursor)
    [next_window] = requests(later, "submit_marengo_invocations")
    assert next_window.run_key != submission.run_key


def test_no_submission_run_while_one_runs_or_when_nothing_waits(
    tick: Tick,
    lake: Lake,
    instance: dg.DagsterInstance,
) -> None:
    a = submit(SubmissionLedger(lake, "bedrock"), "s3://m/a.mp4")
    provider = FinishedListProvider(completed_ids=[a.invocation_id])
    assert requests(tick(provider, None), "submit_marengo_invocations") == [], "never submitted: the schedule"

    last_submission_run(instance, deferred=0, reason="")
    assert requests(tick(provider, None), "submit_marengo_invocations") == [], "nothing waits"

    # The kind decides, not the sentence: a refused set-up and an exceeded budget wait for a person.
    for stop in (SubmissionStop.SETUP_REFUSED, SubmissionStop.OVER_BUDGET):
        last_submission_run(instance, deferred=3, stop=stop)
        assert requests(tick(provider, None), "submit_marengo_invocations") == [], stop

    last_submission_run(instance, deferred=3)
    running = dg.DagsterRun(
        job_name="embed_new_media",
        run_id="0" * 36,
        status=dg.DagsterRunStatus.STARTED,
        tags={"dagster/partition": "marengo-3.0"},
    )
    instance.add_run(running)
    assert requests(tick(provider, None), "submit_marengo_invocations") == [], "one submitter at a time"


def test_failures_recorded_since_the_last_submission_run_are_waiting_work(
    tick: Tick,
    lake: Lake,
    instance: dg.DagsterInstance,
) -> None:
    a = submit(SubmissionLedger(lake, "bedrock"), "s3://m/a.mp4")
    last_submission_run(instance, deferred=0, reason="")
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            ["marengo", "embeddings"], partition="marengo-3.0", metadata={"objects_failed": 1, "jobs_lost": 1}
        )
    )
    result = tick(FinishedListProvider(completed_ids=[a.invocation_id]), None)
    [submission] = requests(result, "submit_marengo_invocations")
    waiting = submission.tags["mediaembed/waiting"]
    assert waiting == "2 jobs failed or lost since the last submission run planned"


class ThrottledProvider(FinishedListProvider):
    """Lists like its parent, then is cut short: raises ListingIncomplete holding what it read."""

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        LISTINGS.append(("thorough", len(open_jobs)))
        found = self._finished(open_jobs, submitted_after)
        raise ListingIncomplete("ListAsyncInvokes (Completed): ThrottlingException after retries", found)


def test_a_throttled_listing_hands_on_what_it_read_and_the_next_tick_reconciles(
    tick: Tick, lake: Lake
) -> None:
    ledger = SubmissionLedger(lake, "bedrock")
    a, b = submit(ledger, "s3://m/a.mp4"), submit(ledger, "s3://m/b.mp4")
    first = tick(ThrottledProvider(completed_ids=[a.invocation_id]), None)  # never raises
    [ingest] = requests(first, "ingest_marengo_embeddings")
    assert ingest.tags["mediaembed/finished_invocations"] == "1"
    assert handed_off(first) == {a.invocation_id}
    assert SensorState.load(first.cursor).reconciled_at is None, "the thorough check is owed: next tick"
    LISTINGS.clear()
    tick(FinishedListProvider(completed_ids=[b.invocation_id]), first.cursor)
    assert LISTINGS == [("thorough", 1)], "asked about the rest, thoroughly"


def indexed_by_a_run(instance: dg.DagsterInstance, model_key: str = "marengo-3.0") -> None:
    """A real run materializing the index partition (its start time is what the sensor compares)."""

    @dg.asset(key=["search", "marengo_segments"], partitions_def=dg.StaticPartitionsDefinition([model_key]))
    def index() -> None: ...

    assert dg.materialize([index], instance=instance, partition_key=model_key).success


def inventory_removed(instance: dg.DagsterInstance, removed: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(["media", "inventory"], metadata={"objects_removed": removed})
    )


def test_objects_gone_from_the_bucket_leave_search_at_the_next_tick(
    tick: Tick, instance: dg.DagsterInstance
) -> None:
    provider = FinishedListProvider(completed_ids=[])
    indexed_by_a_run(instance)
    inventory_removed(instance, 0)
    assert requests(tick(provider, None), "ingest_marengo_embeddings") == [], "nothing removed, no run"
    inventory_removed(instance, 3)
    first = tick(provider, None)
    [removal] = requests(first, "ingest_marengo_embeddings")
    assert (removal.partition_key, removal.tags["mediaembed/objects_removed"]) == ("marengo-3.0", "3")
    assert removal.run_config == {"ops": {"marengo__embeddings": {"config": {"list_provider": False}}}}
    [again] = requests(tick(provider, first.cursor), "ingest_marengo_embeddings")
    assert again.run_key == removal.run_key, "one run per inventory: the daemon dedupes the run key"
    indexed_by_a_run(instance)  # that run read the new inventory
    assert requests(tick(provider, first.cursor), "ingest_marengo_embeddings") == []


def test_a_version_never_indexed_gets_no_removal_run(tick: Tick, instance: dg.DagsterInstance) -> None:
    inventory_removed(instance, 3)
    assert requests(tick(FinishedListProvider(completed_ids=[]), None), "ingest_marengo_embeddings") == []


def test_a_hand_off_past_the_scoped_limit_audits_the_whole_index() -> None:
    uris = [f"s3://m/{i}.mp4" for i in range(SCOPED_INDEX_MAX_OBJECTS + 1)]
    assert handed_off_config(uris) == FROM_FINDINGS
    config = handed_off_config(uris[:-1])
    assert config["ops"]["search__marengo_segments"]["config"]["media_uris"] == uris[:-1]
