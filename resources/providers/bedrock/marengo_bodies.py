"""Marengo request bodies and response parsing for Amazon Bedrock, as pure functions.

Shapes follow the Bedrock model-parameter pages for TwelveLabs Marengo Embed 2.7 (flat fields) and 3.0
(fields nested under the input type). Kept free of I/O so they are unit-tested against the documented JSON.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from resources.providers.embedding_jobs import EmbeddingOptions, EmbeddingType, SegmentEmbedding
from resources.providers.errors import MarengoOutputError
from resources.providers.marengo_models import MarengoModel, Modality
from resources.providers.model_routes import ModelRoute
from resources.search.marengo_query import MAX_BASE64_BYTES, MarengoQuery, QueryMedia, input_type


def s3_media_source(uri: str, bucket_owner: str | None = None) -> dict[str, Any]:
    """Media by S3 reference; `bucket_owner` (a 12-digit account id) when another account owns it."""
    location: dict[str, Any] = {"uri": uri}
    if bucket_owner:
        location["bucketOwner"] = bucket_owner
    return {"s3Location": location}


def base64_media_source(data: bytes) -> dict[str, Any]:
    """Media inline, as Bedrock's `base64String`: no bucket to read, so no bucket region applies."""
    if len(data) > MAX_BASE64_BYTES:
        raise ValueError(
            f"{len(data)} bytes exceeds Bedrock's {MAX_BASE64_BYTES} byte limit on inline media: "
            "send it by S3 location"
        )
    return {"base64String": base64.b64encode(data).decode("ascii")}


def async_model_input(
    route: ModelRoute,
    modality: Modality,
    media_uri: str,
    options: EmbeddingOptions,
    bucket_owner: str | None = None,
) -> dict[str, Any]:
    """The `modelInput` document of StartAsyncInvoke for one media object."""
    return async_media_input(route, modality, s3_media_source(media_uri, bucket_owner), options)


def async_media_input(
    route: ModelRoute, modality: Modality, source: dict[str, Any], options: EmbeddingOptions
) -> dict[str, Any]:
    """StartAsyncInvoke's `modelInput` for a video, audio file or image from either kind of source
    (`s3_media_source`, `base64_media_source`)."""
    if route.request_style == "bedrock-flat":
        return _flat_media_input(route.model, modality, source, options)
    return _nested_media_input(route.model, modality, source, options)


def async_text_input(route: ModelRoute, text: str, truncate: bool | None = None) -> dict[str, Any]:
    """StartAsyncInvoke's `modelInput` for text.

    `truncate` is 2.7's `textTruncate`: True cuts text past 77 tokens (`end`, its default), False refuses
    it (`none`), None leaves the field out. 3.0 has no such field (it refuses text past 500 tokens), so
    asking it either way is an error rather than a silently different request."""
    if route.request_style == "bedrock-flat":
        body: dict[str, Any] = {"inputType": "text", "inputText": text}
        if truncate is not None:
            body["textTruncate"] = "end" if truncate else "none"
        return body
    if truncate is not None:
        raise ValueError(f"Marengo {route.model.version} has no textTruncate: it refuses over-long text")
    return {"inputType": "text", "text": {"inputText": text}}


def async_text_image_input(route: ModelRoute, text: str, source: dict[str, Any]) -> dict[str, Any]:
    """StartAsyncInvoke's `modelInput` for one embedding of a text and an image together (3.0 only)."""
    if route.request_style == "bedrock-flat":
        raise ValueError(
            f"Marengo {route.model.version} has no text_image input: embed the text and the image apart"
        )
    return {"inputType": "text_image", "text_image": {"inputText": text, "mediaSource": source}}


def _flat_media_input(
    model: MarengoModel, modality: Modality, source: dict[str, Any], options: EmbeddingOptions
) -> dict[str, Any]:
    body: dict[str, Any] = {"inputType": modality, "mediaSource": source}
    if modality in ("video", "audio") and options.span is not None:
        start, end = options.span
        if start:
            body["startSec"] = start
        if end is not None:
            body["lengthSec"] = end - start  # 2.7 counts the length from startSec, not an end time
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
        if options.span is not None:
            start, end = options.span
            if start:
                params["startSec"] = start
            if end is not None:
                params["endSec"] = end
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


def text_query_body(route: ModelRoute, text: str) -> dict[str, Any]:
    """The InvokeModel body that embeds a search query into the model's space."""
    return query_body(route, MarengoQuery.of_text(text))


def query_media_source(media: QueryMedia, bucket_owner: str | None = None) -> dict[str, Any]:
    """An S3 object by reference (`s3Location`), or bytes inline (`base64String`)."""
    if media.s3_uri is not None:
        return s3_media_source(media.s3_uri, bucket_owner)
    return base64_media_source(media.data or b"")


def query_body(route: ModelRoute, query: MarengoQuery, bucket_owner: str | None = None) -> dict[str, Any]:
    """The InvokeModel body that embeds a query (text, an image, or both) into the model's space.

    The query is checked first (`check_query`); a type this route has no body for is a programming
    error here, not a person's."""
    kind = input_type(query)
    text = (query.text or "").strip()
    if route.request_style == "bedrock-flat":
        if kind == "text":
            body: dict[str, Any] = {"inputType": "text", "inputText": text}
            if query.text_truncate is not None:
                body["textTruncate"] = query.text_truncate
            return body
        if kind == "image":
            return {"inputType": "image", "mediaSource": query_media_source(query.images[0], bucket_owner)}
    else:
        if kind == "text":
            return {"inputType": "text", "text": {"inputText": text}}
        if kind in ("image", "text_image"):
            params: dict[str, Any] = {"mediaSource": query_media_source(query.images[0], bucket_owner)}
            if kind == "text_image":
                params = {"inputText": text, **params}
            return {"inputType": kind, kind: params}
    raise ValueError(f"Marengo {route.model.version} on Bedrock has no {kind} query body")


def parse_segments(
    payload: Any, model: MarengoModel, modality: Modality | None = None
) -> list[SegmentEmbedding]:
    """Segments from a sync response body or an async `output.json`.

    Accepts the documented `{"data": [...]}` and the single-object variants some clients see
    (`{"data": {...}}`, a top-level `{"embedding": [...]}`); `{"data": []}` is a valid answer with no
    segments. Everything else that does not match the documented types raises MarengoOutputError naming
    the segment and the field: vectors of the wrong size, non-numeric or non-finite values (in float32,
    the type the vectors are stored as), times that are not non-negative numbers, options or scopes that
    are not strings, items that are not objects. A JSON null counts as an absent field.

    The vectors are checked and converted in numpy, all segments at once (one float32 matrix whose rows
    become the segments' vectors); only when that finds a problem is each segment examined in turn, so
    the error names the first bad segment and field exactly as a segment-by-segment reading would.

    Options are read in the names both providers share (visual, audio, transcription for 3.x;
    visual-text, visual-image, audio for 2.7), whatever their case or surrounding spaces. A `fused`
    option (TwelveLabs' vector combining the options) becomes embedding_type "fused" with no option.
    """
    if not isinstance(payload, dict):
        raise MarengoOutputError(f"expected a JSON object, got {_kind(payload)}")
    if "data" in payload:
        data = payload["data"]
    elif "embedding" in payload:
        data = payload
    else:
        raise MarengoOutputError(f"no 'data' in Marengo output (keys: {sorted(map(str, payload))[:10]})")
    if isinstance(data, dict):
        items: list[Any] = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise MarengoOutputError(f"'data' is {_kind(data)}, not a list of segments")
    default_scope = "asset" if modality == "image" else "clip"
    vectors = _all_vectors(items, model.dimension)
    if vectors is None:  # some vector is wrong: find the first bad segment, checking each field in order
        return [_segment(i, item, _vector(i, item, model), default_scope) for i, item in enumerate(items)]
    return [_segment(i, item, vectors[i], default_scope) for i, item in enumerate(items)]


def parse_output(
    payload: Any, model: MarengoModel, modality: Modality | None = None
) -> list[SegmentEmbedding]:
    """Segments from an async job's `output.json`, which is documented as `{"data": [segment, ...]}`.

    Stricter than `parse_segments`: the single-object variants some sync clients see are not what an
    async output holds, so `data` that is not a list makes the output unusable, like any other field of
    the wrong type."""
    if not isinstance(payload, dict):
        raise MarengoOutputError(f"expected a JSON object, got {_kind(payload)}")
    if not isinstance(payload.get("data"), list):
        raise MarengoOutputError(
            f"'data' is {_kind(payload.get('data'))}, not the documented list of segments"
        )
    return parse_segments(payload, model, modality)


def _all_vectors(items: list[Any], dimension: int) -> npt.NDArray[np.float32] | None:
    """Every segment's vector as one (segments, dimension) float32 matrix, or None if any is unusable."""
    raws = [item.get("embedding") if isinstance(item, dict) else None for item in items]
    if not all(isinstance(raw, list) and len(raw) == dimension for raw in raws):
        return None
    if not raws:
        return np.empty((0, dimension), dtype=np.float32)
    try:
        values = np.array(raws)  # numpy infers the type: float64 or int64 when every value is a number
    except (ValueError, TypeError):  # nested lists, mixed shapes
        return None
    if values.dtype.kind not in "fiu" or values.ndim != 2 or _holds_booleans(values, raws):
        return None
    return _float32(values)


def _vector(i: int, item: Any, model: MarengoModel) -> npt.NDArray[np.float32]:
    """One segment's vector, checked on its own: raises naming the segment and what is wrong."""
    if not isinstance(item, dict):
        raise MarengoOutputError(f"segment {i} is {_kind(item)}, not an object")
    raw = item.get("embedding")
    if not isinstance(raw, list):
        raise MarengoOutputError(f"segment {i} has no 'embedding' list")
    try:
        values = np.array(raw)
    except (ValueError, TypeError):
        raise MarengoOutputError(f"segment {i} has non-numeric values") from None
    if values.dtype.kind == "O" and values.ndim == 1 and _exact_numbers(raw):  # e.g. integers beyond int64
        try:
            values = np.array(raw, dtype=np.float64)
        except OverflowError:  # an integer beyond float range
            raise MarengoOutputError(f"segment {i} has non-finite values") from None
    if values.dtype.kind not in "fiu" or values.ndim != 1 or _holds_booleans(values[np.newaxis], [raw]):
        raise MarengoOutputError(f"segment {i} has non-numeric values")
    if len(values) != model.dimension:
        raise MarengoOutputError(
            f"segment {i} has a {len(values)}-d vector; Marengo {model.version} returns {model.dimension}-d"
        )
    if not np.isfinite(values).all():
        raise MarengoOutputError(f"segment {i} has non-finite values")
    vector = _float32(values[np.newaxis])
    if vector is None:
        raise MarengoOutputError(f"segment {i} has values beyond the float32 range vectors are stored in")
    return vector[0]


def _holds_booleans(values: npt.NDArray[Any], rows: list[Any]) -> bool:
    """Whether a JSON true or false hides among the numbers of a (segments, dimension) array: numpy reads
    them as 1 and 0, so only the values equal to 1 or 0 need their Python type looked at."""
    found = np.nonzero((values == 0) | (values == 1))
    return any(type(rows[r][c]) is bool for r, c in zip(found[0].tolist(), found[1].tolist(), strict=True))


def _exact_numbers(raw: list[Any]) -> bool:
    return all(map(_NUMBER_TYPES.__contains__, map(type, raw)))  # exact types: a bool is no number


def _float32(values: npt.NDArray[Any]) -> npt.NDArray[np.float32] | None:
    """`values` as float32, or None when any is not finite there (NaN, infinity, beyond float32's range)."""
    with np.errstate(over="ignore", invalid="ignore"):
        vectors = values.astype(np.float32)
    return vectors if np.isfinite(vectors).all() else None


def _segment(
    i: int, item: dict[str, Any], vector: npt.NDArray[np.float32], default_scope: str
) -> SegmentEmbedding:
    start, end = _seconds(i, item, "startSec"), _seconds(i, item, "endSec")
    if start is not None and end is not None and end < start:
        raise MarengoOutputError(f"segment {i} ends ({end:g}) before it starts ({start:g})")
    option, kind = _option(_text(i, item, "embeddingOption"))
    if option is not None and option not in DOCUMENTED_OPTIONS:
        raise MarengoOutputError(f"segment {i} has embeddingOption {option!r}, none of the documented ones")
    scope = _text(i, item, "embeddingScope")
    if scope is not None and scope not in DOCUMENTED_SCOPES:
        raise MarengoOutputError(f"segment {i} has embeddingScope {scope!r}, not clip or asset")
    return SegmentEmbedding(
        embedding_option=option,
        embedding_scope=scope or default_scope,
        start_sec=start,
        end_sec=end,
        vector=vector,
        embedding_type=kind,
    )


def _option(raw: str | None) -> tuple[str | None, EmbeddingType]:
    """A provider's option name as the one stored: lower case, trimmed, empty as none. A fused vector is
    of every option at once, so it is told apart by its type, not by an option."""
    option = (raw or "").strip().lower() or None
    if option == "fused":
        return None, "fused"
    return option, "separate"


_NUMBER_TYPES = frozenset({int, float})
# The option names Marengo documents (3.x: visual, audio, transcription, and the TwelveLabs API's text and
# fused; 2.7: visual-text, visual-image, audio), as read (lower case) and scopes (case as documented).
DOCUMENTED_OPTIONS = frozenset({"visual", "audio", "transcription", "text", "visual-text", "visual-image"})
DOCUMENTED_SCOPES = frozenset({"clip", "asset"})


def _number(value: Any) -> float | None:
    """A JSON number as a float; None for anything else (strings, booleans, null, objects)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        return math.inf


def _seconds(i: int, item: dict[str, Any], name: str) -> float | None:
    value = item.get(name)
    if value is None:
        return None
    seconds = _number(value)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise MarengoOutputError(f"segment {i} has {name} {_show(value)}, not a non-negative number")
    return seconds


def _text(i: int, item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    if value is not None and not isinstance(value, str):
        raise MarengoOutputError(f"segment {i} has {name} {_show(value)}, not a string")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else f"a {type(value).__name__}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
