"""Cheap ingest: one S3 client per resource whatever the threads, and vectors from JSON to Arrow via numpy.

The parser checks vectors for all segments at once; these tests pin that it still refuses exactly what the
segment-by-segment reading refused, names the same first bad segment, and hands over float32 rows.
"""

import json
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import botocore.session
import numpy as np
import pyarrow as pa
import pytest

from resources.providers.bedrock.marengo_bodies import parse_segments
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions
from resources.providers.errors import MarengoOutputError
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.providers.model_routes import route
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import segment_schema, segments_table

DIM = MARENGO_3_0.dimension


@pytest.fixture
def clients_built(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Counts botocore clients built, by service; each call still builds its client."""
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    original = botocore.session.Session.create_client

    def counting(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        with lock:
            counts[service_name] += 1
        return original(session, service_name, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    yield counts


def test_threads_share_one_s3_client_and_one_arrow_filesystem(
    clients_built: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    storage = S3Storage(region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    start = threading.Barrier(8)

    def both(_: int) -> tuple[int, int]:
        start.wait(timeout=10)  # all eight ask at once, as the ingest's fetch threads do
        return id(storage.get_client()), id(storage.arrow_filesystem())

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(both, range(8)))
    assert len(set(seen)) == 1
    assert clients_built["s3"] == 1


def payload(vectors: list[list[Any]], **fields: Any) -> dict[str, Any]:
    return {
        "data": [
            {"embedding": v, "startSec": float(i), "endSec": i + 1.0, **fields} for i, v in enumerate(vectors)
        ]
    }


def test_vectors_are_float32_rows_of_one_matrix_with_the_values_sent() -> None:
    rng = np.random.default_rng(3)
    sent = rng.normal(size=(4, DIM)).tolist()
    sent[1][0] = 3  # a JSON integer is a number too
    segments = parse_segments(json.loads(json.dumps(payload(sent))), MARENGO_3_0, "video")
    assert all(s.vector.dtype == np.float32 and s.vector.shape == (DIM,) for s in segments)
    base = segments[0].vector.base
    assert base is not None and all(s.vector.base is base for s in segments), "one matrix per response"
    np.testing.assert_array_equal(np.stack([s.vector for s in segments]), np.array(sent, dtype=np.float32))


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        ([[0.1] * (DIM - 1) + [True]], "segment 0 has non-numeric values"),  # numpy would read True as 1
        ([[0.1] * DIM, [False] + [0.1] * (DIM - 1)], "segment 1 has non-numeric values"),
        ([[1] * (DIM - 1) + [True]], "segment 0 has non-numeric values"),
        ([[0.1] * (DIM - 1) + ["0.5"]], "segment 0 has non-numeric values"),  # numpy would parse the string
        ([[0.1] * (DIM - 1) + [None]], "segment 0 has non-numeric values"),  # numpy would make it NaN
        ([[0.1] * (DIM - 1) + [[0.5]]], "segment 0 has non-numeric values"),
        ([[[0.1] * 2] * DIM], "segment 0 has non-numeric values"),
        ([[0.1] * DIM, [0.1] * (DIM + 1)], f"segment 1 has a {DIM + 1}-d vector"),
        ([[0.1] * (DIM - 1) + [10**400]], "segment 0 has non-finite values"),
        ([[0.1] * (DIM - 1) + [float("inf")]], "segment 0 has non-finite values"),
        ([[0.1] * (DIM - 1) + [1e300]], "segment 0 has values beyond the float32 range"),
        ([[0.1] * DIM, []], "segment 1 has a 0-d vector"),
    ],
)
def test_bad_vectors_name_the_first_bad_segment(vectors: list[list[Any]], message: str) -> None:
    with pytest.raises(MarengoOutputError, match=re.escape(message)):
        parse_segments(payload(vectors), MARENGO_3_0, "video")


def test_checks_run_segment_by_segment_in_order() -> None:
    """Segment 0's bad time is reported before segment 1's bad vector, as a reading in order would."""
    body = payload([[0.1] * DIM, ["x"] * DIM])
    body["data"][0]["startSec"] = -1
    with pytest.raises(MarengoOutputError, match=re.escape("segment 0 has startSec -1")):
        parse_segments(body, MARENGO_3_0, "video")


def test_numbers_numpy_reads_as_objects_still_parse() -> None:
    """Integers beyond int64 (but within float range) are numbers; so are all-zero vectors (their norm is
    the asset check's business)."""
    [big] = parse_segments(payload([[2**70] + [0.5] * (DIM - 1)]), MARENGO_3_0, "video")
    assert big.vector[0] == np.float32(2**70)
    [zero] = parse_segments(payload([[0] * DIM]), MARENGO_3_0, "video")
    assert not zero.vector.any()
    [wide] = parse_segments({"data": [{"embedding": [0.25] * 1024}]}, MARENGO_2_7, "video")
    assert wide.vector.shape == (1024,)


def test_segments_table_takes_the_vectors_as_one_float32_buffer() -> None:
    job = EmbeddingJob("s3://m/a.mp4", "e1", "video", MARENGO_3_0, EmbeddingOptions())
    rng = np.random.default_rng(5)
    segments = parse_segments(payload(rng.normal(size=(3, DIM)).tolist()), MARENGO_3_0, "video")
    table = segments_table(
        job,
        segments,
        route=route("bedrock", job.model.key),
        invocation_id="inv",
        ingested_at=datetime.now(UTC),
    )
    assert table.schema == segment_schema(DIM)
    vectors = table.column("vector").combine_chunks()
    assert isinstance(vectors, pa.FixedSizeListArray) and vectors.null_count == 0
    np.testing.assert_array_equal(
        vectors.values.to_numpy().reshape(3, DIM), np.stack([s.vector for s in segments])
    )
    assert table.column("start_sec").to_pylist() == [0.0, 1.0, 2.0]
    empty = segments_table(
        job, [], route=route("bedrock", job.model.key), invocation_id="inv", ingested_at=datetime.now(UTC)
    )
    assert empty.num_rows == 0 and empty.schema == segment_schema(DIM)
