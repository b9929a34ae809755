"""The Marengo embedding table (Delta Lake): finished Marengo invocations turned into one row per segment.

The asset is thin: it builds an `EmbeddingIngest` (assets_defs/marengo/ingest_run.py), runs it, logs what
needs a person, and reports the `IngestReport` as metadata and check results.
"""

from dataclasses import replace
from datetime import timedelta

import dagster as dg
import pandas as pd
from pydantic import Field

from assets_defs import keys
from assets_defs.marengo.ingest_run import EmbeddingIngest, IngestReport, ReadLimits
from assets_defs.marengo.invocations import marengo_invocations
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.metadata import column_schema, last_reported_within, preview
from resources.providers.marengo_models import MarengoModel, marengo_model
from resources.providers.marengo_resource import MarengoProviders
from resources.storage.lake import Lake

# An ingest run reports the version's progress at most this often: it plans the whole library.
PROGRESS_EVERY_SEC = 600.0
# Materializations an ingest run looks back through for the version's last progress report.
PROGRESS_LOOK_BACK = 20


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

    progress_every_sec: float = Field(
        default=PROGRESS_EVERY_SEC,
        ge=0,
        description=(
            "Report where the version stands (progress_* metadata: a plan over the whole library, whose "
            "cost grows with it) when this run's model has no such report younger than this; 0: every "
            "run. Runs that plan the library (submission runs, backfills) report it too."
        ),
    )

    def limits(self) -> ReadLimits:
        return ReadLimits(self.max_unreadable_reads, timedelta(hours=self.unreadable_age_limit_hours))


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
    ingest = build_ingest(config, lake, marengo, model, context.run.run_id)
    due = progress_is_due(context.instance, model.key, config.progress_every_sec)
    report = replace(ingest, with_progress=due).run()
    log_for_people(context.log, report)
    return materialize_result(report, config)


def build_ingest(
    config: IngestConfig, lake: Lake, marengo: MarengoProviders, model: MarengoModel, run_id: str
) -> EmbeddingIngest:
    """The ingest a run with `config` does for `model`."""
    return EmbeddingIngest(
        lake=lake,
        providers=marengo,
        model=model,
        run_id=run_id,
        limits=config.limits(),
        running_age_limit=timedelta(hours=config.running_age_limit_hours),
        list_provider=config.list_provider,
    )


def log_for_people(log: dg.DagsterLogManager, report: IngestReport) -> None:
    """One line per thing a person may need to act on or know about."""
    for cut in report.listing_cuts:
        log.warning(
            f"{cut.provider} cut this run's listing short ({cut.reason}): ingesting the {cut.found} "
            "finished jobs it read; the invocation sensor hands on the rest"
        )
    for row in report.running_past_limit.to_dict("records"):
        log.error(
            f"{row['media_uri']}: {row['provider']} still runs {row['invocation_id']} after "
            f"{row['age_hours']} h; it is not resubmitted (it may still finish and bill), ask the provider"
        )
    for row in report.audit.taken_back.to_dict("records"):
        log.warning(
            f"{row['media_uri']}: taken out of the table by its audit and embedded again: {row['problem']}"
        )
    for reason in report.unavailable:
        log.warning(f"not readable yet, the job stays open and is read again later: {reason}")
    for o in report.ended:
        log.error(f"{o.media_uri}: job ended as failed, {o.reason}; it is retried with a new token")
    for o in report.with_status("failed"):
        log.warning(f"{o.media_uri}: embedding failed: {o.reason}")
    for o in report.with_status("lost"):
        log.warning(f"{o.media_uri}: job lost: {o.reason}")
    for problem in report.thumbnails.problems:
        log.warning(f"{problem}; the search page shows a placeholder for it")


def materialize_result(report: IngestReport, config: IngestConfig) -> dg.MaterializeResult:
    """The report as the materialization's metadata and the four checks' results."""
    model, written, commit = report.model, report.written, report.commit
    completed, failed = report.with_status("completed"), report.with_status("failed")
    refused, faults, overdue = (
        report.refused_before_commit,
        report.committed_faults,
        report.running_past_limit,
    )
    columns = ["media_uri", "embedding_option", "embedding_type", "embedding_scope", "start_sec", "end_sec"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.table_rows,
            "rows_written": written.num_rows,
            "dagster/column_schema": column_schema(written.schema),
            "model": model.key,
            # Who made the rows this run wrote (a version may move between providers), else who embeds it.
            "provider": ", ".join(sorted(set(written.column("provider").to_pylist()))) or report.provider,
            "providers": ", ".join(report.providers),
            "dimension": dg.MetadataValue.text(str(model.dimension)),  # a setting: text, never plotted
            "invocations_finished": report.finished,
            "finished_from_findings": report.finished - report.finished_from_own_listing,
            "finished_from_own_listing": report.finished_from_own_listing,
            "own_listing_cut_short": "; ".join(f"{c.provider}: {c.reason}" for c in report.listing_cuts),
            "invocations_still_running": report.still_running,
            "objects_embedded": len(completed),
            "objects_failed": len(failed),
            "objects_superseded": len(report.with_status("superseded")),
            "objects_without_content": len(report.with_status("no_content")),
            "jobs_lost": len(report.with_status("lost")),
            "outputs_unreadable": len(report.unavailable),
            "jobs_ended_past_read_limits": len(report.ended),
            "ledger_files_compacted": report.ledger_files_compacted,
            "thumbnails_made": report.thumbnails.made,
            "thumbnail_objects": report.thumbnails.objects,
            "thumbnail_objects_already_there": report.thumbnails.already_there,
            "thumbnail_failures": len(report.thumbnails.problems),
            "table_audit": "audited once already"
            if not report.audit.ran
            else f"{report.audit.rows_checked} rows audited",
            "objects_taken_back_by_audit": len(report.audit.taken_back),
            "media_seconds": round(sum(o.media_seconds or 0.0 for o in completed), 3),
            "location": dg.MetadataValue.path(report.table_uri),
            "table_format": "Delta Lake",
            "table_version": report.table_version,
            "objects_replaced_in_commit": 0 if commit is None else commit.objects_replaced,
            "table_maintenance": report.table_maintenance,
            "failures": preview(
                pd.DataFrame([{"media_uri": f.media_uri, "reason": f.reason} for f in failed])
            ),
            "preview": preview(written.select(columns).to_pandas()),
            **(report.progress.metadata() if report.progress is not None else {}),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="finished_jobs_end",
                passed=not report.ended and not report.unavailable,
                severity=dg.AssetCheckSeverity.ERROR if report.ended else dg.AssetCheckSeverity.WARN,
                metadata={
                    "ended_past_limits": preview(
                        pd.DataFrame([{"media_uri": o.media_uri, "reason": o.reason} for o in report.ended])
                    ),
                    "waiting_to_be_read_again": len(report.unavailable),
                    "max_unreadable_reads": config.max_unreadable_reads,
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
                    "still_running": report.still_running,
                    "running_age_limit_hours": config.running_age_limit_hours,
                },
            ),
            dg.AssetCheckResult(
                check_name="vectors_well_formed",
                passed=faults.vectors == 0,
                metadata={
                    "rows_checked": written.num_rows,
                    "bad_vectors": faults.vectors,
                    "outputs_refused_before_commit": len(refused),
                },
            ),
            dg.AssetCheckResult(
                check_name="segments_within_media",
                passed=faults.spans == 0 and faults.repeats == 0,
                metadata={
                    "rows_checked": written.num_rows,
                    "outside": faults.spans,
                    "repeated_segments": faults.repeats,
                    "outputs_refused_before_commit": len(refused),
                },
            ),
        ],
    )


def progress_is_due(instance: dg.DagsterInstance, model_key: str, every_sec: float) -> bool:
    """Whether none of the version's last ingest runs reported its progress in the last `every_sec`."""
    return not last_reported_within(
        instance, keys.MARENGO_EMBEDDINGS, model_key, "progress_done", every_sec, PROGRESS_LOOK_BACK
    )
