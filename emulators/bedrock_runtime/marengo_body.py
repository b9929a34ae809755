"""Validate Marengo 2.7 (flat) and 3.0 (nested) request bodies and normalise them into an EmbedRequest.

Messages follow Bedrock's JSON-schema wording ("Malformed input request: #/video: extraneous key [foo] is not
permitted, ...") and always name the offending key, so a client bug is diagnosable from the error alone.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulators.bedrock_runtime.errors import malformed

# The bucket is a DNS-style name, so it ends at the first "/"; the key is everything after it, byte for byte
# (`#`, `?`, tabs, newlines, `//`, `..` and a leading "/" are all part of an S3 key).
S3_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][.\-a-z0-9]{1,61}[a-z0-9])/(?P<key>.+)", re.DOTALL)
ACCOUNT = re.compile(r"[0-9]{12}")

SYNC_TYPES = {"3.0": ("text", "image", "text_image"), "2.7": ("text", "image")}
ASYNC_TYPES = {
    "3.0": ("video", "audio", "image", "text", "text_image"),
    "2.7": ("video", "audio", "image", "text"),
}
ALL_TYPES = {
    "3.0": ("video", "audio", "image", "text", "text_image"),
    "2.7": ("video", "audio", "image", "text"),
}
V3_VIDEO_OPTIONS = ("visual", "audio", "transcription")
V3_AUDIO_OPTIONS = ("audio", "transcription")
V3_SCOPES = ("clip", "asset")
V27_OPTIONS = ("visual-text", "visual-image", "audio")
TEXT_TOKEN_LIMIT = {"3.0": 500, "2.7": 77}


@dataclass(frozen=True)
class MediaRef:
    """Where the media comes from: an S3 object (and the account the request says owns its bucket) or
    inline base64 bytes."""

    uri: str | None = None
    data: bytes | None = None
    owner: str | None = None

    @property
    def bucket_key(self) -> tuple[str, str]:
        return split_s3_uri(self.uri or "")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an `s3://bucket/key` already validated against S3_URI; never a URL parser."""
    match = S3_URI.fullmatch(uri)
    if match is None:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return match.group("bucket"), match.group("key")


@dataclass(frozen=True)
class EmbedRequest:
    """A validated, version-independent description of what to embed."""

    version: str
    input_type: str
    text: str | None = None
    media: MediaRef | None = None
    start_sec: float = 0.0
    end_sec: float | None = None  # absolute end; None = end of media
    segmentation: tuple[str, float] | None = None  # ("dynamic", min seconds) | ("fixed", seconds)
    options: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ("clip",)


# --- a minimal JSON-schema ---------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float):
        return "Number"
    names: dict[type, str] = {str: "String", dict: "JSONObject", list: "JSONArray"}
    return names.get(type(value), "Null")


def _number(
    obj: Mapping[str, Any], key: str, path: str, lo: float | None, hi: float | None, integer: bool = False
) -> float | None:
    if key not in obj:
        return None
    value = obj[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not float(value).is_integer())
    ):
        want = "Integer" if integer else "Number"
        raise malformed(f"{path}/{key}: expected type: {want}, found: {_type_name(value)}")
    if lo is not None and value < lo:
        raise malformed(f"{path}/{key}: {value} is not greater or equal to {lo:g}")
    if hi is not None and value > hi:
        raise malformed(f"{path}/{key}: {value} is not less or equal to {hi:g}")
    return float(value)


def _object(value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise malformed(f"{path}: expected type: JSONObject, found: {_type_name(value)}")
    for key in required:
        if key not in value:
            raise malformed(f"{path}: required key [{key}] not found")
    for key in value:
        if key not in allowed:
            raise malformed(f"{path}: extraneous key [{key}] is not permitted")
    return value


def _string(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    if key not in obj:
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise malformed(f"{path}/{key}: expected type: String, found: {_type_name(value)}")
    return value


def _enum(obj: Mapping[str, Any], key: str, path: str, values: tuple[str, ...]) -> str | None:
    value = _string(obj, key, path)
    if value is not None and value not in values:
        raise malformed(f"{path}/{key}: {value} is not a valid enum value")
    return value


def _enum_list(
    obj: Mapping[str, Any], key: str, path: str, values: tuple[str, ...]
) -> tuple[str, ...] | None:
    if key not in obj:
        return None
    items = obj[key]
    if not isinstance(items, list):
        raise malformed(f"{path}/{key}: expected type: JSONArray, found: {_type_name(items)}")
    if not items:
        raise malformed(f"{path}/{key}: expected minimum item count: 1, found: 0")
    for i, item in enumerate(items):
        if not isinstance(item, str) or item not in values:
            raise malformed(f"{path}/{key}/{i}: {item} is not a valid enum value")
    if len(set(items)) != len(items):
        raise malformed(f"{path}/{key}: array items are not unique")
    return tuple(v for v in values if v in items)  # canonical order


def _text(obj: Mapping[str, Any], path: str, version: str) -> str:
    text = _string(obj, "inputText", path)
    if text is None:
        raise malformed(f"{path}: required key [inputText] not found")
    if not text.strip():
        raise malformed(f"{path}/inputText: expected minLength: 1, actual: 0")
    truncate = obj.get("textTruncate", "end")
    if version == "2.7" and truncate == "none" and len(text.split()) > TEXT_TOKEN_LIMIT[version]:
        raise malformed(
            f"{path}/inputText: text exceeds {TEXT_TOKEN_LIMIT[version]} tokens and textTruncate is none"
        )
    if version == "3.0" and len(text.split()) > TEXT_TOKEN_LIMIT[version]:
        raise malformed(f"{path}/inputText: text exceeds {TEXT_TOKEN_LIMIT[version]} tokens")
    return text


def _media_source(value: Any, path: str) -> MediaRef:
    src = _object(value, path, ("base64String", "s3Location"), ())
    present = [k for k in ("base64String", "s3Location") if k in src]
    if len(present) != 1:
        raise malformed(
            f"{path}: exactly one of [base64String, s3Location] is required, found {len(present)}"
        )
    if present[0] == "base64String":
        raw = _string(src, "base64String", path) or ""
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise malformed(f"{path}/base64String: not valid base64 ({exc})") from exc
        return MediaRef(data=data)  # its size is checked against the model's limits by the server
    loc = _object(src["s3Location"], f"{path}/s3Location", ("uri", "bucketOwner"), ("uri",))
    uri = _string(loc, "uri", f"{path}/s3Location") or ""
    if not S3_URI.fullmatch(uri):
        raise malformed(f"{path}/s3Location/uri: string [{uri}] does not match pattern {S3_URI.pattern}")
    owner = _string(loc, "bucketOwner", f"{path}/s3Location")
    if owner is not None and not ACCOUNT.fullmatch(owner):
        raise malformed(f"{path}/s3Location/bucketOwner: string [{owner}] does not match pattern [0-9]{{12}}")
    return MediaRef(uri=uri, owner=owner)


def _input_type(body: Any, version: str, allowed_here: tuple[str, ...], api: str) -> str:
    if not isinstance(body, dict):
        raise malformed(f"#: expected type: JSONObject, found: {_type_name(body)}")
    if "inputType" not in body:
        raise malformed("#: required key [inputType] not found")
    input_type = _enum(body, "inputType", "#", ALL_TYPES[version])
    assert input_type is not None
    if input_type not in allowed_here:
        raise malformed(
            f"#/inputType: {input_type} is not supported by {api}; use "
            f"{'StartAsyncInvoke' if api == 'InvokeModel' else 'InvokeModel'}"
        )
    return input_type


# --- Marengo 3.0: nested ------------------------------------------------------------------------------------


def _parse_v3(body: Any, allowed_types: tuple[str, ...], api: str) -> EmbedRequest:
    input_type = _input_type(body, "3.0", allowed_types, api)
    _object(body, "#", ("inputType", input_type), ("inputType", input_type))
    path = f"#/{input_type}"
    if input_type == "text":
        obj = _object(body[input_type], path, ("inputText",), ("inputText",))
        return EmbedRequest("3.0", input_type, text=_text(obj, path, "3.0"))
    if input_type == "image":
        obj = _object(body[input_type], path, ("mediaSource",), ("mediaSource",))
        return EmbedRequest("3.0", input_type, media=_media_source(obj["mediaSource"], f"{path}/mediaSource"))
    if input_type == "text_image":
        obj = _object(body[input_type], path, ("inputText", "mediaSource"), ("inputText", "mediaSource"))
        return EmbedRequest(
            "3.0",
            input_type,
            text=_text(obj, path, "3.0"),
            media=_media_source(obj["mediaSource"], f"{path}/mediaSource"),
        )
    keys = ("mediaSource", "startSec", "endSec", "segmentation", "embeddingOption", "embeddingScope")
    obj = _object(body[input_type], path, keys, ("mediaSource",))
    media = _media_source(obj["mediaSource"], f"{path}/mediaSource")
    start = _number(obj, "startSec", path, 0, None) or 0.0
    end = _number(obj, "endSec", path, 0, None)
    if end is not None and end <= start:
        raise malformed(f"{path}/endSec: {end:g} must be greater than startSec {start:g}")
    segmentation: tuple[str, float] | None = None
    if "segmentation" in obj:
        seg_path = f"{path}/segmentation"
        seg = _object(obj["segmentation"], seg_path, ("method", "dynamic", "fixed"), ("method",))
        method = _enum(seg, "method", seg_path, ("dynamic", "fixed"))
        assert method is not None
        _object(seg, seg_path, ("method", method), ("method",))
        if method == "dynamic":
            dyn = _object(seg.get("dynamic", {}), f"{seg_path}/dynamic", ("minDurationSec",), ())
            segmentation = ("dynamic", _number(dyn, "minDurationSec", f"{seg_path}/dynamic", 1, 10) or 4.0)
        else:
            fixed = _object(seg.get("fixed"), f"{seg_path}/fixed", ("durationSec",), ("durationSec",))
            segmentation = ("fixed", _number(fixed, "durationSec", f"{seg_path}/fixed", 1, 10) or 0.0)
    option_values = V3_VIDEO_OPTIONS if input_type == "video" else V3_AUDIO_OPTIONS
    options = _enum_list(obj, "embeddingOption", path, option_values)
    if options is None:
        options = ("visual", "audio") if input_type == "video" else ("audio",)
    scopes = _enum_list(obj, "embeddingScope", path, V3_SCOPES) or ("clip",)
    return EmbedRequest(
        "3.0",
        input_type,
        media=media,
        start_sec=start,
        end_sec=end,
        segmentation=segmentation,
        options=options,
        scopes=scopes,
    )


# --- Marengo 2.7: flat --------------------------------------------------------------------------------------

_V27_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("inputType", "inputText", "textTruncate"),
    "image": ("inputType", "mediaSource"),
    "video": (
        "inputType",
        "mediaSource",
        "startSec",
        "lengthSec",
        "useFixedLengthSec",
        "minClipSec",
        "embeddingOption",
    ),
    "audio": ("inputType", "mediaSource", "startSec", "lengthSec", "useFixedLengthSec"),
}


def _parse_v27(body: Any, allowed_types: tuple[str, ...], api: str) -> EmbedRequest:
    input_type = _input_type(body, "2.7", allowed_types, api)
    required = {"text": ("inputText",), "image": ("mediaSource",)}.get(input_type, ("mediaSource",))
    obj = _object(body, "#", _V27_KEYS[input_type], ("inputType", *required))
    if input_type == "text":
        _enum(obj, "textTruncate", "#", ("end", "none"))
        return EmbedRequest("2.7", input_type, text=_text(obj, "#", "2.7"))
    media = _media_source(obj["mediaSource"], "#/mediaSource")
    if input_type == "image":
        return EmbedRequest("2.7", input_type, media=media)
    start = _number(obj, "startSec", "#", 0, None) or 0.0
    length = _number(obj, "lengthSec", "#", 0, None)
    if length is not None and length <= 0:
        raise malformed(f"#/lengthSec: {length:g} is not greater than 0")
    fixed = _number(obj, "useFixedLengthSec", "#", 2, 10)
    min_clip = _number(obj, "minClipSec", "#", 1, 5, integer=True)
    segmentation: tuple[str, float] | None
    if fixed is not None:
        segmentation = ("fixed", fixed)
    elif input_type == "video":
        segmentation = ("dynamic", min_clip or 4.0)
    else:
        segmentation = None
    if input_type == "video":
        options = _enum_list(obj, "embeddingOption", "#", V27_OPTIONS) or V27_OPTIONS
    else:
        options = ("audio",)
    end = None if length is None else start + length
    return EmbedRequest(
        "2.7",
        input_type,
        media=media,
        start_sec=start,
        end_sec=end,
        segmentation=segmentation,
        options=options,
        scopes=("clip",),
    )


def parse_body(version: str, body: Any, *, sync: bool) -> EmbedRequest:
    """Validate a Marengo body for InvokeModel (sync) or StartAsyncInvoke and normalise it."""
    api = "InvokeModel" if sync else "StartAsyncInvoke"
    allowed = (SYNC_TYPES if sync else ASYNC_TYPES)[version]
    return _parse_v3(body, allowed, api) if version == "3.0" else _parse_v27(body, allowed, api)
