"""The segment rules, as pure functions over Arrow columns: the one copy ingest and the checks both use."""

import math

import numpy as np
import pyarrow as pa
import pytest

from resources.tables.segment_validity import (
    DURATION_TOLERANCE_SEC,
    NOT_FINITE,
    ZERO_NORM,
    fault_counts,
    object_faults,
    output_fault,
    repeat_faults,
    span_faults,
    vector_faults,
)

DIM = 4


def vectors(*rows: list[float]) -> pa.Array:
    return pa.array(list(rows), pa.list_(pa.float32(), DIM))


def test_a_vector_must_be_finite_and_of_non_zero_norm() -> None:
    faults = vector_faults(vectors([1, 0, 0, 0], [0, 0, 0, 0], [math.nan, 1, 0, 0], [1, math.inf, 0, 0]))
    assert faults.tolist() == [None, ZERO_NORM, NOT_FINITE, NOT_FINITE]


def test_vectors_as_the_files_hold_them_are_checked_alike() -> None:
    stored = pa.chunked_array([pa.array([[0.0, 0.0], [0.5, 0.5]], pa.list_(pa.float32()))])
    assert vector_faults(stored).tolist() == [ZERO_NORM, None]
    assert vector_faults(pa.array([], pa.list_(pa.float32()))).tolist() == []


def test_a_span_starts_at_zero_or_later_ends_after_it_starts_and_within_the_media() -> None:
    end_ok = 10 + DURATION_TOLERANCE_SEC
    faults = span_faults(
        [0, 0, 0, -1, 5, 5, math.nan, 0],
        [6, end_ok, 1e9, 3, 5, 3, math.nan, 1e9],
        [10, 10, 10, 10, 10, 10, 10, math.nan],
    )
    assert faults[[0, 1, 6, 7]].tolist() == [None] * 4, "in range, no span (an image), unknown duration"
    assert "past the media's 10 s" in faults[2]
    assert all("starts at 0 or later and ends after it starts" in f for f in faults[3:6])


def test_a_repeated_segment_is_named_with_the_one_it_repeats_per_object() -> None:
    faults = repeat_faults(["a", "b", "a", "a", "b"], ["m", "m", "m", "n", "n"])
    assert faults.tolist() == [
        None,
        None,
        "repeats segment 0 (same option, scope, type and span)",
        None,
        None,
    ]


def rows(ids: list[str], spans: list[tuple[float, float]], vecs: list[list[float]]) -> pa.Table:
    return pa.table(
        {
            "media_uri": ["s3://m/a.mp4"] * len(ids),
            "segment_id": ids,
            "invocation_id": ["arn-1"] * len(ids),
            "start_sec": [s for s, _ in spans],
            "end_sec": [e for _, e in spans],
            "vector": vectors(*vecs),
        }
    )


GOOD = [0.5, 0.5, 0.5, 0.5]


def test_an_output_fault_names_the_first_bad_segment_and_counts_the_rest() -> None:
    output = rows(["x", "y", "x", "x"], [(0, 6), (6, 9), (0, 6), (0, 6)], [GOOD] * 4)
    assert output_fault(output, 9.0) == (
        "segment 2 repeats segment 0 (same option, scope, type and span) (and 1 more bad segment)"
    )
    assert output_fault(rows(["x"], [(0, 1e9)], [GOOD]), 10.0) == (
        f"segment 0 spans 0-1e+09 s, past the media's 10 s (+{DURATION_TOLERANCE_SEC:g} s)"
    )
    assert output_fault(rows(["x"], [(0, 6)], [[0, 0, 0, 0]]), 10.0) == f"segment 0 {ZERO_NORM}"
    assert output_fault(rows(["x", "y"], [(0, 6), (6, 9)], [GOOD, GOOD]), 9.0) is None
    assert output_fault(rows([], [], []), 9.0) is None


def test_stored_rows_are_summarized_per_object_and_counted_per_rule() -> None:
    stored = rows(["x", "x", "y"], [(0, 6), (0, 6), (6, 1e9)], [GOOD, GOOD, [0, 0, 0, 0]])
    [problem] = object_faults(stored, {"s3://m/a.mp4": 9.0}).to_dict("records")
    assert problem["media_uri"] == "s3://m/a.mp4" and problem["invocation_id"] == "arn-1"
    assert problem["problem"].startswith("2 bad segment rows; one repeats segment 0")
    counts = fault_counts(stored, {"s3://m/a.mp4": 9.0})
    assert (counts.vectors, counts.spans, counts.repeats) == (1, 1, 1)


@pytest.mark.parametrize("n", [0, 1, 1000])
def test_rules_are_vectorized_and_agree_row_by_row(n: int) -> None:
    rng = np.random.default_rng(n)
    matrix = rng.normal(size=(n, DIM)).astype(np.float32)
    matrix[::7] = 0
    faults = vector_faults(pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), DIM))
    expected = [ZERO_NORM if not row.any() else None for row in matrix]
    assert faults.tolist() == expected
