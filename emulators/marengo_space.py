"""A tiny, deterministic stand-in for the Marengo embedding spaces.

Every concept (a colour, a shape, a colour-bound object such as "yellow triangle", a register, a pitch bin)
has a fixed random unit direction per model version, so 3.0 (512-d) and 2.7 (1024-d) are unrelated spaces,
exactly as with the real models. A vector is a sum of the concepts found in the decoded content, weighted
by how much of the frame and of the time they fill, as a model's attention would:

- scene: each colour by its share of the frame, averaged over the segment's frames: a background dominates;
- objects: each by its salience (share of the frames it is in x sqrt of its area, capped at full salience
  from OBJECT_SALIENT_AREA up) as its shape, its bound colour+shape and, more weakly, its colour: a small
  moving square is still found by name ("yellow square"), yet counts far below the background for a
  colour ("a yellow scene");
- sound: pitch as a smooth bump over semitone bins (440 and 442 Hz are alike; a fifth or an octave apart
  share nothing), its register (low/mid/high) and a generic "tone", each window by its share of the time.

Text maps colour, shape and sound words, note names ("A4", "C#5", "middle C") and frequencies ("440 Hz",
"1.76 kHz") to the same concepts; a colour word before a shape word also names the bound object.
On the sample media a "<colour> <shape>" query has cosine 0.8-0.9 with its scene and <= ~0.4 with any other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache

import numpy as np

from emulators.media_analysis import COLORS, SHAPES, TONES, VisualFeatures, VisualObject, classify_tone

# 3.5 is Matryoshka: its full vector is 512-d, and a shorter one is the start of it, renormalized.
MODEL_DIMS: dict[str, int] = {"3.0": 512, "2.7": 1024, "3.5": 512}
NOISE_SCALE = 0.05  # norm of the deterministic per-content noise
UNKNOWN_WORD_WEIGHT = 0.15  # unknown words nudge a text vector without drowning the known concepts
OBJECT_SALIENT_AREA = 0.08  # an object filling this share of the frame (or more) is fully salient
OBJECT_WEIGHT = 1.0  # an object, as its bound colour+shape ("yellow square") ...
OBJECT_SHAPE_WEIGHT = 0.6  # ... as its shape alone ...
OBJECT_COLOR_WEIGHT = 0.6  # ... and as its colour alone
BOUND_WORD_WEIGHT = 0.5  # in text, a colour and a shape that name one object count mostly as that object
PITCH_WEIGHT = 1.0  # a tone: its pitch ...
REGISTER_WEIGHT = 0.6  # ... its register (low/mid/high) ...
TONAL_WEIGHT = 0.4  # ... and that it is a tone at all
PITCH_SIGMA = 0.6  # semitones: a quarter tone apart is still ~0.8 alike, a whole tone ~0.05, a fifth 0
PITCH_BINS = range(12, 121)  # MIDI notes C0 (16 Hz) .. C9 (8.4 kHz), one bin per semitone

# word -> concept name ("color:red", "shape:circle", "tone:low" (a register), "sound:tonal").
TEXT_VOCABULARY: dict[str, str] = {
    **{c: f"color:{c}" for c in COLORS},
    "grey": "color:gray",
    "crimson": "color:red",
    "scarlet": "color:red",
    "lime": "color:green",
    "navy": "color:blue",
    "azure": "color:blue",
    "gold": "color:yellow",
    "golden": "color:yellow",
    "teal": "color:cyan",
    "turquoise": "color:cyan",
    "pink": "color:magenta",
    "fuchsia": "color:magenta",
    "violet": "color:purple",
    "amber": "color:orange",
    "dark": "color:black",
    **{s: f"shape:{s}" for s in SHAPES},
    "circles": "shape:circle",
    "round": "shape:circle",
    "disc": "shape:circle",
    "disk": "shape:circle",
    "ball": "shape:circle",
    "dot": "shape:circle",
    "squares": "shape:square",
    "box": "shape:square",
    "block": "shape:square",
    "rectangle": "shape:square",
    "triangles": "shape:triangle",
    "triangular": "shape:triangle",
    "pyramid": "shape:triangle",
    "low": "tone:low",
    "hum": "tone:low",
    "bass": "tone:low",
    "rumble": "tone:low",
    "drone": "tone:low",
    "mid": "tone:mid",
    "middle": "tone:mid",
    "medium": "tone:mid",
    "high": "tone:high",
    "beep": "tone:high",
    "whistle": "tone:high",
    "shrill": "tone:high",
    "squeal": "tone:high",
    "silence": "tone:silence",
    "silent": "tone:silence",
    "quiet": "tone:silence",
    "tone": "sound:tonal",
    "tones": "sound:tonal",
    "sine": "sound:tonal",
    "note": "sound:tonal",
    "notes": "sound:tonal",
    "pitch": "sound:tonal",
    "pitched": "sound:tonal",
    "sound": "sound:tonal",
}
# Nouns that say a colour belongs to the scene, not to the next shape word ("yellow background, blue square").
SCENE_NOUNS = frozenset(["background", "backdrop", "scene", "screen", "frame", "backgrounds", "scenes"])
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "on",
        "in",
        "with",
        "and",
        "or",
        "is",
        "are",
        "to",
        "at",
        "by",
        "for",
        "shape",
        "colored",
        "coloured",
    ]
)
CONCEPTS: tuple[str, ...] = (
    *(f"color:{c}" for c in COLORS),
    *(f"shape:{s}" for s in SHAPES),
    *(f"object:{c}:{s}" for c in COLORS for s in SHAPES),
    *(f"tone:{t}" for t in TONES),
    "sound:tonal",
    *(f"pitch:{m}" for m in PITCH_BINS),
)
_FREQUENCY = re.compile(r"(\d+(?:\.\d+)?)\s*(k?hz|(?:kilo)?hertz)\b")
_NOTE = re.compile(r"\b(middle c|[a-g])(#|♯|b|♭)?(-?\d)?\b")
_SEMITONES = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def _seed(*parts: str) -> int:
    """A stable 64-bit seed (Python's hash() is salted per process, so it cannot be used)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def normalize(vec: np.ndarray) -> np.ndarray:
    """L2-normalise (a zero vector stays zero)."""
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def cosine(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Cosine similarity of two vectors."""
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))


class MarengoSpace:
    """The vector space of one emulated Marengo version."""

    def __init__(self, version: str) -> None:
        if version not in MODEL_DIMS:
            raise ValueError(f"unknown Marengo version {version!r}")
        self.version = version
        self.dim = MODEL_DIMS[version]

    def direction(self, name: str) -> np.ndarray:
        """Unit direction of a concept (or of any string, e.g. an unknown word)."""
        return _direction(self.version, self.dim, name)

    def noise(self, key: str) -> np.ndarray:
        """Small deterministic content-derived perturbation: equal concepts are not identical vectors."""
        rng = np.random.default_rng(_seed(self.version, "noise", key))
        return rng.standard_normal(self.dim) * (NOISE_SCALE / np.sqrt(self.dim))

    def pitch(self, hz: float) -> np.ndarray:
        """Unit vector of a pitch: a Gaussian bump over semitone bins, so only near pitches are alike.
        Pitches are read to 5 cents (well below what an ear tells apart), which also bounds the cache."""
        return _pitch(self.version, self.dim, round(midi_number(hz) * 20) / 20)

    def embed_scene(
        self, colors: Iterable[tuple[str, float]], objects: Iterable[VisualObject], noise_key: str = ""
    ) -> np.ndarray:
        """Colours by the share of the frame they fill, objects by salience (see the module docstring)."""
        vec = np.zeros(self.dim)
        for color, share in colors:
            vec += share * self.direction(f"color:{color}")
        for obj in objects:
            vec += object_salience(obj.area, obj.presence) * (
                OBJECT_WEIGHT * self.direction(f"object:{obj.color}:{obj.shape}")
                + OBJECT_SHAPE_WEIGHT * self.direction(f"shape:{obj.shape}")
                + OBJECT_COLOR_WEIGHT * self.direction(f"color:{obj.color}")
            )
        return normalize(vec + self.noise(f"visual|{noise_key}"))

    def embed_visual(self, features: VisualFeatures, noise_key: str = "") -> np.ndarray:
        """A frame, a picture or a segment's summary of frames."""
        colors = features.colors or ((features.background, 1.0),)
        return self.embed_scene(colors, features.objects, noise_key)

    def _tone(self, hz: float) -> np.ndarray:
        return (
            PITCH_WEIGHT * self.pitch(hz)
            + REGISTER_WEIGHT * self.direction(f"tone:{classify_tone(hz, 1.0)}")
            + TONAL_WEIGHT * self.direction("sound:tonal")
        )

    def embed_audio(self, pitches: Sequence[float | None], noise_key: str = "") -> np.ndarray:
        """Windows of audio (their pitch in Hz, None for silence), each by its share of the time."""
        vec = np.zeros(self.dim)
        for hz in pitches or [None]:
            vec += self.direction("tone:silence") if hz is None else self._tone(hz)
        return normalize(vec / max(1, len(pitches)) + self.noise(f"audio|{noise_key}"))

    def embed_text(self, text: str) -> np.ndarray:
        """Known words -> their concepts, pitches named in the text -> pitch and register, unknown words ->
        a small hashed direction. "yellow square" names one object: mostly that object, a little each word."""
        vec = np.zeros(self.dim)
        pitches, rest = pitches_in_text(text)
        for hz in pitches:
            vec += self._tone(hz)
        weights: dict[str, float] = {}
        pending_color: str | None = None  # a colour word waiting for the shape it describes
        for word in re.findall(r"[a-z]+", rest):
            if word in STOPWORDS:
                continue
            concept = TEXT_VOCABULARY.get(word)
            if concept is None:
                vec += UNKNOWN_WORD_WEIGHT * self.direction(f"word:{word}")
                if word in SCENE_NOUNS:
                    pending_color = None
                continue
            kind, name = concept.split(":", 1)
            if kind == "shape" and pending_color is not None:
                bound = f"object:{pending_color}:{name}"
                weights[f"color:{pending_color}"] += BOUND_WORD_WEIGHT - 1.0
                weights[bound] = weights.get(bound, 0.0) + 1.0
                weights[concept] = weights.get(concept, 0.0) + BOUND_WORD_WEIGHT
                pending_color = None
                continue
            weights[concept] = weights.get(concept, 0.0) + 1.0
            if kind == "color":
                pending_color = name
        for concept, weight in weights.items():
            vec += weight * self.direction(concept)
        if not vec.any():
            vec = self.direction("word:")
        return normalize(vec)

    def combine(self, vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
        """Weighted mean of vectors, normalised (asset-level vectors, text_image fusion)."""
        w = np.ones(len(vectors)) if weights is None else np.asarray(weights, dtype=np.float64)
        return normalize(np.sum([wi * v for wi, v in zip(w, vectors, strict=True)], axis=0))


def object_salience(area: float, presence: float) -> float:
    """How much an object counts: its share of the time x sqrt of its share of the frame, capped at 1 (a
    model notices a small object more than its pixel count, but less than a salient one)."""
    return presence * min(1.0, float(np.sqrt(max(area, 0.0) / OBJECT_SALIENT_AREA)))


def midi_number(hz: float) -> float:
    """Fractional MIDI note number (A4 = 440 Hz = 69): semitones on a log-frequency scale."""
    return 69.0 + 12.0 * float(np.log2(max(hz, 1e-3) / 440.0))


def note_hz(name: str, accidental: str, octave: int) -> float:
    """Frequency of a note name in scientific pitch notation (A4 = 440 Hz, middle C = C4)."""
    semitone = _SEMITONES[name] + {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(accidental, 0)
    return 440.0 * 2 ** ((12 * (octave + 1) + semitone - 69) / 12)


def pitches_in_text(text: str) -> tuple[list[float], str]:
    """Frequencies ("440 Hz", "1.2 kHz") and note names with an octave ("A4", "C#5", "middle C") in the
    text, and the lowercased text without them."""
    lowered = text.lower()
    pitches: list[float] = []

    def frequency(match: re.Match[str]) -> str:
        value = float(match.group(1)) * (1000.0 if match.group(2).startswith("k") else 1.0)
        if value > 0:
            pitches.append(value)
        return " "

    def note(match: re.Match[str]) -> str:
        name, accidental, octave = match.group(1), match.group(2) or "", match.group(3)
        if name == "middle c":
            pitches.append(note_hz("c", accidental, 4))
        elif octave is not None:
            pitches.append(note_hz(name, accidental, int(octave)))
        else:
            return match.group(0)  # a lone letter ("a", "b"): a word, not a note
        return " "

    lowered = _FREQUENCY.sub(frequency, lowered)
    return pitches, _NOTE.sub(note, lowered)


@lru_cache(maxsize=4096)
def _pitch(version: str, dim: int, midi: float) -> np.ndarray:
    vec = np.zeros(dim)
    for k in PITCH_BINS:
        if abs(k - midi) <= 4 * PITCH_SIGMA:
            vec += np.exp(-((k - midi) ** 2) / (2 * PITCH_SIGMA**2)) * _direction(version, dim, f"pitch:{k}")
    vec = normalize(vec) if vec.any() else _direction(version, dim, "pitch:out-of-range")
    vec.setflags(write=False)
    return vec


@cache
def _direction(version: str, dim: int, name: str) -> np.ndarray:
    vec = np.random.default_rng(_seed("marengo", version, name)).standard_normal(dim)
    vec /= np.linalg.norm(vec)
    vec.setflags(write=False)
    return vec


@cache
def space_for(version: str) -> MarengoSpace:
    """The shared space of "2.7", "3.0" or "3.5"."""
    return MarengoSpace(version)
