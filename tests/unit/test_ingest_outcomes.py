"""Every finished job ends: the ingest asset's decisions, with a typed fake provider and a real ledger."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from pydantic import Field

from assets_defs.inventory.media_inventory import INVENTORY_SCHEMA, read_inventory
from assets_defs.marengo.embeddings import IngestConfig, build_ingest, materialize_result
from assets_defs.marengo.ingest_run import ReadLimits, give_up_reading
from assets_defs.marengo.submission_plan import plan_submissions
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.errors import MarengoOutputError, OutputUnavailable
from resources.providers.marengo_models import MARENGO_3_0, MarengoModel
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import ProviderName
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.inventory_table import InventoryTable
from resources.tables.segment_schema import media_id
from resources.tables.submission_ledger import SubmissionLedger

GOOD, OTHER = "s3://m/good.mp4", "s3://m/other.mp4"
NOWHERE = "http://127.0.0.1:9"


class ScriptedProvider(MarengoProvider):
    """Says every open job is in `state`; reading a job's output does what `reads` says for its URI."""

    state: str = "completed"
    failure_message: str | None = None
    reads: dict[str, str] = Field(
        default_factory=dict
    )  # media URI -> ok | empty | unavailable | unusable | surprise

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock"

    def submit(self, job: EmbeddingJob) -> Submission:
        raise NotImplementedError

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        return [
            InvocationStatus(arn, token, self.state, None, None, self.failure_message, f"s3://out/{arn}")  # type: ignore[arg-type]
            for token, arn in open_jobs.items()
        ]

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        kind = self.reads.get(job.media_uri, "ok")
        if kind == "unavailable":
            raise OutputUnavailable(f"cannot read {invocation.output_uri}/output.json: SlowDown")
        if kind == "unusable":
            raise MarengoOutputError("segment 0 has startSec 'zero', not a non-negative number")
        if kind == "surprise":
            raise RuntimeError("connection pool is full")
        if kind == "empty":
            return []
        return [SegmentEmbedding("visual", "clip", 0.0, 4.0, [1.0] + [0.0] * (MARENGO_3_0.dimension - 1))]

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        raise NotImplementedError


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    # The ingest reads each committed object for its posters: on a port nothing listens on, never AWS
    # (these objects do not exist: each is one "no thumbnail" line, and the ingest goes on).
    storage = S3Storage(
        region_name="us-east-1",
        endpoint_url=NOWHERE,
        max_attempts=1,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    lake = Lake(root=str(tmp_path), storage=storage)
    rows = [
        {
            "media_uri": uri,
            "etag": "e1",
            "modality": "video",
            "status": "ok",
            "size_bytes": 10,
            "duration_sec": 9.0,
        }
        for uri in (GOOD, OTHER)
    ]
    InventoryTable(lake).replace_all(pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA))
    return lake


def submit(lake: Lake, *uris: str, attempt: int = 1) -> None:
    submissions = []
    for uri in uris:
        job = EmbeddingJob(uri, "e1", "video", MARENGO_3_0, EmbeddingOptions(), attempt)
        submissions.append(Submission(job, f"arn-{job.client_token}", "s3://out/x", datetime.now(UTC)))
    SubmissionLedger(lake, "bedrock").record_submissions(submissions, {u: 9.0 for u in uris}, "submit-run")


def ingest(provider: MarengoProvider, lake: Lake, **config: Any) -> dg.MaterializeResult:
    """What the asset reports for one ingest run with `config` (its ingest, run directly)."""
    settings = IngestConfig(**config)
    report = build_ingest(settings, lake, MarengoProviders(bedrock=provider), MARENGO_3_0, "ingest-run").run()
    return materialize_result(report, settings)


def check(result: dg.MaterializeResult) -> dg.AssetCheckResult:
    [found] = [c for c in result.check_results or [] if c.check_name == "finished_jobs_end"]
    return found


def job_row(lake: Lake, uri: str) -> dict[str, Any]:
    jobs = SubmissionLedger(lake, None).jobs(MARENGO_3_0.key)
    [row] = jobs[jobs["media_uri"] == uri].sort_values("attempt").tail(1).to_dict("records")
    return row


def due_attempts(lake: Lake, max_attempts: int = 2, max_lost: int = 3) -> list[tuple[str, int]]:
    """What the next submission run would start, among the objects submitted so far."""
    jobs = SubmissionLedger(lake, None).jobs(MARENGO_3_0.key)
    plan = plan_submissions(
        read_inventory(lake), jobs, MARENGO_3_0, EmbeddingOptions(), max_attempts, max_lost
    )
    return sorted((j.media_uri, j.attempt) for j in plan.due if j.media_uri in set(jobs["media_uri"]))


def test_unreadable_output_is_read_again_then_ends_failed_past_the_read_limit(lake: Lake) -> None:
    submit(lake, GOOD, OTHER)
    provider = ScriptedProvider(reads={OTHER: "unavailable"})
    first = ingest(provider, lake, max_unreadable_reads=3)
    assert first.metadata and first.metadata["outputs_unreadable"] == 1
    assert not check(first).passed and check(first).severity == dg.AssetCheckSeverity.WARN
    row = job_row(lake, OTHER)
    assert (row["status"], row["unreadable_reads"]) == ("in_progress", 1)
    first_seen = row["first_unreadable_at"]

    ingest(provider, lake, max_unreadable_reads=3)
    row = job_row(lake, OTHER)
    assert (row["status"], row["unreadable_reads"]) == ("in_progress", 2), "counted across runs"
    assert row["first_unreadable_at"] == first_seen
    assert due_attempts(lake) == [], "an open job is never resubmitted"

    third = ingest(provider, lake, max_unreadable_reads=3)
    row = job_row(lake, OTHER)
    assert row["status"] == "failed"
    assert row["reason"].startswith("not readable after 3 failed reads over ")
    assert row["reason"].endswith("SlowDown")
    result = check(third)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR
    assert OTHER in str(result.metadata["ended_past_limits"].value)
    assert due_attempts(lake) == [(OTHER, 2)], "failed: retried once with a new token"
    assert SubmissionLedger(lake, None).in_progress().empty


def test_unreadable_output_ends_past_the_age_limit(lake: Lake) -> None:
    submit(lake, GOOD)
    provider = ScriptedProvider(reads={GOOD: "unavailable"})
    config = {"max_unreadable_reads": 100, "unreadable_age_limit_hours": 1e-9}
    assert check(ingest(provider, lake, **config)).severity == dg.AssetCheckSeverity.WARN
    assert job_row(lake, GOOD)["status"] == "in_progress"
    ended = ingest(provider, lake, **config)
    assert job_row(lake, GOOD)["status"] == "failed"
    assert "age limit" in job_row(lake, GOOD)["reason"]
    assert check(ended).severity == dg.AssetCheckSeverity.ERROR


def test_give_up_reading_bounds_reads_and_age() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    limits = ReadLimits(max_reads=4, age_limit=timedelta(hours=6))
    assert give_up_reading(0, None, now, limits) is None
    assert give_up_reading(2, now - timedelta(hours=5), now, limits) is None
    assert give_up_reading(3, now - timedelta(minutes=40), now, limits) == "4 failed reads over 40 min"
    assert give_up_reading(1, now - timedelta(hours=7), now, limits) == (
        "2 failed reads over 7.0 h (age limit 6.0 h)"
    )


@pytest.mark.parametrize("kind", ["unusable", "surprise"])
def test_unusable_output_fails_at_once_and_a_surprise_is_bounded(lake: Lake, kind: str) -> None:
    submit(lake, GOOD)
    ingest(ScriptedProvider(reads={GOOD: kind}), lake, max_unreadable_reads=2)
    row = job_row(lake, GOOD)
    if kind == "unusable":
        assert (row["status"], row["reason"]) == (
            "failed",
            "unusable output: segment 0 has startSec 'zero', not a non-negative number",
        )
        return
    assert row["status"] == "in_progress" and "connection pool is full" in row["unreadable_reason"]
    ingest(ScriptedProvider(reads={GOOD: kind}), lake, max_unreadable_reads=2)
    assert job_row(lake, GOOD)["status"] == "failed"


def test_a_status_that_cannot_be_read_is_bounded_too(lake: Lake) -> None:
    submit(lake, GOOD)
    provider = ScriptedProvider(state="unknown", failure_message="GetAsyncInvoke: AccessDeniedException: no")
    ingest(provider, lake, max_unreadable_reads=2)
    row = job_row(lake, GOOD)
    assert (row["status"], row["unreadable_reads"]) == ("in_progress", 1)
    ended = ingest(provider, lake, max_unreadable_reads=2)
    row = job_row(lake, GOOD)
    assert row["status"] == "failed" and "AccessDeniedException" in row["reason"]
    assert not check(ended).passed


def test_a_lost_job_is_resubmitted_without_using_up_an_attempt(lake: Lake) -> None:
    submit(lake, GOOD)
    message = "GetAsyncInvoke: ValidationException: The invocation was not found."
    result = ingest(ScriptedProvider(state="lost", failure_message=message), lake)
    assert result.metadata and result.metadata["jobs_lost"] == 1
    row = job_row(lake, GOOD)
    assert row["status"] == "lost" and "no longer knows" in row["reason"] and "attempt 2" in row["reason"]
    assert check(result).passed
    assert due_attempts(lake, max_attempts=1) == [(GOOD, 2)], "lost is not a billed failure"

    submit(lake, GOOD, attempt=2)
    ingest(ScriptedProvider(state="lost", failure_message=message), lake)
    submit(lake, GOOD, attempt=3)
    ingest(ScriptedProvider(state="lost", failure_message=message), lake)
    assert due_attempts(lake) == [], "a provider that keeps losing one object's jobs: it stops"


def test_zero_segments_is_a_recorded_no_content_outcome(lake: Lake, tmp_path: Path) -> None:
    submit(lake, GOOD, OTHER)
    result = ingest(ScriptedProvider(reads={OTHER: "empty"}), lake)
    assert result.metadata and result.metadata["objects_without_content"] == 1
    assert result.metadata["objects_embedded"] == 1
    row = job_row(lake, OTHER)
    assert (row["status"], row["segments"]) == ("no_content", 0) and "no segments" in row["reason"]
    table = EmbeddingTable(lake, MARENGO_3_0)
    assert row["table_path"] == table.relative
    assert table.read([media_id(OTHER)]).num_rows == 0, "no rows: it replaces any older ones"
    assert table.read([media_id(GOOD)]).num_rows > 0
    assert due_attempts(lake) == [], "settled: not resubmitted"
    assert ingest(ScriptedProvider(), lake).metadata["invocations_finished"] == 0  # type: ignore[index]


def test_a_job_running_past_the_age_limit_is_named_and_never_resubmitted(lake: Lake) -> None:
    stale = EmbeddingJob(GOOD, "e1", "video", MARENGO_3_0, EmbeddingOptions())
    long_ago = datetime.now(UTC) - timedelta(hours=30)
    ledger = SubmissionLedger(lake, "bedrock")
    ledger.record_submissions([Submission(stale, "arn-stale", "s3://out/x", long_ago)], {GOOD: 9.0}, "old")
    submit(lake, OTHER)
    result = ingest(ScriptedProvider(state="in_progress"), lake)
    [overdue] = [c for c in result.check_results or [] if c.check_name == "no_job_running_too_long"]
    assert not overdue.passed and overdue.severity == dg.AssetCheckSeverity.ERROR
    named = overdue.metadata["running_past_limit"].value
    assert "arn-stale" in named and GOOD in named and OTHER not in named, "only the one past 24 h"
    assert overdue.metadata["still_running"].value == 2
    assert due_attempts(lake) == [], "both still count as running: nothing is billed again"
    relaxed = ingest(ScriptedProvider(state="in_progress"), lake, running_age_limit_hours=48)
    assert [c.passed for c in relaxed.check_results or [] if c.check_name == "no_job_running_too_long"] == [
        True
    ]


def test_an_ingest_run_reports_the_versions_progress_only_when_none_is_recent() -> None:
    """The progress is a plan over the whole library: ingest runs sample it, they do not each pay it."""
    from assets_defs import keys
    from assets_defs.marengo.embeddings import progress_is_due

    def ingested(instance: dg.DagsterInstance, metadata: dict[str, Any]) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(keys.MARENGO_EMBEDDINGS, partition="marengo-3.0", metadata=metadata)
        )

    with dg.instance_for_test() as instance:
        assert progress_is_due(instance, "marengo-3.0", 600), "never reported"
        ingested(instance, {"objects_embedded": 3, "progress_done": 3})
        ingested(instance, {"objects_embedded": 1})  # a run that did not report it
        assert not progress_is_due(instance, "marengo-3.0", 600), "reported moments ago"
        assert progress_is_due(instance, "marengo-3.0", 0), "0: every run"
        assert progress_is_due(instance, "marengo-2.7", 600), "another version's report says nothing"


def test_a_large_ingest_commits_a_chunk_at_a_time_and_a_kill_between_chunks_loses_nothing(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One object a chunk: each chunk is committed, then recorded, before the next is read. A run killed
    after the first chunk's outcomes leaves the second job open; the next run ingests it, once."""
    monkeypatch.setattr("assets_defs.marengo.ingest_run.INGEST_CHUNK_JOBS", 1)
    submit(lake, GOOD, OTHER)
    table = EmbeddingTable(lake, MARENGO_3_0)
    table.ensure()
    before = table.version()
    recorded = SubmissionLedger.record_outcomes
    calls: list[int] = []

    def killed_at_the_second_chunk(self: SubmissionLedger, outcomes: Any, run_id: str) -> None:
        calls.append(len(list(outcomes)))
        if len(calls) == 2:
            raise KeyboardInterrupt("the run worker was killed")
        recorded(self, outcomes, run_id)

    monkeypatch.setattr(SubmissionLedger, "record_outcomes", killed_at_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        ingest(ScriptedProvider(), lake)
    assert table.version() == (before or 0) + 2, "a commit per chunk"
    open_now = SubmissionLedger(lake, None).in_progress(MARENGO_3_0.key)
    assert len(open_now) == 1, "the first chunk's outcome is recorded, the second's is not"
    monkeypatch.setattr(SubmissionLedger, "record_outcomes", recorded)
    result = ingest(ScriptedProvider(), lake)
    assert result.metadata and result.metadata["objects_embedded"] == 1  # the one left open, once
    assert {job_row(lake, u)["status"] for u in (GOOD, OTHER)} == {"completed"}
    assert table.read([media_id(GOOD), media_id(OTHER)]).num_rows == 2, "each object's rows once"
    assert due_attempts(lake) == [], "nothing resubmitted: no job paid for twice"
