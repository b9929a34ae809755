"""Turn a validated EmbedRequest plus the media bytes into Marengo's `data` list.

Segments come from decoded content (shots, fixed chunks, ~10 s audio splits) and each vector from the
concepts found in that segment, weighted by how much of the frame and of the time they fill, so times and
vectors are both checkable against the generated media's truth.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from emulators.bedrock_runtime.marengo_body import EmbedRequest
from emulators.marengo_space import MarengoSpace, space_for
from emulators.media_analysis import (
    DecodedMedia,
    MediaError,
    Span,
    VisualFeatures,
    decode_image,
    decode_media,
    dynamic_segments,
    even_segments,
    fixed_segments,
    pitches_in,
    visual_in,
)

_CACHE_SIZE = 32
_cache: OrderedDict[str, DecodedMedia] = OrderedDict()
_cache_lock = threading.Lock()


def decode_cached(data: bytes) -> DecodedMedia:
    """Decode once per distinct content: tests submit the same sample objects many times."""
    digest = hashlib.sha256(data).hexdigest()
    with _cache_lock:
        if digest in _cache:
            _cache.move_to_end(digest)
            return _cache[digest]
    media = decode_media(data)
    with _cache_lock:
        _cache[digest] = media
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return media


def _visual_key(f: VisualFeatures) -> str:
    return f"{f.mean_rgb}|{f.fill_ratio:.2f}"


def image_vector(space: MarengoSpace, data: bytes) -> np.ndarray:
    """An image is embedded like a single video frame."""
    f = decode_image(data)
    return space.embed_visual(f, _visual_key(f))


def _segments(req: EmbedRequest, media: DecodedMedia, start: float, end: float) -> list[Span]:
    if req.segmentation is not None and req.segmentation[0] == "fixed":
        return fixed_segments(start, end, req.segmentation[1])
    if req.input_type == "video" and media.has_video:
        min_duration = req.segmentation[1] if req.segmentation else 4.0
        return dynamic_segments(media, start, end, min_duration)
    return even_segments(start, end)


def _item(req: EmbedRequest, vec: np.ndarray, option: str, scope: str, span: Span) -> dict[str, Any]:
    item: dict[str, Any] = {"embedding": [float(x) for x in vec], "embeddingOption": option}
    if req.version != "2.7":  # 2.7 has no scopes
        item["embeddingScope"] = scope
    item["startSec"] = float(round(span[0], 6))
    item["endSec"] = float(round(span[1], 6))
    return item


def embed_media(req: EmbedRequest, data: bytes) -> list[dict[str, Any]]:
    """Segment-level (and optionally asset-level) embeddings of a video or audio file."""
    space = space_for(req.version)
    media = decode_cached(data)
    start = min(req.start_sec, media.duration)
    end = media.duration if req.end_sec is None else min(req.end_sec, media.duration)
    if end <= start:
        raise MediaError(
            f"requested range {req.start_sec:g}-{req.end_sec}s is outside the media ({media.duration:g}s)"
        )
    if req.input_type == "video" and not media.has_video:
        raise MediaError("no video stream found")
    if req.input_type == "audio" and not media.has_audio:
        raise MediaError("no audio stream found")
    spans = _segments(req, media, start, end)
    out: list[dict[str, Any]] = []
    per_option: dict[str, list[tuple[np.ndarray, float]]] = {}
    for span in spans:
        for option in req.options:
            vec: np.ndarray | None = None
            if option in ("visual", "visual-text", "visual-image"):
                feats = visual_in(media, *span)
                if feats is not None:
                    vec = space.embed_visual(feats, _visual_key(feats))
            elif option == "audio":
                pitches = pitches_in(media, *span)
                heard = [hz for hz in pitches if hz is not None]
                vec = space.embed_audio(pitches, f"{np.median(heard):.0f}" if heard else "silence")
            # "transcription": the sample media has no speech, so no segments.
            if vec is None:
                continue
            per_option.setdefault(option, []).append((vec, span[1] - span[0]))
            if "clip" in req.scopes:
                out.append(_item(req, vec, option, "clip", span))
    if "asset" in req.scopes:
        for option, vecs in per_option.items():
            asset = space.combine([v for v, _ in vecs], [w for _, w in vecs])
            out.append(_item(req, asset, option, "asset", (start, end)))
    return out


def embed_simple(req: EmbedRequest, data: bytes | None) -> list[dict[str, Any]]:
    """text / image / text_image: one vector, no segment fields."""
    space = space_for(req.version)
    if req.input_type == "text":
        vec = space.embed_text(req.text or "")
    elif req.input_type == "image":
        vec = image_vector(space, data or b"")
    else:
        vec = space.combine([space.embed_text(req.text or ""), image_vector(space, data or b"")])
    return [{"embedding": [float(x) for x in vec]}]


def embed(req: EmbedRequest, data: bytes | None) -> list[dict[str, Any]]:
    """The `data` list of a Marengo response for any input type."""
    if req.input_type in ("video", "audio"):
        return embed_media(req, data or b"")
    return embed_simple(req, data)
