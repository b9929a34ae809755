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

from emulators.twelvelabs_api.errors import ApiFault, invalid
from emulators.twelvelabs_api.limits import (
    MAX_BASE64_BYTES,
    MAX_MULTI_INPUT_SOURCES,
    TEXT_TOKENS,
    too_large,
)

MODELS = {"marengo3.0": "3.0", "marengo3.5": "3.5"}
MODEL_NAMES = {version: name for name, version in MODELS.items()}
LEGACY_MODEL = "Marengo-retrieval-2.7"
# Marengo 3.5 syncs only multi_input (its sources carry every modality); 3.0 takes the single types too.
SYNC_TYPES = {
    "3.0": ("text", "image", "text_image", "audio", "video", "multi_input"),
    "3.5": ("multi_input",),
}
TASK_TYPES = {"3.0": ("video", "audio"), "3.5": ("video", "audio", "image")}
OPTIONS = {"video": ("visual", "audio", "transcription"), "audio": ("audio", "transcription")}
DEFAULT_OPTIONS = {"video": ("visual", "audio", "transcription"), "audio": ("audio", "transcription")}
OPTIONS_3_5 = {"video": ("visual", "audio"), "audio": ("audio",)}
DEFAULT_OPTIONS_3_5 = OPTIONS_3_5
SCOPES = ("clip", "asset")
TYPES = ("separate_embedding", "fused_embedding")
PLACEHOLDER = re.compile(r"<@([^>\s]+)>")
# The legacy form's fields, as (modality, field): text, then one image, then one audio file.
LEGACY_KINDS: tuple[tuple[str, str], ...] = (
    ("text", "text"),
    ("image", "image_url"),
    ("image", "image_file"),
    ("audio", "audio_url"),
    ("audio", "audio_file"),
)

__all__ = ["ApiFault", "Source", "TlRequest", "invalid", "parse_v1", "parse_v2"]


@dataclass(frozen=True)
class Source:
    """One media source: a URL, inline bytes, or an asset id (exactly one); `path` names its field in
    errors about its media."""

    url: str | None = None
    data: bytes | None = None
    asset_id: str | None = None
    name: str | None = None
    media_type: str = "image"
    path: str = "media_source"


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
    truncated: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> Source | None:
        return self.sources[0] if self.sources else None


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


def _text(value: Any, path: str, version: str, truncate: str = "none") -> str:
    """Text within the model's token limit: longer text is refused (`none`) or cut at its `end` or `start`."""
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{path} is required and must be non-empty text")
    limit = TEXT_TOKENS[version]
    words = value.split()
    if len(words) <= limit:
        return value
    if truncate == "none":
        raise invalid(f"{path}: text exceeds the {limit}-token limit of this model")
    return " ".join(words[-limit:] if truncate == "start" else words[:limit])


def _decode_base64(text: Any, path: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise invalid(f"{path} must be a non-empty base64 string")
    if len(text) * 3 // 4 > MAX_BASE64_BYTES:
        raise too_large(path, len(text) * 3 // 4, MAX_BASE64_BYTES)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(f"{path} is not valid base64") from exc


def media_source(value: Any, path: str, extra: tuple[str, ...] = (), media_type: str = "image") -> Source:
    obj = _object(value, path, ("url", "base64_string", "asset_id", *extra))
    present = [k for k in ("url", "base64_string", "asset_id") if obj.get(k) is not None]
    if len(present) != 1:
        raise invalid(f"{path}: give exactly one of url, base64_string, asset_id (got {len(present)})")
    name = obj.get("name")
    media_type = obj.get("media_type", media_type)
    if "url" in present:
        url = obj["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise invalid(f"{path}.url must be an http(s) URL the platform can download, not {url!r}")
        return Source(url=url, name=name, media_type=media_type, path=f"{path}.url")
    if "asset_id" in present:
        asset_id = obj["asset_id"]
        if not isinstance(asset_id, str) or not asset_id:
            raise invalid(f"{path}.asset_id must be the id of an asset")
        return Source(asset_id=asset_id, name=name, media_type=media_type, path=f"{path}.asset_id")
    where = f"{path}.base64_string"
    return Source(
        data=_decode_base64(obj["base64_string"], where), name=name, media_type=media_type, path=where
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


def _whole_seconds(obj: Any, key: str, path: str, low: int, high: int) -> float:
    """A documented segment length: whole seconds from `low` to `high` (SDK 1.3.6:
    `VideoSegmentationDynamicDynamic` 2-5; `VideoSegmentationFixedFixed`, `AudioSegmentationFixed` 2-10)."""
    seconds = _number(obj, key, path)
    if seconds is None or seconds != int(seconds) or not low <= seconds <= high:
        raise invalid(f"{path}.{key} must be a whole number of seconds from {low} to {high}")
    return seconds


def _segmentation(value: Any, path: str, modality: str, version: str) -> tuple[str, float] | None:
    """Marengo 3.0 takes the strategy directly; 3.5 only inside a `temporal` object (SDK 1.3.6,
    AsyncTemporalSegmentation: "Use with Marengo 3.5"), where both strategies suit video and audio."""
    if value is None:
        return None
    if version == "3.5":
        if not isinstance(value, dict) or "temporal" not in value:
            raise invalid(f"{path}: with marengo3.5 the settings go in a 'temporal' object")
        wrapper = _object(value, path, ("temporal",))
        return _strategy(wrapper["temporal"], f"{path}.temporal", dynamic_ok=True, dynamic_max=10)
    if isinstance(value, dict) and "temporal" in value:
        raise invalid(f"{path}.temporal is only accepted by marengo3.5")
    return _strategy(value, path, dynamic_ok=modality == "video", dynamic_max=5)


def _strategy(value: Any, path: str, *, dynamic_ok: bool, dynamic_max: int) -> tuple[str, float]:
    obj = _object(value, path, ("strategy", "fixed", "dynamic"))
    strategy = obj.get("strategy")
    if strategy == "fixed":
        fixed = _object(obj.get("fixed"), f"{path}.fixed", ("duration_sec",))
        return ("fixed", _whole_seconds(fixed, "duration_sec", f"{path}.fixed", 2, 10))
    if strategy == "dynamic" and dynamic_ok:
        dynamic = _object(obj.get("dynamic"), f"{path}.dynamic", ("min_duration_sec",))
        return ("dynamic", _whole_seconds(dynamic, "min_duration_sec", f"{path}.dynamic", 2, dynamic_max))
    raise invalid(
        f"{path}.strategy {strategy!r} is not valid here (fixed{', dynamic' if dynamic_ok else ''})"
    )


def _media_params(modality: str, value: Any, version: str) -> dict[str, Any]:
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
    # "transcription: ... Requires Marengo 3.0" (SDK 1.3.6); 3.5's audio option includes speech.
    allowed = OPTIONS_3_5 if version == "3.5" else OPTIONS
    defaults = DEFAULT_OPTIONS_3_5 if version == "3.5" else DEFAULT_OPTIONS
    options = _enum_list(obj, "embedding_option", path, allowed[modality]) or defaults[modality]
    types = _enum_list(obj, "embedding_type", path, TYPES)
    if types is not None and len(options) < 2:
        raise invalid(f"{path}.embedding_type needs two or more embedding_option values")
    return {
        "sources": (media_source(obj["media_source"], f"{path}.media_source", media_type=modality),),
        "start_sec": start,
        "end_sec": end,
        "segmentation": _segmentation(obj.get("segmentation"), f"{path}.segmentation", modality, version),
        "options": options,
        "scopes": _enum_list(obj, "embedding_scope", path, SCOPES) or SCOPES,
        "types": types or ("separate_embedding",),
    }


def _multi_input(value: Any, version: str, truncate: str) -> dict[str, Any]:
    obj = _object(value, "multi_input", ("input_text", "media_sources"))
    raw_sources = obj.get("media_sources") or []
    if not isinstance(raw_sources, list):
        raise invalid("multi_input.media_sources must be a list")
    if len(raw_sources) > MAX_MULTI_INPUT_SOURCES:
        raise invalid(
            f"multi_input.media_sources: {len(raw_sources)} sources exceed the limit of "
            f"{MAX_MULTI_INPUT_SOURCES}"
        )
    for i, raw in enumerate(raw_sources):
        if not isinstance(raw, dict) or "media_type" not in raw:
            raise invalid(f"multi_input.media_sources[{i}].media_type is required")
    sources = tuple(
        media_source(s, f"multi_input.media_sources[{i}]", ("name", "media_type"))
        for i, s in enumerate(raw_sources)
    )
    named = [s.name for s in sources if s.name is not None]
    if len(set(named)) != len(named):
        raise invalid("multi_input.media_sources: each name must be unique")
    allowed = ("image",) if version == "3.0" else ("image", "video", "audio", "document")
    for i, s in enumerate(sources):
        if s.media_type not in allowed:
            raise invalid(
                f"multi_input.media_sources[{i}].media_type {s.media_type!r} is not one of "
                f"{', '.join(allowed)} on {MODEL_NAMES[version]}"
            )
    text = obj.get("input_text")
    if text is None and not sources:
        raise invalid("multi_input needs input_text or at least one media source")
    if text is not None:
        text = _text(text, "multi_input.input_text", version, truncate)
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
    allowed_types = TASK_TYPES[version] if task else SYNC_TYPES[version]
    if input_type not in allowed_types:
        raise invalid(
            f"input_type {input_type!r} is not one of {', '.join(allowed_types)} for {model_name} here"
        )
    top = {"input_type", "model_name", "embedding_dimension", input_type}
    if not task:
        top |= {"auto_truncate", "embedding_uncertainty"}
    unknown = sorted(set(body) - top)
    if unknown:
        raise invalid(f"unknown field(s) {', '.join(unknown)} for input_type {input_type}")
    for key in ("embedding_dimension", "auto_truncate", "embedding_uncertainty"):
        if body.get(key) is not None and version != "3.5":
            raise invalid(f"{key} is only accepted by marengo3.5")
    dimension = body.get("embedding_dimension")
    if dimension is not None and (
        isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= 512
    ):
        raise invalid("embedding_dimension must be a whole number from 1 to 512")
    auto_truncate = body.get("auto_truncate")
    if auto_truncate is not None and not isinstance(auto_truncate, bool):
        raise invalid("auto_truncate must be true or false")
    if body.get("embedding_uncertainty") is not None:
        raise invalid("embedding_uncertainty is not offered by this emulator")
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
        params = _multi_input(value, version, "end" if auto_truncate else "none")
        raw_text = value.get("input_text") if isinstance(value, dict) else None
        params["truncated"] = params["text"] is not None and params["text"] != raw_text
    else:
        params = _media_params(input_type, value, version)
    return TlRequest(
        version=version, model_name=str(model_name), input_type=input_type, dimension=dimension, **params
    )


def parse_v1(form: Mapping[str, str], files: Mapping[str, bytes]) -> tuple[TlRequest, ...]:
    """A legacy `POST /embed` multipart form (Marengo-retrieval-2.7): text, an image and an audio file, any
    of them in one call (seed 002: "You can create multiple types of embeddings in a single API call"); one
    request per modality, in that order."""
    model_name = form.get("model_name")
    if model_name != LEGACY_MODEL:
        raise invalid(f"model_name {model_name!r}: the legacy embed endpoint serves {LEGACY_MODEL}")
    known = {"model_name", "text", "text_truncate", "image_url", "audio_url", "audio_start_offset_sec"}
    unknown = sorted((set(form) - known) | (set(files) - {"image_file", "audio_file"}))
    if unknown:
        raise invalid(f"unknown field(s) {', '.join(unknown)}")
    given = [(kind, name) for kind, name in LEGACY_KINDS if name in form or name in files]
    if not given:
        raise invalid("give text, image_url or image_file, or audio_url or audio_file")
    for modality in ("image", "audio"):
        names = [name for kind, name in given if kind == modality]
        if len(names) > 1:
            raise invalid(f"give one of {' and '.join(names)}, not both")
    requests: list[TlRequest] = []
    for kind, name in given:
        if kind == "text":
            truncate = form.get("text_truncate", "end")
            if truncate not in ("start", "end", "none"):
                raise invalid(f"text_truncate {truncate!r} is not one of start, end, none")
            text = _text(form["text"], "text", "2.7", truncate)
            requests.append(TlRequest(version="2.7", model_name=LEGACY_MODEL, input_type="text", text=text))
            continue
        if name.endswith("_url"):
            source = Source(url=form[name], media_type=kind, path=name)
        else:
            source = Source(data=files[name], media_type=kind, path=name)
        offset = form.get("audio_start_offset_sec", "0") or "0"
        try:
            start = float(offset) if kind == "audio" else 0.0
        except ValueError as exc:
            raise invalid(f"audio_start_offset_sec {offset!r} is not a number of seconds") from exc
        if start < 0:
            raise invalid("audio_start_offset_sec must be at least 0")
        requests.append(
            TlRequest(
                version="2.7",
                model_name=LEGACY_MODEL,
                input_type=kind,
                sources=(source,),
                start_sec=start,
                options=("audio",) if kind == "audio" else (),
                scopes=("clip",),
            )
        )
    return tuple(requests)
