"""What the invocations asset decides to submit, from the inventory and the ledger."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa

from assets_defs.marengo.submission_plan import job_history, plan_submissions
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions
from resources.providers.marengo_models import MARENGO_3_0

OPTIONS = EmbeddingOptions()


def inventory(*rows: tuple[str, str, str, int, float | None]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"media_uri": u, "etag": e, "status": s, "modality": "video", "size_bytes": n, "duration_sec": d}
            for u, e, s, n, d in rows
        ]
    )


def ledger(*rows: tuple[str, str], recorded_at: datetime | None = None) -> pd.DataFrame:
    when = recorded_at or datetime.now(UTC)
    return pd.DataFrame(
        [{"job_key": k, "status": s, "recorded_at": when} for k, s in rows],
        columns=["job_key", "status", "recorded_at"],
    )


def key(uri: str, etag: str) -> str:
    return EmbeddingJob(uri, etag, "video", MARENGO_3_0, OPTIONS).job_key


def test_new_objects_are_due_and_handled_ones_are_skipped() -> None:
    inv = inventory(
        ("s3://m/a.mp4", "e1", "ok", 10, 5.0),
        ("s3://m/b.mp4", "e1", "ok", 10, 5.0),
        ("s3://m/c.mp4", "e1", "ok", 10, 5.0),
        ("s3://m/bad.mp4", "e1", "unreadable", 10, None),
    )
    jobs = ledger((key("s3://m/a.mp4", "e1"), "completed"), (key("s3://m/b.mp4", "e1"), "in_progress"))
    plan = plan_submissions(inv, jobs, MARENGO_3_0, OPTIONS, max_attempts=2)
    assert [j.media_uri for j in plan.due] == ["s3://m/c.mp4"]
    assert plan.already_handled == 2


def test_changed_etag_is_a_new_job() -> None:
    inv = inventory(("s3://m/a.mp4", "e2", "ok", 10, 5.0))
    plan = plan_submissions(inv, ledger((key("s3://m/a.mp4", "e1"), "completed")), MARENGO_3_0, OPTIONS, 2)
    assert [(j.etag, j.attempt) for j in plan.due] == [("e2", 1)]


def test_failures_are_retried_with_a_new_token_until_attempts_run_out() -> None:
    inv = inventory(("s3://m/a.mp4", "e1", "ok", 10, 5.0))
    once = plan_submissions(inv, ledger((key("s3://m/a.mp4", "e1"), "failed")), MARENGO_3_0, OPTIONS, 2)
    assert [j.attempt for j in once.due] == [2]
    assert once.due[0].client_token.endswith("-a2")
    twice = ledger((key("s3://m/a.mp4", "e1"), "failed"), (key("s3://m/a.mp4", "e1"), "failed"))
    plan = plan_submissions(inv, twice, MARENGO_3_0, OPTIONS, 2)
    assert not plan.due and len(plan.out_of_attempts) == 1


def test_objects_over_the_model_limits_are_rejected_not_submitted() -> None:
    inv = inventory(("s3://m/long.mp4", "e1", "ok", 10, 5 * 3600.0))
    plan = plan_submissions(inv, ledger(), MARENGO_3_0, OPTIONS, 2)
    assert not plan.due
    [(job, reason)] = plan.over_limit
    assert job.media_uri == "s3://m/long.mp4" and "exceeds Marengo 3.0's limit" in reason


def test_rejections_are_retried_after_a_day_with_the_same_token() -> None:
    inv = inventory(("s3://m/a.mp4", "e1", "ok", 10, 5.0))
    recent = ledger((key("s3://m/a.mp4", "e1"), "rejected"))
    assert not plan_submissions(inv, recent, MARENGO_3_0, OPTIONS, 2).due
    old = ledger((key("s3://m/a.mp4", "e1"), "rejected"), recorded_at=datetime.now(UTC) - timedelta(days=2))
    [job] = plan_submissions(inv, old, MARENGO_3_0, OPTIONS, 2).due
    assert job.attempt == 1, "never accepted, so the first attempt's token is still unused"


def test_a_lost_job_gets_a_new_token_without_using_up_an_attempt() -> None:
    inv = inventory(("s3://m/a.mp4", "e1", "ok", 10, 5.0))
    k = key("s3://m/a.mp4", "e1")
    [job] = plan_submissions(inv, ledger((k, "lost")), MARENGO_3_0, OPTIONS, max_attempts=1).due
    assert job.attempt == 2, "the lost attempt's token is spent: a replay would answer with the lost job"
    [job] = plan_submissions(inv, ledger((k, "failed"), (k, "lost")), MARENGO_3_0, OPTIONS, 2).due
    assert job.attempt == 3
    lost_thrice = ledger((k, "lost"), (k, "lost"), (k, "lost"))
    plan = plan_submissions(inv, lost_thrice, MARENGO_3_0, OPTIONS, 2, max_lost=3)
    assert not plan.due and len(plan.out_of_attempts) == 1


def test_no_content_is_settled() -> None:
    inv = inventory(("s3://m/a.mp4", "e1", "ok", 10, 5.0))
    plan = plan_submissions(inv, ledger((key("s3://m/a.mp4", "e1"), "no_content")), MARENGO_3_0, OPTIONS, 2)
    assert not plan.due and plan.already_handled == 1


def test_the_history_of_each_object_counts_every_job_of_its_key_and_only_those() -> None:
    a, b, c = (key(f"s3://m/{n}.mp4", "e1") for n in "abc")
    jobs = ledger(
        (a, "failed"), (a, "lost"), (a, "completed"), (b, "failed"), (b, "failed"), (None, "failed")
    )
    history = job_history(jobs, pa.array([c, b, a, b])).to_pydict()  # c has no job; b asked twice
    assert history == {
        "settled": [False, False, True, False],
        "failed": [0, 2, 1, 2],
        "lost": [0, 0, 1, 0],
        "done": [False, False, True, False],
        "running": [False, False, False, False],
    }
    assert job_history(ledger(), pa.array([a], pa.string())).to_pydict()["failed"] == [0]
