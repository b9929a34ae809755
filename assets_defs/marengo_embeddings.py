"""The Parquet embedding table: finished Marengo invocations turned into one row per segment."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa

from assets_defs.marengo_invocations import marengo_invocations
from assets_defs.media_inventory import read_inventory
from assets_defs.metadata import column_schema, preview
from assets_defs.partitions import marengo_model_partitions
from resources.bedrock_marengo_bodies import MarengoOutputError, OutputUnavailable
from resources.embedding_jobs import EmbeddingJob, InvocationStatus, options_from_canonical
from resources.lake import Lake
from resources.marengo_models import MarengoModel, marengo_model
from resources.marengo_provider import MarengoProvider
from resources.segment_schema import media_id, segment_schema, segments_table
from resources.submission_ledger import Outcome, OutcomeStatus, SubmissionLedger, open_jobs

FETCH_THREADS = 8
# Containers round durations; a clip may end a frame or so past the probed duration.
DURATION_TOLERANCE_SEC = 0.5


def embeddings_path(model: MarengoModel, uri: str) -> str:
    """One file per media object and model: re-ingesting an object replaces exactly its rows."""
    return f"tables/marengo_embeddings/{model.key}/{media_id(uri)}.parquet"


@dataclass(frozen=True)
class Ingested:
    """What became of one finished invocation; no outcome means it stays open and is read again later."""

    outcome: Outcome | None
    table: pa.Table | None = None
    unavailable: str | None = None


def _ingest_one(
    marengo: MarengoProvider,
    lake: Lake,
    model: MarengoModel,
    row: dict[str, Any],
    status: InvocationStatus,
    current_etags: dict[str, str],
) -> Ingested:
    job = EmbeddingJob(
        media_uri=row["media_uri"],
        etag=row["etag"],
        modality=row["modality"],
        model=model,
        options=options_from_canonical(row["options"]),
        attempt=int(row["attempt"]),
    )
    seconds = None if pd.isna(row["media_seconds"]) else float(row["media_seconds"])

    def outcome(status_: OutcomeStatus, **fields: Any) -> Outcome:
        return Outcome(
            job_key=job.job_key,
            client_token=job.client_token,
            model_key=model.key,
            media_uri=job.media_uri,
            etag=job.etag,
            invocation_id=status.invocation_id,
            status=status_,
            media_seconds=seconds,
            **fields,
        )

    if status.state == "failed":
        reason = status.failure_message or "the provider reported a failure without a message"
        return Ingested(outcome("failed", reason=reason))
    current = current_etags.get(job.media_uri)
    if current != job.etag:
        # The object changed or went away while the job ran: keep the newer embedding, not this one.
        now = f"ETag {current}" if current else "not in the inventory"
        return Ingested(
            outcome("superseded", reason=f"object changed while embedding (ETag {job.etag}, now {now})")
        )
    try:
        segments = marengo.fetch_segments(status, job)
    except OutputUnavailable as error:
        return Ingested(None, unavailable=f"{job.media_uri}: {error}")
    except MarengoOutputError as error:
        return Ingested(outcome("failed", reason=f"unusable output: {error}"))
    table = segments_table(
        job,
        segments,
        provider=marengo.provider_name,
        invocation_id=status.invocation_id,
        ingested_at=datetime.now(UTC),
    )
    path = embeddings_path(model, job.media_uri)
    lake.write_table(table, path)
    return Ingested(outcome("completed", segments=table.num_rows, table_path=path), table)


def _vector_problems(table: pa.Table, dimension: int) -> int:
    if table.num_rows == 0:
        return 0
    vectors = np.asarray(table.column("vector").combine_chunks().flatten(), dtype=np.float32)
    vectors = vectors.reshape(-1, dimension)
    norms = np.linalg.norm(vectors, axis=1)
    return int((~np.isfinite(vectors).all(axis=1) | (norms == 0)).sum())


def _segments_outside_media(table: pa.Table, durations: dict[str, float | None]) -> pd.DataFrame:
    frame = table.select(["media_uri", "start_sec", "end_sec"]).to_pandas()
    frame = frame.dropna(subset=["start_sec", "end_sec"])
    frame["duration_sec"] = frame["media_uri"].map(durations).astype(float)
    bad = (frame["start_sec"] < 0) | (frame["end_sec"] <= frame["start_sec"])
    bad |= frame["end_sec"] > frame["duration_sec"] + DURATION_TOLERANCE_SEC
    return frame[bad]


@dg.asset(
    key=["marengo", "embeddings"],
    deps=[marengo_invocations],
    partitions_def=marengo_model_partitions,
    group_name="marengo",
    kinds={"parquet", "s3"},
    # One ingest at a time per model: two runs reading the same finished invocation would race.
    pool="marengo_ingest",
    check_specs=[
        dg.AssetCheckSpec(
            "vectors_well_formed",
            asset=["marengo", "embeddings"],
            description="Every vector ingested has the model's dimension, finite values and a non-zero norm.",
            blocking=True,
        ),
        dg.AssetCheckSpec(
            "segments_within_media",
            asset=["marengo", "embeddings"],
            description="Every clip starts before it ends and ends within the media's probed duration.",
            blocking=True,
        ),
    ],
)
def marengo_embeddings(
    context: dg.AssetExecutionContext, marengo: MarengoProvider, lake: Lake
) -> dg.MaterializeResult:
    """Segment embeddings from every finished invocation of this model version, one Parquet file per object.

    Completed invocations become rows (media, ETag, model, option, start/end seconds, vector); failed ones
    are recorded in the ledger with the provider's reason. Idempotent: a finished invocation is ingested once.
    """
    model = marengo_model(context.partition_key)
    ledger = SubmissionLedger(lake, marengo.provider_name)
    pending = ledger.in_progress(model.key)
    finished: list[InvocationStatus] = []
    if not pending.empty:
        finished = marengo.finished_invocations(
            open_jobs(pending), pending["submitted_at"].min().to_pydatetime()
        )
    inventory = read_inventory(lake)
    current_etags = dict(zip(inventory["media_uri"], inventory["etag"], strict=True))
    rows: dict[str, dict[str, Any]] = {
        str(r["client_token"]): {str(k): v for k, v in r.items()} for r in pending.to_dict("records")
    }

    def ingest(status: InvocationStatus) -> Ingested:
        row = rows[status.client_token or ""]
        try:
            return _ingest_one(marengo, lake, model, row, status, current_etags)
        except Exception as error:  # one object's surprise must not lose the others' outcomes
            return Ingested(None, unavailable=f"{row['media_uri']}: {type(error).__name__}: {error}")

    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        results = list(pool.map(ingest, [s for s in finished if (s.client_token or "") in rows]))
    outcomes = [r.outcome for r in results if r.outcome is not None]
    ledger.record_outcomes(outcomes, context.run_id)
    compacted = ledger.compact()
    unavailable = [r.unavailable for r in results if r.unavailable]
    for reason in unavailable:
        context.log.warning(f"output not readable yet, the job stays open: {reason}")

    schema = segment_schema(model.dimension)
    written = pa.concat_tables([r.table for r in results if r.table is not None] or [schema.empty_table()])
    completed = [o for o in outcomes if o.status == "completed"]
    failed = [o for o in outcomes if o.status == "failed"]
    superseded = [o for o in outcomes if o.status == "superseded"]
    for f in failed:
        context.log.warning(f"{f.media_uri}: embedding failed: {f.reason}")
    durations = {r["media_uri"]: r["media_seconds"] for r in rows.values()}
    bad_vectors = _vector_problems(written, model.dimension)
    outside = _segments_outside_media(written, durations)
    columns = ["media_uri", "embedding_option", "embedding_scope", "start_sec", "end_sec"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": written.num_rows,
            "dagster/column_schema": column_schema(schema),
            "model": model.base_model_id,
            "dimension": model.dimension,
            "invocations_finished": len(finished),
            "invocations_still_running": len(pending) - len(finished),
            "objects_embedded": len(completed),
            "objects_failed": len(failed),
            "objects_superseded": len(superseded),
            "outputs_unreadable": len(unavailable),
            "ledger_files_compacted": compacted,
            "media_seconds": round(sum(o.media_seconds or 0.0 for o in completed), 3),
            "location": dg.MetadataValue.path(lake.uri(f"tables/marengo_embeddings/{model.key}/")),
            "failures": preview(
                pd.DataFrame([{"media_uri": f.media_uri, "reason": f.reason} for f in failed])
            ),
            "preview": preview(written.select(columns).to_pandas()),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="vectors_well_formed",
                passed=bad_vectors == 0,
                metadata={"rows_checked": written.num_rows, "bad_vectors": bad_vectors},
            ),
            dg.AssetCheckResult(
                check_name="segments_within_media",
                passed=outside.empty,
                metadata={"rows_checked": written.num_rows, "outside": preview(outside)},
            ),
        ],
    )
