"""The submission ledger: what was sent to a provider, and what became of it.

Append-only Parquet events in the lake: a submission file per flush and an outcome file per ingest run.
Nothing is ever rewritten, so concurrent runs cannot clobber each other, and the current state of a job is
derived by reading the events. Together with the deterministic client token this is what makes
re-runs, crashes and backfills free of double billing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from resources.embedding_jobs import Submission
from resources.lake import Lake

# completed: segments written; no_content: completed with no segments (nothing to embed, nothing indexed);
# failed: the provider's verdict, or output unusable, or unreadable past the limits (costs an attempt);
# lost: the provider no longer knows the job (resubmitted, not counted as a failed attempt);
# rejected: never accepted; superseded: the object changed while the job ran.
OutcomeStatus = Literal["completed", "no_content", "failed", "lost", "rejected", "superseded", "unreadable"]
# Notes, not outcomes: the job stays in progress. `unreadable` records one read of a finished job that
# did not work (output or status not readable right now), so re-reads are counted and dated across runs.
NOTE_STATUSES = ("unreadable",)
TS = pa.timestamp("us", tz="UTC")
COMPACT_FROM_FILES = 32

SUBMISSION_SCHEMA = pa.schema(
    [
        ("job_key", pa.string()),
        ("client_token", pa.string()),
        ("attempt", pa.int32()),
        ("media_uri", pa.string()),
        ("etag", pa.string()),
        ("modality", pa.string()),
        ("media_seconds", pa.float64()),
        ("model_key", pa.string()),
        ("options", pa.string()),
        ("provider", pa.string()),
        ("invocation_id", pa.string()),
        ("output_uri", pa.string()),
        ("submitted_at", TS),
        ("run_id", pa.string()),
    ]
)

OUTCOME_SCHEMA = pa.schema(
    [
        ("job_key", pa.string()),
        ("client_token", pa.string()),
        ("model_key", pa.string()),
        ("media_uri", pa.string()),
        ("etag", pa.string()),
        ("invocation_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("segments", pa.int64()),
        ("media_seconds", pa.float64()),
        ("table_path", pa.string()),
        ("recorded_at", TS),
        ("run_id", pa.string()),
    ]
)


@dataclass(frozen=True)
class Outcome:
    job_key: str
    client_token: str
    model_key: str
    media_uri: str
    etag: str
    invocation_id: str | None
    status: OutcomeStatus
    reason: str | None = None
    segments: int = 0
    media_seconds: float | None = None
    table_path: str | None = None


def _unreadable_reads(notes: pd.DataFrame) -> pd.DataFrame:
    """Per client token: how many reads failed, the first one's time and the latest reason."""
    notes = notes.drop_duplicates(["client_token", "recorded_at", "run_id"]).sort_values("recorded_at")
    grouped = notes.groupby("client_token", sort=False)
    return pd.DataFrame(
        {
            "unreadable_reads": grouped.size(),
            "first_unreadable_at": grouped["recorded_at"].min(),
            "unreadable_reason": grouped["reason"].last(),
        }
    ).reset_index(names="client_token")


def open_jobs(jobs: pd.DataFrame) -> dict[str, str]:
    """Client token -> invocation id of ledger rows, the form providers look jobs up by."""
    return dict(zip(jobs["client_token"], jobs["invocation_id"], strict=True))


class SubmissionLedger:
    def __init__(self, lake: Lake, provider: str) -> None:
        self._lake = lake
        self._provider = provider

    def record_submissions(
        self, submissions: Iterable[Submission], media_seconds: dict[str, float | None], run_id: str
    ) -> None:
        rows = [
            {
                "job_key": s.job.job_key,
                "client_token": s.job.client_token,
                "attempt": s.job.attempt,
                "media_uri": s.job.media_uri,
                "etag": s.job.etag,
                "modality": s.job.modality,
                "media_seconds": media_seconds.get(s.job.media_uri),
                "model_key": s.job.model.key,
                "options": s.job.options.canonical(),
                "provider": self._provider,
                "invocation_id": s.invocation_id,
                "output_uri": s.output_uri,
                "submitted_at": s.submitted_at,
                "run_id": run_id,
            }
            for s in submissions
        ]
        self._append("submissions", rows, SUBMISSION_SCHEMA)

    def record_outcomes(self, outcomes: Iterable[Outcome], run_id: str) -> None:
        now = datetime.now(UTC)
        rows = [{**o.__dict__, "recorded_at": now, "run_id": run_id} for o in outcomes]
        self._append("outcomes", rows, OUTCOME_SCHEMA)

    def _append(self, kind: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
        if rows:
            self._write(kind, pa.Table.from_pylist(rows, schema=schema))

    def _write(self, kind: str, table: pa.Table) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        self._lake.write_table(table, f"ledger/{kind}/{stamp}-{uuid.uuid4().hex[:8]}.parquet")

    def compact(self, min_files: int = COMPACT_FROM_FILES) -> int:
        """Fold many small event files into one, so every read stays a few files; returns files folded.

        The folded file is written before its inputs are deleted, and only by the process that read them:
        a crash or a concurrent compaction can leave duplicate events (readers already tolerate those),
        never a lost one. Two runs compacting at once never fail each other: inputs the other run deleted
        first are already in its folded file, so a read that misses them skips this round, and a delete
        that finds them gone is done.
        """
        folded = 0
        for kind, schema in (("submissions", SUBMISSION_SCHEMA), ("outcomes", OUTCOME_SCHEMA)):
            files = self._lake.list_files(f"ledger/{kind}")
            if len(files) < min_files:
                continue
            try:
                table = self._lake.read_tables(files)
            except FileNotFoundError:
                continue  # another run is folding these files; its folded file holds their events
            assert table is not None
            self._write(kind, table.cast(schema))
            self._lake.delete_files(files, missing_ok=True)
            folded += len(files)
        return folded

    def submissions(self) -> pd.DataFrame:
        return self._lake.read_dataset("ledger/submissions", SUBMISSION_SCHEMA).to_pandas()

    def outcomes(self) -> pd.DataFrame:
        return self._lake.read_dataset("ledger/outcomes", OUTCOME_SCHEMA).to_pandas()

    def jobs(self, model_key: str | None = None) -> pd.DataFrame:
        """Current state per client token: its submission (if any) and its latest outcome.

        `status` is `in_progress` for a submitted job with no outcome yet; `unreadable_reads`,
        `first_unreadable_at` and `unreadable_reason` say how often, since when and why its result could
        not be read so far.
        """
        subs = self.submissions()
        outs = self.outcomes()
        if model_key is not None:
            subs = subs[subs["model_key"] == model_key]
            outs = outs[outs["model_key"] == model_key]
        is_note = outs["status"].isin(NOTE_STATUSES)
        notes, outs = outs[is_note], outs[~is_note]
        latest = outs.sort_values("recorded_at").drop_duplicates("client_token", keep="last")
        subs = subs.drop_duplicates("client_token", keep="first")
        # A rejection means "never accepted": once the same token is accepted later, it no longer applies.
        after_submission = latest[latest["status"] != "rejected"]
        outcome_cols = ["client_token", "status", "reason", "segments", "table_path", "recorded_at"]
        merged = subs.merge(after_submission[outcome_cols], on="client_token", how="left")
        merged["status"] = merged["status"].fillna("in_progress")
        merged = merged.merge(_unreadable_reads(notes), on="client_token", how="left")
        merged["unreadable_reads"] = merged["unreadable_reads"].fillna(0).astype("int64")
        rejected = latest[latest["status"] == "rejected"]
        rejected = rejected[~rejected["client_token"].isin(subs["client_token"])]
        if rejected.empty:
            return merged.reset_index(drop=True)
        jobs = pd.concat([merged, rejected], ignore_index=True)
        jobs["unreadable_reads"] = jobs["unreadable_reads"].fillna(0).astype("int64")
        return jobs

    def in_progress(self, model_key: str | None = None) -> pd.DataFrame:
        jobs = self.jobs(model_key)
        return jobs[jobs["status"] == "in_progress"].reset_index(drop=True)
