"""Decode media with PyAV and reduce it to the few concepts the emulated embedding space understands.

The emulator's embeddings must come from the *decoded* content (not from file names or metadata) so that a
pipeline which reads the wrong object, mis-joins segments or shifts times gets a measurably wrong answer.
The features are deliberately simple and robust to codec artefacts: nearest named palette colour per pixel,
the fill ratio of the foreground's bounding box (circle ~0.785, square ~1.0, triangle ~0.5), frame
differences for shot cuts and the FFT peak of the audio for a tone class.
"""

from __future__ import annotations

import io
import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

import av
import numpy as np

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 20, 20),
    "green": (20, 190, 40),
    "blue": (25, 50, 230),
    "yellow": (250, 230, 20),
    "cyan": (20, 220, 230),
    "magenta": (230, 30, 220),
    "orange": (250, 140, 10),
    "purple": (120, 30, 150),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
    "gray": (128, 128, 128),
}
COLORS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
TONES: tuple[str, ...] = ("low", "mid", "high", "silence")

_PALETTE_NAMES = np.array(COLORS)
_PALETTE_RGB = np.array([PALETTE[c] for c in COLORS], dtype=np.float32)
_STRIDE = 3  # analyse every 3rd pixel: plenty for solid synthetic shapes, ~9x cheaper
SHOT_CUT_THRESHOLD = 20.0  # mean absolute RGB difference between consecutive frames that marks a cut
SILENCE_RMS = 1e-3
_REUSE_THRESHOLD = 0.5  # mean abs diff below which a frame is treated as a repeat of the previous one

MediaKind = Literal["video", "audio", "image"]


class MediaError(Exception):
    """The bytes cannot be opened or decoded as the requested kind of media."""


@dataclass(frozen=True)
class VisualFeatures:
    """What one frame (or a segment, by majority) shows: a foreground shape of one colour on a background."""

    background: str
    foreground: str
    shape: str
    fill_ratio: float
    mean_rgb: tuple[int, int, int]


@dataclass
class DecodedMedia:
    """Per-frame features and the mono audio track of one media file, times in seconds from 0."""

    duration: float
    frame_times: list[float] = field(default_factory=list)
    frames: list[VisualFeatures] = field(default_factory=list)
    frame_diffs: list[float] = field(default_factory=list)  # diff[i] = change from frame i-1 to i (diff[0]=0)
    audio: np.ndarray | None = None
    sample_rate: int = 16000
    audio_start: float = 0.0

    @property
    def has_video(self) -> bool:
        return bool(self.frames)

    @property
    def has_audio(self) -> bool:
        return self.audio is not None and self.audio.size > 0


def nearest_colors(rgb: np.ndarray) -> np.ndarray:
    """Index into COLORS of the nearest palette colour for each pixel of an (..., 3) array."""
    flat = rgb.reshape(-1, 3).astype(np.float32)
    dist = ((flat[:, None, :] - _PALETTE_RGB[None, :, :]) ** 2).sum(axis=2)
    return np.asarray(dist.argmin(axis=1).reshape(rgb.shape[:-1]))


def shape_from_fill_ratio(ratio: float) -> str:
    """Circle fills pi/4 of its bounding box, a square all of it, a triangle half of it."""
    if ratio >= 0.9:
        return "square"
    if ratio >= 0.65:
        return "circle"
    return "triangle"


def analyse_frame(rgb: np.ndarray) -> VisualFeatures:
    """Background = most common palette colour, foreground = second most common, shape from its mask."""
    small = rgb[::_STRIDE, ::_STRIDE]
    idx = nearest_colors(small)
    counts = np.bincount(idx.ravel(), minlength=len(COLORS))
    order = np.argsort(-counts, kind="stable")
    bg, fg = int(order[0]), int(order[1])
    mean_rgb = tuple(int(v) for v in small.reshape(-1, 3).mean(axis=0))
    if counts[fg] < 0.01 * idx.size:  # no real foreground: a plain frame
        return VisualFeatures(str(_PALETTE_NAMES[bg]), str(_PALETTE_NAMES[bg]), "square", 1.0, mean_rgb)  # type: ignore[arg-type]
    ys, xs = np.nonzero(idx == fg)
    # Percentiles, not min/max: stray edge pixels of the fg colour must not inflate the bounding box.
    y0, y1 = np.percentile(ys, [0.5, 99.5])
    x0, x1 = np.percentile(xs, [0.5, 99.5])
    area = (y1 - y0 + 1) * (x1 - x0 + 1)
    inside = ((ys >= y0) & (ys <= y1) & (xs >= x0) & (xs <= x1)).sum()
    ratio = float(min(1.0, inside / max(area, 1.0)))
    return VisualFeatures(
        str(_PALETTE_NAMES[bg]),
        str(_PALETTE_NAMES[fg]),
        shape_from_fill_ratio(ratio),
        ratio,
        mean_rgb,  # type: ignore[arg-type]
    )


def _open(data: bytes) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:  # PyAV raises subclasses of these
        raise MediaError(f"cannot open container: {exc}") from exc


def probe_media(data: bytes, kind: MediaKind) -> None:
    """Submit-time admission check: open the container and decode one frame of the right kind."""
    if not data:
        raise MediaError("the object is empty")
    container = _open(data)
    try:
        want_video = kind in ("video", "image")
        streams = container.streams.video if want_video else container.streams.audio
        if not streams:
            raise MediaError(f"no {'video' if want_video else 'audio'} stream found")
        for _frame in container.decode(streams[0]):
            return
        raise MediaError("no decodable frames")
    except av.FFmpegError as exc:
        raise MediaError(f"decode error: {exc}") from exc
    finally:
        container.close()


def decode_media(data: bytes) -> DecodedMedia:
    """Decode every video frame into VisualFeatures and the audio into mono float32 at 16 kHz."""
    container = _open(data)
    media = DecodedMedia(duration=0.0)
    try:
        vstream = container.streams.video[0] if container.streams.video else None
        astream = container.streams.audio[0] if container.streams.audio else None
        streams = [s for s in (vstream, astream) if s is not None]
        rate = float(vstream.average_rate) if vstream is not None and vstream.average_rate else 24.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=media.sample_rate)
        chunks: list[np.ndarray] = []
        prev: np.ndarray | None = None
        t0: float | None = None
        for frame in container.decode(*streams):
            if isinstance(frame, av.VideoFrame):
                rgb = frame.to_ndarray(format="rgb24")
                t = float(frame.time) if frame.time is not None else len(media.frames) / rate
                if t0 is None:
                    t0 = t
                small = rgb[::_STRIDE, ::_STRIDE].astype(np.float32)
                diff = 0.0 if prev is None else float(np.abs(small - prev).mean())
                prev = small
                media.frame_diffs.append(diff)
                media.frame_times.append(round(t - t0, 6))
                # A (near-)identical frame has the same features: skip the costly palette pass.
                same = media.frames and diff < _REUSE_THRESHOLD
                media.frames.append(media.frames[-1] if same else analyse_frame(rgb))
            elif isinstance(frame, av.AudioFrame):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        if astream is not None:
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
            media.audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        if media.frames:
            media.duration = round(media.frame_times[-1] + 1.0 / rate, 6)
        elif media.audio is not None:
            media.duration = round(media.audio.size / media.sample_rate, 6)
    except av.FFmpegError as exc:
        raise MediaError(f"decode error: {exc}") from exc
    finally:
        container.close()
    if not media.frames and not media.has_audio:
        raise MediaError("no decodable video or audio frames")
    return media


def decode_image(data: bytes) -> VisualFeatures:
    """First frame of an image (PNG/JPEG/...) reduced to its visual features."""
    container = _open(data)
    try:
        if not container.streams.video:
            raise MediaError("no image stream found")
        for frame in container.decode(container.streams.video[0]):
            return analyse_frame(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as exc:
        raise MediaError(f"decode error: {exc}") from exc
    finally:
        container.close()
    raise MediaError("no decodable image frame")


# --- segmentation -----------------------------------------------------------------------------------------

Span = tuple[float, float]


def detect_shots(media: DecodedMedia, start: float, end: float) -> list[Span]:
    """Shots inside [start, end): a cut wherever consecutive frames differ strongly; times are frame times."""
    cuts = [start]
    for t, diff in zip(media.frame_times, media.frame_diffs, strict=True):
        if diff > SHOT_CUT_THRESHOLD and start < t < end:
            cuts.append(t)
    cuts.append(end)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def merge_short(spans: list[Span], min_duration: float) -> list[Span]:
    """Merge spans shorter than min_duration into a neighbour (the previous one; the next for the first)."""
    out = list(spans)
    i = 0
    while len(out) > 1 and i < len(out):
        a, b = out[i]
        if b - a < min_duration - 1e-9:
            if i > 0:
                out[i - 1] = (out[i - 1][0], b)
            else:
                out[1] = (a, out[1][1])
            del out[i]
            i = 0
            continue
        i += 1
    return out


def split_long(spans: list[Span], max_duration: float = 10.0) -> list[Span]:
    """Split spans longer than max_duration evenly (Marengo segments are at most 10 s)."""
    out: list[Span] = []
    for a, b in spans:
        n = max(1, math.ceil((b - a) / max_duration - 1e-9))
        step = (b - a) / n
        out.extend(
            (round(a + k * step, 6), round(a + (k + 1) * step if k < n - 1 else b, 6)) for k in range(n)
        )
    return out


def dynamic_segments(media: DecodedMedia, start: float, end: float, min_duration: float) -> list[Span]:
    """Scene-aligned segments: shots, short ones merged, long ones split to <= 10 s."""
    return split_long(merge_short(detect_shots(media, start, end), min_duration))


def fixed_segments(start: float, end: float, duration: float) -> list[Span]:
    """Chunks of `duration` seconds; the last one is shorter."""
    spans: list[Span] = []
    t = start
    while t < end - 1e-9:
        spans.append((round(t, 6), round(min(end, t + duration), 6)))
        t += duration
    return spans


def even_segments(start: float, end: float, target: float = 10.0) -> list[Span]:
    """Split evenly into segments closest to `target` s, never longer (50 s -> 5 x 10 s, 16 s -> 2 x 8 s)."""
    return split_long([(start, end)], target)


# --- per-segment features ---------------------------------------------------------------------------------


def visual_in(media: DecodedMedia, start: float, end: float) -> VisualFeatures | None:
    """Majority (background, foreground, shape) of the frames whose time lies in [start, end)."""
    picked = [
        f for t, f in zip(media.frame_times, media.frames, strict=True) if start - 1e-6 <= t < end - 1e-6
    ]
    if not picked:
        return None
    (bg, fg, shape), _ = Counter((f.background, f.foreground, f.shape) for f in picked).most_common(1)[0]
    same = [f for f in picked if (f.background, f.foreground, f.shape) == (bg, fg, shape)]
    ratio = float(np.mean([f.fill_ratio for f in same]))
    mean_rgb = tuple(int(v) for v in np.mean([f.mean_rgb for f in same], axis=0))
    return VisualFeatures(bg, fg, shape, ratio, mean_rgb)  # type: ignore[arg-type]


def classify_tone(peak_hz: float, rms: float) -> str:
    """low < 300 Hz <= mid <= 1000 Hz < high; near-zero energy is silence."""
    if rms < SILENCE_RMS:
        return "silence"
    if peak_hz < 300:
        return "low"
    if peak_hz <= 1000:
        return "mid"
    return "high"


def tone_in(media: DecodedMedia, start: float, end: float) -> tuple[str, float]:
    """(tone class, FFT peak frequency) of the audio in [start, end)."""
    if media.audio is None or media.audio.size == 0:
        return "silence", 0.0
    sr = media.sample_rate
    a = max(0, round((start - media.audio_start) * sr))
    b = min(media.audio.size, round((end - media.audio_start) * sr))
    seg = media.audio[a:b].astype(np.float64)
    if seg.size < 64:
        return "silence", 0.0
    rms = float(np.sqrt(np.mean(seg**2)))
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    freqs = np.fft.rfftfreq(seg.size, 1.0 / sr)
    spectrum[freqs < 20] = 0.0
    peak = float(freqs[int(spectrum.argmax())])
    return classify_tone(peak, rms), peak
