"""The documented input limits of Marengo 2.7 / 3.0 and of InvokeModel's request body.

"MB" and "GB" in the model pages are read as decimal units (10^6, 10^9 bytes), the stricter reading and the
one the API model itself uses (InvokeModel's `body` max 25000000 is the "25 MB" invocation quota of the
same pages). The base64 limit is on the decoded media ("Maximum file size for base64 encoded strings:
36 MB", "the base64 method has a 36MB file size limit": the size of the file, not of its base64 text).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulators.bedrock_runtime.shapes import operation

MB = 1_000_000
GB = 1_000_000_000
HOUR_SEC = 3600.0
# botocore's model of InvokeModel: `body` blob {"max": 25000000}.
MAX_INVOKE_BODY_BYTES = int(operation("InvokeModel").input_shape.members["body"].metadata["max"])  # type: ignore[union-attr]


@dataclass(frozen=True)
class MarengoLimits:
    """What one Marengo version takes: images (inline or S3), inline media (decoded), S3 video/audio."""

    image_bytes: int
    base64_bytes: int
    s3_media_bytes: int
    media_sec: float


MARENGO_LIMITS: dict[str, MarengoLimits] = {
    "2.7": MarengoLimits(5 * MB, 36 * MB, 2 * GB, 2 * HOUR_SEC),
    "3.0": MarengoLimits(5 * MB, 36 * MB, 6 * GB, 4 * HOUR_SEC),
}


def body_too_large(size: int, limit: int) -> str:
    """AWS's constraint message for an InvokeModel body over the model's maximum."""
    return (
        f"1 validation error detected: Value at 'body' failed to satisfy constraint: Member must have length "
        f"less than or equal to {limit} (the request body is {size} bytes)"
    )
