"""One ingest of a Marengo version's finished jobs: read each output, validate it whole, commit every
usable one in one Delta commit, then record the outcomes. Plain code: the asset `marengo/embeddings` builds
an `EmbeddingIngest`, runs it, and turns its `IngestReport` into a materialization.

Every job ends: failed, lost and unusable outputs are recorded with their reason; only transient read
trouble leaves one open, within `ReadLimits`.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa

from assets_defs.inventory.media_inventory import probed_durations, read_inventory
from assets_defs.marengo.submission_run import PLANNING_COLUMNS
from assets_defs.migration.estimates import (
    COST_JOB_COLUMNS,
    VersionProgress,
    embedded_objects,
    version_progress,
)
from resources.media.thumbnails import ThumbnailCounts, make_thumbnails, s3_media_opener
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
)
from resources.providers.errors import ListingIncomplete, MarengoOutputError, OutputUnavailable
from resources.providers.marengo_models import MarengoModel
from resources.providers.marengo_resource import MarengoProviders
from resources.storage.lake import Lake
from resources.tables.embedding_table import Commit, EmbeddingTable
from resources.tables.invocation_findings import InvocationFindings
from resources.tables.segment_schema import media_id, segment_schema, segments_table
from resources.tables.segment_validity import FaultCounts, fault_counts, output_fault
from resources.tables.submission_ledger import (
    PLANNING_JOB_COLUMNS,
    Outcome,
    OutcomeStatus,
    SubmissionLedger,
    open_jobs,
)
from resources.tables.table_audit import AuditReport, TableAudit

FETCH_THREADS = 8
# Finished jobs an ingest run reads and commits at a time: a first ingest of a large library, every job
# finished at once, holds one chunk of outputs in memory, not all of them.
INGEST_CHUNK_JOBS = 500
# The reason of a job whose output was there but broke the documented types or the segment rules.
UNUSABLE = "unusable output: "


@dataclass(frozen=True)
class ReadLimits:
    max_reads: int
    age_limit: timedelta


def running_too_long(running: pd.DataFrame, now: datetime, limit: timedelta) -> pd.DataFrame:
    """The jobs still running past `limit` since submission, oldest first, with their age in hours."""
    submitted = pd.to_datetime(running["submitted_at"], utc=True)
    late = running[now - submitted > limit].copy()
    late["age_hours"] = ((now - submitted[late.index]).dt.total_seconds() / 3600).round(1)
    return late.sort_values("age_hours", ascending=False)[
        ["media_uri", "provider", "invocation_id", "submitted_at", "age_hours"]
    ].reset_index(drop=True)


def give_up_reading(
    reads_before: int, first_unreadable_at: datetime | None, now: datetime, limits: ReadLimits
) -> str | None:
    """Why a job whose result could not be read (once more, now) must end; None keeps it open.

    Only transient trouble gets here; the bound on both reads and age is what makes every such job end.
    """
    reads = reads_before + 1
    age = now - (first_unreadable_at or now)
    if reads >= limits.max_reads:
        return f"{reads} failed reads over {_duration(age)}"
    if age >= limits.age_limit:
        return f"{reads} failed reads over {_duration(age)} (age limit {_duration(limits.age_limit)})"
    return None


def _duration(delta: timedelta) -> str:
    minutes = delta.total_seconds() / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _one_commit(commits: list[Commit]) -> Commit | None:
    """A run's chunk commits as one: the last version, and every row and object they wrote."""
    if not commits:
        return None
    return Commit(
        commits[-1].version, sum(c.rows_written for c in commits), sum(c.objects_replaced for c in commits)
    )


@dataclass(frozen=True)
class Ingested:
    """What became of one finished invocation; an `unreadable` note means it stays open and is read again."""

    outcome: Outcome | None
    table: pa.Table | None = None
    unavailable: str | None = None
    gave_up: bool = False


def _timestamp(value: Any) -> datetime | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()


class _Recorder:
    """Builds one ledger row's outcomes, straight from the row so that even a surprise can be recorded."""

    def __init__(self, row: dict[str, Any], model: MarengoModel, invocation_id: str, limits: ReadLimits):
        self.row, self.model, self.invocation_id, self.limits = row, model, invocation_id, limits
        self.seconds = None if pd.isna(row["media_seconds"]) else float(row["media_seconds"])

    def outcome(self, status: OutcomeStatus, **fields: Any) -> Outcome:
        return Outcome(
            job_key=str(self.row["job_key"]),
            client_token=str(self.row["client_token"]),
            model_key=self.model.key,
            media_uri=str(self.row["media_uri"]),
            etag=str(self.row["etag"]),
            invocation_id=self.invocation_id,
            status=status,
            media_seconds=self.seconds,
            **fields,
        )

    def unreadable(self, reason: str, now: datetime) -> Ingested:
        """Keep the job open with a note, or end it once it has been unreadable past the limits."""
        reads = self.row.get("unreadable_reads")
        reads_before = 0 if reads is None or pd.isna(reads) else int(reads)
        first = _timestamp(self.row.get("first_unreadable_at"))
        verdict = give_up_reading(reads_before, first, now, self.limits)
        if verdict is None:
            return Ingested(
                self.outcome("unreadable", reason=reason), unavailable=f"{self.row['media_uri']}: {reason}"
            )
        return Ingested(
            self.outcome("failed", reason=f"not readable after {verdict}: {reason}"), gave_up=True
        )


def _ingest_one(
    marengo: MarengoProvider,
    lake: Lake,
    recorder: _Recorder,
    status: InvocationStatus,
    current_etags: dict[str, str],
    now: datetime,
) -> Ingested:
    row, model = recorder.row, recorder.model
    job = EmbeddingJob.from_record(row, model, marengo.provider_name)
    if status.state == "failed":
        reason = status.failure_message or "the provider reported a failure without a message"
        return Ingested(recorder.outcome("failed", reason=reason))
    if status.state == "unknown":
        return recorder.unreadable(f"status not readable: {status.failure_message}", now)
    current = current_etags.get(job.media_uri)
    if current != job.etag and status.state != "lost":
        # The object changed or went away while the job ran: keep the newer embedding, not this one.
        now_is = f"ETag {current}" if current else "not in the inventory"
        reason = f"object changed while embedding (ETag {job.etag}, now {now_is})"
        return Ingested(recorder.outcome("superseded", reason=reason))
    if status.state == "lost":
        return _ingest_lost(marengo, lake, recorder, status, job, current == job.etag, now)
    try:
        segments = marengo.fetch_segments(status, job)
    except MarengoOutputError as error:
        return Ingested(recorder.outcome("failed", reason=f"{UNUSABLE}{error}"))
    except OutputUnavailable as error:
        return recorder.unreadable(str(error), now)
    table = segments_table(
        job,
        segments,
        route=marengo.route(model),
        invocation_id=status.invocation_id,
        ingested_at=datetime.now(UTC),
    )
    # Validated whole before any of it is committed: a wrong output is refused like a truncated one.
    fault = output_fault(table, recorder.seconds)
    if fault is not None:
        return Ingested(recorder.outcome("failed", reason=f"{UNUSABLE}{fault}"))
    return _embedded(lake, recorder, table)


def _embedded(lake: Lake, recorder: _Recorder, table: pa.Table, note: str | None = None) -> Ingested:
    """A usable output's rows, committed by the run even when empty (they replace the rows of an earlier
    version of the object), and its outcome."""
    path = EmbeddingTable(lake, recorder.model).relative
    if table.num_rows == 0:
        reason = "the job completed with no segments: nothing in the media to embed with these options"
        return Ingested(recorder.outcome("no_content", reason=reason, table_path=path), table)
    return Ingested(
        recorder.outcome("completed", segments=table.num_rows, table_path=path, reason=note), table
    )


def _ingest_lost(
    marengo: MarengoProvider,
    lake: Lake,
    recorder: _Recorder,
    status: InvocationStatus,
    job: EmbeddingJob,
    current: bool,
    now: datetime,
) -> Ingested:
    """A job the provider no longer knows. If it completed before it was lost, its output is where the
    submission said it would be: paid for, so kept as the job's result, after the same validation as any
    output. Only a job with no usable output there is recorded lost and resubmitted."""
    lost = (
        f"{marengo.provider_name} no longer knows invocation {status.invocation_id} "
        f"({status.failure_message})"
    )
    output_uri = recorder.row.get("output_uri")
    try:
        segments = marengo.fetch_lost_output(job, None if pd.isna(output_uri) else str(output_uri))
    except OutputUnavailable as error:  # maybe there, maybe not: read again before buying it again
        return recorder.unreadable(f"{lost}; its output location cannot be read yet: {error}", now)
    resubmit = (
        f"; the next submission run resubmits it as attempt {job.attempt + 1} (a loss does not use up one "
        "of max_attempts; at most max_lost losses)"
    )
    if segments is None:
        return Ingested(recorder.outcome("lost", reason=f"{lost}, and left no usable output{resubmit}"))
    if not current:
        return Ingested(
            recorder.outcome("superseded", reason=f"{lost}; the object changed since (ETag {job.etag})")
        )
    table = segments_table(
        job, segments, route=marengo.route(job.model), invocation_id=status.invocation_id, ingested_at=now
    )
    fault = output_fault(table, recorder.seconds)
    if fault is not None:
        return Ingested(
            recorder.outcome("lost", reason=f"{lost}; its output is unusable ({fault}){resubmit}")
        )
    kept = f"{lost}; its output was complete and is kept: nothing is bought again"
    return _embedded(lake, recorder, table, note=kept)


@dataclass(frozen=True)
class ListingCut:
    """A provider's listing that throttling cut short: what it read is ingested, the sensor finds the rest."""

    provider: str
    reason: str
    found: int


@dataclass(frozen=True)
class IngestReport:
    """What one ingest did, for its materialization, its checks and its log."""

    model: MarengoModel
    provider: str  # the provider that embeds this version now (MEDIAEMBED_PROVIDERS)
    providers: list[str]
    open_jobs: int
    finished: int
    finished_from_own_listing: int
    listing_cuts: list[ListingCut]
    outcomes: list[Outcome]
    written: pa.Table
    commit: Commit | None
    table_uri: str
    table_version: int | None
    table_rows: int  # every row of the table after this run (`written`: only this run's)
    unavailable: list[str]
    ended: list[Outcome]
    running_past_limit: pd.DataFrame
    audit: AuditReport
    ledger_files_compacted: int
    table_maintenance: str
    committed_faults: FaultCounts
    progress: VersionProgress | None  # None: not reported by this run
    thumbnails: ThumbnailCounts = field(default_factory=ThumbnailCounts)

    def with_status(self, status: OutcomeStatus) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def refused_before_commit(self) -> list[Outcome]:
        """Outputs that were there but broke the documented types or the segment rules."""
        return [o for o in self.with_status("failed") if (o.reason or "").startswith(UNUSABLE)]

    @property
    def still_running(self) -> int:
        return self.open_jobs - self.finished


@dataclass
class EmbeddingIngest:
    """Ingest every finished job of `model`, each read through the provider that ran it (which may no
    longer be the one serving the version). Idempotent: a finished job is ingested once."""

    lake: Lake
    providers: MarengoProviders
    model: MarengoModel
    run_id: str
    limits: ReadLimits
    running_age_limit: timedelta
    # False for the sensor's runs: it listed just before, so they take its findings.
    list_provider: bool = True
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Whether to report where the version stands: a plan over the whole library (the asset samples it).
    with_progress: bool = True

    def run(self) -> IngestReport:
        lake, model = self.lake, self.model
        table = EmbeddingTable(lake, model)
        table.ensure()  # created, or migrated from one file per object, on first use
        ledger = SubmissionLedger(lake, self.providers.serving(model).provider_name)
        findings = InvocationFindings(lake)
        known = findings.read(model.key)  # before the ledger: it then holds every job these findings name
        providers = {p.provider_name: p for p in self.providers.configured()}
        open_at = {name: SubmissionLedger(lake, name).in_progress(model.key) for name in providers}
        pending = pd.concat(open_at.values(), ignore_index=True)
        rows: dict[str, dict[str, Any]] = {
            str(r["client_token"]): {str(k): v for k, v in r.items()} for r in pending.to_dict("records")
        }
        by_token = {s.client_token: s for s in known.statuses.values() if (s.client_token or "") in rows}
        listed, cuts = 0, []
        if self.list_provider:
            for name, provider_open in open_at.items():
                rest = provider_open[~provider_open["client_token"].isin(list(by_token))]
                if rest.empty:
                    continue
                oldest = rest["submitted_at"].min().to_pydatetime()
                try:
                    found = providers[name].finished_invocations(open_jobs(rest), oldest)
                except ListingIncomplete as cut:  # throttled: ingest what was read, the sensor finds the rest
                    found = cut.found
                    cuts.append(ListingCut(name, cut.reason, len(cut.found)))
                listed += len(found)
                by_token.update((s.client_token, s) for s in found if (s.client_token or "") in rows)
        finished = [s for s in by_token.values() if s.state != "in_progress"]
        # The current ETag of each finished job's object only: a job of an object changed since is superseded.
        finished_uris = {str(rows[s.client_token or ""]["media_uri"]) for s in finished}
        inventory = read_inventory(lake, ["media_uri", "etag"], finished_uris)
        current_etags = dict(zip(inventory["media_uri"], inventory["etag"], strict=True))
        still_running = pending[~pending["client_token"].isin([s.client_token for s in finished])]
        overdue = running_too_long(still_running, self.now, self.running_age_limit)

        def ingest(status: InvocationStatus) -> Ingested:
            row = rows[status.client_token or ""]
            recorder = _Recorder(row, model, status.invocation_id, self.limits)
            try:
                return _ingest_one(
                    providers[row["provider"]], lake, recorder, status, current_etags, self.now
                )
            except Exception as error:  # one object's surprise must not lose the others' outcomes
                return recorder.unreadable(f"{type(error).__name__}: {error}", self.now)

        # A chunk of objects at a time, so a run's memory holds one chunk's outputs, not every finished
        # job's. Each chunk's rows in one commit, before the ledger says so: a run killed before a chunk's
        # commit leaves the previous version and no outcome for it (the next run reads those outputs
        # again); after it, the same rows.
        results: list[Ingested] = []
        commits: list[Commit] = []
        written_parts: list[pa.Table] = []
        thumbnails = ThumbnailCounts()
        outcomes: list[Outcome] = []
        for start in range(0, max(len(finished), 1), INGEST_CHUNK_JOBS):
            with ThreadPoolExecutor(FETCH_THREADS) as pool:
                chunk = list(pool.map(ingest, finished[start : start + INGEST_CHUNK_JOBS]))
            tables = [r.table for r in chunk if r.table is not None]
            ids = [media_id(r.outcome.media_uri) for r in chunk if r.table is not None and r.outcome]
            done = table.replace(pa.concat_tables(tables or [table.schema.empty_table()]), ids)
            commits += [done] if done is not None else []
            written_part = pa.concat_tables(tables or [segment_schema(model.dimension).empty_table()])
            written_parts.append(written_part)
            # Posters of what was just committed (never raises; before the outcomes, so that a run killed
            # here makes them when the next run commits the same rows again).
            thumbnails += make_thumbnails(
                lake.location, written_part, model.key, s3_media_opener(lake.storage.get_client)
            )
            chunk_outcomes = [r.outcome for r in chunk if r.outcome is not None]
            ledger.record_outcomes(chunk_outcomes, self.run_id)
            outcomes += chunk_outcomes
            results += [replace(r, table=None) for r in chunk]  # the chunk's rows, committed, let go
        written = pa.concat_tables(written_parts)
        commit = _one_commit(commits)
        # Findings now in the ledger go; a completed job whose output could not be read yet stays found (the
        # sensor hands it on again later), one whose status could not be read is asked about again.
        carried = [
            s for s, r in zip(finished, results, strict=True) if r.unavailable and s.state == "completed"
        ]
        findings.record(carried, model.key, found_by=f"ingest run {self.run_id}: output not readable yet")
        findings.consume(known.files)
        # Rows a release before output validation committed get the verdict their output would get now.
        audit = TableAudit(lake, model).run(
            lambda: probed_durations(read_inventory(lake, ["media_uri", "duration_sec"])), self.run_id
        )
        compacted = ledger.compact()
        maintenance = table.maintain()
        durations = {r["media_uri"]: r["media_seconds"] for r in rows.values()}
        return IngestReport(
            model=model,
            provider=self.providers.serving(model).provider_name,
            providers=sorted(set(pending["provider"])) if not pending.empty else [],
            open_jobs=len(pending),
            finished=len(finished),
            finished_from_own_listing=listed,
            listing_cuts=cuts,
            outcomes=outcomes,
            written=written,
            commit=commit,
            table_uri=table.uri,
            table_version=table.version() if commit is None else commit.version,
            table_rows=table.row_count(),
            unavailable=[r.unavailable for r in results if r.unavailable],
            ended=[r.outcome for r in results if r.gave_up and r.outcome is not None],
            running_past_limit=overdue,
            audit=audit,
            ledger_files_compacted=compacted,
            table_maintenance=maintenance,
            # Every output was validated before the commit, so this finds nothing unless a rule has a bug.
            committed_faults=fault_counts(written, durations),
            # Where the version stands after this run (the submission defaults' options and attempts).
            progress=version_progress(
                read_inventory(lake, PLANNING_COLUMNS),
                SubmissionLedger(lake, None).jobs(
                    model.key, columns=[*PLANNING_JOB_COLUMNS, *COST_JOB_COLUMNS]
                ),
                embedded_objects(lake, model),
                model,
                EmbeddingOptions(),
                prices=self.providers.serving(model).prices or "",
            )
            if self.with_progress
            else None,
            thumbnails=thumbnails,
        )
