"""The embedding table's reader holds the latest version and its files' footers: it must never serve stale
rows, whoever writes next (another instance, a compaction, a table made again under the same URI)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from resources.providers.marengo_models import MARENGO_3_0
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_schema import media_id, segment_schema

MODEL = MARENGO_3_0


def rows(*uris: str, segments: int = 2) -> pa.Table:
    n = len(uris) * segments
    starts = np.tile(np.arange(segments, dtype=np.float64) * 6.0, len(uris))
    vectors = np.random.default_rng(len(uris)).standard_normal((n, MODEL.dimension), dtype=np.float32)
    columns = {
        "segment_id": [f"{u}#{i}" for u in uris for i in range(segments)],
        "media_id": [media_id(u) for u in uris for _ in range(segments)],
        "media_uri": [u for u in uris for _ in range(segments)],
        "etag": ["e"] * n,
        "modality": ["video"] * n,
        "provider": ["bedrock"] * n,
        "model_key": [MODEL.key] * n,
        "model_id": ["m"] * n,
        "model_version": [MODEL.version] * n,
        "embedding_option": ["visual"] * n,
        "embedding_type": ["separate"] * n,
        "embedding_scope": ["clip"] * n,
        "start_sec": starts,
        "end_sec": starts + 6.0,
        "invocation_id": ["i"] * n,
        "ingested_at": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), MODEL.dimension),
    }
    schema = segment_schema(MODEL.dimension)
    return pa.table({name: columns[name] for name in schema.names}).cast(schema)


def put(table: EmbeddingTable, *uris: str) -> None:
    table.replace(rows(*uris), [media_id(u) for u in uris])


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))


def uris_in(table: EmbeddingTable) -> set[str]:
    return set(table.read(columns=["media_uri"]).column("media_uri").to_pylist())


def test_a_holding_reader_sees_every_later_commit_of_another_writer(lake: Lake) -> None:
    reader, writer = EmbeddingTable(lake, MODEL), EmbeddingTable(lake, MODEL)
    put(writer, "s3://m/a.mp4")
    assert uris_in(reader) == {"s3://m/a.mp4"}
    held = reader.open()
    assert reader.open() is held, "no commit since: the loaded version is served again"
    put(writer, "s3://m/b.mp4")
    assert uris_in(reader) == {"s3://m/a.mp4", "s3://m/b.mp4"}
    writer.delete([media_id("s3://m/a.mp4")])
    assert uris_in(reader) == {"s3://m/b.mp4"}
    assert reader.read([media_id("s3://m/b.mp4")]).num_rows == 2


def test_a_table_made_again_under_the_same_uri_is_not_served_from_the_old_one(lake: Lake) -> None:
    reader = EmbeddingTable(lake, MODEL)
    put(EmbeddingTable(lake, MODEL), "s3://m/a.mp4")
    assert uris_in(reader) == {"s3://m/a.mp4"}
    shutil.rmtree(reader.uri)
    put(EmbeddingTable(lake, MODEL), "s3://m/other.mp4")  # version 1 again, other rows
    assert uris_in(reader) == {"s3://m/other.mp4"}


def test_a_small_table_is_compacted_into_one_snappy_file_with_its_rows_unchanged(lake: Lake) -> None:
    table = EmbeddingTable(lake, MODEL)
    for i in range(4):
        put(table, f"s3://m/{i}.mp4")
    before = table.read().sort_by("segment_id")
    assert "compacted" in table.maintain()
    opened = table.open()
    assert opened is not None
    [only] = opened.file_uris()
    assert pq.ParquetFile(only).metadata.row_group(0).column(0).compression == "SNAPPY"
    assert table.read().sort_by("segment_id").equals(before)
    assert "compaction from" in table.maintain(), "one file: nothing to do"
