"""The `data` list of an embed answer (EmbeddingData items, snake_case) for a validated request and its
media: vectors from the same content-derived spaces as the Bedrock emulator, so both providers give the same
answers on the same media."""

from __future__ import annotations

from typing import Any

import numpy as np

from emulators.bedrock_runtime.embedding import embed, image_vector
from emulators.bedrock_runtime.marengo_body import EmbedRequest, MediaRef
from emulators.marengo_space import normalize, space_for
from emulators.twelvelabs_api.errors import invalid
from emulators.twelvelabs_api.requests import Source, TlRequest


def multi_input_option(req: TlRequest) -> str:
    """The `embedding_option` of a multi_input vector (seed 001 lists it on each item): the one modality it
    embeds (`text`, `visual` for images and video, `audio`), or `fused` when it combines several."""
    kinds = {"audio" if s.media_type == "audio" else "visual" for s in req.sources}
    if req.text is not None:
        kinds.add("text")
    return kinds.pop() if len(kinds) == 1 else "fused"


def bedrock_shaped(req: TlRequest, data: bytes | None) -> EmbedRequest:
    return EmbedRequest(
        version=req.version,
        input_type=req.input_type,
        text=req.text,
        media=MediaRef(data=data) if data is not None else None,
        start_sec=req.start_sec,
        end_sec=req.end_sec,
        segmentation=req.segmentation,
        options=req.options,
        scopes=req.scopes,
    )


def compute(req: TlRequest, media: list[bytes]) -> list[dict[str, Any]]:
    """The `data` list (EmbeddingData items, snake_case) for a validated request."""
    space = space_for(req.version)
    items: list[dict[str, Any]]
    if req.input_type == "multi_input":
        vectors = [source_vector(req, s, blob) for s, blob in zip(req.sources, media, strict=True)]
        if req.text is not None:
            vectors.insert(0, space.embed_text(req.text))
        items = [{"embedding": space.combine(vectors), "embedding_option": multi_input_option(req)}]
    else:
        raw = embed(bedrock_shaped(req, media[0] if media else None), media[0] if media else None)
        items = [
            {
                "embedding": np.asarray(item["embedding"]),
                "embedding_option": item.get("embeddingOption"),
                "embedding_scope": item.get("embeddingScope"),
                "start_sec": item.get("startSec"),
                "end_sec": item.get("endSec"),
            }
            for item in raw
        ]
        if req.input_type in ("video", "audio"):
            items = with_types(req, items, space)
    out = []
    for item in items:
        vec = np.asarray(item["embedding"], dtype=np.float64)
        if req.dimension is not None:  # Matryoshka: the first d components, renormalized
            vec = normalize(vec[: req.dimension])
        out.append({k: v for k, v in {**item, "embedding": [float(x) for x in vec]}.items() if v is not None})
    return out


def source_vector(req: TlRequest, source: Source, blob: bytes) -> np.ndarray:
    """One multi_input source's vector: an image's, or the whole-clip vector of audio or video (3.5)."""
    space = space_for(req.version)
    if source.media_type == "image":
        return image_vector(space, blob)
    if source.media_type not in ("audio", "video"):
        raise invalid(f"{source.path}: {source.media_type} sources are not offered by this emulator")
    options = ("visual", "audio") if source.media_type == "video" else ("audio",)
    shaped = EmbedRequest(
        version=req.version, input_type=source.media_type, options=options, scopes=("asset",)
    )
    return space.combine([np.asarray(item["embedding"]) for item in embed(shaped, blob)])


def with_types(req: TlRequest, items: list[dict[str, Any]], space: Any) -> list[dict[str, Any]]:
    """`embedding_type`: separate vectors per option, one fused vector per span, or both."""
    result = list(items) if "separate_embedding" in req.types else []
    if "fused_embedding" in req.types:
        spans: dict[tuple[Any, Any, Any], list[np.ndarray]] = {}
        for item in items:
            key = (item["embedding_scope"], item["start_sec"], item["end_sec"])
            spans.setdefault(key, []).append(item["embedding"])
        for (scope, start, end), vectors in spans.items():
            result.append(
                {
                    "embedding": space.combine(vectors),
                    "embedding_option": "fused",
                    "embedding_scope": scope,
                    "start_sec": start,
                    "end_sec": end,
                }
            )
    return result
