"""What a media object is, read from its container header with PyAV.

Probing opens the container through a seekable file, so a multi-gigabyte video costs a few ranged reads,
not a download. Anything PyAV cannot open is reported with the decoder's reason instead of raising.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

import av

from resources.providers.marengo_models import Modality

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
AUDIO_EXTENSIONS = {".wav", ".mp3", ".flac", ".m4a", ".aac", ".ogg", ".opus"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp"}
# Image containers as ffmpeg names them once it has read their magic bytes, and what Marengo takes.
IMAGE_FORMATS = {"png_pipe": "PNG", "jpeg_pipe": "JPEG", "webp_pipe": "WebP"}


@dataclass(frozen=True)
class MediaProbe:
    modality: Modality | None
    duration_sec: float | None
    width: int | None
    height: int | None
    status: str  # ok | unsupported | unreadable
    reason: str | None

    @classmethod
    def problem(cls, status: str, reason: str) -> MediaProbe:
        return cls(None, None, None, None, status, reason)


def modality_from_name(key: str) -> Modality | None:
    extension = os.path.splitext(key.rstrip())[1].lower()  # "clip.mp4 " is still an mp4
    if extension in VIDEO_EXTENSIONS:
        return "video"
    if extension in AUDIO_EXTENSIONS:
        return "audio"
    if extension in IMAGE_EXTENSIONS:
        return "image"
    return None


def probe(key: str, content_type: str | None, open_file: BinaryIO) -> MediaProbe:
    """Classify and measure one object; `open_file` must be seekable."""
    expected = modality_from_name(key)
    if expected is None:
        extension = os.path.splitext(key)[1] or "(none)"
        return MediaProbe.problem(
            "unsupported", f"unsupported file type {extension} (content type {content_type or 'unknown'})"
        )
    try:
        with av.open(open_file, mode="r") as container:
            mismatch = content_mismatch(key, expected, container.format.name, _has_moving_video(container))
            if mismatch is not None:
                return MediaProbe.problem("unsupported", mismatch)
            return _describe(expected, container)
    except av.FFmpegError as error:  # its str() carries an errno and a placeholder file name
        return MediaProbe.problem("unreadable", f"cannot decode {expected}: {error.strerror or error}")
    except (ValueError, OSError, UnicodeDecodeError) as error:
        return MediaProbe.problem("unreadable", f"cannot decode {expected}: {error}")


def content_mismatch(key: str, claimed: Modality, container_format: str, moving_video: bool) -> str | None:
    """Why the content is not what the key's extension claims, or not a type Marengo takes; None when it is.

    The container format is what ffmpeg recognised from the bytes (magic numbers), never from the name:
    a PNG named `.mp4` is a PNG, and would be billed as a video and fail at the provider."""
    extension = os.path.splitext(key.rstrip())[1].lower()
    image = IMAGE_FORMATS.get(container_format)
    if image is None and container_format.endswith("_pipe"):
        image = container_format.removesuffix("_pipe").upper()
    if claimed == "image":
        if image is None:
            found = "a video" if moving_video else "audio"
            return f"content is {found} ({container_format}), but its name ({extension}) says an image"
        if container_format not in IMAGE_FORMATS:
            return f"content is a {image} image, which Marengo does not take (PNG, JPEG or WebP)"
        return None
    if image is not None:
        return (
            f"content is a {image} image, but its name ({extension}) says {claimed}: rename it, "
            f"or re-encode it as {claimed}"
        )
    return None


def _has_moving_video(container: av.container.InputContainer) -> bool:
    """A video stream that is not a still (an audio file's cover art is a one-frame 'attached picture')."""
    still = av.stream.Disposition.attached_pic | av.stream.Disposition.still_image
    return any(not (int(s.disposition) & int(still)) for s in container.streams.video)


def _describe(expected: Modality, container: av.container.InputContainer) -> MediaProbe:
    video = next((s for s in container.streams.video), None)
    audio = next((s for s in container.streams.audio), None)
    if expected == "image":
        if video is None:
            return MediaProbe.problem("unreadable", "no image data in the file")
        return MediaProbe("image", None, video.codec_context.width, video.codec_context.height, "ok", None)
    duration = _duration(container)
    if expected == "video" and video is not None:
        return MediaProbe(
            "video", duration, video.codec_context.width, video.codec_context.height, "ok", None
        )
    if audio is not None:
        return MediaProbe("audio", duration, None, None, "ok", None)
    return MediaProbe.problem("unreadable", f"no {expected} stream in the container")


def _duration(container: av.container.InputContainer) -> float | None:
    if container.duration is not None:
        return round(container.duration / av.time_base, 3)
    durations = [
        float(s.duration * s.time_base) for s in container.streams if s.duration is not None and s.time_base
    ]
    return round(max(durations), 3) if durations else None
