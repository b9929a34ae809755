"""Pegasus 1.2 on Amazon Bedrock as pure functions: model ids, the InvokeModel body, the limits checked
before any call, and the response parsed.

Shapes follow ../shared/reference/bedrock-runtime.md ("Pegasus 1.2") and the TwelveLabs Bedrock guide
(seed 003). Kept free of I/O so they are unit-tested against the documented JSON.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

from resources.providers.marengo_models import GB
from resources.search.marengo_query import MAX_BASE64_BYTES, query_token_bound

PEGASUS_MODEL_ID = "twelvelabs.pegasus-1-2-v1:0"
MAX_DURATION_SEC = 3600.0
MAX_S3_BYTES = 2 * GB
MAX_PROMPT_TOKENS = 2000
MAX_OUTPUT_TOKENS = 4096
DEFAULT_TEMPERATURE = 0.2
# InvokeModel's `body` blob (botocore's model): an inline video must fit in it once base64-encoded.
MAX_REQUEST_BODY_BYTES = 25_000_000
FINISH_REASONS = ("stop", "length")
# List prices seen in public price tables (../shared/reference/bedrock-runtime.md): check the Bedrock
# pricing page before relying on them.
USD_PER_VIDEO_SECOND = 0.00049
USD_PER_OUTPUT_TOKEN = 7.5 / 1_000_000

ProfileScope = Literal["geographic", "global"]
Transport = Literal["s3", "base64"]

# Regions where the guide lists Pegasus 1.2, by the geographic inference profile that serves them (None:
# only the global profile reaches Pegasus from there).
PEGASUS_REGIONS: dict[str, str | None] = {
    **dict.fromkeys(("us-east-1", "us-east-2", "us-west-1", "us-west-2"), "us"),
    **dict.fromkeys(("ca-central-1", "ca-west-1", "mx-central-1", "sa-east-1"), None),
    **dict.fromkeys(
        (
            "eu-central-1",
            "eu-central-2",
            "eu-north-1",
            "eu-south-1",
            "eu-south-2",
            "eu-west-1",
            "eu-west-2",
            "eu-west-3",
        ),
        "eu",
    ),
    **dict.fromkeys(
        (
            "ap-northeast-1",
            "ap-northeast-2",
            "ap-northeast-3",
            "ap-east-2",
            "ap-south-1",
            "ap-south-2",
            "ap-southeast-1",
            "ap-southeast-2",
            "ap-southeast-3",
            "ap-southeast-4",
            "ap-southeast-5",
            "ap-southeast-7",
        ),
        "apac",
    ),
    **dict.fromkeys(("af-south-1", "il-central-1", "me-south-1", "me-central-1"), None),
}


class PegasusOutputError(ValueError):
    """Bedrock answered, but not with the documented Pegasus response."""


def pegasus_model_id(region: str, scope: ProfileScope = "geographic") -> str:
    """The inference profile InvokeModel takes in `region`: the geographic one (us./eu./apac.) where the
    region has one, else the global one; `scope="global"` always routes worldwide."""
    if region not in PEGASUS_REGIONS:
        raise ValueError(
            f"Pegasus 1.2 is not offered in {region!r}: set AWS_REGION to a Pegasus region such as "
            "us-east-1, eu-west-1 or ap-northeast-2"
        )
    geo = PEGASUS_REGIONS[region]
    if scope == "global" or geo is None:
        return f"global.{PEGASUS_MODEL_ID}"
    return f"{geo}.{PEGASUS_MODEL_ID}"


def base64_source(data: bytes) -> dict[str, Any]:
    """A video inline as `base64String`; the size is checked first (`limit_problem`). A video in S3 goes
    by bedrock_marengo_bodies.s3_media_source (uri, bucketOwner): the same shape as Marengo's."""
    return {"base64String": base64.b64encode(data).decode("ascii")}


def pegasus_body(
    prompt: str,
    media_source: dict[str, Any],
    temperature: float = DEFAULT_TEMPERATURE,
    max_output_tokens: int | None = None,
    json_schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The InvokeModel body: the prompt, the video (an `s3Location` or `base64_source`), sampling, and
    `responseFormat` where the answer must follow a JSON schema."""
    body: dict[str, Any] = {
        "inputPrompt": prompt,
        "mediaSource": media_source,
        "temperature": temperature,
    }
    if max_output_tokens is not None:
        body["maxOutputTokens"] = max_output_tokens
    if json_schema is not None:
        body["responseFormat"] = {"jsonSchema": json_schema}
    return body


def prompt_problem(prompt: str) -> str | None:
    """Why a prompt cannot be sent (over 2000 tokens by a bound that never underestimates), or None."""
    bound = query_token_bound(prompt)
    if bound <= MAX_PROMPT_TOKENS:
        return None
    return (
        f"prompt is up to {bound} tokens (each UTF-8 byte counted as one), over Pegasus's "
        f"{MAX_PROMPT_TOKENS}-token limit: shorten it"
    )


def base64_body_bytes(size_bytes: int) -> int:
    """The base64 text of `size_bytes` bytes (4 characters per 3 bytes, padded)."""
    return 4 * ((size_bytes + 2) // 3)


def limit_problem(
    duration_sec: float | None, size_bytes: int | None, transport: Transport, prompt: str
) -> str | None:
    """Why this video and prompt would be refused by Pegasus's documented limits, or None to call.

    An unknown duration or size is not refused here: Bedrock's own answer decides."""
    if duration_sec is not None and duration_sec > MAX_DURATION_SEC:
        return f"video is {duration_sec:.0f} s, over Pegasus's 1-hour limit: cut it into parts of 1 h or less"
    if size_bytes is not None:
        if transport == "s3" and size_bytes > MAX_S3_BYTES:
            return f"video is {size_bytes} bytes, over Pegasus's 2 GB limit through S3: re-encode it smaller"
        if transport == "base64" and size_bytes > MAX_BASE64_BYTES:
            return (
                f"video is {size_bytes} bytes, over Pegasus's 36 MB limit for base64: send it by S3 "
                "(MEDIAEMBED_PEGASUS_TRANSPORT=s3)"
            )
        if transport == "base64" and base64_body_bytes(size_bytes) + 4096 > MAX_REQUEST_BODY_BYTES:
            return (
                f"video is {size_bytes} bytes: base64-encoded it exceeds InvokeModel's "
                f"{MAX_REQUEST_BODY_BYTES}-byte request body; send it by S3 (MEDIAEMBED_PEGASUS_TRANSPORT=s3)"
            )
    return prompt_problem(prompt)


@dataclass(frozen=True)
class PegasusAnswer:
    message: str
    finish_reason: str
    input_tokens: int | None = None
    output_tokens: int | None = None


# Bedrock reports token counts in these InvokeModel response headers; Pegasus's body documents none.
INPUT_TOKENS_HEADER = "x-amzn-bedrock-input-token-count"
OUTPUT_TOKENS_HEADER = "x-amzn-bedrock-output-token-count"


def parse_answer(payload: Any, headers: dict[str, str] | None = None) -> PegasusAnswer:
    """The documented `{"message", "finishReason"}`; token counts from a `usage` object or top-level
    fields when present, else from Bedrock's token-count headers, else None."""
    if not isinstance(payload, dict):
        raise PegasusOutputError(f"expected a JSON object, got {type(payload).__name__}")
    message = payload.get("message")
    if not isinstance(message, str):
        raise PegasusOutputError(f"no 'message' string in Pegasus output (keys: {sorted(map(str, payload))})")
    reason = payload.get("finishReason")
    if not isinstance(reason, str) or not reason:
        raise PegasusOutputError("no 'finishReason' in Pegasus output")
    raw_usage = payload.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    return PegasusAnswer(
        message=message,
        finish_reason=reason.lower(),
        input_tokens=_count(
            usage.get("inputTokens", payload.get("inputTokens", lowered.get(INPUT_TOKENS_HEADER)))
        ),
        output_tokens=_count(
            usage.get("outputTokens", payload.get("outputTokens", lowered.get(OUTPUT_TOKENS_HEADER)))
        ),
    )


def estimated_cost_usd(duration_sec: float | None, output_tokens: int | None) -> float:
    """One answered call at list price: the video's seconds plus the output tokens, where known."""
    return (duration_sec or 0.0) * USD_PER_VIDEO_SECOND + (output_tokens or 0) * USD_PER_OUTPUT_TOKEN


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_json_message(message: str) -> Any:
    """The JSON a structured prompt asked for; a code fence around it is tolerated."""
    text = message.strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
        if text.lower().startswith("json"):
            text = text[4:]
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PegasusOutputError(f"the answer is not the JSON the schema asked for: {error}") from None


@dataclass(frozen=True)
class Chapter:
    start_sec: float
    end_sec: float
    title: str
    summary: str


def parse_chapters(parsed: Any) -> list[Chapter]:
    """Chapters from the chapters prompt's JSON: a list, or an object holding one under `chapters`."""
    items = parsed.get("chapters") if isinstance(parsed, dict) else parsed
    if not isinstance(items, list):
        raise PegasusOutputError("chapters answer is not a list of chapters")
    chapters = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise PegasusOutputError(f"chapter {i} is not an object")
        start, end = _seconds(item.get("start_sec")), _seconds(item.get("end_sec"))
        if start is None or end is None or end < start:
            raise PegasusOutputError(f"chapter {i} has no valid start_sec/end_sec")
        chapters.append(
            Chapter(start, end, str(item.get("title") or "").strip(), str(item.get("summary") or "").strip())
        )
    return chapters


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)
