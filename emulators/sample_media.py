"""Deterministic synthetic media with a known ground truth, generated locally with PyAV + numpy.

Every video scene is one (shape, colour, background, tone) combination at integer-second boundaries, and every
(colour, shape) foreground pair occurs exactly once across the whole set, so a text query "<colour> <shape>"
has exactly one right answer. A corrupt file and an unsupported object exercise the error paths.

`make_clip` and `make_tones` build more realistic content for tests: shots with small objects moving over a
large background, objects that come and go within a shot, and audio at several pitches.
"""

from __future__ import annotations

import fractions
import io
import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from emulators.media_analysis import PALETTE

FPS = 24
VIDEO_SIZE = (320, 240)
VIDEO_AUDIO_RATE = 44100
AUDIO_FILE_RATE = 16000
IMAGE_SIZE = 160


@dataclass(frozen=True)
class Scene:
    """Ground truth for one stretch of a media file."""

    start_sec: float
    end_sec: float
    shape: str
    color: str
    background: str
    tone_hz: float


@dataclass(frozen=True)
class SampleObject:
    """One S3 object of the sample set and what it is known to contain."""

    key: str
    content_type: str
    data: bytes
    modality: str | None  # "video" | "audio" | "image" | None (not embeddable)
    scenes: tuple[Scene, ...]
    note: str


VIDEO_SCENES: dict[str, tuple[Scene, ...]] = {
    "videos/shapes_a.mp4": (
        Scene(0.0, 4.0, "circle", "red", "blue", 440.0),
        Scene(4.0, 9.0, "triangle", "yellow", "black", 220.0),
        Scene(9.0, 14.0, "square", "green", "white", 1760.0),
    ),
    "videos/shapes_b.mp4": (
        Scene(0.0, 5.0, "square", "magenta", "gray", 660.0),
        Scene(5.0, 11.0, "triangle", "cyan", "purple", 1320.0),
    ),
    "videos/shapes_c.mp4": (
        Scene(0.0, 6.0, "circle", "orange", "green", 150.0),
        Scene(6.0, 10.0, "circle", "blue", "yellow", 880.0),
    ),
}
IMAGE_SCENES: dict[str, Scene] = {
    "images/green_triangle.png": Scene(0.0, 0.0, "triangle", "green", "black", 0.0),
    "images/purple_circle.jpg": Scene(0.0, 0.0, "circle", "purple", "white", 0.0),
}
AUDIO_TONES: dict[str, tuple[float, float]] = {  # key -> (tone Hz, duration s)
    "audio/hum_220hz.wav": (220.0, 12.0),
    "audio/whistle_1760hz.flac": (1760.0, 8.0),
}


@dataclass(frozen=True)
class Sprite:
    """An object in a shot: it moves in a straight line from `start` to `end` (centre, as fractions of the
    frame's width and height) while it is visible, from `appear_sec` to `vanish_sec` into the shot."""

    shape: str
    color: str
    size: int  # side of its bounding box, pixels
    start: tuple[float, float] = (0.5, 0.5)
    end: tuple[float, float] = (0.5, 0.5)
    appear_sec: float = 0.0
    vanish_sec: float | None = None  # None: until the shot ends


@dataclass(frozen=True)
class Shot:
    """One continuous shot: a plain background, objects on it and a sine tone (0 Hz: silence)."""

    seconds: float
    background: str
    sprites: tuple[Sprite, ...] = ()
    tone_hz: float = 0.0


def shape_mask(
    shape: str, width: int, height: int, size: int, center: tuple[float, float] | None = None
) -> np.ndarray:
    """Boolean (height, width) mask of a shape whose size x size bounding box is centred on `center`
    (pixels; the middle of the picture by default)."""
    ys, xs = np.mgrid[0:height, 0:width]
    cx, cy = center if center is not None else (width / 2.0, height / 2.0)
    top, left = cy - size / 2.0, cx - size / 2.0
    if shape == "circle":
        return np.asarray((xs - cx + 0.5) ** 2 + (ys - cy + 0.5) ** 2 <= (size / 2.0) ** 2)
    if shape == "square":
        return np.asarray((xs >= left) & (xs < left + size) & (ys >= top) & (ys < top + size))
    if shape == "triangle":  # apex at the top centre, base at the bottom: half of the bounding box
        rel = (ys - top + 0.5) / size
        return np.asarray((rel >= 0) & (rel <= 1) & (np.abs(xs - cx + 0.5) <= rel * size / 2.0))
    raise ValueError(f"unknown shape {shape!r}")


def render(shape: str, color: str, background: str, width: int, height: int, size: int) -> np.ndarray:
    """An RGB uint8 picture of one shape on a plain background."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = PALETTE[background]
    img[shape_mask(shape, width, height, size)] = PALETTE[color]
    return img


def _sine(hz: float, seconds: float, rate: int, amplitude: float = 0.4) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _encode_audio(out: Any, stream: Any, samples: np.ndarray, fmt: str, frame_size: int) -> None:
    rate = stream.codec_context.sample_rate
    for pts in range(0, samples.size, frame_size):
        chunk = samples[pts : pts + frame_size]
        arr = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)[None, :] if fmt == "s16" else chunk[None, :]
        frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout="mono")
        frame.sample_rate = rate
        frame.pts = pts
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def make_video(scenes: tuple[Scene, ...]) -> bytes:
    """H.264 + AAC MP4, 320x240 @ 24 fps: one static picture and one sine tone per scene."""
    width, height = VIDEO_SIZE
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        vstream: Any = out.add_stream("libx264", rate=FPS)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.options = {"preset": "ultrafast", "crf": "18"}
        astream: Any = out.add_stream("aac", rate=VIDEO_AUDIO_RATE)
        astream.layout = "mono"
        index = 0
        for scene in scenes:
            picture = render(scene.shape, scene.color, scene.background, width, height, 120)
            for _ in range(round((scene.end_sec - scene.start_sec) * FPS)):
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = index
                index += 1
                for packet in vstream.encode(frame):
                    out.mux(packet)
        for packet in vstream.encode(None):
            out.mux(packet)
        tone = np.concatenate([_sine(s.tone_hz, s.end_sec - s.start_sec, VIDEO_AUDIO_RATE) for s in scenes])
        _encode_audio(out, astream, tone, "fltp", astream.codec_context.frame_size or 1024)
    return buf.getvalue()


def make_audio(hz: float, seconds: float, fmt: str) -> bytes:
    """A mono sine tone as WAV (pcm_s16le) or FLAC at 16 kHz."""
    return make_tones(((hz, seconds),), fmt)


def make_tones(tones: Sequence[tuple[float, float]], fmt: str) -> bytes:
    """Sine tones one after another, (Hz, seconds) each (0 Hz: silence), as mono WAV or FLAC at 16 kHz."""
    buf = io.BytesIO()
    codec = {"wav": "pcm_s16le", "flac": "flac"}[fmt]
    parts = [_sine(hz, seconds, AUDIO_FILE_RATE, 0.4 if hz else 0.0) for hz, seconds in tones]
    samples = np.concatenate(parts)
    with av.open(buf, mode="w", format=fmt) as out:
        stream: Any = out.add_stream(codec, rate=AUDIO_FILE_RATE)
        stream.layout = "mono"
        stream.format = "s16"
        _encode_audio(out, stream, samples, "s16", 1024)
    return buf.getvalue()


def shot_spans(shots: Sequence[Shot]) -> list[tuple[float, float]]:
    """(start, end) seconds of each shot in a clip made of `shots`."""
    ends = np.cumsum([0.0, *(shot.seconds for shot in shots)])
    return [(float(a), float(b)) for a, b in itertools.pairwise(ends)]


def render_shot_frame(shot: Shot, t: float, width: int, height: int) -> np.ndarray:
    """The picture `t` seconds into a shot: every sprite visible at `t`, later ones drawn on top."""
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = PALETTE[shot.background]
    for sprite in shot.sprites:
        vanish = shot.seconds if sprite.vanish_sec is None else sprite.vanish_sec
        if not sprite.appear_sec <= t < vanish:
            continue
        k = (t - sprite.appear_sec) / max(vanish - sprite.appear_sec, 1e-9)
        fx = sprite.start[0] + k * (sprite.end[0] - sprite.start[0])
        fy = sprite.start[1] + k * (sprite.end[1] - sprite.start[1])
        center = (round(fx * width), round(fy * height))
        img[shape_mask(sprite.shape, width, height, sprite.size, center)] = PALETTE[sprite.color]
    return img


def make_clip(shots: Sequence[Shot], fps: int = 12, size: tuple[int, int] = VIDEO_SIZE) -> bytes:
    """H.264 + AAC MP4 of `shots` back to back: moving sprites over plain backgrounds, one tone per shot."""
    width, height = size
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        vstream: Any = out.add_stream("libx264", rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.options = {"preset": "ultrafast", "crf": "18"}
        astream: Any = out.add_stream("aac", rate=VIDEO_AUDIO_RATE)
        astream.layout = "mono"
        index = 0
        for shot in shots:
            for i in range(round(shot.seconds * fps)):
                picture = render_shot_frame(shot, i / fps, width, height)
                frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
                frame.pts = index
                index += 1
                for packet in vstream.encode(frame):
                    out.mux(packet)
        for packet in vstream.encode(None):
            out.mux(packet)
        tone = np.concatenate(
            [_sine(s.tone_hz, s.seconds, VIDEO_AUDIO_RATE, 0.4 if s.tone_hz else 0.0) for s in shots]
        )
        _encode_audio(out, astream, tone, "fltp", astream.codec_context.frame_size or 1024)
    return buf.getvalue()


def make_image(scene: Scene, fmt: str) -> bytes:
    """A single PNG or JPEG picture of one shape."""
    return encode_image(render(scene.shape, scene.color, scene.background, IMAGE_SIZE, IMAGE_SIZE, 100), fmt)


def encode_image(picture: np.ndarray, fmt: str) -> bytes:
    """An RGB uint8 picture as PNG or JPEG (or BMP: a format the APIs refuse)."""
    height, width = picture.shape[:2]
    buf = io.BytesIO()
    codec, pix_fmt, container = {
        "png": ("png", "rgb24", "image2pipe"),
        "jpeg": ("mjpeg", "yuvj420p", "mjpeg"),
        "bmp": ("bmp", "bgr24", "image2pipe"),
    }[fmt]
    with av.open(buf, mode="w", format=container) as out:
        stream: Any = out.add_stream(codec, rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if codec == "mjpeg":
            stream.options = {"qmin": "2", "qmax": "4"}
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format=pix_fmt)
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def make_sparse_video(seconds: int) -> bytes:
    """A tiny MP4 of three red frames spread over `seconds`: hours long, a few kilobytes big, so a length
    limit can be tested without a big file."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream: Any = out.add_stream("libx264", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1)
        for pts in (0, seconds // 2, seconds - 1):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (230, 20, 20), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, fractions.Fraction(1, 1)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _top_level_boxes(mp4: bytes) -> list[tuple[bytes, int, int]]:
    """(type, offset, size) of an MP4's top-level boxes (32-bit sizes: what PyAV writes for small files)."""
    boxes, offset = [], 0
    while offset + 8 <= len(mp4):
        size, kind = struct.unpack(">I4s", mp4[offset : offset + 8])
        if size < 8:
            raise ValueError(f"unsupported box size {size} at offset {offset}")
        boxes.append((kind, offset, size))
        offset += size
    return boxes


def padded_mp4(mp4: bytes, total_bytes: int) -> bytes:
    """The same video grown to `total_bytes` by a trailing `free` box, which every reader skips: a file as
    big as a test needs that still decodes to the same content."""
    pad = total_bytes - len(mp4)
    if pad < 8:
        raise ValueError(f"cannot pad {len(mp4)} bytes to {total_bytes}: a box takes at least 8")
    return mp4 + struct.pack(">I4s", pad, b"free") + bytes(pad - 8)


def frames_zeroed(mp4: bytes) -> bytes:
    """The same MP4 with every byte of its media data (`mdat`) zeroed: the header still declares its
    streams and duration (a header probe finds a fine video), but no frame decodes."""
    out = bytearray(mp4)
    for kind, offset, size in _top_level_boxes(mp4):
        if kind == b"mdat":
            out[offset + 8 : offset + size] = bytes(size - 8)
    return bytes(out)


# Realistic content for the search tests: one clip of several shots, each a large plain background with small
# objects moving over it (2-3 % of the frame), one whose object enters halfway through a 20 s shot (cut into
# two 10 s segments); stills of its first two shots; and a tone at four pitches an octave or a fifth apart.
# Clip and tones never share a pitch, so a pitch query has exactly one right segment.
CONTENT_CLIP_KEY = "content/moving_objects.mp4"
CONTENT_PITCHES_KEY = "content/pitches.wav"
CONTENT_STILLS: dict[str, int] = {"content/yellow_still.png": 0, "content/blue_still.png": 1}  # key -> shot
CONTENT_SHOTS: tuple[Shot, ...] = (
    Shot(6.0, "yellow", (Sprite("square", "blue", 44, (0.15, 0.5), (0.85, 0.5)),), 247.0),
    Shot(6.0, "blue", (Sprite("square", "yellow", 44, (0.85, 0.3), (0.15, 0.7)),), 494.0),
    Shot(
        6.0,
        "green",
        (
            Sprite("circle", "red", 52, (0.2, 0.2), (0.8, 0.8)),
            Sprite("triangle", "white", 60, (0.8, 0.25), (0.2, 0.75)),
        ),
        740.0,
    ),
    Shot(20.0, "purple", (Sprite("triangle", "orange", 56, (0.1, 0.5), (0.9, 0.5), appear_sec=6.0),), 1480.0),
)
CONTENT_TONES: tuple[tuple[float, float], ...] = ((220.0, 10.0), (440.0, 10.0), (660.0, 10.0), (880.0, 10.0))


def generate_content_media() -> list[SampleObject]:
    """The realistic-content set (deterministic bytes for the same PyAV/FFmpeg build)."""
    spans = shot_spans(CONTENT_SHOTS)
    objects = [
        SampleObject(
            CONTENT_CLIP_KEY,
            "video/mp4",
            make_clip(CONTENT_SHOTS),
            "video",
            (),
            "; ".join(
                f"{a:g}-{b:g}s {shot.background} with "
                + ", ".join(f"a moving {p.color} {p.shape}" for p in shot.sprites)
                + f", {shot.tone_hz:g} Hz"
                for (a, b), shot in zip(spans, CONTENT_SHOTS, strict=True)
            ),
        ),
        SampleObject(
            CONTENT_PITCHES_KEY,
            "audio/wav",
            make_tones(CONTENT_TONES, "wav"),
            "audio",
            (),
            ", ".join(f"{hz:g} Hz for {sec:g} s" for hz, sec in CONTENT_TONES),
        ),
    ]
    width, height = VIDEO_SIZE
    for key, index in CONTENT_STILLS.items():
        shot = CONTENT_SHOTS[index]
        picture = render_shot_frame(shot, shot.seconds / 2, width, height)
        objects.append(
            SampleObject(
                key, "image/png", encode_image(picture, "png"), "image", (), f"a still of shot {index}"
            )
        )
    return objects


def generate_sample_media() -> list[SampleObject]:
    """Build the whole sample set in memory (deterministic bytes for the same PyAV/FFmpeg build)."""
    objects: list[SampleObject] = []
    for key, scenes in VIDEO_SCENES.items():
        note = "; ".join(
            f"{s.start_sec:g}-{s.end_sec:g}s {s.color} {s.shape} on {s.background}, {s.tone_hz:g} Hz"
            for s in scenes
        )
        objects.append(SampleObject(key, "video/mp4", make_video(scenes), "video", scenes, note))
    for key, (hz, seconds) in AUDIO_TONES.items():
        fmt = key.rsplit(".", 1)[1]
        ctype = {"wav": "audio/wav", "flac": "audio/flac"}[fmt]
        scene = Scene(0.0, seconds, "", "", "", hz)
        objects.append(
            SampleObject(
                key, ctype, make_audio(hz, seconds, fmt), "audio", (scene,), f"{hz:g} Hz sine, {seconds:g} s"
            )
        )
    for key, scene in IMAGE_SCENES.items():
        fmt = "png" if key.endswith(".png") else "jpeg"
        objects.append(
            SampleObject(
                key,
                f"image/{fmt}",
                make_image(scene, fmt),
                "image",
                (scene,),
                f"{scene.color} {scene.shape} on {scene.background}",
            )
        )
    garbage = np.random.default_rng(1234).bytes(8192)
    objects.append(
        SampleObject(
            "videos/corrupt.mp4",
            "video/mp4",
            garbage,
            None,
            (),
            "8 KiB of random bytes with an .mp4 name: must be rejected or fail, never embedded",
        )
    )
    objects.append(
        SampleObject(
            "docs/notes.txt",
            "text/plain",
            b"Sample notes: this object is not media and should be skipped by the pipeline.\n",
            None,
            (),
            "plain text: an unsupported object the pipeline must skip",
        )
    )
    return objects


def upload_sample_media(s3_client: Any, bucket: str, prefix: str = "") -> list[SampleObject]:
    """Generate the sample set and put every object under `prefix` in `bucket`; returns what was uploaded."""
    objects = generate_sample_media()
    for obj in objects:
        s3_client.put_object(Bucket=bucket, Key=prefix + obj.key, Body=obj.data, ContentType=obj.content_type)
    return objects
