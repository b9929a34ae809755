"""Fused and separate vectors in one normalized output: told apart by `embedding_type`, in the rows, their
ids, the Delta table, the LanceDB index and search hits; and tables written before the column existed
(every row separate) read and extend with nothing rewritten. Real deltalake and lancedb on tmp_path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable, write_deltalake

from resources.index.segment_index import SegmentIndex
from resources.providers.bedrock.marengo_bodies import parse_segments
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.providers.model_routes import route
from resources.providers.twelvelabs.bodies import parse_embedding_data
from resources.search.segment_search import search_segments, table_name
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import WRITER, EmbeddingTable
from resources.tables.segment_schema import media_id, segment_id, segment_schema, segments_table

MODEL = MARENGO_3_0
OLD_URI, NEW_URI = "s3://media/videos/old.mp4", "s3://media/videos/new.mp4"


def old_schema() -> pa.Schema:
    """The segment schema as it was before the embedding_type column."""
    schema = segment_schema(MODEL.dimension)
    return schema.remove(schema.get_field_index("embedding_type"))


def job(uri: str) -> EmbeddingJob:
    return EmbeddingJob(uri, "etag-1", "video", MODEL, EmbeddingOptions(), provider="twelvelabs")


def rows_of(uri: str, segments: list[SegmentEmbedding]) -> pa.Table:
    return segments_table(
        job(uri),
        segments,
        route=route("twelvelabs", MODEL.key),
        invocation_id=f"task-{uri}",
        ingested_at=datetime.now(UTC),
    )


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(MODEL.dimension).astype(np.float32)
    return v / np.linalg.norm(v)


def old_rows() -> pa.Table:
    """Two separate clips of OLD_URI in the old schema, as the code before the column wrote them."""
    segments = [SegmentEmbedding("visual", "clip", float(i), float(i + 6), unit(i)) for i in (0, 6)]
    return rows_of(OLD_URI, segments).select(old_schema().names)


def new_rows() -> pa.Table:
    """A separate and a fused vector of one span of NEW_URI, as TwelveLabs answers with both types."""
    data = [
        {"embedding": unit(10).tolist(), "embedding_option": "visual", "start_sec": 0, "end_sec": 6},
        {"embedding": unit(11).tolist(), "embedding_option": "fused", "start_sec": 0, "end_sec": 6},
    ]
    return rows_of(NEW_URI, parse_embedding_data(data, MODEL, "video"))


def by_id(table: pa.Table) -> dict[str, tuple[str, str | None, str]]:
    return {
        r["segment_id"]: (r["media_uri"], r["embedding_option"], r["embedding_type"])
        for r in table.select(["segment_id", "media_uri", "embedding_option", "embedding_type"]).to_pylist()
    }


# --- parsing and ids -----------------------------------------------------------------------------------


def test_a_separate_and_a_fused_vector_of_one_span_are_two_rows_with_their_own_ids() -> None:
    rows = new_rows()
    assert rows.schema == segment_schema(MODEL.dimension)
    got = rows.select(["embedding_option", "embedding_type", "start_sec", "end_sec"]).to_pylist()
    assert got == [
        {"embedding_option": "visual", "embedding_type": "separate", "start_sec": 0.0, "end_sec": 6.0},
        {"embedding_option": None, "embedding_type": "fused", "start_sec": 0.0, "end_sec": 6.0},
    ]
    ids = rows.column("segment_id").to_pylist()
    assert len(set(ids)) == 2
    separate = SegmentEmbedding("visual", "clip", 0.0, 6.0, unit(10))
    assert ids[0] == segment_id(job(NEW_URI), separate), "the separate row's id is the one it always had"
    fused_without_type = SegmentEmbedding(None, "clip", 0.0, 6.0, unit(11))
    assert ids[1] != segment_id(job(NEW_URI), fused_without_type), "the type is part of a fused row's id"


@pytest.mark.parametrize(
    ("raw", "option", "kind"),
    [
        ("visual", "visual", "separate"),
        (" Visual ", "visual", "separate"),
        ("TRANSCRIPTION", "transcription", "separate"),
        ("Fused", None, "fused"),
        ("  fused\n", None, "fused"),
        ("", None, "separate"),
        (None, None, "separate"),
    ],
)
def test_option_names_are_normalized_whichever_provider_sent_them(
    raw: str | None, option: str | None, kind: str
) -> None:
    vector = [0.5] * MODEL.dimension
    [bedrock] = parse_segments({"data": [{"embedding": vector, "embeddingOption": raw}]}, MODEL, "video")
    [twelvelabs] = parse_embedding_data([{"embedding": vector, "embedding_option": raw}], MODEL, "video")
    assert (bedrock.embedding_option, bedrock.embedding_type) == (option, kind)
    assert (twelvelabs.embedding_option, twelvelabs.embedding_type) == (option, kind)


def test_2_7_options_keep_their_names() -> None:
    data = [
        {"embedding": [0.1] * MARENGO_2_7.dimension, "embeddingOption": o} for o in ("Visual-Text", "audio")
    ]
    segments = parse_segments({"data": data}, MARENGO_2_7, "video")
    assert [(s.embedding_option, s.embedding_type) for s in segments] == [
        ("visual-text", "separate"),
        ("audio", "separate"),
    ]


# --- the Delta table -----------------------------------------------------------------------------------


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))


def write_old_delta_table(table: EmbeddingTable) -> None:
    """The table as the code before the column made and wrote it: created with the old schema, one
    predicate overwrite per object, no schema evolution."""
    DeltaTable.create(table.uri, schema=old_schema(), name=MODEL.key)
    write_deltalake(
        table.uri,
        old_rows().cast(old_schema()),
        mode="overwrite",
        predicate=f"media_id IN ('{media_id(OLD_URI)}')",
        writer_properties=WRITER,
    )


def test_an_old_delta_table_reads_as_separate_and_gains_the_column_with_the_next_write(lake: Lake) -> None:
    table = EmbeddingTable(lake, MODEL)
    write_old_delta_table(table)
    before = table.read()
    assert before.schema == segment_schema(MODEL.dimension)
    assert set(before.column("embedding_type").to_pylist()) == {"separate"}
    old_ids = by_id(before)
    version = table.version()

    commit = table.replace(new_rows(), [media_id(NEW_URI)])
    assert commit is not None and commit.version == version + 1, "the column comes with the write's commit"
    after = table.read()
    assert after.schema == segment_schema(MODEL.dimension)
    assert by_id(after) == old_ids | by_id(new_rows()), "old rows untouched, new ones typed"
    assert table.read(columns=["embedding_type"]).column("embedding_type").null_count == 0
    assert len(DeltaTable(table.uri).file_uris()) == 2, "the old file is not rewritten by the write"

    assert table.maintain().startswith("compacted")  # old file (no column) and new one into one file
    assert by_id(table.read()) == old_ids | by_id(new_rows())
    assert table.open(version=version) is not None, "the version before the column stays readable"

    commit = table.replace(
        old_rows().append_column("embedding_type", pa.repeat("separate", 2)), [media_id(OLD_URI)]
    )
    assert commit is not None and by_id(table.read()) == old_ids | by_id(new_rows())


def test_a_new_delta_table_and_an_evolved_one_hold_the_same_columns(lake: Lake, tmp_path: Path) -> None:
    old = EmbeddingTable(lake, MODEL)
    write_old_delta_table(old)
    old.replace(new_rows(), [media_id(NEW_URI)])
    fresh = EmbeddingTable(
        Lake(root=str(tmp_path / "fresh"), storage=S3Storage(region_name="us-east-1")), MODEL
    )
    fresh.replace(new_rows(), [media_id(NEW_URI)])
    fields = {f.name: f.nullable for f in DeltaTable(old.uri).schema().fields}
    assert fields == {f.name: f.nullable for f in DeltaTable(fresh.uri).schema().fields}
    assert fields["embedding_type"], "nullable: files written before the column hold none"


def test_per_object_files_from_before_the_table_format_migrate_as_separate(lake: Lake) -> None:
    table = EmbeddingTable(lake, MODEL)
    lake.write_table(old_rows().cast(old_schema()), f"{table.relative}/{media_id(OLD_URI)}.parquet")
    table.ensure()
    rows = table.read()
    assert table.legacy_files() == [] and rows.num_rows == 2
    assert set(rows.column("embedding_type").to_pylist()) == {"separate"}
    assert by_id(rows) == {
        sid: (OLD_URI, "visual", "separate") for sid in old_rows().column("segment_id").to_pylist()
    }


# --- the LanceDB index ---------------------------------------------------------------------------------


def test_an_old_index_table_is_searched_then_gains_the_column_and_takes_fused_rows(tmp_path: Path) -> None:
    index = SegmentIndex(uri=str(tmp_path / "idx"), storage=S3Storage(region_name="us-east-1"))
    old = lancedb.connect(str(tmp_path / "idx")).create_table(table_name(MODEL), schema=old_schema())
    old.add(old_rows())
    old_ids = old_rows().column("segment_id").to_pylist()

    [hit] = index.search(MODEL, unit(0).tolist(), k=1)  # before any write: no column, all separate
    assert (hit.media_uri, hit.embedding_option, hit.embedding_type) == (OLD_URI, "visual", "separate")

    state = index.replace_media(MODEL, new_rows(), [media_id(NEW_URI)])
    assert state.rows == 4
    table: Any = index.open_table(MODEL)
    assert table.schema.field("embedding_type") == pa.field("embedding_type", pa.string(), nullable=False)
    held = by_id(table.to_arrow())
    assert held == {sid: (OLD_URI, "visual", "separate") for sid in old_ids} | by_id(new_rows())

    [fused] = search_segments(table, unit(11).tolist(), 1, nprobes=20, refine_factor=5)
    assert (fused.media_uri, fused.embedding_option, fused.embedding_type, fused.score) == (
        NEW_URI,
        None,
        "fused",
        pytest.approx(1.0, abs=1e-5),
    )
    again = rows_of(
        OLD_URI, [SegmentEmbedding("visual", "clip", float(i), float(i + 6), unit(i)) for i in (0, 6)]
    )
    assert again.column("segment_id").to_pylist() == old_ids, "a re-ingest gives the same ids"
    assert index.replace_media(MODEL, again, [media_id(OLD_URI)]).rows == 4
    assert index.duplicate_segment_ids(MODEL) == 0
    kinds = pc.value_counts(index.open_table(MODEL).to_arrow().column("embedding_type")).to_pylist()
    assert sorted((k["values"], k["counts"]) for k in kinds) == [("fused", 1), ("separate", 3)]
