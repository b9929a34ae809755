"""Fused and separate vectors in one normalized output: told apart by `embedding_type`, in the rows and
their ids."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from resources.bedrock_marengo_bodies import parse_segments
from resources.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.model_routes import route
from resources.segment_schema import segment_id, segment_schema, segments_table
from resources.twelvelabs_bodies import parse_embedding_data

MODEL = MARENGO_3_0
NEW_URI = "s3://media/videos/new.mp4"


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


def new_rows() -> pa.Table:
    """A separate and a fused vector of one span of NEW_URI, as TwelveLabs answers with both types."""
    data = [
        {"embedding": unit(10).tolist(), "embedding_option": "visual", "start_sec": 0, "end_sec": 6},
        {"embedding": unit(11).tolist(), "embedding_option": "fused", "start_sec": 0, "end_sec": 6},
    ]
    return rows_of(NEW_URI, parse_embedding_data(data, MODEL, "video"))


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
