"""Poster frames: one small JPEG per segment start of a video (the frame shown at that second), or the
image itself scaled down; audio has none. Pure: media bytes or a seekable file in, JPEG bytes out.

A video is opened once for all its starts: each is a seek to the keyframe at or before it, then a decode up
to the exact frame, so a long video costs a few reads around each start, not a decode from the beginning.
JPEGs are encoded by PyAV's own mjpeg encoder (no imaging library needed).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from typing import BinaryIO

import av

from resources.providers.marengo_models import Modality

THUMBNAIL_WIDTH = 160
# mjpeg's quantiser (2 best .. 31 worst): 5 keeps a 160 px poster sharp at a few kilobytes.
JPEG_QUALITY = 5


class PosterFrameError(Exception):
    """`str()`: why no poster frame can be taken from the media (a decoder's reason, one line)."""


def poster_frames(
    media: bytes | BinaryIO,
    starts: Sequence[float | None],
    modality: Modality,
    width: int = THUMBNAIL_WIDTH,
) -> dict[float | None, bytes]:
    """A JPEG `width` px wide (never wider than the picture) per start second, keyed by the start.

    Video: the first frame at or after each start (the last frame for a start past the end). Image: the
    picture, under every start given (None: the whole object). Audio: none. Raises `PosterFrameError` when
    the media cannot be decoded; a start with no frame to show is left out."""
    if modality == "audio" or not starts:
        return {}
    source = io.BytesIO(media) if isinstance(media, bytes) else media
    try:
        with av.open(source, mode="r") as container:
            stream = _picture_stream(container)
            if modality == "image":
                frame = next(container.decode(stream), None)
                if frame is None:
                    raise PosterFrameError("the image has no picture to decode")
                jpeg = _jpeg(frame, width)
                return dict.fromkeys(starts, jpeg)
            return {
                start: _jpeg(frame, width)
                for start in sorted(set(starts), key=lambda s: s or 0.0)
                if (frame := _frame_at(container, stream, start or 0.0)) is not None
            }
    except av.FFmpegError as error:  # its str() carries an errno and a placeholder file name
        raise PosterFrameError(f"cannot decode {modality}: {error.strerror or error}") from None
    except (ValueError, OSError, StopIteration) as error:
        raise PosterFrameError(f"cannot decode {modality}: {error}") from None


def _picture_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The first video stream that moves (an attached cover picture is a still), else any video stream."""
    videos = list(container.streams.video)
    if not videos:
        raise PosterFrameError("no video stream in the container")
    still = int(av.stream.Disposition.attached_pic)
    return next((s for s in videos if not int(s.disposition) & still), videos[0])


def _frame_at(
    container: av.container.InputContainer, stream: av.VideoStream, start: float
) -> av.VideoFrame | None:
    """Seek to the keyframe at or before `start`, then decode forward to the first frame at or after it."""
    time_base = stream.time_base or Fraction(1, 1000)
    origin = stream.start_time or 0
    container.seek(origin + int(start / time_base), stream=stream, backward=True, any_frame=False)
    # Half a frame of slack: a frame stamped 3.9999 s is the frame of a segment that starts at 4 s.
    rate = stream.average_rate or stream.guessed_rate or 25
    slack = 0.5 / float(rate)
    last = None
    for frame in container.decode(stream):
        last = frame
        if frame.pts is None or float((frame.pts - origin) * time_base) >= start - slack:
            return frame
    return last


def _jpeg(frame: av.VideoFrame, width: int) -> bytes:
    width = min(width, frame.width)
    width -= width % 2
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    small.pts = None
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = Fraction(1, 25)
    codec.options = {"qmin": str(JPEG_QUALITY), "qmax": str(JPEG_QUALITY)}
    packets = [*codec.encode(small), *codec.encode(None)]
    return b"".join(bytes(p) for p in packets)
