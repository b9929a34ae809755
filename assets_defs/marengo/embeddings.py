"""The Marengo embedding table (Delta Lake): finished Marengo invocations turned into one row per segment."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from assets_defs import keys
from assets_defs.inventory.media_inventory import probed_durations, read_inventory
from assets_defs.marengo.invocations import marengo_invocations
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.metadata import column_schema, preview
from assets_defs.migration.estimates import embedded_objects, version_progress
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    options_from_canonical,
)
from resources.providers.errors import ListingIncomplete, MarengoOutputError, OutputUnavailable
from resources.providers.marengo_models import MarengoModel, marengo_model
from resources.providers.marengo_resource import MarengoProviders
from resources.storage.lake import Lake
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.invocation_findings import InvocationFindings
from resources.tables.segment_schema import media_id, segment_schema, segments_table
from resources.tables.segment_validity import fault_counts, output_fault
from resources.tables.submission_ledger import Outcome, OutcomeStatus, SubmissionLedger, open_jobs
from resources.tables.table_audit import TableAudit

FETCH_THREADS = 8
# The reason of a job whose output was there but broke the documented types or the segment rules.
UNUSABLE = "unusable output: "


@dataclass(frozen=True)
class ReadLimits:
    max_reads: int
    age_limit: timedelta


class IngestConfig(dg.Config):
    max_unreadable_reads: int = Field(
        default=6,
        ge=1,
        description=(
            "A finished job whose output or status cannot be read right now (access, throttling, network) "
            "stays open and is read again by later runs; this many failed reads end it as failed."
        ),
    )
    unreadable_age_limit_hours: float = Field(
        default=24.0,
        gt=0,
        description=(
            "A job still unreadable this long after its first failed read is ended as failed too, "
            "whichever limit comes first."
        ),
    )

    running_age_limit_hours: float = Field(
        default=24.0,
        gt=0,
        description=(
            "A job the provider still reports running this long after its submission is named by the "
            "check `no_job_running_too_long`. It is not resubmitted: the provider may still finish, and "
            "bill, it. Ask the provider about it (or raise this for very long media)."
        ),
    )

    list_provider: bool = Field(
        default=True,
        description=(
            "Ask the provider which jobs finished, besides the findings a listing already recorded in the "
            "lake. The invocation sensor's runs set it to false: the sensor listed just before, so they "
            "take its findings and call the provider only to read outputs."
        ),
    )

    def limits(self) -> ReadLimits:
        return ReadLimits(self.max_unreadable_reads, timedelta(hours=self.unreadable_age_limit_hours))


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
    job = EmbeddingJob(
        media_uri=row["media_uri"],
        etag=row["etag"],
        modality=row["modality"],
        model=model,
        options=options_from_canonical(row["options"]),
        attempt=int(row["attempt"]),
        provider=marengo.provider_name,
    )
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


@dg.asset(
    key=keys.MARENGO_EMBEDDINGS,
    deps=[marengo_invocations],
    partitions_def=marengo_model_partitions,
    group_name="marengo",
    kinds={"deltalake", "s3"},
    # One ingest at a time per model: two runs reading the same finished invocation would race.
    pool="marengo_ingest",
    check_specs=[
        dg.AssetCheckSpec(
            "finished_jobs_end",
            asset=keys.MARENGO_EMBEDDINGS,
            description=(
                "Fails naming the jobs this run ended because their output or status stayed unreadable "
                "past the limits (max_unreadable_reads, unreadable_age_limit_hours); warns while "
                "finished jobs wait to be read again."
            ),
        ),
        dg.AssetCheckSpec(
            "no_job_running_too_long",
            asset=keys.MARENGO_EMBEDDINGS,
            description=(
                "Fails naming the jobs the provider still reports running past running_age_limit_hours "
                "(24) since submission: every job must end, and these need a look."
            ),
        ),
        dg.AssetCheckSpec(
            "vectors_well_formed",
            asset=keys.MARENGO_EMBEDDINGS,
            description=(
                "Every vector committed has the model's dimension, finite values and a non-zero norm. "
                "Outputs breaking that are refused before the commit (the job fails and is retried), so "
                "this guards the rules themselves; the refusals are counted in its metadata."
            ),
            blocking=True,
        ),
        dg.AssetCheckSpec(
            "segments_within_media",
            asset=keys.MARENGO_EMBEDDINGS,
            description=(
                "Every clip committed starts before it ends, ends within the media's probed duration, and "
                "occurs once. Outputs breaking that are refused before the commit, as for the vectors."
            ),
            blocking=True,
        ),
    ],
)
def marengo_embeddings(
    context: dg.AssetExecutionContext, config: IngestConfig, marengo: MarengoProviders, lake: Lake
) -> dg.MaterializeResult:
    """Segment embeddings from every finished invocation of this model version, in its Delta Lake table.

    Completed invocations become rows (media, ETag, model, option, start/end seconds, vector); failed ones
    are recorded in the ledger with the provider's reason, and so are unusable outputs. A job the provider
    lost is recorded as lost (the next submission run starts a new attempt); a job that completed with no
    segments as no_content. Only transient read trouble leaves a job open, within limits, so every job
    ends. Idempotent: a finished invocation is ingested once. Each job is read through the provider that
    ran it, which may no longer be the one serving the version.
    """
    model = marengo_model(context.partition_key)
    table = EmbeddingTable(lake, model)
    table.ensure()  # created, or migrated from one file per object, on first use
    ledger = SubmissionLedger(lake, marengo.serving(model).provider_name)
    findings = InvocationFindings(lake)
    known = findings.read(model.key)  # before the ledger: it then holds every job these findings name
    providers = {p.provider_name: p for p in marengo.configured()}
    open_at = {name: SubmissionLedger(lake, name).in_progress(model.key) for name in providers}
    pending = pd.concat(open_at.values(), ignore_index=True)
    rows: dict[str, dict[str, Any]] = {
        str(r["client_token"]): {str(k): v for k, v in r.items()} for r in pending.to_dict("records")
    }
    by_token = {s.client_token: s for s in known.statuses.values() if (s.client_token or "") in rows}
    listed = 0
    listing_cut = ""
    if config.list_provider:
        for name, provider_open in open_at.items():
            rest = provider_open[~provider_open["client_token"].isin(list(by_token))]
            if rest.empty:
                continue
            oldest = rest["submitted_at"].min().to_pydatetime()
            try:
                found = providers[name].finished_invocations(open_jobs(rest), oldest)
            except ListingIncomplete as cut:  # throttled: ingest what was read, the sensor finds the rest
                context.log.warning(
                    f"{name} cut this run's listing short ({cut.reason}): ingesting the {len(cut.found)} "
                    "finished jobs it read; the invocation sensor hands on the rest"
                )
                found, listing_cut = cut.found, f"{name}: {cut.reason}"
            listed += len(found)
            by_token.update((s.client_token, s) for s in found if (s.client_token or "") in rows)
    finished = [s for s in by_token.values() if s.state != "in_progress"]
    inventory = read_inventory(lake)
    current_etags = dict(zip(inventory["media_uri"], inventory["etag"], strict=True))

    limits, now = config.limits(), datetime.now(UTC)
    still_running = pending[~pending["client_token"].isin([s.client_token for s in finished])]
    overdue = running_too_long(still_running, now, timedelta(hours=config.running_age_limit_hours))
    for row in overdue.to_dict("records"):
        context.log.error(
            f"{row['media_uri']}: {row['provider']} still runs {row['invocation_id']} after "
            f"{row['age_hours']} h; it is not resubmitted (it may still finish and bill), ask the provider"
        )

    def ingest(status: InvocationStatus) -> Ingested:
        row = rows[status.client_token or ""]
        recorder = _Recorder(row, model, status.invocation_id, limits)
        try:
            return _ingest_one(providers[row["provider"]], lake, recorder, status, current_etags, now)
        except Exception as error:  # one object's surprise must not lose the others' outcomes
            return recorder.unreadable(f"{type(error).__name__}: {error}", now)

    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        results = list(pool.map(ingest, finished))
    # Every object's rows in one commit, before the ledger says so: a run killed before the commit leaves
    # the previous version and no outcome (the next run reads the outputs again); after it, the same rows.
    embedded = [r for r in results if r.table is not None]
    commit = table.replace(
        pa.concat_tables([r.table for r in embedded if r.table is not None] or [table.schema.empty_table()]),
        [media_id(r.outcome.media_uri) for r in embedded if r.outcome is not None],
    )
    outcomes = [r.outcome for r in results if r.outcome is not None]
    ledger.record_outcomes(outcomes, context.run_id)
    # Findings now in the ledger go; a completed job whose output could not be read yet stays found (the
    # sensor hands it on again later), one whose status could not be read is asked about again.
    carried = [s for s, r in zip(finished, results, strict=True) if r.unavailable and s.state == "completed"]
    findings.record(carried, model.key, found_by=f"ingest run {context.run_id}: output not readable yet")
    findings.consume(known.files)
    # Rows a release before output validation committed get the verdict their output would get now.
    audit = TableAudit(lake, model).run(probed_durations(inventory), context.run_id)
    for row in audit.taken_back.to_dict("records"):
        context.log.warning(
            f"{row['media_uri']}: taken out of the table by its audit and embedded again: {row['problem']}"
        )
    compacted = ledger.compact()
    maintenance = table.maintain()
    unavailable = [r.unavailable for r in results if r.unavailable]
    for reason in unavailable:
        context.log.warning(f"not readable yet, the job stays open and is read again later: {reason}")
    ended = [r.outcome for r in results if r.gave_up and r.outcome is not None]
    for o in ended:
        context.log.error(f"{o.media_uri}: job ended as failed, {o.reason}; it is retried with a new token")

    schema = segment_schema(model.dimension)
    written = pa.concat_tables([r.table for r in results if r.table is not None] or [schema.empty_table()])
    completed = [o for o in outcomes if o.status == "completed"]
    failed = [o for o in outcomes if o.status == "failed"]
    superseded = [o for o in outcomes if o.status == "superseded"]
    lost = [o for o in outcomes if o.status == "lost"]
    empty = [o for o in outcomes if o.status == "no_content"]
    for f in failed:
        context.log.warning(f"{f.media_uri}: embedding failed: {f.reason}")
    for o in lost:
        context.log.warning(f"{o.media_uri}: job lost: {o.reason}")
    durations = {r["media_uri"]: r["media_seconds"] for r in rows.values()}
    # Every output was validated before the commit, so these find nothing unless a rule has a bug.
    committed = fault_counts(written, durations)
    refused = [o for o in failed if (o.reason or "").startswith(UNUSABLE)]
    columns = ["media_uri", "embedding_option", "embedding_type", "embedding_scope", "start_sec", "end_sec"]
    # Where the version stands after this run (the submission defaults' options and attempts).
    progress = version_progress(
        inventory,
        SubmissionLedger(lake, None).jobs(model.key),
        embedded_objects(lake, model),
        model,
        EmbeddingOptions(),
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written.num_rows,
            "dagster/column_schema": column_schema(schema),
            "model": model.key,
            "providers": ", ".join(sorted(set(pending["provider"]))) if not pending.empty else "",
            "dimension": model.dimension,
            "invocations_finished": len(finished),
            "finished_from_findings": len(finished) - listed,
            "finished_from_own_listing": listed,
            "own_listing_cut_short": listing_cut,
            "invocations_still_running": len(pending) - len(finished),
            "objects_embedded": len(completed),
            "objects_failed": len(failed),
            "objects_superseded": len(superseded),
            "objects_without_content": len(empty),
            "jobs_lost": len(lost),
            "outputs_unreadable": len(unavailable),
            "jobs_ended_past_read_limits": len(ended),
            "ledger_files_compacted": compacted,
            "table_audit": "audited once already" if not audit.ran else f"{audit.rows_checked} rows audited",
            "objects_taken_back_by_audit": len(audit.taken_back),
            "media_seconds": round(sum(o.media_seconds or 0.0 for o in completed), 3),
            "location": dg.MetadataValue.path(table.uri),
            "table_format": "Delta Lake",
            "table_version": table.version() if commit is None else commit.version,
            "objects_replaced_in_commit": 0 if commit is None else commit.objects_replaced,
            "table_maintenance": maintenance,
            "failures": preview(
                pd.DataFrame([{"media_uri": f.media_uri, "reason": f.reason} for f in failed])
            ),
            "preview": preview(written.select(columns).to_pandas()),
            **progress.metadata(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="finished_jobs_end",
                passed=not ended and not unavailable,
                severity=dg.AssetCheckSeverity.ERROR if ended else dg.AssetCheckSeverity.WARN,
                metadata={
                    "ended_past_limits": preview(
                        pd.DataFrame([{"media_uri": o.media_uri, "reason": o.reason} for o in ended])
                    ),
                    "waiting_to_be_read_again": len(unavailable),
                    "max_unreadable_reads": limits.max_reads,
                    "unreadable_age_limit_hours": config.unreadable_age_limit_hours,
                },
            ),
            dg.AssetCheckResult(
                check_name="no_job_running_too_long",
                passed=overdue.empty,
                severity=dg.AssetCheckSeverity.ERROR,
                description=None
                if overdue.empty
                else f"{len(overdue)} jobs still running past {config.running_age_limit_hours:g} h",
                metadata={
                    "running_past_limit": preview(overdue),
                    "still_running": len(still_running),
                    "running_age_limit_hours": config.running_age_limit_hours,
                },
            ),
            dg.AssetCheckResult(
                check_name="vectors_well_formed",
                passed=committed.vectors == 0,
                metadata={
                    "rows_checked": written.num_rows,
                    "bad_vectors": committed.vectors,
                    "outputs_refused_before_commit": len(refused),
                },
            ),
            dg.AssetCheckResult(
                check_name="segments_within_media",
                passed=committed.spans == 0 and committed.repeats == 0,
                metadata={
                    "rows_checked": written.num_rows,
                    "outside": committed.spans,
                    "repeated_segments": committed.repeats,
                    "outputs_refused_before_commit": len(refused),
                },
            ),
        ],
    )
