"""A tiny, deterministic stand-in for the Marengo embedding spaces.

Each concept (colour, shape, tone) gets a fixed random unit direction per model version, so 3.0 (512-d) and
2.7 (1024-d) are incompatible spaces, exactly as with the real models. Vectors are sums of concept directions
derived from decoded content, so on the sample media a text query has one known right answer:
embed_text("yellow triangle") has cosine ~0.94 with the yellow-triangle scene and <= ~0.5 with any other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import cache

import numpy as np

from emulators.media_analysis import COLORS, SHAPES, TONES

MODEL_DIMS: dict[str, int] = {"3.0": 512, "2.7": 1024}
NOISE_SCALE = 0.05  # norm of the deterministic per-content noise
UNKNOWN_WORD_WEIGHT = 0.15  # unknown words nudge a text vector without drowning the known concepts
BACKGROUND_WEIGHT = 0.5

# word -> concept name ("color:red", "shape:circle", "tone:low").
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
}
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
    *(f"tone:{t}" for t in TONES),
)


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

    def embed_visual(self, shape: str, foreground: str, background: str, noise_key: str = "") -> np.ndarray:
        """shape + foreground colour + 0.5 * background colour + noise, normalised."""
        vec = (
            self.direction(f"shape:{shape}")
            + self.direction(f"color:{foreground}")
            + BACKGROUND_WEIGHT * self.direction(f"color:{background}")
            + self.noise(f"visual|{noise_key}")
        )
        return normalize(vec)

    def embed_audio(self, tone: str, noise_key: str = "") -> np.ndarray:
        """The tone concept + noise, normalised."""
        return normalize(self.direction(f"tone:{tone}") + self.noise(f"audio|{noise_key}"))

    def embed_text(self, text: str) -> np.ndarray:
        """Known words -> their concept directions, unknown words -> a small hashed direction."""
        vec = np.zeros(self.dim)
        for word in re.findall(r"[a-z]+", text.lower()):
            if word in STOPWORDS:
                continue
            concept = TEXT_VOCABULARY.get(word)
            vec += (
                self.direction(concept) if concept else UNKNOWN_WORD_WEIGHT * self.direction(f"word:{word}")
            )
        if not vec.any():
            vec = self.direction("word:")
        return normalize(vec)

    def combine(self, vectors: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
        """Weighted mean of vectors, normalised (asset-level vectors, text_image fusion)."""
        w = np.ones(len(vectors)) if weights is None else np.asarray(weights, dtype=np.float64)
        return normalize(np.sum([wi * v for wi, v in zip(w, vectors, strict=True)], axis=0))


@cache
def _direction(version: str, dim: int, name: str) -> np.ndarray:
    vec = np.random.default_rng(_seed("marengo", version, name)).standard_normal(dim)
    vec /= np.linalg.norm(vec)
    vec.setflags(write=False)
    return vec


@cache
def space_for(version: str) -> MarengoSpace:
    """The shared space for "3.0" or "2.7"."""
    return MarengoSpace(version)
