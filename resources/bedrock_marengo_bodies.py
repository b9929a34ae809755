"""Marengo request bodies and response parsing for Amazon Bedrock, as pure functions.

Shapes follow the Bedrock model-parameter pages for TwelveLabs Marengo Embed 2.7 (flat fields) and 3.0
(fields nested under the input type). Kept free of I/O so they are unit-tested against the documented JSON.
"""

from __future__ import annotations

import math
from typing import Any

from resources.embedding_jobs import EmbeddingOptions, SegmentEmbedding
from resources.marengo_models import MarengoModel, Modality


class MarengoOutputError(ValueError):
    """A Marengo response that does not hold the embeddings it should."""


class OutputUnavailable(RuntimeError):
    """A finished job's output could not be read now (access, network, throttling): the job itself may be
    fine, so it must stay open and be read again rather than count as a failed, re-billed attempt."""


def s3_media_source(uri: str, bucket_owner: str | None = None) -> dict[str, Any]:
    location: dict[str, Any] = {"uri": uri}
    if bucket_owner:
        location["bucketOwner"] = bucket_owner
    return {"s3Location": location}


def async_model_input(
    model: MarengoModel,
    modality: Modality,
    media_uri: str,
    options: EmbeddingOptions,
    bucket_owner: str | None = None,
) -> dict[str, Any]:
    """The `modelInput` document of StartAsyncInvoke for one media object."""
    source = s3_media_source(media_uri, bucket_owner)
    if model.request_style == "flat":
        return _flat_media_input(model, modality, source, options)
    return _nested_media_input(model, modality, source, options)


def _flat_media_input(
    model: MarengoModel, modality: Modality, source: dict[str, Any], options: EmbeddingOptions
) -> dict[str, Any]:
    body: dict[str, Any] = {"inputType": modality, "mediaSource": source}
    if modality in ("video", "audio") and options.segmentation == "fixed":
        body["useFixedLengthSec"] = _clamp(options.fixed_segment_sec, 2, 10)
    if modality == "video":
        if options.segmentation == "dynamic":
            body["minClipSec"] = int(_clamp(options.min_segment_sec, 1, 5))
        body["embeddingOption"] = list(model.video_embedding_options)
    return body


def _nested_media_input(
    model: MarengoModel, modality: Modality, source: dict[str, Any], options: EmbeddingOptions
) -> dict[str, Any]:
    params: dict[str, Any] = {"mediaSource": source}
    if modality in ("video", "audio"):
        if options.segmentation == "fixed":
            fixed = {"durationSec": _clamp(options.fixed_segment_sec, 1, 10)}
            params["segmentation"] = {"method": "fixed", "fixed": fixed}
        elif modality == "video":
            params["segmentation"] = {
                "method": "dynamic",
                "dynamic": {"minDurationSec": options.min_segment_sec},
            }
        params["embeddingOption"] = list(model.embedding_options(modality))
        params["embeddingScope"] = list(options.scopes)
    return {"inputType": modality, modality: params}


def text_query_body(model: MarengoModel, text: str) -> dict[str, Any]:
    """The InvokeModel body that embeds a search query into the model's space."""
    if model.request_style == "flat":
        return {"inputType": "text", "inputText": text}
    return {"inputType": "text", "text": {"inputText": text}}


def parse_segments(
    payload: Any, model: MarengoModel, modality: Modality | None = None
) -> list[SegmentEmbedding]:
    """Segments from a sync response body or an async `output.json`.

    Accepts the documented `{"data": [...]}` and the single-object variants some clients see
    (`{"data": {...}}`, a top-level `{"embedding": [...]}`). Rejects vectors of the wrong size or with
    non-finite values, naming the segment.
    """
    if not isinstance(payload, dict):
        raise MarengoOutputError(f"expected a JSON object, got {type(payload).__name__}")
    data = payload.get("data", payload if "embedding" in payload else None)
    if data is None:
        raise MarengoOutputError(f"no 'data' in Marengo output (keys: {sorted(payload)})")
    items = data if isinstance(data, list) else [data]
    default_scope = "asset" if modality == "image" else "clip"
    segments = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
            raise MarengoOutputError(f"segment {i} has no 'embedding' list")
        try:
            vector = [float(x) for x in item["embedding"]]
        except (TypeError, ValueError):
            raise MarengoOutputError(f"segment {i} has non-numeric values") from None
        if len(vector) != model.dimension:
            raise MarengoOutputError(
                f"segment {i} has a {len(vector)}-d vector; "
                f"Marengo {model.version} returns {model.dimension}-d"
            )
        if not all(math.isfinite(x) for x in vector):
            raise MarengoOutputError(f"segment {i} has non-finite values")
        start, end = item.get("startSec"), item.get("endSec")
        if start is not None and end is not None and float(end) < float(start):
            raise MarengoOutputError(f"segment {i} ends ({end}) before it starts ({start})")
        segments.append(
            SegmentEmbedding(
                embedding_option=item.get("embeddingOption"),
                embedding_scope=item.get("embeddingScope", default_scope),
                start_sec=None if start is None else float(start),
                end_sec=None if end is None else float(end),
                vector=vector,
            )
        )
    return segments


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
