"""What makes a row of an embedding table usable: the one set of rules for Marengo segments.

Ingest applies them to each job's output before anything of it is committed (an output that breaks one is
unusable, like a truncated JSON: the job fails with the reason and is retried once); the whole-version checks
and the table audit apply the same rules to rows already stored. The rules are vectorized over Arrow columns,
so checking a 10,000-object table costs one pass over its vectors.

- a vector must be finite and of non-zero norm (cosine search divides by it);
- a span must start at or after 0, end after it starts, and end within the media's probed duration plus
  DURATION_TOLERANCE_SEC (containers round durations; a clip may end a frame or so past the probe);
- a segment (option, scope, type and span of one object) occurs once: its id hashes exactly those, so a
  repeat is a second row with the id of an earlier one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

DURATION_TOLERANCE_SEC = 0.5
# Bumped whenever a rule above changes: a table audited under an older revision is audited again.
RULES_REVISION = 1

# Each fault reads after "segment 3 ...".
NOT_FINITE = "has a NaN or infinite value"
ZERO_NORM = "has a zero-norm vector"


def vector_faults(vectors: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.object_]:
    """Per row: None, or what is wrong with its vector (any list type: fixed-size or as files hold it)."""
    if isinstance(vectors, pa.ChunkedArray):
        vectors = vectors.combine_chunks() if vectors.num_chunks else pa.array([], vectors.type)
    n = len(vectors)
    faults = np.full(n, None, dtype=object)
    if n == 0:
        return faults
    flat = pc.list_flatten(vectors).to_numpy(zero_copy_only=False).astype(np.float64)
    parents = pc.list_parent_indices(vectors).to_numpy(zero_copy_only=False)
    finite = np.isfinite(flat)
    not_finite = np.bincount(parents, weights=~finite, minlength=n) > 0
    squares = np.bincount(parents, weights=np.where(finite, flat, 1.0) ** 2, minlength=n)
    faults[not_finite] = NOT_FINITE
    faults[~not_finite & (squares == 0)] = ZERO_NORM
    return faults


def span_faults(start: npt.ArrayLike, end: npt.ArrayLike, duration: npt.ArrayLike) -> npt.NDArray[np.object_]:
    """Per row: None, or how the span [start, end] does not fit a media of `duration` seconds.

    A row without a span (an image, a whole-object vector without times) passes; so does the end bound
    when the duration is unknown (NaN)."""
    start, end, duration = (np.asarray(a, dtype=np.float64) for a in (start, end, duration))
    faults = np.full(len(start), None, dtype=object)
    has_span = ~np.isnan(start) & ~np.isnan(end)
    limit = duration + DURATION_TOLERANCE_SEC
    for i in np.flatnonzero(has_span & ((start < 0) | (end <= start) | (end > limit))):
        where = f"{start[i]:g}-{end[i]:g} s"
        if start[i] < 0 or end[i] <= start[i]:
            faults[i] = f"spans {where}: a span starts at 0 or later and ends after it starts"
        else:
            faults[i] = f"spans {where}, past the media's {duration[i]:g} s (+{DURATION_TOLERANCE_SEC:g} s)"
    return faults


def repeat_faults(
    segment_ids: npt.ArrayLike, media_ids: npt.ArrayLike | None = None
) -> npt.NDArray[np.object_]:
    """Per row: None, or that it repeats an earlier segment of the same object (same option, scope, type
    and span, so the same id); the first occurrence passes, every later one is named with the position,
    among its object's rows, of the one it repeats."""
    ids = pd.Series(np.asarray(segment_ids, dtype=object))
    media = pd.Series("" if media_ids is None else np.asarray(media_ids, dtype=object), index=ids.index)
    keys = media.astype(str) + "|" + ids.astype(str)
    position = ids.groupby(media.to_numpy()).cumcount()
    first = position.groupby(keys.to_numpy()).transform("first").to_numpy()
    faults = np.full(len(ids), None, dtype=object)
    for i in np.flatnonzero(keys.duplicated(keep="first").to_numpy()):
        faults[i] = f"repeats segment {first[i]} (same option, scope, type and span)"
    return faults


@dataclass(frozen=True)
class FaultCounts:
    """How many rows break each rule."""

    vectors: int
    spans: int
    repeats: int


def _rule_faults(
    rows: pa.Table, durations: Mapping[str, float | None]
) -> tuple[npt.NDArray[np.object_], ...]:
    uris = rows.column("media_uri").to_pandas()
    seconds = uris.map(lambda uri: durations.get(uri)).astype(float).to_numpy()
    return (
        vector_faults(rows.column("vector")),
        span_faults(_floats(rows, "start_sec"), _floats(rows, "end_sec"), seconds),
        repeat_faults(rows.column("segment_id").to_numpy(zero_copy_only=False), uris.to_numpy()),
    )


def fault_counts(rows: pa.Table, durations: Mapping[str, float | None]) -> FaultCounts:
    vectors, spans, repeats = (int((~pd.isna(f)).sum()) for f in _rule_faults(rows, durations))
    return FaultCounts(vectors, spans, repeats)


def row_faults(rows: pa.Table, durations: Mapping[str, float | None]) -> npt.NDArray[np.object_]:
    """Per row of segment rows (media_uri, segment_id, start_sec, end_sec, vector): None, or the first rule
    it breaks. `durations`: media URI -> probed seconds (None or absent: unknown)."""
    first, *others = _rule_faults(rows, durations)
    for more in others:
        first = np.where(pd.isna(first), more, first)
    return first


def output_fault(rows: pa.Table, duration_sec: float | None) -> str | None:
    """Why one job's segment rows (in the order of its output) are unusable, naming the first bad
    segment; None when every rule holds."""
    if rows.num_rows == 0:
        return None
    uri = rows.column("media_uri")[0].as_py()
    faults = row_faults(rows, {uri: duration_sec})
    bad = np.flatnonzero(~pd.isna(faults))
    if len(bad) == 0:
        return None
    first = int(bad[0])
    rest = len(bad) - 1
    more = f" (and {rest} more bad segment{'s' if rest > 1 else ''})" if rest else ""
    return f"segment {first} {faults[first]}{more}"


def object_faults(rows: pa.Table, durations: Mapping[str, float | None]) -> pd.DataFrame:
    """Stored rows that break a rule, per object: media_uri, invocation_id (of the first bad row), problem
    (the count and the first fault)."""
    faults = row_faults(rows, durations)
    bad = ~pd.isna(faults)
    return faults_by_object(
        pd.DataFrame(
            {
                "media_uri": rows.column("media_uri").to_numpy(zero_copy_only=False)[bad],
                "invocation_id": rows.column("invocation_id").to_numpy(zero_copy_only=False)[bad],
                "fault": faults[bad],
            }
        )
    )


def faults_by_object(bad_rows: pd.DataFrame) -> pd.DataFrame:
    """Bad rows (media_uri, invocation_id, fault) as one problem per object, in media URI order."""
    columns = ["media_uri", "invocation_id", "problem"]
    if bad_rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    grouped = bad_rows.groupby("media_uri", sort=True)
    return pd.DataFrame(
        {
            "media_uri": list(grouped.groups),
            "invocation_id": grouped["invocation_id"].first().to_list(),
            "problem": [f"{len(g)} bad segment rows; one {g['fault'].iloc[0]}" for _, g in grouped],
        },
        columns=columns,
    )


def _floats(rows: pa.Table, name: str) -> npt.NDArray[np.float64]:
    return rows.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
