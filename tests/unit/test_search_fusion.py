"""Reciprocal rank fusion of vector rows per segment, and of vector and text rankings, on hand-made hits."""

from __future__ import annotations

import pytest

from resources.search.fusion import (
    DEFAULT_RRF_K,
    FusedHit,
    TextHit,
    fuse_hybrid,
    fuse_ranked,
    fuse_segments,
    rrf,
)
from resources.search.segment_search import SearchHit

A = "s3://media/a.mp4"
B = "s3://media/b.mp4"
MODEL = "marengo-3.0"


def row(uri: str, start: float | None, score: float, option: str | None = "visual") -> SearchHit:
    end = None if start is None else start + 5.0
    scope = "asset" if start is None else "clip"
    return SearchHit(uri, start, end, score, MODEL, option, scope)


def places(hits: list[FusedHit]) -> list[tuple[str, float | None]]:
    return [(h.media_uri, h.start_sec) for h in hits]


def test_a_span_matched_by_visual_and_audio_appears_once_with_both_signals() -> None:
    rows = [row(A, 0.0, 0.9), row(A, 0.0, 0.8, "audio"), row(B, 0.0, 0.85), row(A, 5.0, 0.7, "audio")]
    hits = fuse_segments(rows)
    assert places(hits).count((A, 0.0)) == 1
    first = hits[0]
    assert (first.media_uri, first.start_sec, first.end_sec) == (A, 0.0, 5.0)
    assert first.signals == ("visual", "audio")
    assert dict(first.signal_scores) == {"visual": 0.9, "audio": 0.8}
    assert (first.score, first.embedding_option, first.embedding_scope) == (0.9, "visual", "clip")
    assert len(hits) == 3


def test_rrf_arithmetic_on_a_small_hand_example() -> None:
    """visual: A0 (1st), B0 (2nd); audio: B0 (1st), A5 (2nd), A0 (3rd)."""
    rows = [
        row(A, 0.0, 0.90),
        row(B, 0.0, 0.80),
        row(B, 0.0, 0.70, "audio"),
        row(A, 5.0, 0.60, "audio"),
        row(A, 0.0, 0.50, "audio"),
    ]
    got = {(h.media_uri, h.start_sec): h.fused_score for h in fuse_segments(rows)}
    assert got[(A, 0.0)] == pytest.approx(1 / 61 + 1 / 63)
    assert got[(B, 0.0)] == pytest.approx(1 / 62 + 1 / 61)
    assert got[(A, 5.0)] == pytest.approx(1 / 62)
    assert places(fuse_segments(rows)) == [
        (B, 0.0),
        (A, 0.0),
        (A, 5.0),
    ]  # two seconds beat a first and a third
    assert rrf(1) == pytest.approx(1 / (DEFAULT_RRF_K + 1))


def test_weights_change_the_order() -> None:
    rows = [row(A, 0.0, 0.9), row(B, 0.0, 0.88, "audio")]  # each first in its own list
    assert places(fuse_segments(rows))[0] == (A, 0.0), "a tie in RRF goes to the better score"
    weighted = fuse_segments(rows, weights={"audio": 2.0})
    assert places(weighted) == [(B, 0.0), (A, 0.0)]
    assert weighted[0].fused_score == pytest.approx(2 / 61)


def test_a_weak_signal_orders_only_what_strong_ones_did_not_find_and_is_not_named() -> None:
    """An audio list for a visual query is noise: its first place must not outrank the visual second."""
    rows = [
        row(A, 0.0, 0.95),
        row(B, 0.0, 0.90),
        row(B, 0.0, 0.06, "audio"),
        row(A, 0.0, 0.05, "audio"),
        row(A, 9.0, 0.04, "audio"),  # found by the weak signal alone
    ]
    hits = fuse_segments(rows)
    assert places(hits) == [(A, 0.0), (B, 0.0), (A, 9.0)]
    assert hits[0].signals == ("visual",) and hits[0].signal_scores["audio"] == 0.05
    assert hits[2].signals == ("audio",)


def test_marengo_2_7_visual_rows_and_image_vectors_are_one_visual_signal() -> None:
    rows = [row(A, 0.0, 0.7, "visual-text"), row(A, 0.0, 0.8, "visual-image"), row(B, None, 0.75, None)]
    hits = fuse_segments(rows)
    assert [(h.media_uri, h.signals, h.score) for h in hits] == [
        (A, ("visual",), 0.8),
        (B, ("visual",), 0.75),
    ]
    assert hits[1].embedding_scope == "asset" and hits[1].start_sec is None


def test_text_hits_fuse_with_vector_segments_by_span() -> None:
    vector = fuse_segments([row(A, 0.0, 0.9), row(B, 0.0, 0.8)])
    text = [
        TextHit(A, 0.0, 5.0, "chapter", "A red circle on blue", 3.2),
        TextHit(B, None, None, "description", "Two scenes: a magenta square, then a cyan triangle", 2.5),
    ]
    hits = fuse_hybrid(vector, text)
    assert places(hits) == [(A, 0.0), (B, None), (B, 0.0)]
    first, whole = hits[0], hits[1]
    assert first.signals == ("visual", "chapter") and first.snippet == "A red circle on blue"
    assert first.fused_score == pytest.approx(1 / 61 + 1 / 61)
    assert (first.score, first.model, first.embedding_option) == (0.9, MODEL, "visual")
    assert whole.signals == ("description",) and whole.best is None and whole.score == 2.5
    assert whole.fused_score == pytest.approx(1 / 61)


def test_text_only_fusion_ranks_chapters_and_descriptions_by_their_own_lists() -> None:
    text = [
        TextHit(A, 0.0, 5.0, "chapter", "red circle", 1.0),
        TextHit(A, 5.0, 9.0, "chapter", "yellow triangle", 4.0),
        TextHit(A, 5.0, 9.0, "chapter", "yellow triangle again", 2.0),  # the same span: its best hit
        TextHit(B, None, None, "description", "a cyan triangle", 0.5),
    ]
    hits = fuse_hybrid([], text, weights={"description": 0.5})
    assert [(h.media_uri, h.start_sec, h.snippet) for h in hits] == [
        (A, 5.0, "yellow triangle"),
        (A, 0.0, "red circle"),
        (B, None, "a cyan triangle"),
    ]
    assert hits[2].fused_score == pytest.approx(0.5 / 61)
    assert fuse_ranked({}) == []
