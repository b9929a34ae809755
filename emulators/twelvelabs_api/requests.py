"""Validate TwelveLabs embed requests (v2 JSON, legacy v1 multipart) into one plain description.

Written from the documented contract (seeds 001, 002, 004 and `shared/reference/twelvelabs-wire.md`), never
from the production request builders. Every refusal is an `ApiFault` whose message names the offending
field, as the API's `{"code", "message"}` errors do, so a client bug is diagnosable from the error alone.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODELS = {"marengo3.0": "3.0", "marengo3.5": "3.5"}
LEGACY_MODEL = "Marengo-retrieval-2.7"
SYNC_TYPES = ("text", "image", "text_image", "audio", "video", "multi_input")
TASK_TYPES = {"3.0": ("video", "audio"), "3.5": ("video", "audio", "image")}
OPTIONS = {"video": ("visual", "audio", "transcription"), "audio": ("audio", "transcription")}
DEFAULT_OPTIONS = {"video": ("visual", "audio", "transcription"), "audio": ("audio", "transcription")}
SCOPES = ("clip", "asset")
TYPES = ("separate_embedding", "fused_embedding")
TEXT_TOKENS = {"3.0": 500, "3.5": 2000, "2.7": 77}
MAX_BASE64_BYTES = 36 * 1024 * 1024
MAX_MULTI_INPUT_SOURCES = 10
SYNC_MAX_MEDIA_SEC = 600.0
PLACEHOLDER = re.compile(r"<@([^>\s]+)>")


class ApiFault(Exception):
    """An error answer: HTTP status, the API's `code`, and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def invalid(message: str) -> ApiFault:
    return ApiFault(400, "parameter_invalid", message)


@dataclass(frozen=True)
class Source:
    """One media source: a URL, inline bytes, or an asset id (exactly one)."""

    url: str | None = None
    data: bytes | None = None
    asset_id: str | None = None
    name: str | None = None
    media_type: str = "image"


@dataclass(frozen=True)
class TlRequest:
    version: str  # "3.0", "3.5" or "2.7" (legacy)
    model_name: str
    input_type: str
    text: str | None = None
    sources: tuple[Source, ...] = ()
    start_sec: float = 0.0
    end_sec: float | None = None
    segmentation: tuple[str, float] | None = None
    options: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    types: tuple[str, ...] = ("separate_embedding",)
    dimension: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> Source | None:
        return self.sources[0] if self.sources else None


def token_count(text: str) -> int:
    return len(text.split())


def _object(value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{path} must be an object")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise invalid(f"{path}: unknown field(s) {', '.join(unknown)}")
    return value


def _number(obj: Mapping[str, Any], key: str, path: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise invalid(f"{path}.{key} must be a number of seconds of at least 0")
    return float(value)


def _text(value: Any, path: str, version: str, truncate: str = "end") -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{path} is required and must be non-empty text")
    limit = TEXT_TOKENS[version]
    if token_count(value) > limit and (version != "2.7" or truncate == "none"):
        raise invalid(f"{path}: text exceeds the {limit}-token limit of this model")
    return value


def _decode_base64(text: Any, path: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise invalid(f"{path} must be a non-empty base64 string")
    if len(text) * 3 // 4 > MAX_BASE64_BYTES:
        raise ApiFault(413, "file_too_large", f"{path}: base64 media exceeds {MAX_BASE64_BYTES} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"{path} is not valid base64") from exc


def media_source(value: Any, path: str, extra: tuple[str, ...] = ()) -> Source:
    obj = _object(value, path, ("url", "base64_string", "asset_id", *extra))
    present = [k for k in ("url", "base64_string", "asset_id") if obj.get(k) is not None]
    if len(present) != 1:
        raise invalid(f"{path}: give exactly one of url, base64_string, asset_id (got {len(present)})")
    name = obj.get("name")
    media_type = obj.get("media_type", "image")
    if "url" in present:
        url = obj["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise invalid(f"{path}.url must be an http(s) URL the platform can download, not {url!r}")
        return Source(url=url, name=name, media_type=media_type)
    if "asset_id" in present:
        return Source(asset_id=str(obj["asset_id"]), name=name, media_type=media_type)
    return Source(
        data=_decode_base64(obj["base64_string"], f"{path}.base64_string"), name=name, media_type=media_type
    )


def _enum_list(
    obj: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...]
) -> tuple[str, ...] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise invalid(f"{path}.{key} must be a non-empty list")
    for item in value:
        if item not in allowed:
            raise invalid(f"{path}.{key}: {item!r} is not one of {', '.join(allowed)}")
    if len(set(value)) != len(value):
        raise invalid(f"{path}.{key} has duplicates")
    return tuple(v for v in allowed if v in value)


def _segmentation(value: Any, path: str, modality: str) -> tuple[str, float] | None:
    if value is None:
        return None
    obj = _object(value, path, ("strategy", "fixed", "dynamic"))
    strategy = obj.get("strategy")
    if strategy == "fixed":
        fixed = _object(obj.get("fixed"), f"{path}.fixed", ("duration_sec",))
        seconds = _number(fixed, "duration_sec", f"{path}.fixed")
        if seconds is None or not 1 <= seconds <= 10:
            raise invalid(f"{path}.fixed.duration_sec must be 1 to 10 seconds")
        return ("fixed", seconds)
    if strategy == "dynamic" and modality == "video":
        dynamic = _object(obj.get("dynamic"), f"{path}.dynamic", ("min_duration_sec",))
        seconds = _number(dynamic, "min_duration_sec", f"{path}.dynamic")
        if seconds is None or not 1 <= seconds <= 10:
            raise invalid(f"{path}.dynamic.min_duration_sec must be 1 to 10 seconds")
        return ("dynamic", seconds)
    raise invalid(
        f"{path}.strategy {strategy!r} is not valid for {modality} "
        f"(fixed{', dynamic' if modality == 'video' else ''})"
    )


def _media_params(modality: str, value: Any) -> dict[str, Any]:
    path = modality
    obj = _object(
        value,
        path,
        (
            "media_source",
            "start_sec",
            "end_sec",
            "segmentation",
            "embedding_option",
            "embedding_scope",
            "embedding_type",
        ),
    )
    if "media_source" not in obj:
        raise invalid(f"{path}.media_source is required")
    start = _number(obj, "start_sec", path) or 0.0
    end = _number(obj, "end_sec", path)
    if end is not None and end <= start:
        raise invalid(f"{path}.end_sec must be greater than start_sec")
    options = _enum_list(obj, "embedding_option", path, OPTIONS[modality]) or DEFAULT_OPTIONS[modality]
    types = _enum_list(obj, "embedding_type", path, TYPES)
    if types is not None and len(options) < 2:
        raise invalid(f"{path}.embedding_type needs two or more embedding_option values")
    return {
        "sources": (media_source(obj["media_source"], f"{path}.media_source"),),
        "start_sec": start,
        "end_sec": end,
        "segmentation": _segmentation(obj.get("segmentation"), f"{path}.segmentation", modality),
        "options": options,
        "scopes": _enum_list(obj, "embedding_scope", path, SCOPES) or SCOPES,
        "types": types or ("separate_embedding",),
    }


def _multi_input(value: Any, version: str) -> dict[str, Any]:
    obj = _object(value, "multi_input", ("input_text", "media_sources"))
    raw_sources = obj.get("media_sources") or []
    if not isinstance(raw_sources, list):
        raise invalid("multi_input.media_sources must be a list")
    if len(raw_sources) > MAX_MULTI_INPUT_SOURCES:
        raise invalid(
            f"multi_input.media_sources: {len(raw_sources)} sources exceed the limit of "
            f"{MAX_MULTI_INPUT_SOURCES}"
        )
    sources = tuple(
        media_source(s, f"multi_input.media_sources[{i}]", ("name", "media_type"))
        for i, s in enumerate(raw_sources)
    )
    for i, s in enumerate(sources):
        if s.media_type != "image" and version == "3.0":
            raise invalid(f"multi_input.media_sources[{i}].media_type must be image on marengo3.0")
    text = obj.get("input_text")
    if text is None and not sources:
        raise invalid("multi_input needs input_text or at least one media source")
    if text is not None:
        text = _text(text, "multi_input.input_text", version)
        names = {s.name for s in sources if s.name}
        for placeholder in PLACEHOLDER.findall(text):
            if placeholder not in names:
                raise invalid(f"multi_input.input_text: placeholder <@{placeholder}> names no media source")
    return {"text": text, "sources": sources}


def parse_v2(body: Any, *, task: bool) -> TlRequest:
    """A `POST /embed-v2` (sync) or `POST /embed-v2/tasks` (task) body."""
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    model_name = body.get("model_name")
    version = MODELS.get(str(model_name))
    if version is None:
        raise invalid(f"model_name {model_name!r} is not one of {', '.join(MODELS)}")
    input_type = body.get("input_type")
    allowed_types = TASK_TYPES[version] if task else SYNC_TYPES
    if input_type not in allowed_types:
        raise invalid(f"input_type {input_type!r} is not one of {', '.join(allowed_types)} here")
    unknown = sorted(set(body) - {"input_type", "model_name", "embedding_dimension", input_type})
    if unknown:
        raise invalid(f"unknown field(s) {', '.join(unknown)} for input_type {input_type}")
    dimension = body.get("embedding_dimension")
    if dimension is not None:
        if version != "3.5":
            raise invalid("embedding_dimension is only accepted by marengo3.5")
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= 512:
            raise invalid("embedding_dimension must be a whole number from 1 to 512")
    if input_type not in body:
        raise invalid(f"{input_type} is required when input_type is {input_type}")
    value = body[input_type]
    params: dict[str, Any]
    if input_type == "text":
        obj = _object(value, "text", ("input_text",))
        params = {"text": _text(obj.get("input_text"), "text.input_text", version)}
    elif input_type == "image":
        obj = _object(value, "image", ("media_source",))
        params = {"sources": (media_source(obj.get("media_source"), "image.media_source"),)}
    elif input_type == "text_image":
        obj = _object(value, "text_image", ("input_text", "media_source"))
        params = {
            "text": _text(obj.get("input_text"), "text_image.input_text", version),
            "sources": (media_source(obj.get("media_source"), "text_image.media_source"),),
        }
    elif input_type == "multi_input":
        params = _multi_input(value, version)
    else:
        params = _media_params(input_type, value)
    return TlRequest(
        version=version, model_name=str(model_name), input_type=input_type, dimension=dimension, **params
    )


def parse_v1(form: Mapping[str, str], files: Mapping[str, bytes]) -> TlRequest:
    """A legacy `POST /embed` multipart form (Marengo-retrieval-2.7: text, image or audio)."""
    model_name = form.get("model_name")
    if model_name != LEGACY_MODEL:
        raise invalid(f"model_name {model_name!r}: the legacy embed endpoint serves {LEGACY_MODEL}")
    known = {"model_name", "text", "text_truncate", "image_url", "audio_url", "audio_start_offset_sec"}
    unknown = sorted((set(form) - known) | (set(files) - {"image_file", "audio_file"}))
    if unknown:
        raise invalid(f"unknown field(s) {', '.join(unknown)}")
    given = [
        k for k in ("text", "image_url", "image_file", "audio_url", "audio_file") if k in form or k in files
    ]
    if len(given) != 1:
        raise invalid("give exactly one of text, image_url, image_file, audio_url, audio_file")
    kind = given[0]
    if kind == "text":
        truncate = form.get("text_truncate", "end")
        if truncate not in ("start", "end", "none"):
            raise invalid(f"text_truncate {truncate!r} is not one of start, end, none")
        text = _text(form["text"], "text", "2.7", truncate)
        words = text.split()
        if len(words) > TEXT_TOKENS["2.7"]:
            keep = TEXT_TOKENS["2.7"]
            text = " ".join(words[-keep:] if truncate == "start" else words[:keep])
        return TlRequest(version="2.7", model_name=LEGACY_MODEL, input_type="text", text=text)
    modality = "image" if kind.startswith("image") else "audio"
    source = Source(url=form[kind]) if kind.endswith("_url") else Source(data=files[kind])
    start = float(form.get("audio_start_offset_sec", "0") or 0)
    return TlRequest(
        version="2.7",
        model_name=LEGACY_MODEL,
        input_type=modality,
        sources=(source,),
        start_sec=start,
        options=("audio",) if modality == "audio" else (),
        scopes=("clip",),
    )
