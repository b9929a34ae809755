"""The documented input limits of the TwelveLabs API, checked on the bytes the platform would read.

Where each comes from:
- the API reference of sync `POST /embed-v2`, "Input requirements" (Marengo 3.0): text at most 500 tokens;
  images JPEG or PNG, at least 128x128 pixels, at most 5 MB; audio and video at most 10 minutes, base64 at
  most 36 MB; audio WAV, MP3 or FLAC. Twelvelabs-wire.md repeats these.
- SDK 1.3.6 docstrings: base64 audio and video of embed tasks at most 36 MB decoded; Marengo 3.5 syncs only
  `multi_input`, each source at most 32 MB and audio or video at most 30 seconds ("a 400 or a 413 error"),
  text at most 2,000 tokens (`auto_truncate`); assets: video and audio files up to 200 MB, public URLs up to
  4 GB, images up to 32 MB.
- seed 004: embed tasks take audio files up to 4 hours; seed 002: Marengo-retrieval-2.7 text is 77 tokens.

Too large in bytes answers 413 `file_too_large` (the SDK's ContentTooLargeError on sync embeds); everything
else 400 `parameter_invalid` naming the field, as the API's validation errors do.
"""

from __future__ import annotations

import io

import av

from emulators.media_analysis import MediaError, container_duration
from emulators.twelvelabs_api.errors import ApiFault, invalid

MB = 1024 * 1024
TEXT_TOKENS = {"3.0": 500, "3.5": 2000, "2.7": 77}
MAX_BASE64_BYTES = 36 * MB
MAX_MULTI_INPUT_SOURCES = 10
SYNC_MAX_MEDIA_SEC = {"3.0": 600.0, "3.5": 30.0}
TASK_MAX_MEDIA_SEC = 4 * 3600.0
IMAGE_MAX_BYTES = 5 * MB
IMAGE_MIN_SIDE = 128
IMAGE_CODECS = {"png": "PNG", "mjpeg": "JPEG"}  # the decoder PyAV names for each accepted format
SYNC_AUDIO_FORMATS = {"wav": "WAV", "mp3": "MP3", "flac": "FLAC"}  # container names
MULTI_INPUT_SOURCE_MAX_BYTES = 32 * MB  # Marengo 3.5
IMAGE_TASK_MAX_BYTES = 32 * MB  # Marengo 3.5 embeds images as tasks too
ASSET_MAX_DIRECT_MEDIA_BYTES = 200 * MB
ASSET_MAX_URL_MEDIA_BYTES = 4 * 1024 * MB
ASSET_MAX_IMAGE_BYTES = 32 * MB


def too_large(path: str, size: int, limit: int) -> ApiFault:
    return ApiFault(413, "file_too_large", f"{path}: {size} bytes exceed the limit of {limit} bytes")


def _image_facts(data: bytes) -> tuple[str, int, int] | None:
    """(decoder name, width, height) of an image file, or None if nothing in it decodes as a picture."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                return None
            ctx = container.streams.video[0].codec_context
            return str(ctx.name), int(ctx.width), int(ctx.height)
    except (av.FFmpegError, ValueError, OSError):
        return None


def check_image(data: bytes, path: str) -> None:
    """An image the platform embeds: JPEG or PNG, at most 5 MB, at least 128x128 pixels."""
    if len(data) > IMAGE_MAX_BYTES:
        raise too_large(path, len(data), IMAGE_MAX_BYTES)
    facts = _image_facts(data)
    if facts is None or facts[0] not in IMAGE_CODECS:
        found = "an unreadable file" if facts is None else f"a {facts[0]} file"
        raise invalid(f"{path}: the image must be JPEG or PNG, not {found}")
    _, width, height = facts
    if min(width, height) < IMAGE_MIN_SIDE:
        raise invalid(
            f"{path}: the image is {width}x{height}; "
            f"it must be at least {IMAGE_MIN_SIDE}x{IMAGE_MIN_SIDE} pixels"
        )


def declared_duration(data: bytes, path: str) -> float | None:
    """What the container says its length is (no decode), or None when it says nothing."""
    try:
        return container_duration(data)
    except MediaError as exc:
        raise invalid(f"{path}: cannot decode the media: {exc}") from exc


def check_duration(seconds: float, path: str, limit: float, what: str) -> None:
    if seconds > limit:
        raise invalid(f"{path}: {seconds:.0f} s exceeds the {what} limit of {limit:.0f} s")


def check_sync_audio_format(data: bytes, path: str) -> None:
    """Sync audio is WAV, MP3 or FLAC."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            names = set(str(container.format.name).split(","))
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise invalid(f"{path}: cannot decode the media: {exc}") from exc
    if not names & set(SYNC_AUDIO_FORMATS):
        raise invalid(f"{path}: sync audio must be WAV, MP3 or FLAC, not {'/'.join(sorted(names))}")
