"""The provider-neutral embedding table: one row per segment vector.

The same columns serve the Parquet system of record and the LanceDB index. The vector column is a
fixed-size float32 list whose size is the model's dimension, so a 1024-d 2.7 row can never be appended to
a 512-d 3.0 table. `embedding_type` tells a fused vector (no option: it combines them) from the separate
ones; tables written before the column existed gain it, their rows all separate
(resources/tables/embedding_table.py, resources/index/segment_index.py).
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
import pyarrow as pa

from resources.providers.embedding_jobs import EmbeddingJob, SegmentEmbedding
from resources.providers.model_routes import ModelRoute


def media_id(media_uri: str) -> str:
    """A stable, path-safe id for a media object."""
    return hashlib.sha256(media_uri.encode()).hexdigest()[:24]


def segment_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("segment_id", pa.string(), nullable=False),
            pa.field("media_id", pa.string(), nullable=False),
            pa.field("media_uri", pa.string(), nullable=False),
            pa.field("etag", pa.string(), nullable=False),
            pa.field("modality", pa.string(), nullable=False),
            pa.field("provider", pa.string(), nullable=False),
            pa.field("model_key", pa.string(), nullable=False),
            pa.field("model_id", pa.string(), nullable=False),
            pa.field("model_version", pa.string(), nullable=False),
            pa.field("embedding_option", pa.string()),
            pa.field("embedding_type", pa.string(), nullable=False),
            pa.field("embedding_scope", pa.string(), nullable=False),
            pa.field("start_sec", pa.float64()),
            pa.field("end_sec", pa.float64()),
            pa.field("invocation_id", pa.string(), nullable=False),
            pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dimension), nullable=False),
        ]
    )


def segment_id(job: EmbeddingJob, segment: SegmentEmbedding) -> str:
    """Same object, model, option, scope and span -> same id. The type is hashed only when it is not
    separate: a separate vector keeps the id it had before there were types, so nothing indexed changes,
    and a fused vector of the same span still gets an id of its own."""
    parts = [
        job.media_uri,
        job.etag,
        job.model.key,
        segment.embedding_option or "",
        segment.embedding_scope,
        f"{segment.start_sec}",
        f"{segment.end_sec}",
    ]
    if segment.embedding_type != "separate":
        parts.append(segment.embedding_type)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def segments_table(
    job: EmbeddingJob,
    segments: list[SegmentEmbedding],
    *,
    route: ModelRoute,
    invocation_id: str,
    ingested_at: datetime,
) -> pa.Table:
    """One row per segment. The vectors go into Arrow as one float32 buffer (no Python float per value):
    this is most of an ingest's CPU otherwise."""
    schema = segment_schema(job.model.dimension)
    n = len(segments)
    if n:
        vectors = np.asarray([s.vector for s in segments], dtype=np.float32)
    else:
        vectors = np.empty((0, job.model.dimension), dtype=np.float32)
    if vectors.shape != (n, job.model.dimension):
        raise ValueError(
            f"{job.media_uri}: vectors of shape {vectors.shape[1:]} for a {job.model.dimension}-d table"
        )
    rows = {
        "segment_id": [segment_id(job, s) for s in segments],
        "media_id": [media_id(job.media_uri)] * n,
        "media_uri": [job.media_uri] * n,
        "etag": [job.etag] * n,
        "modality": [job.modality] * n,
        "provider": [route.provider] * n,
        "model_key": [job.model.key] * n,
        "model_id": [route.model_id] * n,
        "model_version": [job.model.version] * n,
        "embedding_option": [s.embedding_option for s in segments],
        "embedding_type": [s.embedding_type for s in segments],
        "embedding_scope": [s.embedding_scope for s in segments],
        "start_sec": [s.start_sec for s in segments],
        "end_sec": [s.end_sec for s in segments],
        "invocation_id": [invocation_id] * n,
        "ingested_at": [ingested_at] * n,
    }
    columns = [pa.array(rows[f.name], type=f.type) for f in schema if f.name != "vector"]
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    columns.append(pa.FixedSizeListArray.from_arrays(flat, job.model.dimension))
    return pa.Table.from_arrays(columns, schema=schema)
