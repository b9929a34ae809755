"""Fusing ranked hits into one answer per segment: reciprocal rank fusion (RRF), pure and Dagster-free.

The index holds one row per (segment, embedding option), so a raw ranking can show one span once per option
(visual, audio, transcription). `fuse_segments` groups the rows of a span and ranks spans by weighted RRF over
one ranked list per signal, the multi-vector fusion TwelveLabs recommends for Marengo: rank, not raw cosine,
is comparable across options. `fuse_ranked` then fuses rankings of different kinds (fused vector segments,
full-text hits on chapters and on whole-object descriptions) the same way, so text hits plug in as
`TextHit`s from any source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from resources.search.segment_search import SearchHit

DEFAULT_RRF_K = 60  # Cormack et al.'s constant: damps the head so one list's first place cannot decide alone
# A signal whose best score for this query is under this share of the query's best score (over all signals)
# is weak: its ranking is mostly noise (an audio list for "red circle" over silent shapes), so it only
# orders what the strong signals did not find, and is not named as a match where a strong one is.
WEAK_SIGNAL_RATIO = 0.5
WEAK_SIGNAL_WEIGHT = 1e-3

TextSignal = Literal["description", "chapter"]
# How signals that contributed equally are listed.
SIGNAL_ORDER = ("visual", "audio", "transcription", "fused", "chapter", "description")
SegmentKey = tuple[str, float | None, float | None]


@dataclass(frozen=True)
class TextHit:
    """One full-text hit, as a text index (Pegasus descriptions and chapters) returns it, best first.

    A chapter hit has its span; a description hit is about the whole object (no span)."""

    media_uri: str
    start_sec: float | None
    end_sec: float | None
    signal: TextSignal
    snippet: str
    score: float
    model: str = ""  # the model that wrote the text, if the source knows it


@dataclass(frozen=True)
class FusedHit:
    """One segment (or whole object) once, whatever matched it.

    `signals` are the matching signals, strongest contribution first; `signal_scores` the best raw score of
    each signal seen (cosine similarity for vector signals, the text index's score for text ones). `score` is
    the best raw score of the strongest vector signal (else of the strongest text one): the number a person
    reads as "how close". `fused_score` is the RRF score the ranking is by. `best` is the vector row that
    scored highest among the matched signals (its option, type and scope), None for a text-only hit."""

    media_uri: str
    start_sec: float | None
    end_sec: float | None
    score: float
    fused_score: float
    signals: tuple[str, ...]
    model: str
    signal_scores: Mapping[str, float] = field(default_factory=dict)
    snippet: str | None = None
    best: SearchHit | None = None

    @property
    def key(self) -> SegmentKey:
        return (self.media_uri, self.start_sec, self.end_sec)

    @property
    def embedding_option(self) -> str | None:
        return self.best.embedding_option if self.best else None

    @property
    def embedding_type(self) -> str | None:
        return self.best.embedding_type if self.best else None

    @property
    def embedding_scope(self) -> str | None:
        return self.best.embedding_scope if self.best else None


def signal_of(hit: SearchHit) -> str:
    """The signal a vector row stands for: Marengo 2.7's visual-text and visual-image, and an image's
    option-less vector, are all visual; a fused vector (several options in one) is "fused"."""
    if hit.embedding_type == "fused":
        return "fused"
    option = hit.embedding_option
    if option is None or option.startswith("visual"):
        return "visual"
    return option


def rrf(rank: int, k: int = DEFAULT_RRF_K, weight: float = 1.0) -> float:
    """The contribution of a 1-based rank in one list."""
    return weight / (k + rank)


def _signal_rank(signal: str) -> tuple[int, str]:
    return (SIGNAL_ORDER.index(signal) if signal in SIGNAL_ORDER else len(SIGNAL_ORDER), signal)


def _span_key(key: SegmentKey) -> tuple[str, float, float]:
    return (key[0], -1.0 if key[1] is None else key[1], -1.0 if key[2] is None else key[2])


def fuse_segments(
    hits: Sequence[SearchHit],
    *,
    k: int = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    weak_ratio: float = WEAK_SIGNAL_RATIO,
) -> list[FusedHit]:
    """Vector rows grouped per segment (object and span) across embedding options and ranked by weighted
    RRF, best first. Each signal is one list, its segments ranked by their best row in it; `weights` (by
    signal: visual, audio, transcription, fused) scale a list's contributions, 1.0 where not given."""
    weights = weights or {}
    per_signal: dict[str, dict[SegmentKey, SearchHit]] = {}
    for hit in hits:
        rows = per_signal.setdefault(signal_of(hit), {})
        key = (hit.media_uri, hit.start_sec, hit.end_sec)
        if key not in rows or hit.score > rows[key].score:
            rows[key] = hit
    top = max((hit.score for hit in hits), default=0.0)
    fused: dict[SegmentKey, float] = {}
    contributions: dict[SegmentKey, list[tuple[float, bool, str, SearchHit]]] = {}
    for signal, rows in per_signal.items():
        strong = top <= 0 or max(h.score for h in rows.values()) >= weak_ratio * top
        weight = weights.get(signal, 1.0) * (1.0 if strong else WEAK_SIGNAL_WEIGHT)
        ranked = sorted(rows.items(), key=lambda item: (-item[1].score, _span_key(item[0])))
        for rank, (key, hit) in enumerate(ranked, 1):
            part = rrf(rank, k, weight)
            fused[key] = fused.get(key, 0.0) + part
            contributions.setdefault(key, []).append((part, strong, signal, hit))
    out = []
    for key, parts in contributions.items():
        parts.sort(key=lambda p: (-p[0], -p[3].score, _signal_rank(p[2])))
        matched = [p for p in parts if p[1]] or parts  # only weak signals found it: say which
        best = max((p[3] for p in matched), key=lambda h: h.score)
        out.append(
            FusedHit(
                media_uri=key[0],
                start_sec=key[1],
                end_sec=key[2],
                score=best.score,
                fused_score=fused[key],
                signals=tuple(p[2] for p in matched),
                model=best.model,
                signal_scores={p[2]: p[3].score for p in parts},
                best=best,
            )
        )
    out.sort(key=lambda h: (-h.fused_score, -h.score, _span_key(h.key)))
    return out


def text_as_fused(hit: TextHit) -> FusedHit:
    """A text hit as a one-signal fused hit, so every kind of ranking fuses the same way."""
    return FusedHit(
        media_uri=hit.media_uri,
        start_sec=hit.start_sec,
        end_sec=hit.end_sec,
        score=hit.score,
        fused_score=0.0,
        signals=(hit.signal,),
        model=hit.model,
        signal_scores={hit.signal: hit.score},
        snippet=hit.snippet,
    )


def rank_text_hits(hits: Sequence[TextHit]) -> dict[str, list[FusedHit]]:
    """Text hits split into one ranked list per signal (chapter, description), best score first; the same
    object or span twice in one list keeps its best hit."""
    lists: dict[str, dict[SegmentKey, TextHit]] = {}
    for hit in hits:
        rows = lists.setdefault(hit.signal, {})
        key = (hit.media_uri, hit.start_sec, hit.end_sec)
        if key not in rows or hit.score > rows[key].score:
            rows[key] = hit
    return {
        signal: [text_as_fused(h) for h in sorted(rows.values(), key=lambda h: -h.score)]
        for signal, rows in lists.items()
    }


def fuse_ranked(
    lists: Mapping[str, Sequence[FusedHit]],
    *,
    k: int = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
) -> list[FusedHit]:
    """Rankings of different kinds (by name: "vector", "chapter", "description", ...), each best first, fused
    by weighted RRF into one, best first. A hit in several lists (the same object and span) appears once
    with the signals of all, the best score per signal, and the snippet of its best-ranked text hit."""
    weights = weights or {}
    merged: dict[SegmentKey, FusedHit] = {}
    fused: dict[SegmentKey, float] = {}
    for name, ranked in lists.items():
        weight = weights.get(name, 1.0)
        for rank, hit in enumerate(ranked, 1):
            key = hit.key
            fused[key] = fused.get(key, 0.0) + rrf(rank, k, weight)
            merged[key] = hit if key not in merged else _merge(merged[key], hit)
    out = [replace(hit, fused_score=fused[key]) for key, hit in merged.items()]
    out.sort(key=lambda h: (-h.fused_score, -h.score, _span_key(h.key)))
    return out


def _merge(first: FusedHit, then: FusedHit) -> FusedHit:
    """`first` came from an earlier (or better-ranked) list: its signals and snippet lead."""
    scores = dict(first.signal_scores)
    for signal, score in then.signal_scores.items():
        scores[signal] = max(score, scores.get(signal, score))
    signals = first.signals + tuple(s for s in then.signals if s not in first.signals)
    best = first.best or then.best
    return replace(
        first,
        signals=signals,
        signal_scores=scores,
        snippet=first.snippet if first.snippet is not None else then.snippet,
        best=best,
        score=best.score if best else max(first.score, then.score),
        model=best.model if best else first.model or then.model,
    )


def fuse_hybrid(
    vector: Sequence[FusedHit],
    text: Sequence[TextHit],
    *,
    k: int = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
) -> list[FusedHit]:
    """Fused vector segments and text hits in one ranking: the vector list, the chapter list and the
    description list each count once (`weights` by "vector", "chapter", "description")."""
    lists: dict[str, Sequence[FusedHit]] = {"vector": vector} if vector else {}
    lists.update(rank_text_hits(text))
    return fuse_ranked(lists, k=k, weights=weights)
