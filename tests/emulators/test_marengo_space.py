"""The emulated vector space itself: deterministic, normalised, version-specific, concept-faithful."""

from __future__ import annotations

import numpy as np
import pytest

from emulators.marengo_space import MODEL_DIMS, TEXT_VOCABULARY, MarengoSpace, cosine, space_for
from emulators.media_analysis import COLORS, SHAPES


@pytest.mark.parametrize("version", ["3.0", "2.7"])
def test_dims_norm_and_determinism(version: str) -> None:
    space = space_for(version)
    vec = space.embed_text("yellow triangle")
    assert vec.shape == (MODEL_DIMS[version],)
    assert np.isclose(np.linalg.norm(vec), 1.0)
    assert np.array_equal(vec, MarengoSpace(version).embed_text("yellow triangle"))
    assert np.isclose(np.linalg.norm(space.embed_visual("circle", "red", "blue", "k")), 1.0)


def test_versions_differ() -> None:
    assert MODEL_DIMS == {"3.0": 512, "2.7": 1024}
    a, b = space_for("3.0").direction("color:red"), space_for("2.7").direction("color:red")
    assert a.shape != b.shape
    assert abs(cosine(a, b[:512])) < 0.2  # different seeds, not a truncation of one another


def test_text_matches_its_visual_scene_best() -> None:
    space = space_for("3.0")
    query = space.embed_text("yellow triangle")
    target = cosine(query, space.embed_visual("triangle", "yellow", "black", "x"))
    assert target > 0.9
    for color in COLORS:
        for shape in SHAPES:
            if (color, shape) != ("yellow", "triangle"):
                for bg in ("black", "white"):
                    if bg != color:
                        assert cosine(query, space.embed_visual(shape, color, bg, "x")) < target - 0.2


@pytest.mark.parametrize(
    ("synonym", "canonical"),
    [
        ("crimson box", "red square"),
        ("round", "circle"),
        ("grey", "gray"),
        ("bass hum", "low"),
        ("beep", "high"),
    ],
)
def test_synonyms(synonym: str, canonical: str) -> None:
    space = space_for("3.0")
    assert cosine(space.embed_text(synonym), space.embed_text(canonical)) > 0.95


def test_unknown_words_only_nudge() -> None:
    space = space_for("3.0")
    assert cosine(space.embed_text("a red circle wobbling gently"), space.embed_text("red circle")) > 0.95
    assert abs(cosine(space.embed_text("zebra"), space.embed_text("red circle"))) < 0.2


def test_audio_tone_vectors() -> None:
    space = space_for("3.0")
    assert cosine(space.embed_audio("low", "220"), space.embed_text("low hum")) > 0.95
    assert cosine(space.embed_audio("high", "1760"), space.embed_text("low hum")) < 0.2
    assert all(TEXT_VOCABULARY[w].startswith("tone:") for w in ("hum", "bass", "beep", "whistle"))
