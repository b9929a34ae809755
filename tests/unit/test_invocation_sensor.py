"""The invocation sensor: which runs it requests, and what its cursor remembers."""

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from pipelines import sensors
from pipelines.sensors import marengo_invocation_sensor
from resources.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.lake import Lake
from resources.marengo_models import MARENGO_2_7, MARENGO_3_0, MarengoModel
from resources.marengo_provider import MarengoProvider
from resources.s3_storage import S3Storage
from resources.submission_ledger import Outcome, SubmissionLedger

LISTINGS: list[int] = []  # tokens asked about per listing; resources are copied when bound, so not a field


class FinishedListProvider(MarengoProvider):
    """Reports a fixed set of invocation ids as completed, like a ListAsyncInvokes page would."""

    completed_ids: list[str]
    state: str = "completed"
    message: str | None = None

    @property
    def provider_name(self) -> str:
        return "fake"

    def submit(self, job: EmbeddingJob) -> Submission:
        raise NotImplementedError

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        LISTINGS.append(len(open_jobs))
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


def tick(provider: MarengoProvider, lake: Lake, cursor: str | None) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(cursor=cursor, resources={"marengo": provider, "lake": lake}) as context:
        result = marengo_invocation_sensor(context)
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    return result


@pytest.fixture(autouse=True)
def _clear_listings() -> None:
    LISTINGS.clear()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1"))


def test_nothing_in_flight_skips_without_calling_the_provider(lake: Lake) -> None:
    provider = FinishedListProvider(completed_ids=[])
    result = tick(provider, lake, None)
    assert isinstance(result, dg.SkipReason) and LISTINGS == []


def test_finished_invocations_become_one_run_per_model_once(lake: Lake) -> None:
    ledger = SubmissionLedger(lake, "fake")
    a = submit(ledger, "s3://m/a.mp4")
    b = submit(ledger, "s3://m/b.mp4", MARENGO_2_7)
    still_running = submit(ledger, "s3://m/c.mp4")
    provider = FinishedListProvider(completed_ids=[a.invocation_id, b.invocation_id])

    first = tick(provider, lake, None)
    assert isinstance(first, dg.SensorResult) and first.run_requests
    assert sorted(
        (r.partition_key, r.tags["mediaembed/finished_invocations"]) for r in first.run_requests
    ) == [
        ("marengo-2.7", "1"),
        ("marengo-3.0", "1"),
    ]
    assert LISTINGS == [3], "one listing for all in-flight tokens"
    assert set(json.loads(first.cursor or "{}")) == {a.invocation_id, b.invocation_id}

    second = tick(provider, lake, first.cursor)
    assert isinstance(second, dg.SensorResult) and not second.run_requests

    # The ingest run records `a`; the cursor forgets it, while the still-running job is never in it.
    ledger.record_outcomes(
        [
            Outcome(
                a.job.job_key,
                a.job.client_token,
                "marengo-3.0",
                a.job.media_uri,
                "etag",
                a.invocation_id,
                "completed",
            )
        ],
        "ingest",
    )
    third = tick(provider, lake, second.cursor)
    assert isinstance(third, dg.SensorResult)
    assert set(json.loads(third.cursor or "{}")) == {b.invocation_id}
    assert still_running.invocation_id not in (third.cursor or "")


def test_unrecorded_handoff_is_requested_again_after_a_while(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = SubmissionLedger(lake, "fake")
    a = submit(ledger, "s3://m/a.mp4")
    provider = FinishedListProvider(completed_ids=[a.invocation_id])
    first = tick(provider, lake, None)
    assert isinstance(first, dg.SensorResult) and first.run_requests
    stale = json.dumps({a.invocation_id: 0.0})  # handed off long ago, its run never recorded it
    monkeypatch.setattr(sensors, "REHAND_AFTER_SEC", 60)
    again = tick(provider, lake, stale)
    assert isinstance(again, dg.SensorResult) and again.run_requests
    # A new run key: the daemon runs each run key at most once, so reusing it would drop the retry.
    assert again.run_requests[0].run_key != first.run_requests[0].run_key


@pytest.mark.parametrize(
    ("state", "logged"),
    [
        ("lost", "no longer knows"),
        ("unknown", "cannot ask fake about"),
    ],
)
def test_lost_and_unaskable_jobs_are_logged_and_handed_to_an_ingest_run(
    lake: Lake, capfd: pytest.CaptureFixture[str], state: str, logged: str
) -> None:
    a = submit(SubmissionLedger(lake, "fake"), "s3://m/a.mp4")
    provider = FinishedListProvider(
        completed_ids=[a.invocation_id], state=state, message="GetAsyncInvoke: AccessDeniedException: no"
    )
    result = tick(provider, lake, None)
    assert isinstance(result, dg.SensorResult) and result.run_requests, "the ingest run records and bounds it"
    warnings = [line for line in capfd.readouterr().err.splitlines() if " - WARNING - " in line]
    assert any(logged in w and a.invocation_id in w and "AccessDeniedException" in w for w in warnings), (
        warnings
    )
