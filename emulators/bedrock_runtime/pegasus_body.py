"""Validate a Pegasus 1.2 InvokeModel body against its documented shape and normalise it into a request.

The shape (reference "Pegasus 1.2", seed 003): required `inputPrompt` (<= 2000 tokens) and `mediaSource`
(exactly one of `base64String` <= 36 MB or `s3Location` {`uri`, `bucketOwner`}), optional `temperature`
(0..1), `maxOutputTokens` (<= 4096) and `responseFormat` {`jsonSchema`}. Messages use Bedrock's JSON-schema
wording and always name the offending key, like the Marengo bodies.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from emulators.bedrock_runtime.errors import malformed
from emulators.bedrock_runtime.limits import GB, HOUR_SEC, MB
from emulators.bedrock_runtime.marengo_body import (
    ACCOUNT,
    S3_URI,
    MediaRef,
    _number,
    _object,
    _string,
    _type_name,
)

MAX_PROMPT_TOKENS = 2000
MAX_OUTPUT_TOKENS = 4096
MAX_BASE64_BYTES = 36 * MB  # decoded, decimal units: see limits.py
MAX_S3_BYTES = 2 * GB
MAX_VIDEO_SEC = HOUR_SEC
DEFAULT_TEMPERATURE = 0.2
BODY_KEYS = ("inputPrompt", "mediaSource", "temperature", "responseFormat", "maxOutputTokens")


@dataclass(frozen=True)
class PegasusRequest:
    """A validated Pegasus body: what to ask, about which media, and in which output format."""

    prompt: str
    media: MediaRef
    temperature: float = DEFAULT_TEMPERATURE
    max_output_tokens: int | None = None
    json_schema: dict[str, Any] | None = None
    bucket_owner: str | None = None


def prompt_tokens(prompt: str) -> int:
    """An upper bound on the prompt's tokens: one per UTF-8 byte (no byte-level BPE makes more), so a prompt
    refused here is surely over the limit for any tokenizer that production may assume."""
    return len(prompt.encode("utf-8"))


def _media_source(
    value: Any, path: str, max_base64_bytes: int, require_owner: bool
) -> tuple[MediaRef, str | None]:
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
        if not data:
            raise malformed(f"{path}/base64String: expected minLength: 1, actual: 0")
        if len(data) > max_base64_bytes:
            raise malformed(
                f"{path}/base64String: decoded media is {len(data)} bytes, over the limit of "
                f"{max_base64_bytes} bytes ({max_base64_bytes / MB:g} MB); send it by s3Location"
            )
        return MediaRef(data=data), None
    where = f"{path}/s3Location"
    required = ("uri", "bucketOwner") if require_owner else ("uri",)
    loc = _object(src["s3Location"], where, ("uri", "bucketOwner"), required)
    uri = _string(loc, "uri", where) or ""
    if not S3_URI.fullmatch(uri):
        raise malformed(f"{where}/uri: string [{uri}] does not match pattern {S3_URI.pattern}")
    owner = _string(loc, "bucketOwner", where)
    if owner is None:
        return MediaRef(uri=uri), None
    if not ACCOUNT.fullmatch(owner):
        raise malformed(f"{where}/bucketOwner: string [{owner}] does not match pattern [0-9]{{12}}")
    return MediaRef(uri=uri, owner=owner), owner


def parse_pegasus_body(
    body: Any, *, max_base64_bytes: int = MAX_BASE64_BYTES, require_bucket_owner: bool = True
) -> PegasusRequest:
    """Validate a Pegasus InvokeModel body; ValidationException ("Malformed input request") naming the key.

    `s3Location.bucketOwner` is required as the Pegasus guide sends it (`require_bucket_owner=False`
    accepts it missing, as Marengo's bodies do)."""
    obj = _object(body, "#", BODY_KEYS, ("inputPrompt", "mediaSource"))
    prompt = _string(obj, "inputPrompt", "#") or ""
    if not prompt.strip():
        raise malformed("#/inputPrompt: expected minLength: 1, actual: 0")
    tokens = prompt_tokens(prompt)
    if tokens > MAX_PROMPT_TOKENS:
        raise malformed(
            f"#/inputPrompt: the prompt has up to {tokens} tokens, over the {MAX_PROMPT_TOKENS}-token limit"
        )
    media, owner = _media_source(obj["mediaSource"], "#/mediaSource", max_base64_bytes, require_bucket_owner)
    temperature = _number(obj, "temperature", "#", 0, 1)
    max_tokens = _number(obj, "maxOutputTokens", "#", 1, MAX_OUTPUT_TOKENS, integer=True)
    schema: dict[str, Any] | None = None
    if "responseFormat" in obj:
        fmt = _object(obj["responseFormat"], "#/responseFormat", ("jsonSchema",), ("jsonSchema",))
        if not isinstance(fmt["jsonSchema"], dict):
            found = _type_name(fmt["jsonSchema"])
            raise malformed(f"#/responseFormat/jsonSchema: expected type: JSONObject, found: {found}")
        schema = fmt["jsonSchema"]
    return PegasusRequest(
        prompt=prompt,
        media=media,
        temperature=DEFAULT_TEMPERATURE if temperature is None else temperature,
        max_output_tokens=None if max_tokens is None else int(max_tokens),
        json_schema=schema,
        bucket_owner=owner,
    )
