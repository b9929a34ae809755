"""TwelveLabs API (embed v2) request bodies and response parsing, as pure functions.

Shapes follow the `twelvelabs` SDK 1.3.6 and seed 004 (async embed tasks for video and audio, sync embed
for queries): snake_case fields nested under the input type, media by URL (a presigned S3 URL, since the
API cannot read `s3://`). Kept free of I/O so they are unit-tested against the documented JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from resources.providers.bedrock.marengo_bodies import parse_segments
from resources.providers.embedding_jobs import EmbeddingOptions, SegmentEmbedding
from resources.providers.errors import MarengoOutputError
from resources.providers.marengo_models import MarengoModel, Modality
from resources.providers.model_routes import ModelRoute
from resources.search.marengo_query import MarengoQuery, QueryMedia, input_type

# The API stores a task's embeddings for seven days; a ready task older than that has nothing to read.
TASK_RETENTION_DAYS = 7


def media_source(url: str) -> dict[str, Any]:
    if url.startswith("s3://"):
        raise ValueError(f"{url}: the TwelveLabs API cannot read s3:// URIs; pass a presigned HTTPS URL")
    return {"url": url}


def task_request(
    route: ModelRoute, modality: Modality, media_url: str, options: EmbeddingOptions
) -> dict[str, Any]:
    """Keyword arguments of `client.embed.v_2.tasks.create` for one media object."""
    if modality not in ("video", "audio") and route.model.version != "3.5":
        raise ValueError(f"Marengo {route.model.version} embed tasks take video or audio, not {modality}")
    params: dict[str, Any] = {"media_source": media_source(media_url)}
    if modality in ("video", "audio"):
        if options.span is not None:  # the part of the file its job key names
            start, end = options.span
            if start:
                params["start_sec"] = start
            if end is not None:
                params["end_sec"] = end
        segmentation: dict[str, Any] | None = None
        if options.segmentation == "fixed":
            segmentation = {"strategy": "fixed", "fixed": {"duration_sec": options.fixed_segment_sec}}
        elif modality == "video":
            segmentation = {"strategy": "dynamic", "dynamic": {"min_duration_sec": options.min_segment_sec}}
        if segmentation is not None:
            # 3.0 takes the strategy as it is; 3.5 only inside `temporal` (AsyncTemporalSegmentation).
            params["segmentation"] = (
                {"temporal": segmentation} if route.model.version == "3.5" else segmentation
            )
        embedding_options = list(route.model.embedding_options(modality))
        params["embedding_option"] = embedding_options
        params["embedding_scope"] = list(options.scopes)
        if len(embedding_options) >= 2:  # the API takes embedding_type only with two options or more
            params["embedding_type"] = ["separate_embedding"]
    request: dict[str, Any] = {"input_type": modality, "model_name": route.model_id, modality: params}
    if route.model.version == "3.5":
        request["embedding_dimension"] = route.model.dimension
    return request


def image_request(route: ModelRoute, media_url: str) -> dict[str, Any]:
    """Keyword arguments of `client.embed.v_2.create` that embed one image (3.0: sync only)."""
    if route.model.version == "3.5":
        source = {"name": "image", "media_type": "image", **media_source(media_url)}
        return {
            "input_type": "multi_input",
            "model_name": route.model_id,
            "multi_input": {"media_sources": [source]},
            "embedding_dimension": route.model.dimension,
        }
    return {
        "input_type": "image",
        "model_name": route.model_id,
        "image": {"media_source": media_source(media_url)},
    }


def text_request(route: ModelRoute, text: str) -> dict[str, Any]:
    """Keyword arguments of `client.embed.v_2.create` that embed a text query."""
    return query_request(route, MarengoQuery.of_text(text), no_media_url)


def no_media_url(uri: str) -> str:
    raise ValueError(f"{uri}: a text query carries no media")


def query_media_source(media: QueryMedia, url_for: Callable[[str], str]) -> dict[str, Any]:
    """An S3 object as a presigned URL (the API cannot read `s3://`), or bytes inline (`base64_string`)."""
    if media.s3_uri is not None:
        return media_source(url_for(media.s3_uri))
    return {"base64_string": base64.b64encode(media.data or b"").decode("ascii")}


def query_request(route: ModelRoute, query: MarengoQuery, url_for: Callable[[str], str]) -> dict[str, Any]:
    """Keyword arguments of `client.embed.v_2.create` that embed a query (checked by `check_query`).

    3.5 takes every query as `multi_input`; an audio clip asks for its one whole-clip audio vector."""
    kind = input_type(query)
    text = (query.text or "").strip()
    request: dict[str, Any] = {"model_name": route.model_id}
    if route.model.version == "3.5" and kind != "text":
        kind = "multi_input"
    if kind == "text" and route.model.version != "3.5":
        params: dict[str, Any] = {"input_text": text}
    elif kind == "text" or kind == "multi_input":
        kind = "multi_input"
        params = {}
        if text:
            params["input_text"] = text
        if query.media:
            params["media_sources"] = [
                {"name": m.name, "media_type": m.kind, **query_media_source(m, url_for)}
                for m in query.named_media()
            ]
    elif kind == "audio":
        params = {
            "media_source": query_media_source(query.audio[0], url_for),
            "embedding_option": ["audio"],
            "embedding_scope": ["asset"],
        }
    else:  # image, text_image
        params = {"media_source": query_media_source(query.images[0], url_for)}
        if kind == "text_image":
            params = {"input_text": text, **params}
    request.update({"input_type": kind, kind: params})
    if route.model.version == "3.5":
        request["embedding_dimension"] = route.model.dimension
    return request


def legacy_query_request(
    route: ModelRoute, query: MarengoQuery, url_for: Callable[[str], str]
) -> dict[str, Any]:
    """Keyword arguments of `client.embed.create` (the legacy v1 call, Marengo-retrieval-2.7).

    SDK 1.3.6 has no `text_truncate` argument: it travels as an additional body parameter, which the SDK
    sends as one more multipart field."""
    kind = input_type(query)
    request: dict[str, Any] = {"model_name": route.model_id}
    if kind == "text":
        request["text"] = (query.text or "").strip()
        if query.text_truncate is not None:
            extra = {"text_truncate": query.text_truncate}
            request["request_options"] = {"additional_body_parameters": extra}
        return request
    if kind in ("image", "audio"):
        media = query.media[0]
        if media.s3_uri is not None:
            request[f"{kind}_url"] = url_for(media.s3_uri)
        else:
            request[f"{kind}_file"] = (media.label.rsplit("/", 1)[-1] or kind, media.data or b"")
        return request
    raise ValueError(f"the legacy {route.model_id} call has no {kind} query")


def parse_legacy_embedding(response: Any, model: MarengoModel) -> list[float]:
    """The query vector of a legacy `EmbeddingResponse` (`{text|image|audio}_embedding.segments[0].float`)."""
    if not isinstance(response, dict):
        raise MarengoOutputError(f"expected a JSON object, got a {type(response).__name__}")
    for key in ("text_embedding", "image_embedding", "audio_embedding"):
        part = response.get(key)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise MarengoOutputError(f"'{key}' is a {type(part).__name__}, not an object")
        if part.get("error_message"):
            raise MarengoOutputError(f"{key}: {part['error_message']}")
        segments = part.get("segments")
        if not isinstance(segments, list) or not segments or not isinstance(segments[0], dict):
            raise MarengoOutputError(f"'{key}' holds no segments")
        vector = segments[0].get("float", segments[0].get("float_"))
        [segment] = parse_segments({"data": [{"embedding": vector}]}, model)
        return [float(v) for v in segment.vector]
    keys = sorted(map(str, response))[:10]
    raise MarengoOutputError(f"no text, image or audio embedding in the answer (keys: {keys})")


def query_vector(segments: list[SegmentEmbedding]) -> list[float]:
    """The one vector a query embedding stands for: the whole-clip (asset) one where there are several."""
    whole = [s for s in segments if s.embedding_scope == "asset"]
    return [float(v) for v in (whole or segments)[0].vector]


def plain_item(item: Any) -> Any:
    """An SDK `EmbeddingData` as the plain dict the parser reads (dicts pass through)."""
    return item.dict() if hasattr(item, "dict") else item


def parse_embedding_data(
    data: Any, model: MarengoModel, modality: Modality | None = None
) -> list[SegmentEmbedding]:
    """Segments from the `data` list of a ready task or a sync response (EmbeddingData items: `embedding`,
    `embedding_option`, `embedding_scope`, `start_sec`, `end_sec`), checked like any Marengo output.

    The field names are mapped onto the one checked parser, so a bad vector, time or option reads the
    same whoever produced it. A fused vector (option `fused`) becomes embedding_type "fused" with no option,
    so it stays apart from the separate vectors of the same span.
    """
    if data is None:
        raise MarengoOutputError("the task is ready but holds no 'data'")
    if not isinstance(data, list):
        raise MarengoOutputError(f"'data' is a {type(data).__name__}, not a list of embeddings")
    renamed = [
        {
            "embedding": item.get("embedding"),
            "embeddingOption": item.get("embedding_option"),
            "embeddingScope": item.get("embedding_scope"),
            "startSec": item.get("start_sec"),
            "endSec": item.get("end_sec"),
        }
        if isinstance(item, dict)
        else item
        for item in data
    ]
    return parse_segments({"data": renamed}, model, modality)
