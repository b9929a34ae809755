"""The submission ledger: what was sent to a provider, and what became of it.

Append-only Parquet events in the lake: a submission file per flush and an outcome file per ingest run.
Nothing is ever rewritten, so concurrent runs cannot clobber each other, and the current state of a job is
derived by reading the events. Together with the deterministic client token this is what makes
re-runs, crashes and backfills free of double billing.

What is read grows with open work, not with history. The live folders (`ledger/submissions`,
`ledger/outcomes`) hold the events of open jobs and of what happened since the last compaction; a
compaction moves the events of every ended job to `ledger/archive/` (the history, kept, read by nobody on
the hot path) and its final state, one row per job, to `ledger/closed/`. The sensor and ingest read only
the live events; planning reads them plus the one-row-per-job closed state.

The closed state is derived, never the record: each compaction names its archive files and its closed file
after itself, and every closed file carries a watermark (`FOLDED_KEY`), the compactions whose archived
events it holds. A compaction archived but named by no closed file (a closed file deleted, an older one
restored, a compaction killed between its writes, a lake from before the watermark) makes the next
`jobs()` rebuild the closed state from the archive, once, and write it back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from resources.providers.embedding_jobs import EmbeddingJob, Submission
from resources.storage.lake import READ_ATTEMPTS, Lake, return_freed_memory
from resources.storage.retry import race_retries

# completed: segments written; no_content: completed with no segments (nothing to embed, nothing indexed);
# failed: the provider's verdict, or output unusable, or unreadable past the limits (costs an attempt);
# lost: the provider no longer knows the job (resubmitted, not counted as a failed attempt);
# rejected: never accepted; superseded: the object changed while the job ran.
OutcomeStatus = Literal["completed", "no_content", "failed", "lost", "rejected", "superseded", "unreadable"]
# Ran to its end with every segment written (or none to write): an object done for its job key.
DONE_STATUSES = ("completed", "no_content")
# Notes, not outcomes: the job stays in progress. `unreadable` records one read of a finished job that
# did not work (output or status not readable right now), so re-reads are counted and dated across runs.
NOTE_STATUSES = ("unreadable",)
TS = pa.timestamp("us", tz="UTC")
COMPACT_FROM_FILES = 32
LIVE = ("submissions", "outcomes")

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


# The state of an ended job, one row per client token: what `jobs()` derives, kept after its events go.
CLOSED_SCHEMA = pa.schema(
    [
        *SUBMISSION_SCHEMA,
        ("status", pa.string()),
        ("reason", pa.string()),
        ("segments", pa.float64()),
        ("table_path", pa.string()),
        ("recorded_at", TS),
        ("unreadable_reads", pa.int64()),
        ("first_unreadable_at", TS),
        ("unreadable_reason", pa.string()),
    ]
)


# What every read of the closed state keeps, whatever columns it asks for: the dedup and provider filters.
CLOSED_KEYS = ["client_token", "recorded_at", "model_key", "provider"]
# What `jobs()` returns of each job whatever columns it is asked for: the token and its latest time.
JOB_KEYS = ["client_token", "recorded_at"]
# The columns planning and progress read of a library's jobs (plan_submissions, object_states, intents,
# besides JOB_KEYS): a million closed jobs are read two columns wide, not with their URIs and ids.
PLANNING_JOB_COLUMNS = ["job_key", "status"]


# What a submission run is about to create at a provider without idempotency tokens, written before the
# create: a run killed between the create and its submission row leaves an intent no submission claims, and
# the next run finds the task the provider made instead of making a second one (see `unclaimed_intents`).
INTENT_SCHEMA = pa.schema(
    [
        ("client_token", pa.string()),
        ("job_key", pa.string()),
        ("attempt", pa.int32()),
        ("media_uri", pa.string()),
        ("etag", pa.string()),
        ("modality", pa.string()),
        ("model_key", pa.string()),
        ("options", pa.string()),
        ("provider", pa.string()),
        ("intended_at", TS),
        ("run_id", pa.string()),
    ]
)
# Intents are reconciled by the next submission run, minutes later; older ones are history (a task created
# that long ago and never recorded is the one window left, see docs/architecture.md).
INTENT_HORIZON = timedelta(days=1)

SCHEMAS = (SUBMISSION_SCHEMA, OUTCOME_SCHEMA)
# Parquet key-value metadata of a closed file: the JSON list of the compactions (ids, the names of their
# archive files) whose ended jobs it holds. The closed state is complete when it names every archive file.
FOLDED_KEY = b"mediaembed.ledger.folded"


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
    """One provider's view of the ledger: reads see that provider's jobs only and writes are its own.

    `provider=None` reads every provider's jobs: planning does, since a job's key names the model and the
    object, not who embedded it, and so does the index; it cannot write.
    """

    def __init__(self, lake: Lake, provider: str | None) -> None:
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
                "provider": self._writer(),
                "invocation_id": s.invocation_id,
                "output_uri": s.output_uri,
                "submitted_at": s.submitted_at,
                "run_id": run_id,
            }
            for s in submissions
        ]
        self._append("submissions", rows, SUBMISSION_SCHEMA)

    def record_intents(self, jobs: Iterable[EmbeddingJob], run_id: str) -> None:
        """Before creating these jobs at a provider without idempotency tokens (one write for the batch)."""
        now = datetime.now(UTC)
        rows = [
            {
                "client_token": j.client_token,
                "job_key": j.job_key,
                "attempt": j.attempt,
                "media_uri": j.media_uri,
                "etag": j.etag,
                "modality": j.modality,
                "model_key": j.model.key,
                "options": j.options.canonical(),
                "provider": self._writer(),
                "intended_at": now,
                "run_id": run_id,
            }
            for j in jobs
        ]
        self._append("intents", rows, INTENT_SCHEMA)

    def unclaimed_intents(
        self, model_key: str, jobs: pd.DataFrame, media_uris: Collection[str] | None = None
    ) -> pd.DataFrame:
        """This provider's recent intents for `model_key` whose token no job in `jobs` (the ledger's jobs,
        live and closed) holds: a run recorded them and may have created the job, but never recorded it.

        `media_uris`: only the intents of these objects, where `jobs` holds only their jobs (a run planning
        a few changed objects): an intent of another object is not judged against jobs never read."""
        intents = self._events("intents", INTENT_SCHEMA)
        recent = intents["intended_at"] >= pd.Timestamp(datetime.now(UTC) - INTENT_HORIZON)
        mine = (intents["provider"] == self._writer()) & (intents["model_key"] == model_key) & recent
        if media_uris is not None:
            mine &= intents["media_uri"].isin(list(media_uris))
        intents = intents[mine & ~intents["client_token"].isin(jobs["client_token"])]
        return intents.sort_values("intended_at").drop_duplicates("client_token", keep="first")

    def _writer(self) -> str:
        if self._provider is None:
            raise ValueError("a ledger read across providers cannot record; name the provider")
        return self._provider

    def record_outcomes(self, outcomes: Iterable[Outcome], run_id: str) -> None:
        self._writer()
        now = datetime.now(UTC)
        rows = [{**o.__dict__, "recorded_at": now, "run_id": run_id} for o in outcomes]
        self._append("outcomes", rows, OUTCOME_SCHEMA)

    def reopen(self, jobs: pd.DataFrame, run_id: str) -> None:
        """Write these jobs' submissions (rows of `jobs()`) back to the live events, so that an outcome
        recorded for them after they ended, a later verdict, is what `jobs()` derives: live events win over
        the closed row a compaction made of them. Record the outcome first; until this write it is ignored,
        so a kill between the two leaves the job as it was."""
        self._writer()
        rows = jobs[[f.name for f in SUBMISSION_SCHEMA]].assign(run_id=run_id)
        self._write("submissions", pa.Table.from_pandas(rows, schema=SUBMISSION_SCHEMA, preserve_index=False))

    def _append(self, kind: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
        if rows:
            self._write(kind, pa.Table.from_pylist(rows, schema=schema))

    def _write(self, kind: str, table: pa.Table, name: str | None = None) -> None:
        if table.num_rows == 0:
            return
        self._lake.write_table(table, f"ledger/{kind}/{name or _new_id()}.parquet")

    def _write_closed(self, rows: pa.Table, folded: Iterable[str]) -> None:
        """One closed file with its watermark, written even with no rows: the watermark is the point."""
        metadata = {FOLDED_KEY: json.dumps(sorted(set(folded))).encode()}
        table = rows.cast(CLOSED_SCHEMA).replace_schema_metadata(metadata)
        self._lake.write_table(table, f"ledger/closed/{_new_id()}.parquet")

    def compact(self, min_files: int = COMPACT_FROM_FILES) -> int:
        """Once the live events are `min_files` files: archive the events of ended jobs, keep their final
        state in `ledger/closed/`, and fold the open jobs' events into one live file; returns files folded.

        Every new file is written before any input is deleted, and only by the process that read them: a
        crash or a concurrent compaction can leave duplicate events or closed rows (readers tolerate
        both), never lose one. Two runs compacting at once never fail each other: inputs the other run
        deleted first are already in its files, so a read that misses them skips this round, and a
        delete that finds them gone is done.
        """
        files = {kind: self._lake.list_files(f"ledger/{kind}") for kind in LIVE}
        folded = 0
        if sum(len(f) for f in files.values()) >= min_files:
            try:
                subs, outs = (self._read(files[k], schema) for k, schema in zip(LIVE, SCHEMAS, strict=True))
            except FileNotFoundError:
                return 0  # another run is folding these files; its files hold their events
            jobs = derive_jobs(subs.to_pandas(), outs.to_pandas())
            open_tokens = pa.array(jobs.loc[jobs["status"] == "in_progress", "client_token"], pa.string())
            ended = jobs[jobs["status"] != "in_progress"]
            compaction = _new_id()  # names its archive files; its closed file's watermark names it
            is_open = [pc.is_in(events.column("client_token"), open_tokens) for events in (subs, outs)]
            archived = 0
            for kind, events, schema, keep in zip(LIVE, (subs, outs), SCHEMAS, is_open, strict=True):
                leaving = events.filter(pc.invert(keep)).cast(schema)
                self._write(f"archive/{kind}", leaving, compaction)
                archived += leaving.num_rows
            if archived:
                self._write_closed(_closed_rows(ended), [compaction])
            for kind, events, schema, keep in zip(LIVE, (subs, outs), SCHEMAS, is_open, strict=True):
                self._write(kind, events.filter(keep).cast(schema))
            for kind in LIVE:
                self._lake.delete_files(files[kind], missing_ok=True)
            folded += sum(len(f) for f in files.values())
        self._forget_old_intents()
        if len(self._lake.list_files("ledger/closed")) >= min_files:
            try:
                closed, watermark, rows = self._closed()
            except FileNotFoundError:
                return folded  # another run is folding them
            self._write_closed(rows, watermark)
            self._lake.delete_files(closed, missing_ok=True)
            folded += len(closed)
        return folded

    def _forget_old_intents(self) -> None:
        """Intent files past twice the horizon are never read again (file names start with their time)."""
        cutoff = (datetime.now(UTC) - 2 * INTENT_HORIZON).strftime("%Y%m%dT%H%M%S%f")
        old = [f for f in self._lake.list_files("ledger/intents") if _file_id(f) < cutoff]
        self._lake.delete_files(old, missing_ok=True)

    def _closed(
        self, where: pc.Expression | None = None, columns: list[str] | None = None
    ) -> tuple[list[str], set[str], pa.Table]:
        """The closed files, the compactions their watermarks name, and their rows (duplicates kept; only
        those `where` selects and the `columns` named, when given)."""
        closed = self._lake.list_files("ledger/closed")
        watermark: set[str] = set()
        for metadata in self._lake.file_metadata(closed):
            watermark.update(json.loads(metadata.get(FOLDED_KEY, b"[]")))
        return closed, watermark, self._read(closed, CLOSED_SCHEMA, where, columns)

    def closed_jobs(
        self,
        media_uris: Collection[str] | None = None,
        columns: list[str] | None = None,
        model_key: str | None = None,
    ) -> pd.DataFrame:
        """The final state of every ended job that left the live events, one row per client token (of only
        the objects `media_uris` names and of `model_key`, when given, filtered as the files are scanned;
        only `columns` and the keys, when given); rebuilt from the archive (and written back) when the
        watermark misses an archived compaction."""
        return self._closed_table(media_uris, columns, model_key).to_pandas()

    def _closed_table(
        self,
        media_uris: Collection[str] | None = None,
        columns: list[str] | None = None,
        model_key: str | None = None,
    ) -> pa.Table:
        """`closed_jobs` as an Arrow table: a million closed jobs stay in their columns."""
        where = _closed_filter(media_uris, model_key)
        wanted = None if columns is None else list(dict.fromkeys([*columns, *CLOSED_KEYS]))

        def read() -> pa.Table:
            closed, watermark, rows = self._closed(where, wanted)
            # Listed after the closed files: a closed file is written after its archive files, so every
            # compaction a listed closed file names is in this listing too.
            archived = {_file_id(f) for f in self._lake.list_files("ledger/archive")}
            if not archived - watermark:
                return rows
            every_row = rows if where is None and wanted is None else self._read(closed, CLOSED_SCHEMA)
            rebuilt = self._rebuild_closed(closed, watermark, every_row)
            rebuilt = rebuilt if where is None else rebuilt.filter(where)
            return rebuilt if wanted is None else rebuilt.select(wanted)

        # A concurrent fold deleted a closed file listed here: list again.
        return _latest_per_token(race_retries(FileNotFoundError, READ_ATTEMPTS)(read))

    def _rebuild_closed(self, closed: list[str], watermark: set[str], rows: pa.Table) -> pa.Table:
        """Derive the ended jobs from every archived event, write them as one closed file naming every
        archived compaction, then delete the closed files it replaces. The archive is the truth; a closed
        row of a token the archive no longer holds is kept."""
        files = {kind: self._lake.list_files(f"ledger/archive/{kind}") for kind in LIVE}
        subs, outs = (self._read(files[k], schema) for k, schema in zip(LIVE, SCHEMAS, strict=True))
        jobs = derive_jobs(subs.to_pandas(), outs.to_pandas())
        # In progress here: a compaction killed between its archive files; those events are still live.
        ended = _closed_rows(jobs[jobs["status"] != "in_progress"])
        kept = rows.filter(pc.invert(pc.is_in(rows.column("client_token"), ended.column("client_token"))))
        rebuilt = pa.concat_tables([ended, kept.cast(CLOSED_SCHEMA)])
        archived = {_file_id(f) for kind in LIVE for f in files[kind]}
        self._write_closed(rebuilt, watermark | archived)
        self._lake.delete_files(closed, missing_ok=True)
        return rebuilt

    def _read(
        self,
        files: list[str],
        schema: pa.Schema,
        where: pc.Expression | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        if columns is not None:
            schema = pa.schema([schema.field(name) for name in columns])
        table = self._lake.read_tables(files, columns, where)
        return schema.empty_table() if table is None else table.cast(schema)

    def submissions(self) -> pd.DataFrame:
        """Every submission event, archived ones included (the whole history: not for hot paths)."""
        return pd.concat(
            [self._events(f, SUBMISSION_SCHEMA) for f in ("submissions", "archive/submissions")],
            ignore_index=True,
        )

    def outcomes(self) -> pd.DataFrame:
        """Every outcome event, archived ones included (the whole history: not for hot paths)."""
        return pd.concat(
            [self._events(f, OUTCOME_SCHEMA) for f in ("outcomes", "archive/outcomes")], ignore_index=True
        )

    def _events(self, folder: str, schema: pa.Schema) -> pd.DataFrame:
        return self._lake.read_dataset(f"ledger/{folder}", schema).to_pandas()

    def live_jobs(
        self, model_key: str | None = None, media_uris: Collection[str] | None = None
    ) -> pd.DataFrame:
        """The state of the jobs with live events: every open job, and those that ended since the last
        compaction (of only the objects `media_uris` names, when given). What the sensor and ingest need,
        at a cost that grows with open work."""
        subs = self._events("submissions", SUBMISSION_SCHEMA)
        outs = self._events("outcomes", OUTCOME_SCHEMA)
        if model_key is not None:
            subs = subs[subs["model_key"] == model_key]
            outs = outs[outs["model_key"] == model_key]
        if media_uris is not None:
            wanted = list(media_uris)
            subs = subs[subs["media_uri"].isin(wanted)]
            outs = outs[outs["media_uri"].isin(wanted)]
        if self._provider is not None:  # outcomes follow their submission's token (tokens name a provider)
            subs = subs[subs["provider"] == self._provider]
            outs = outs[outs["client_token"].isin(subs["client_token"]) | _token_of(outs, self._provider)]
        return derive_jobs(subs, outs)

    def jobs(
        self,
        model_key: str | None = None,
        media_uris: Collection[str] | None = None,
        columns: list[str] | None = None,
    ) -> pd.DataFrame:
        """Current state per client token: its submission (if any) and its latest outcome; of only the
        objects `media_uris` names, when given (a run planning a few changed objects in a large library);
        only `columns` and JOB_KEYS, when given (a million closed jobs are read a few columns wide).

        `status` is `in_progress` for a submitted job with no outcome yet; `unreadable_reads`,
        `first_unreadable_at` and `unreadable_reason` say how often, since when and why its result could
        not be read so far. Live events win over a closed row of the same token (a rejected token
        accepted later).
        """
        live = self.live_jobs(
            model_key, media_uris
        )  # before the closed state: a compaction moves live to closed
        closed = self._closed_table(media_uris, columns, model_key)
        if self._provider is not None:
            tokens = closed.column("client_token").to_pandas()
            theirs = (closed.column("provider").to_pandas() == self._provider) | _token_of(
                tokens, self._provider
            )
            closed = closed.filter(pa.array(theirs.to_numpy(dtype=bool)))
        if not live.empty:  # live events win over a closed row of the same token
            relived = pc.is_in(
                closed.column("client_token"), value_set=pa.array(live["client_token"], pa.string())
            )
            if pc.any(relived).as_py():
                closed = closed.filter(pc.invert(relived))
        if columns is not None:  # the filters' columns stay behind (a million model keys, for one)
            kept = list(dict.fromkeys([*columns, *JOB_KEYS]))
            live, closed = live[kept], closed.select(kept)
        if closed.num_rows == 0:
            return live
        if not live.empty:  # one table, then one conversion: the closed rows are not copied again
            closed = pa.concat_tables([_as_closed(live, closed.schema), closed])
        jobs = closed.to_pandas()
        del closed
        return_freed_memory()  # the closed rows' Arrow buffers, converted
        if "unreadable_reads" in jobs:
            jobs["unreadable_reads"] = jobs["unreadable_reads"].fillna(0).astype("int64")
        return jobs

    def in_progress(self, model_key: str | None = None) -> pd.DataFrame:
        """The open jobs, from the live events alone."""
        jobs = self.live_jobs(model_key)
        return jobs[jobs["status"] == "in_progress"].reset_index(drop=True)


def _latest_per_token(rows: pa.Table) -> pa.Table:
    """One row per client token, its latest (`recorded_at`; of equal times, the one read last): a crash or
    a concurrent compaction can leave a token's closed row twice. Unique tokens, the usual case, are
    returned as they are, without a copy."""
    tokens = rows.column("client_token")
    if rows.num_rows < 2 or pc.count_distinct(tokens, mode="all").as_py() == rows.num_rows:
        return rows
    order = pc.sort_indices(rows, [("client_token", "ascending"), ("recorded_at", "ascending")])
    ordered = pc.take(tokens, order)
    last = pc.not_equal(ordered[:-1], ordered[1:]).fill_null(True)
    return rows.take(pc.filter(order, pa.concat_arrays([last.combine_chunks(), pa.array([True])])))


def _as_closed(live: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Live jobs (`derive_jobs` rows) in the closed state's columns, to stand beside its rows."""
    table = pa.Table.from_pandas(live, preserve_index=False)
    return pa.table(
        {
            f.name: table.column(f.name).cast(f.type)
            if f.name in table.column_names
            else pa.nulls(len(live), f.type)
            for f in schema
        },
        schema=schema,
    )


def _token_of(rows: pd.DataFrame | pd.Series, provider: str) -> pd.Series:
    """Rows whose client token names `provider` (a rejection has no submission to say whose it was)."""
    tokens = (rows if isinstance(rows, pd.Series) else rows["client_token"]).astype(str)
    if provider == "bedrock":  # Bedrock's tokens predate the provider suffix
        return ~tokens.str.contains(r"-a\d+-[a-z]+$", regex=True)
    return tokens.str.endswith(f"-{provider}")


def _closed_filter(media_uris: Collection[str] | None, model_key: str | None) -> pc.Expression | None:
    """The closed rows of these objects and this model (None: every row)."""
    parts = []
    if media_uris is not None:
        parts.append(pc.field("media_uri").isin(pa.array(list(media_uris), pa.string())))
    if model_key is not None:
        parts.append(pc.field("model_key") == model_key)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else parts[0] & parts[1]


def _new_id() -> str:
    """A file name that sorts by time and never collides: `<UTC stamp>-<8 hex>`."""
    return f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}"


def _closed_rows(ended: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(ended, schema=CLOSED_SCHEMA, preserve_index=False)


def _file_id(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".parquet")


def derive_jobs(subs: pd.DataFrame, outs: pd.DataFrame) -> pd.DataFrame:
    """The state per client token from submission and outcome events (duplicates tolerated)."""
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
