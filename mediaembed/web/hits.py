"""What the page shows of one hit: its name, span, an inline player of the span, and its scores (the fused
score it is ranked by, with each signal's raw score beside it). Pure: the media link is given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mediaembed.search import hit_kind, signal_scores
from resources.search.fusion import FusedHit

Player = Literal["video", "audio", "image"]
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")


@dataclass(frozen=True)
class HitView:
    rank: int
    name: str
    media_uri: str
    span: str  # "4.00s - 9.00s", or "whole object"
    start_sec: float | None
    end_sec: float | None
    player: Player
    src: str | None  # the link with the span's media fragment (#t=start,end); None: no link could be made
    fused_score: float
    signal_scores: tuple[tuple[str, float], ...]  # matched signals first, as ranked
    matched: str  # "visual+audio, clip"
    model: str
    snippet: str | None


def player_of(media_uri: str) -> Player:
    path = media_uri.lower().split("?", 1)[0]
    if path.endswith(AUDIO_SUFFIXES):
        return "audio"
    if path.endswith(IMAGE_SUFFIXES):
        return "image"
    return "video"


def media_fragment(start_sec: float | None, end_sec: float | None) -> str:
    """`#t=4,9` (W3C Media Fragments): the browser starts at 4 s and pauses at 9 s."""
    if start_sec is None:
        return ""
    return f"#t={start_sec:g}" + ("" if end_sec is None else f",{end_sec:g}")


def span_label(hit: FusedHit) -> str:
    if hit.start_sec is None:
        return "whole object"
    end = "" if hit.end_sec is None else f" - {hit.end_sec:.2f}s"
    return f"{hit.start_sec:.2f}s{end}"


def hit_view(rank: int, hit: FusedHit, link: str | None) -> HitView:
    """`link`: the object's URL (a presigned GET for s3://), without a fragment."""
    player = player_of(hit.media_uri)
    fragment = media_fragment(hit.start_sec, hit.end_sec) if player != "image" else ""
    return HitView(
        rank=rank,
        name=hit.media_uri.rstrip("/").rsplit("/", 1)[-1] or hit.media_uri,
        media_uri=hit.media_uri,
        span=span_label(hit),
        start_sec=hit.start_sec,
        end_sec=hit.end_sec,
        player=player,
        src=None if link is None else link + fragment,
        fused_score=hit.fused_score,
        signal_scores=tuple(signal_scores(hit)),
        matched=hit_kind(hit),
        model=hit.model,
        snippet=" ".join(hit.snippet.split()) if hit.snippet else None,
    )
