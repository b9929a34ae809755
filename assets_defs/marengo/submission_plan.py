"""Deciding what to submit: the pure core of the invocations asset.

Given the inventory and the ledger, each usable object is either already handled for this model and these
options (skip), over the model's limits (rejected; checked again a day later), out of retries, or due.

Attempts: every job the provider accepted and that ended `failed` or `lost` used up its client token, so
the next one is attempt `failed + lost + 1` (a new token, never a replay of the spent one). Only `failed`
counts toward `max_attempts`: it is the provider's verdict on a job that ran (or an output that was never
usable). A `lost` job is one the provider no longer knows, which says nothing about the object; it is
resubmitted without using up an attempt, but at most `max_lost` times, so a provider that keeps losing
one object's jobs cannot keep it open for ever.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, hashed_job_key
from resources.providers.marengo_models import MarengoModel
from resources.storage.lake import return_freed_memory
from resources.tables.submission_ledger import DONE_STATUSES

SETTLED = {"in_progress", "completed", "no_content", "rejected", "superseded"}
# A refused request was never accepted, so it cost nothing; try it again after this long, in case the
# refusal came from a setup problem since fixed.
RETRY_REJECTED_AFTER = timedelta(hours=24)


@dataclass
class SubmissionPlan:
    due: list[EmbeddingJob] = field(default_factory=list)
    over_limit: list[tuple[EmbeddingJob, str]] = field(default_factory=list)
    already_handled: int = 0
    out_of_attempts: list[EmbeddingJob] = field(default_factory=list)
    after_lost: set[str] = field(default_factory=set)  # job keys whose last job the provider lost
    # Media URI -> duration (None: an image, or unknown) of the objects not settled: what the budget gate
    # and the ledger's submissions need, kept for the few open objects instead of the whole library.
    media_seconds: dict[str, float | None] = field(default_factory=dict)
    # Per usable inventory row planned, in order: what the ledger holds under the object's current job
    # key (HISTORY_FLAGS); what progress counts from, without reading the ledger's URIs and ETags.
    object_history: pa.Table | None = None


# Inventory rows are turned into job keys this many at a time: the keys are an Arrow column, never a
# million Python strings at once.
KEY_BATCH_ROWS = 65_536


def plan_submissions(
    inventory: pd.DataFrame,
    ledger_jobs: pd.DataFrame,
    model: MarengoModel,
    options: EmbeddingOptions,
    max_attempts: int,
    max_lost: int = 3,
    provider: str = "bedrock",
) -> SubmissionPlan:
    """Vectorized over the ledger and the inventory (one Arrow hash of their job keys): a library of a
    million objects plans in seconds and in the memory of its columns, and only objects that are not
    settled become `EmbeddingJob`s.

    `ledger_jobs` holds every provider's jobs for the model: an object embedded, running or refused at
    any of them is settled, and attempts count across them. The due jobs go to `provider`.
    """
    usable = inventory[inventory["status"] == "ok"]
    flags = job_history(ledger_jobs, job_keys(usable, model, options))
    settled = flags.column("settled").to_numpy()
    plan = SubmissionPlan(already_handled=int(settled.sum()), object_history=flags)
    open_rows = usable[~settled]
    for row, failures, lost in zip(
        open_rows.to_dict("records"),
        flags.column("failed").to_numpy()[~settled],
        flags.column("lost").to_numpy()[~settled],
        strict=True,
    ):
        duration = None if pd.isna(row["duration_sec"]) else float(row["duration_sec"])
        plan.media_seconds[row["media_uri"]] = duration
        job = EmbeddingJob(row["media_uri"], row["etag"], row["modality"], model, options, 1, provider)
        if failures >= max_attempts or lost >= max_lost:
            plan.out_of_attempts.append(job)
            continue
        violation = model.limit_violation(row["modality"], int(row["size_bytes"]), duration)
        if violation:
            plan.over_limit.append((job, violation))
            continue
        if lost:
            plan.after_lost.add(job.job_key)
        attempt = int(failures + lost + 1)
        plan.due.append(
            EmbeddingJob(job.media_uri, job.etag, job.modality, model, options, attempt, provider)
        )
    return plan


# What job_history says of a job key: whether any of its jobs is so, or (COUNTED) how many are.
HISTORY_FLAGS = ("settled", "failed", "lost", "done", "running")
COUNTED = ("failed", "lost")


def job_history(ledger_jobs: pd.DataFrame, keys: pa.Array) -> pa.Table:
    """HISTORY_FLAGS of each of `keys` (an Arrow table, row for row): whether a job of the key is settled
    (running, done, or refused within the last day), how many of its jobs failed and were lost, and
    whether one is done or running. A rejection older than RETRY_REJECTED_AFTER no longer counts.

    The ledger's keys and `keys` are hashed together once (one dictionary encoding), and the flags
    counted per code with numpy: a million jobs and objects cost one hash table, not a group-by and a
    lookup of a million strings each."""
    expired = datetime.now(UTC) - RETRY_REJECTED_AFTER
    status = ledger_jobs["status"]
    recorded = pd.to_datetime(ledger_jobs["recorded_at"], utc=True) if len(ledger_jobs) else None
    stale = (status == "rejected") & (recorded < expired) if recorded is not None else status != status
    stale_rows = stale.fillna(False).to_numpy(dtype=bool)
    counted = ledger_jobs[~stale_rows] if stale_rows.any() else ledger_jobs  # no copy of a million rows
    held = len(counted)
    encoded = pc.dictionary_encode(
        pa.chunked_array([pa.array(counted["job_key"], pa.string()), keys], pa.string())
    )
    # A code per key, the ledger's first; a null key (never written) gets a code of its own, matching none.
    codes = np.concatenate(
        [pc.fill_null(chunk.indices, -1).to_numpy() for chunk in encoded.chunks] or [np.empty(0, np.int32)]
    )
    codes[codes < 0] = codes.max(initial=-1) + 1
    ledger_codes, key_codes = codes[:held], codes[held:]
    bins = int(codes.max(initial=-1)) + 1
    statuses = pa.array(counted["status"], pa.string())
    per_job = {
        "settled": pc.is_in(statuses, value_set=pa.array(sorted(SETTLED))),
        "failed": pc.equal(statuses, "failed"),
        "lost": pc.equal(statuses, "lost"),
        "done": pc.is_in(statuses, value_set=pa.array(DONE_STATUSES)),
        "running": pc.equal(statuses, "in_progress"),
    }
    columns = {}
    for name in HISTORY_FLAGS:
        jobs = np.bincount(ledger_codes, weights=per_job[name].to_numpy(zero_copy_only=False), minlength=bins)
        columns[name] = jobs[key_codes].astype(np.int64) if name in COUNTED else jobs[key_codes] > 0
    del encoded
    return_freed_memory()  # the hash table of two million keys
    return pa.table(columns)


def job_keys(usable: pd.DataFrame, model: MarengoModel, options: EmbeddingOptions) -> pa.Array:
    """`EmbeddingJob.job_key` of every inventory row, as an Arrow string column, without building a job
    per row (and with at most KEY_BATCH_ROWS rows' strings in Python at a time)."""
    suffix = {
        modality: EmbeddingJob("", "", modality, model, options).key_suffix()
        for modality in usable["modality"].dropna().unique()
    }
    columns = pa.table(
        {name: pa.array(usable[name], pa.string()) for name in ("media_uri", "etag", "modality")}
    )

    def keys() -> Iterator[str]:
        for batch in columns.to_batches(max_chunksize=KEY_BATCH_ROWS):
            uris, etags, modalities = (batch.column(i).to_pylist() for i in range(3))
            for uri, etag, modality in zip(uris, etags, modalities, strict=True):
                yield hashed_job_key(uri, etag, suffix[modality])

    built = pa.array(keys(), pa.string(), size=len(usable))
    return_freed_memory()  # the builder's buffers
    return built


@dataclass
class Slots:
    """The provider's quota for one model as a submission run sees it: which jobs hold a slot, and how many
    slots there are.

    A job holds a slot from its submission until a listing (ours, or a finding in the lake) shows it
    finished, whether or not an ingest run has recorded it yet. When the provider refuses for being busy
    although slots look free (another client, a lower quota than configured), the run believes it: no more
    until a job it knows of finishes, or until `retry_at` for a refusal with nothing of ours in flight.
    """

    quota: int
    held: dict[str, tuple[str, datetime]] = field(default_factory=dict)  # token -> (invocation, submitted)
    cap: int | None = None  # lowered to the count in flight by a busy refusal; None: the quota
    retry_at: float | None = None  # monotonic time after which a refusal with nothing in flight is retried

    def free(self, now: float) -> int:
        if self.cap is not None and self.retry_at is not None and now >= self.retry_at:
            self.cap, self.retry_at = None, None
        cap = self.quota if self.cap is None else self.cap
        return max(0, cap - len(self.held))

    def take(self, token: str, invocation_id: str, submitted_at: datetime) -> None:
        self.held[token] = (invocation_id, submitted_at)

    def release(self, tokens: set[str]) -> int:
        """Free the slots of jobs now known to be finished; any release lifts a busy refusal."""
        released = [t for t in tokens if t in self.held]
        for token in released:
            del self.held[token]
        if released:
            self.cap, self.retry_at = None, None
        return len(released)

    def refused(self, now: float, backoff_sec: float) -> None:
        """The provider said it is full: hold at the current count until a slot frees (or `backoff_sec`
        passes, when none of ours is running to free one)."""
        self.cap = len(self.held)
        self.retry_at = now + backoff_sec if not self.held else None

    def open_jobs(self) -> dict[str, str]:
        return {token: invocation for token, (invocation, _) in self.held.items()}

    def oldest_submission(self) -> datetime | None:
        return min((submitted for _, submitted in self.held.values()), default=None)
