"""Decode media with PyAV and reduce it to the few concepts the emulated embedding space understands.

The emulator's embeddings must come from the *decoded* content (not from file names or metadata) so that a
pipeline which reads the wrong object, mis-joins segments or shifts times gets a measurably wrong answer.
The features are deliberately simple and robust to codec artefacts: nearest named palette colour per pixel
(only pixels inside a patch of one colour count, so the blurred bands along edges vanish), how much of the
frame each colour fills, one object per non-background colour with its shape from the fill ratio of its
bounding box (circle ~0.785, square ~1.0, triangle ~0.5), frame differences for shot cuts, and the pitch of
the audio in short windows (Hann-windowed FFT peak, refined by parabolic interpolation).
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
_GRID_CELLS = 160  # ... and at most this many along the longer side: an HD frame costs no more
ANALYSIS_FPS = 8.0  # between cuts, a changing picture is analysed this often at most (as models sample)
SHOT_CUT_THRESHOLD = 20.0  # mean absolute RGB difference between consecutive frames that marks a cut
SILENCE_RMS = 1e-3
_REUSE_THRESHOLD = 0.5  # mean abs diff below which a frame is treated as a repeat of the previous one
MIN_OBJECT_AREA = 0.004  # a colour patch smaller than this share of the frame is texture, not an object
MIN_OBJECT_FILL = 0.3  # scattered pixels of one colour (fill ratio of their bounding box) are not an object
MAX_OBJECT_SPAN = 0.85  # a patch spanning (nearly) the whole width or height is scenery
PITCH_WINDOW_SEC = 0.25  # audio is read as a sequence of windows: how much of the time each pitch fills

MediaKind = Literal["video", "audio", "image"]


class MediaError(Exception):
    """The bytes cannot be opened or decoded as the requested kind of media."""


@dataclass(frozen=True)
class VisualObject:
    """One foreground object: a compact patch of one colour that is not the background."""

    color: str
    shape: str
    area: float  # share of the frame it covers (mean over the frames it is in)
    presence: float  # share of the frames it is in: 1.0 in a single frame or picture
    fill_ratio: float


@dataclass(frozen=True)
class VisualFeatures:
    """What one frame (or a segment) shows: how much of it each colour fills, and the objects on it.

    `background`, `foreground` and `shape` summarise it: the colour filling the most, and the most salient
    object (the background itself, as a "square", for a plain frame).
    """

    background: str
    foreground: str
    shape: str
    fill_ratio: float
    mean_rgb: tuple[int, int, int]
    colors: tuple[tuple[str, float], ...] = ()  # (colour, share of the frame), largest first
    objects: tuple[VisualObject, ...] = ()  # most salient first


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
    """Circle fills pi/4 of its bounding box, a square all of it, a triangle half of it (a pixel grid rounds
    a small triangle up towards 0.6, hence the boundary above the midpoint)."""
    if ratio >= 0.9:
        return "square"
    if ratio >= 0.7:
        return "circle"
    return "triangle"


def _interior(idx: np.ndarray) -> np.ndarray:
    """Pixels whose four neighbours have their colour: codec blur along edges never forms such a patch."""
    inner = np.zeros(idx.shape, dtype=bool)
    c = idx[1:-1, 1:-1]
    inner[1:-1, 1:-1] = (
        (c == idx[:-2, 1:-1]) & (c == idx[2:, 1:-1]) & (c == idx[1:-1, :-2]) & (c == idx[1:-1, 2:])
    )
    return inner


def _summary(
    colors: tuple[tuple[str, float], ...], objects: tuple[VisualObject, ...], mean_rgb: tuple[int, int, int]
) -> VisualFeatures:
    background = colors[0][0]
    if not objects:  # a plain frame
        return VisualFeatures(background, background, "square", 1.0, mean_rgb, colors, objects)
    top = objects[0]
    return VisualFeatures(background, top.color, top.shape, top.fill_ratio, mean_rgb, colors, objects)


def _salience(obj: VisualObject) -> float:
    return obj.presence * obj.area


def _grid(rgb: np.ndarray) -> np.ndarray:
    """The pixels analysed: every 3rd, or fewer on a large frame."""
    stride = max(_STRIDE, -(-max(rgb.shape[:2]) // _GRID_CELLS))
    return rgb[::stride, ::stride]


def analyse_frame(rgb: np.ndarray) -> VisualFeatures:
    """Share of the frame per palette colour; every other compact colour patch is an object with a shape."""
    small = _grid(rgb)
    idx = nearest_colors(small)
    mean_rgb = tuple(int(v) for v in small.reshape(-1, 3).mean(axis=0))
    share = np.bincount(idx.ravel(), minlength=len(COLORS)) / idx.size
    order = [int(i) for i in np.argsort(-share, kind="stable") if share[i] > 0]
    colors = tuple((str(_PALETTE_NAMES[i]), round(float(share[i]), 4)) for i in order)
    inner = _interior(idx)
    height, width = idx.shape
    objects: list[VisualObject] = []
    for i in order[1:]:
        if share[i] < MIN_OBJECT_AREA:
            break
        ys, xs = np.nonzero(inner & (idx == i))
        if ys.size < 4:
            continue
        # Percentiles, not min/max: stray pixels of the colour must not inflate the bounding box.
        y0, y1 = np.percentile(ys, [0.5, 99.5])
        x0, x1 = np.percentile(xs, [0.5, 99.5])
        if y1 - y0 + 1 > MAX_OBJECT_SPAN * height or x1 - x0 + 1 > MAX_OBJECT_SPAN * width:
            continue  # a band across the picture belongs to the scene
        # The interior lost one pixel along each edge: the object's own box is one pixel wider all round.
        top, bottom = max(0, round(y0) - 1), min(height, round(y1) + 2)
        left, right = max(0, round(x0) - 1), min(width, round(x1) + 2)
        inside = (idx[top:bottom, left:right] == i).sum()
        ratio = float(min(1.0, inside / ((bottom - top) * (right - left))))
        if ratio >= MIN_OBJECT_FILL:
            shape = shape_from_fill_ratio(ratio)
            objects.append(VisualObject(str(_PALETTE_NAMES[i]), shape, float(share[i]), 1.0, ratio))
    objects.sort(key=_salience, reverse=True)
    return _summary(colors, tuple(objects), mean_rgb)  # type: ignore[arg-type]


def _open(data: bytes) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:  # PyAV raises subclasses of these
        raise MediaError(f"cannot open container: {exc}") from exc


@dataclass(frozen=True)
class Probe:
    """What opening a container and decoding its first frame found."""

    format_name: str  # the demuxer's, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "wav", "png_pipe"
    declared_sec: float | None  # the duration the container declares (None: it declares none)

    @property
    def still_image(self) -> bool:
        """A picture (PNG, JPEG, WebP, ...) read by an image demuxer, whose one "video" stream is a single
        frame: decided by content, never by the file name."""
        return self.format_name == "image2" or self.format_name.endswith("_pipe")


def probe_media(data: bytes, kind: MediaKind) -> Probe:
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
            return Probe(str(container.format.name), _declared_sec(container))
        raise MediaError("no decodable frames")
    except av.FFmpegError as exc:
        raise MediaError(f"decode error: {exc}") from exc
    finally:
        container.close()


def _declared_sec(container: av.container.InputContainer) -> float | None:
    if container.duration is not None:
        return float(container.duration) / av.time_base
    spans = [float(s.duration * s.time_base) for s in container.streams if s.duration and s.time_base]
    return max(spans) if spans else None


def container_duration(data: bytes) -> float | None:
    """The duration the container declares, in seconds, without decoding a frame (None if it declares none):
    enough to refuse a too-long file before the costly decode."""
    container = _open(data)
    try:
        return _declared_sec(container)
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
        analysed: np.ndarray | None = None  # the grid of the last frame analysed, and its time
        analysed_at = -math.inf
        t0: float | None = None
        for frame in container.decode(*streams):
            if isinstance(frame, av.VideoFrame):
                rgb = frame.to_ndarray(format="rgb24")
                t = float(frame.time) if frame.time is not None else len(media.frames) / rate
                if t0 is None:
                    t0 = t
                small = _grid(rgb).astype(np.float32)
                diff = 0.0 if prev is None else float(np.abs(small - prev).mean())
                prev = small
                media.frame_diffs.append(diff)
                media.frame_times.append(round(t - t0, 6))
                # A picture (nearly) unchanged since the last analysis has its features: skip the costly
                # palette pass; a changing one is analysed ANALYSIS_FPS times a second, and at every cut.
                changed = analysed is None or float(np.abs(small - analysed).mean()) >= _REUSE_THRESHOLD
                due = diff > SHOT_CUT_THRESHOLD or t - analysed_at >= 1.0 / ANALYSIS_FPS - 1e-6
                if media.frames and not (changed and due):
                    media.frames.append(media.frames[-1])
                else:
                    media.frames.append(analyse_frame(rgb))
                    analysed, analysed_at = small, t
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
    """How much of the frame and of the time each colour and each object fills in [start, end).

    A colour's share is its mean share over the frames; an object's presence is the share of the frames it
    is in, its area the mean while it is there and its shape the one most frames agree on.
    """
    picked = [
        f for t, f in zip(media.frame_times, media.frames, strict=True) if start - 1e-6 <= t < end - 1e-6
    ]
    if not picked:
        return None
    n = len(picked)
    shares = np.zeros(len(COLORS))
    tracks: dict[str, list[VisualObject]] = {}
    for frame in picked:
        for color, share in frame.colors:
            shares[COLORS.index(color)] += share / n
        for obj in frame.objects:
            tracks.setdefault(obj.color, []).append(obj)
    order = [int(i) for i in np.argsort(-shares, kind="stable") if shares[i] > 0]
    colors = tuple((COLORS[i], round(float(shares[i]), 4)) for i in order)
    objects: list[VisualObject] = []
    for color, seen in tracks.items():
        (shape, _), *_ = Counter(o.shape for o in seen).most_common(1)
        area = float(np.mean([o.area for o in seen]))
        ratio = float(np.mean([o.fill_ratio for o in seen if o.shape == shape]))
        objects.append(VisualObject(color, shape, area, len(seen) / n, ratio))
    objects.sort(key=lambda o: (-_salience(o), COLORS.index(o.color)))
    mean_rgb = tuple(int(v) for v in np.mean([f.mean_rgb for f in picked], axis=0))
    return _summary(colors, tuple(objects), mean_rgb)  # type: ignore[arg-type]


def classify_tone(peak_hz: float, rms: float) -> str:
    """low < 300 Hz <= mid <= 1000 Hz < high; near-zero energy is silence."""
    if rms < SILENCE_RMS:
        return "silence"
    if peak_hz < 300:
        return "low"
    if peak_hz <= 1000:
        return "mid"
    return "high"


def _peak_hz(seg: np.ndarray, sr: int) -> float:
    """Strongest frequency above 20 Hz: Hann window, zero-padded FFT, parabolic interpolation of the peak."""
    n_fft = 1 << max(12, int(np.ceil(np.log2(seg.size * 4))))
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size), n_fft))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    spectrum[freqs < 20] = 0.0
    k = int(spectrum.argmax())
    if 0 < k < spectrum.size - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
        return float((k + offset) * sr / n_fft)
    return float(freqs[k])


def _audio_slice(media: DecodedMedia, start: float, end: float) -> np.ndarray:
    if media.audio is None:
        return np.zeros(0)
    sr = media.sample_rate
    a = max(0, round((start - media.audio_start) * sr))
    b = min(media.audio.size, round((end - media.audio_start) * sr))
    return media.audio[a:b].astype(np.float64)


def tone_in(media: DecodedMedia, start: float, end: float) -> tuple[str, float]:
    """(tone class, FFT peak frequency) of the audio in [start, end)."""
    seg = _audio_slice(media, start, end)
    if seg.size < 64:
        return "silence", 0.0
    rms = float(np.sqrt(np.mean(seg**2)))
    peak = _peak_hz(seg, media.sample_rate)
    return classify_tone(peak, rms), peak


def pitches_in(media: DecodedMedia, start: float, end: float) -> list[float | None]:
    """The pitch of each PITCH_WINDOW_SEC window of [start, end) (None: silence), so that a segment is
    described by how much of its time each pitch fills."""
    seg = _audio_slice(media, start, end)
    sr = media.sample_rate
    size = round(PITCH_WINDOW_SEC * sr)
    out: list[float | None] = []
    for a in range(0, seg.size, size):
        window = seg[a : a + size]
        if window.size < size // 2 and out:
            break  # a short tail: the previous window already speaks for it
        if window.size < 64 or float(np.sqrt(np.mean(window**2))) < SILENCE_RMS:
            out.append(None)
        else:
            out.append(_peak_hz(window, sr))
    return out
