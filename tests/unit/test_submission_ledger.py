"""The ledger derives each job's state from append-only events."""

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import PrivateAttr

from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, Submission
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.submission_ledger import (
    FOLDED_KEY,
    Outcome,
    SubmissionLedger,
    _latest_per_token,
    derive_jobs,
)


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


def test_compaction_keeps_every_event_and_leaves_only_open_work_live(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    subs = [submission(f"s3://m/{i}.mp4") for i in range(40)]
    for s in subs:
        ledger.record_submissions([s], {}, "run")
    ledger.record_outcomes([outcome(s, "completed") for s in subs[:10]], "ingest")
    before = ledger.jobs().sort_values("client_token").reset_index(drop=True)
    history = (len(ledger.submissions()), len(ledger.outcomes()))

    assert ledger.compact(min_files=32) == 41
    assert len(list(tmp_path.glob("ledger/submissions/*.parquet"))) == 1
    assert not list(tmp_path.glob("ledger/outcomes/*.parquet")), "no open job has an outcome"
    assert len(ledger.live_jobs()) == 30, "the live events are the open jobs' alone"
    assert len(list(tmp_path.glob("ledger/closed/*.parquet"))) == 1
    assert (len(ledger.submissions()), len(ledger.outcomes())) == history, "the archive keeps every event"
    after = ledger.jobs().sort_values("client_token").reset_index(drop=True)
    columns = ["client_token", "status", "invocation_id", "media_uri", "attempt", "recorded_at"]
    assert after[columns].equals(before[columns])
    assert set(ledger.in_progress()["client_token"]) == {s.job.client_token for s in subs[10:]}
    assert ledger.compact(min_files=32) == 0, "nothing left to fold"


# Outcomes of an accepted job; a rejection only ever comes before acceptance.
STATUSES = ["completed", "failed", "lost", "no_content", "superseded", "unreadable"]


def comparable(jobs: pd.DataFrame) -> pd.DataFrame:
    """What must agree: every job's status and ids, and an open job's notes (an ended job's reason may be
    the first of its repeats rather than the last)."""
    jobs = jobs.copy()
    ended = jobs["status"] != "in_progress"
    jobs.loc[ended, ["reason", "unreadable_reads"]] = None
    jobs["attempt"] = pd.to_numeric(jobs["attempt"]).astype("Float64")  # NaN for rejections makes it float
    jobs["unreadable_reads"] = pd.to_numeric(jobs["unreadable_reads"]).astype("Float64")
    columns = ["client_token", "status", "reason", "attempt", "unreadable_reads", "invocation_id"]
    return jobs[columns].sort_values("client_token").reset_index(drop=True).astype(str)


@pytest.mark.parametrize("seed", range(8))
def test_state_after_random_events_and_compactions_equals_the_full_history(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    subs = [submission(f"s3://m/{i}.mp4", rng.choice([MARENGO_3_0, MARENGO_2_7])) for i in range(30)]
    submitted: list[Submission] = []
    ended: dict[str, str] = {}  # client token -> its final status
    saved: dict[Path, bytes] = {}  # a closed state as it once was
    for step in range(120):
        s = rng.choice(subs)
        token = s.job.client_token
        if s not in submitted:
            if rng.random() < 0.25:  # refused before it was ever accepted (a day later it may be)
                ledger.record_outcomes([outcome(s, "rejected", "quota")], f"run-{step}")
            else:
                ledger.record_submissions([s], {}, f"run-{step}")
                submitted.append(s)
        elif token not in ended and rng.random() < 0.1:  # an open job's flush recorded twice (retried)
            ledger.record_submissions([s], {}, f"run-{step}")
        elif token in ended:  # what concurrent runs add to an ended job: a late note, or the same end again
            status = rng.choice(["unreadable", ended[token]])
            ledger.record_outcomes([outcome(s, status, f"late {step}")], f"run-{step}")  # type: ignore[arg-type]
        else:
            status = rng.choice(STATUSES)
            ledger.record_outcomes([outcome(s, status, f"reason {step}")], f"run-{step}")  # type: ignore[arg-type]
            if status != "unreadable":
                ended[token] = status
        if rng.random() < 0.1:
            ledger.compact(min_files=rng.choice([1, 4, 8]))
        if rng.random() < 0.05:  # a compaction killed after writing its files, before deleting its inputs
            killed_compaction(tmp_path)
        damage = rng.random()
        if damage < 0.03:  # killed with its events archived, its closed file not written
            killed_compaction(tmp_path, at="ledger/closed/", must_die=False)
        elif damage < 0.05:  # killed between its two archive files
            killed_compaction(tmp_path, at="ledger/archive/outcomes/", must_die=False)
        elif damage < 0.07:  # the closed state deleted
            for path in tmp_path.glob("ledger/closed/*.parquet"):
                path.unlink()
        elif damage < 0.09:
            saved = {p: p.read_bytes() for p in tmp_path.glob("ledger/closed/*.parquet")}
        elif damage < 0.11:  # an older closed state restored over the current one
            for path in tmp_path.glob("ledger/closed/*.parquet"):
                path.unlink()
            for path, content in saved.items():
                path.write_bytes(content)
    full = derive_jobs(ledger.submissions(), ledger.outcomes())
    assert comparable(ledger.jobs()).equals(comparable(full))
    assert comparable(ledger.in_progress()).equals(comparable(full[full["status"] == "in_progress"]))
    for model in (MARENGO_3_0, MARENGO_2_7):
        mine = full[full["model_key"] == model.key]
        assert comparable(ledger.jobs(model.key)).equals(comparable(mine))


class Killed(Exception):
    pass


class LakeKilledAt(Lake):
    """Dies at the first write under `at`, or at the first delete when `at` is "delete"."""

    at: str = "delete"

    def write_table(self, table: pa.Table, relative: str) -> None:
        if relative.startswith(self.at):
            raise Killed
        super().write_table(table, relative)

    def delete_files(self, relative_paths: list[str], missing_ok: bool = False) -> None:
        if self.at == "delete":
            raise Killed
        super().delete_files(relative_paths, missing_ok)


def killed_compaction(root: Path, at: str = "delete", must_die: bool = True) -> None:
    """A compaction of every live file of the lake at `root`, killed at `at` (one with nothing to archive
    may not get there)."""
    dying = SubmissionLedger(
        LakeKilledAt(root=str(root), storage=S3Storage(region_name="us-east-1"), at=at), "x"
    )
    try:
        dying.compact(min_files=1)
    except Killed:
        return
    assert not must_die, f"the compaction never reached {at}"


class LakeWithAnotherRun(Lake):
    """Runs `meanwhile` once, just before its first write under `at`: another run working between this
    one's reads and its writes."""

    at: str
    _meanwhile: list[Callable[[], None]] = PrivateAttr(default_factory=list)

    def __init__(self, meanwhile: Callable[[], None], **fields: Any) -> None:
        super().__init__(**fields)
        self._meanwhile.append(meanwhile)

    def write_table(self, table: pa.Table, relative: str) -> None:
        if relative.startswith(self.at) and self._meanwhile:
            self._meanwhile.pop()()
        super().write_table(table, relative)


def test_a_compaction_killed_before_deleting_its_inputs_loses_and_doubles_nothing(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    subs = [submission(f"s3://m/{i}.mp4") for i in range(6)]
    ledger.record_submissions(subs, {}, "run")
    ledger.record_outcomes([outcome(s, "completed") for s in subs[:4]], "ingest")
    before = comparable(ledger.jobs())
    killed_compaction(tmp_path)
    assert comparable(ledger.jobs()).equals(before), "closed rows and live events of the same jobs agree"
    assert len(ledger.in_progress()) == 2
    ledger.compact(min_files=1)
    assert comparable(ledger.jobs()).equals(before)
    assert len(ledger.live_jobs()) == 2


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
    killed_compaction(tmp_path)  # both jobs are open: their events, rewritten live, beside the originals
    assert len(ledger.outcomes()) == 2 * len(events), "a compaction's duplicate of every note"
    jobs = ledger.jobs().set_index("media_uri")
    assert list(jobs["status"]) == ["in_progress", "in_progress"]
    assert jobs.loc["s3://m/a.mp4", "unreadable_reads"] == 2
    assert jobs.loc["s3://m/a.mp4", "unreadable_reason"] == "AccessDenied"
    assert jobs.loc["s3://m/a.mp4", "first_unreadable_at"] == events["recorded_at"].min()
    assert jobs.loc["s3://m/b.mp4", "unreadable_reads"] == 0
    ledger.record_outcomes([outcome(a, "failed", "not readable after 3 failed reads")], "ingest-3")
    ledger.record_outcomes([outcome(a, "unreadable", "late note of a concurrent run")], "ingest-4")
    assert ledger.jobs().set_index("media_uri").loc["s3://m/a.mp4", "status"] == "failed"


def ended_and_open(ledger: SubmissionLedger, ended: int, still_open: int) -> list[Submission]:
    subs = [submission(f"s3://m/{i}.mp4") for i in range(ended + still_open)]
    for s in subs:
        ledger.record_submissions([s], {}, "run")
    ledger.record_outcomes([outcome(s, "completed") for s in subs[:ended]], "ingest")
    return subs


def full_history(ledger: SubmissionLedger) -> pd.DataFrame:
    return comparable(derive_jobs(ledger.submissions(), ledger.outcomes()))


def test_a_missing_closed_state_is_rebuilt_from_the_archive_once(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    ended_and_open(ledger, 8, 3)
    ledger.compact(min_files=1)
    before = comparable(ledger.jobs())
    assert before.equals(full_history(ledger)) and (before["status"] == "completed").sum() == 8
    for path in tmp_path.glob("ledger/closed/*.parquet"):
        path.unlink()

    assert comparable(ledger.jobs()).equals(before), "rebuilt from the archived events"
    [rebuilt] = tmp_path.glob("ledger/closed/*.parquet")
    archived = {p.stem for p in tmp_path.glob("ledger/archive/*/*.parquet")}
    assert set(json.loads(pq.read_schema(rebuilt).metadata[FOLDED_KEY])) == archived
    assert comparable(ledger.jobs()).equals(before)
    assert list(tmp_path.glob("ledger/closed/*.parquet")) == [rebuilt], "consistent now: not rebuilt again"


def test_a_stale_closed_state_is_rebuilt(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    subs = ended_and_open(ledger, 4, 6)
    ledger.compact(min_files=1)
    stale = {p: p.read_bytes() for p in tmp_path.glob("ledger/closed/*.parquet")}
    ledger.record_outcomes([outcome(s, "failed", "bad codec") for s in subs[4:]], "ingest-2")
    ledger.compact(min_files=1)
    for path in tmp_path.glob("ledger/closed/*.parquet"):
        path.unlink()
    for path, content in stale.items():  # the closed state as the first compaction left it
        path.write_bytes(content)

    jobs = ledger.jobs()
    assert comparable(jobs).equals(full_history(ledger))
    assert (jobs["status"] == "failed").sum() == 6 and ledger.in_progress().empty


def test_a_kill_between_archiving_and_the_closed_state_heals_on_the_next_read(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    ended_and_open(ledger, 5, 2)
    before = comparable(ledger.jobs())
    killed_compaction(tmp_path, at="ledger/closed/")  # events archived, closed state not written
    assert list(tmp_path.glob("ledger/archive/*/*.parquet")) and not list(tmp_path.glob("ledger/closed/*"))
    assert comparable(ledger.jobs()).equals(before)
    assert len(ledger.in_progress()) == 2
    ledger.compact(min_files=1)
    assert comparable(ledger.jobs()).equals(before)
    assert len(ledger.live_jobs()) == 2, "only the open jobs stay live"


def test_a_lake_from_before_the_watermark_is_rebuilt_once(tmp_path: Path) -> None:
    """Archive files with no closed file naming them (an earlier layout): the first read rebuilds."""
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    ended_and_open(ledger, 5, 2)
    ledger.compact(min_files=1)
    before = comparable(ledger.jobs())
    [closed] = tmp_path.glob("ledger/closed/*.parquet")
    pq.write_table(pq.read_table(closed).replace_schema_metadata(None), closed)  # no watermark
    assert comparable(ledger.jobs()).equals(before)
    [rebuilt] = tmp_path.glob("ledger/closed/*.parquet")
    assert rebuilt != closed and FOLDED_KEY in pq.read_schema(rebuilt).metadata


def test_a_run_recording_during_a_compaction_loses_nothing(tmp_path: Path) -> None:
    root = str(tmp_path)
    storage = S3Storage(region_name="us-east-1")
    ledger = SubmissionLedger(Lake(root=root, storage=storage), "bedrock")
    ended_and_open(ledger, 6, 3)
    late = submission("s3://m/late.mp4")
    slow_lake = LakeWithAnotherRun(
        lambda: ledger.record_submissions([late], {}, "another-run"),
        root=root,
        storage=storage,
        at="ledger/archive/",
    )
    SubmissionLedger(slow_lake, "bedrock").compact(min_files=1)
    assert late.job.client_token in set(ledger.in_progress()["client_token"])
    assert len(ledger.in_progress()) == 4
    assert comparable(ledger.jobs()).equals(full_history(ledger))


@pytest.mark.parametrize("at", ["ledger/archive/", "ledger/closed/", "ledger/submissions/"])
def test_two_compactions_at_once_lose_nothing(tmp_path: Path, at: str) -> None:
    """The second compaction runs whole while the first is between reading its inputs and writing at `at`."""
    root = str(tmp_path)
    storage = S3Storage(region_name="us-east-1")
    ledger = SubmissionLedger(Lake(root=root, storage=storage), "bedrock")
    subs = ended_and_open(ledger, 6, 4)
    ledger.compact(min_files=1)
    ledger.record_outcomes([outcome(s, "completed") for s in subs[6:8]], "ingest-2")
    ledger.record_submissions([submission("s3://m/new.mp4")], {}, "run-2")
    first = LakeWithAnotherRun(lambda: ledger.compact(min_files=1), root=root, storage=storage, at=at)
    SubmissionLedger(first, "bedrock").compact(min_files=1)

    assert comparable(ledger.jobs()).equals(full_history(ledger))
    assert len(ledger.in_progress()) == 3
    ledger.compact(min_files=1)
    assert comparable(ledger.jobs()).equals(full_history(ledger))
    assert len(ledger.live_jobs()) == 3


def test_the_jobs_of_named_objects_are_those_of_the_whole_ledger_for_them(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    subs = ended_and_open(ledger, 8, 3)
    ledger.compact(min_files=1)  # the ended ones move to the closed state, the open ones stay live
    # A live event for an object whose earlier job is closed: its new version refused.
    job = EmbeddingJob("s3://m/1.mp4", "etag-2", "video", MARENGO_3_0, EmbeddingOptions())
    later = Submission(job, "arn:later", "s3://out/later", datetime.now(UTC))
    ledger.record_outcomes([outcome(later, "rejected", "too big")], "run-2")
    named = ["s3://m/1.mp4", "s3://m/9.mp4", "s3://m/absent.mp4"]  # closed + live, open, never submitted

    scoped = ledger.jobs("marengo-3.0", media_uris=named)
    whole = ledger.jobs("marengo-3.0")
    expected = comparable(whole[whole["media_uri"].isin(named)])
    assert comparable(scoped).equals(expected)
    assert sorted(scoped["media_uri"]) == ["s3://m/1.mp4", "s3://m/1.mp4", "s3://m/9.mp4"]
    assert len(whole) > len(scoped), "the others are not read"
    for path in tmp_path.glob("ledger/closed/*.parquet"):
        path.unlink()  # a rebuild from the archive answers the same, named objects only
    assert comparable(ledger.jobs("marengo-3.0", media_uris=named)).equals(expected)
    assert subs


def test_unclaimed_intents_of_named_objects_ignore_the_others(tmp_path: Path) -> None:
    ledger = SubmissionLedger(
        Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "twelvelabs"
    )
    jobs = [
        EmbeddingJob(f"s3://m/{n}.mp4", "etag", "video", MARENGO_3_0, EmbeddingOptions(), 1, "twelvelabs")
        for n in "ab"
    ]
    ledger.record_intents(jobs, "run-1")
    named = ["s3://m/a.mp4"]
    scoped = ledger.unclaimed_intents("marengo-3.0", ledger.jobs("marengo-3.0", named), named)
    assert list(scoped["media_uri"]) == ["s3://m/a.mp4"]
    every = ledger.unclaimed_intents("marengo-3.0", ledger.jobs("marengo-3.0"))
    assert sorted(every["media_uri"]) == ["s3://m/a.mp4", "s3://m/b.mp4"]


def test_a_narrow_read_holds_the_same_jobs_with_only_the_columns_asked(tmp_path: Path) -> None:
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    ended_and_open(ledger, 6, 2)
    ledger.record_submissions([submission("s3://m/other.mp4", MARENGO_2_7)], {}, "run")
    ledger.compact(min_files=1)
    narrow = ledger.jobs("marengo-3.0", columns=["media_uri", "status"])
    assert {"media_uri", "status", "client_token"} <= set(narrow.columns) and "output_uri" not in narrow
    whole = ledger.jobs("marengo-3.0")
    assert sorted(zip(narrow["client_token"], narrow["status"], strict=True)) == sorted(
        zip(whole["client_token"], whole["status"], strict=True)
    )
    assert len(whole) == 8, "the other model's job is filtered out as the files are scanned"


def test_a_closed_token_read_twice_keeps_its_latest_row_and_unique_tokens_are_not_copied() -> None:
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    rows = pa.table(
        {
            "client_token": ["a", "b", "a", "c", "b"],
            "recorded_at": [t1, t0, t0, t0, t1],
            "status": ["completed", "failed", "in_progress", "no_content", "completed"],
        }
    )
    latest = _latest_per_token(rows).to_pandas().set_index("client_token")["status"].to_dict()
    assert latest == {"a": "completed", "b": "completed", "c": "no_content"}
    unique = rows.slice(1, 3)  # b, a, c
    assert _latest_per_token(unique) is unique


def test_jobs_read_across_live_and_closed_states_holds_every_column_asked_for(tmp_path: Path) -> None:
    """The closed rows and the live jobs are joined as one Arrow table; a token that is live again wins."""
    ledger = SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")
    ended, reopened, running = (submission(f"s3://m/{n}.mp4") for n in ("ended", "again", "open"))
    ledger.record_submissions([ended, reopened, running], {}, "r1")
    ledger.record_outcomes([outcome(ended, "completed"), outcome(reopened, "failed")], "r1")
    ledger.compact(min_files=1)
    ledger.reopen(ledger.closed_jobs().query("media_uri == 's3://m/again.mp4'"), "r2")
    ledger.record_outcomes([outcome(reopened, "completed")], "r2")
    jobs = ledger.jobs(MARENGO_3_0.key, columns=["job_key", "status"])
    assert sorted(zip(jobs["job_key"], jobs["status"], strict=True)) == sorted(
        [
            (ended.job.job_key, "completed"),
            (reopened.job.job_key, "completed"),
            (running.job.job_key, "in_progress"),
        ]
    )
    assert set(jobs.columns) == {"job_key", "status", "client_token", "recorded_at"}  # no filter columns
