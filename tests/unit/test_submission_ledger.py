"""The ledger derives each job's state from append-only events."""

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from resources.embedding_jobs import EmbeddingJob, EmbeddingOptions, Submission
from resources.lake import Lake
from resources.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.s3_storage import S3Storage
from resources.submission_ledger import Outcome, SubmissionLedger


def submission(uri: str, model=MARENGO_3_0) -> Submission:
    job = EmbeddingJob(uri, "etag", "video", model, EmbeddingOptions())
    return Submission(job, f"arn:{uri}", f"s3://out/{uri[-5:]}", datetime.now(UTC))


def outcome(s: Submission, status: str, reason: str | None = None) -> Outcome:
    j = s.job
    return Outcome(
        j.job_key, j.client_token, j.model.key, j.media_uri, j.etag, s.invocation_id, status, reason
    )  # type: ignore[arg-type]


def test_job_states_follow_the_latest_event(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    a, b, c = (submission(f"s3://m/{n}.mp4") for n in "abc")
    other_model = submission("s3://m/a.mp4", MARENGO_2_7)
    ledger.record_submissions([a, b], {"s3://m/a.mp4": 5.0}, "run-1")
    ledger.record_submissions([c, other_model], {}, "run-2")
    ledger.record_outcomes([outcome(a, "completed"), outcome(b, "failed", "bad codec")], "run-3")
    rejected_job = EmbeddingJob("s3://m/huge.mp4", "e", "video", MARENGO_3_0, EmbeddingOptions())
    ledger.record_outcomes(
        [
            Outcome(
                rejected_job.job_key,
                rejected_job.client_token,
                "marengo-3.0",
                rejected_job.media_uri,
                "e",
                None,
                "rejected",
                "too big",
            )
        ],
        "run-3",
    )

    jobs = ledger.jobs("marengo-3.0").set_index("media_uri")
    assert jobs.loc["s3://m/a.mp4", "status"] == "completed"
    assert jobs.loc["s3://m/a.mp4", "media_seconds"] == 5.0
    assert jobs.loc["s3://m/b.mp4", "reason"] == "bad codec"
    assert jobs.loc["s3://m/c.mp4", "status"] == "in_progress"
    assert jobs.loc["s3://m/huge.mp4", "status"] == "rejected"
    in_flight = ledger.in_progress()
    assert sorted(zip(in_flight["media_uri"], in_flight["model_key"], strict=True)) == [
        ("s3://m/a.mp4", "marengo-2.7"),
        ("s3://m/c.mp4", "marengo-3.0"),
    ]
    assert set(ledger.in_progress("marengo-2.7")["client_token"]) == {other_model.job.client_token}
    assert len(list(tmp_path.glob("ledger/*/*.parquet"))) == 4
    assert not list(tmp_path.glob("ledger/*/*.tmp"))


def test_empty_ledger_has_no_jobs(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    assert ledger.jobs().empty and ledger.in_progress().empty


def test_compaction_keeps_every_event_and_reads_few_files(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    subs = [submission(f"s3://m/{i}.mp4") for i in range(40)]
    for s in subs:
        ledger.record_submissions([s], {}, "run")
    ledger.record_outcomes([outcome(s, "completed") for s in subs[:10]], "ingest")
    before = ledger.jobs().sort_values("client_token").reset_index(drop=True)

    assert ledger.compact(min_files=32) == 40
    assert len(list(tmp_path.glob("ledger/submissions/*.parquet"))) == 1
    after = ledger.jobs().sort_values("client_token").reset_index(drop=True)
    assert after[["client_token", "status"]].equals(before[["client_token", "status"]])
    assert ledger.compact(min_files=32) == 0, "nothing left to fold"


def test_a_rejected_token_accepted_later_is_in_progress(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    retried = submission("s3://m/a.mp4")
    job = retried.job
    rejection = Outcome(
        job.job_key, job.client_token, "marengo-3.0", job.media_uri, "etag", None, "rejected", "no access"
    )
    ledger.record_outcomes([rejection], "run-1")
    assert list(ledger.jobs()["status"]) == ["rejected"]
    ledger.record_submissions([retried], {}, "run-2")  # a day later, with the same never-used token
    assert list(ledger.in_progress()["client_token"]) == [job.client_token]


def test_unreadable_notes_keep_a_job_open_and_are_counted_once_each(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    a, b = submission("s3://m/a.mp4"), submission("s3://m/b.mp4")
    ledger.record_submissions([a, b], {}, "run-1")
    ledger.record_outcomes([outcome(a, "unreadable", "SlowDown")], "ingest-1")
    ledger.record_outcomes([outcome(a, "unreadable", "AccessDenied")], "ingest-2")
    events = ledger.outcomes()
    ledger._write("outcomes", pa.Table.from_pandas(events, preserve_index=False))  # a compaction's duplicate
    jobs = ledger.jobs().set_index("media_uri")
    assert list(jobs["status"]) == ["in_progress", "in_progress"]
    assert jobs.loc["s3://m/a.mp4", "unreadable_reads"] == 2
    assert jobs.loc["s3://m/a.mp4", "unreadable_reason"] == "AccessDenied"
    assert jobs.loc["s3://m/a.mp4", "first_unreadable_at"] == events["recorded_at"].min()
    assert jobs.loc["s3://m/b.mp4", "unreadable_reads"] == 0
    ledger.record_outcomes([outcome(a, "failed", "not readable after 3 failed reads")], "ingest-3")
    ledger.record_outcomes([outcome(a, "unreadable", "late note of a concurrent run")], "ingest-4")
    assert ledger.jobs().set_index("media_uri").loc["s3://m/a.mp4", "status"] == "failed"
