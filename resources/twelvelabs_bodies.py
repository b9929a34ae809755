"""TwelveLabs API (embed v2) request bodies and response parsing, as pure functions.

Shapes follow the `twelvelabs` SDK 1.3.6 and seed 004 (async embed tasks for video and audio, sync embed
for queries): snake_case fields nested under the input type, media by URL (a presigned S3 URL, since the
API cannot read `s3://`). Kept free of I/O so they are unit-tested against the documented JSON.
"""

from __future__ import annotations

from typing import Any

from resources.bedrock_marengo_bodies import parse_segments
from resources.embedding_jobs import EmbeddingOptions, SegmentEmbedding
from resources.marengo_models import MarengoModel, Modality
from resources.model_routes import ModelRoute
from resources.provider_errors import MarengoOutputError

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
        if options.segmentation == "fixed":
            params["segmentation"] = {
                "strategy": "fixed",
                "fixed": {"duration_sec": options.fixed_segment_sec},
            }
        elif modality == "video":
            params["segmentation"] = {
                "strategy": "dynamic",
                "dynamic": {"min_duration_sec": options.min_segment_sec},
            }
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
    """Keyword arguments of `client.embed.v_2.create` that embed a search query (3.5 takes only
    `multi_input`, which carries the text alone here)."""
    if route.model.version == "3.5":
        return {
            "input_type": "multi_input",
            "model_name": route.model_id,
            "multi_input": {"input_text": text},
            "embedding_dimension": route.model.dimension,
        }
    return {"input_type": "text", "model_name": route.model_id, "text": {"input_text": text}}


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
