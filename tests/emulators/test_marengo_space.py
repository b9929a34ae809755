"""The emulated vector space itself: deterministic, normalised, version-specific, and weighted like a model
(by how much of the frame and of the time a concept fills; pitch as a real dimension)."""

from __future__ import annotations

import hashlib
import itertools
import subprocess
import sys

import numpy as np
import pytest

from emulators.marengo_space import (
    MODEL_DIMS,
    TEXT_VOCABULARY,
    MarengoSpace,
    cosine,
    midi_number,
    pitches_in_text,
    space_for,
)
from emulators.media_analysis import (
    COLORS,
    SHAPES,
    DecodedMedia,
    VisualFeatures,
    VisualObject,
    analyse_frame,
    visual_in,
)
from emulators.sample_media import VIDEO_SIZE, Shot, Sprite, render_shot_frame

WIDTH, HEIGHT = VIDEO_SIZE


def picture(shape: str, color: str, background: str, area: float = 0.15) -> VisualFeatures:
    """A frame with one object of `area` (share of the frame) on a plain background."""
    obj = VisualObject(color, shape, area, 1.0, 1.0)
    return VisualFeatures(
        background, color, shape, 1.0, (0, 0, 0), ((background, 1 - area), (color, area)), (obj,)
    )


def still(shot: Shot) -> VisualFeatures:
    """What an image of the shot's middle frame is analysed to."""
    return analyse_frame(render_shot_frame(shot, shot.seconds / 2, WIDTH, HEIGHT))


def segment(shot: Shot, fps: int = 6) -> VisualFeatures:
    """What a video segment of the whole shot is analysed to (its frames rendered, not encoded)."""
    media = DecodedMedia(duration=shot.seconds)
    for i in range(round(shot.seconds * fps)):
        media.frame_times.append(i / fps)
        media.frame_diffs.append(0.0)
        media.frames.append(analyse_frame(render_shot_frame(shot, i / fps, WIDTH, HEIGHT)))
    feats = visual_in(media, 0.0, shot.seconds)
    assert feats is not None
    return feats


def moving(shape: str, color: str, size: int = 44, appear_sec: float = 0.0, lane: float = 0.3) -> Sprite:
    """A sprite crossing the frame from left to right, from height `lane` to 1 - `lane`."""
    return Sprite(shape, color, size, (0.15, lane), (0.85, 1 - lane), appear_sec=appear_sec)


YELLOW_SCENE = Shot(6.0, "yellow", (moving("square", "blue"),))  # a 2.5 % blue square moving over yellow
BLUE_SCENE = Shot(6.0, "blue", (moving("square", "yellow"),))  # a 2.5 % yellow square moving over blue


@pytest.mark.parametrize("version", ["3.0", "2.7"])
def test_dims_norm_and_determinism(version: str) -> None:
    space = space_for(version)
    fresh = MarengoSpace(version)
    vectors = {
        "text": (space.embed_text("yellow triangle"), fresh.embed_text("yellow triangle")),
        "visual": (
            space.embed_visual(picture("circle", "red", "blue"), "k"),
            fresh.embed_visual(picture("circle", "red", "blue"), "k"),
        ),
        "audio": (space.embed_audio([440.0, None], "k"), fresh.embed_audio([440.0, None], "k")),
    }
    for kind, (vec, again) in vectors.items():
        assert vec.shape == (MODEL_DIMS[version],), kind
        assert np.isclose(np.linalg.norm(vec), 1.0), kind
        assert np.array_equal(vec, again), kind


def test_vectors_are_the_same_in_another_process() -> None:
    """Seeds come from sha256, not from Python's per-process salted hash()."""
    code = (
        "import hashlib; from emulators.marengo_space import space_for; "
        "print(*(hashlib.sha256(space_for(v).embed_text('a 440 Hz yellow triangle').tobytes()).hexdigest() "
        "for v in ('3.0', '2.7')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    here = [
        hashlib.sha256(space_for(v).embed_text("a 440 Hz yellow triangle").tobytes()).hexdigest()
        for v in ("3.0", "2.7")
    ]
    assert out == here


def test_versions_are_unrelated_spaces() -> None:
    assert MODEL_DIMS == {"3.0": 512, "2.7": 1024, "3.5": 512}
    v3, v27, v35 = space_for("3.0"), space_for("2.7"), space_for("3.5")
    for name in ("color:red", "shape:circle"):  # 3.5 vectors, as long as 3.0's, are not 3.0's either
        assert abs(cosine(v3.direction(name), v35.direction(name))) < 0.2
    for a, b in [
        (v3.direction("color:red"), v27.direction("color:red")),
        (v3.pitch(440.0), v27.pitch(440.0)),
        (v3.embed_text("yellow scene, 440 Hz"), v27.embed_text("yellow scene, 440 Hz")),
    ]:
        assert a.shape == (512,) and b.shape == (1024,)
        assert abs(cosine(a, b[:512])) < 0.2  # different seeds, not a truncation of one another


def test_text_matches_its_visual_scene_best() -> None:
    space = space_for("3.0")
    query = space.embed_text("yellow triangle")
    target = cosine(query, space.embed_visual(picture("triangle", "yellow", "black"), "x"))
    assert target > 0.75
    for color, shape, bg in itertools.product(COLORS, SHAPES, ("black", "white")):
        if (color, shape) != ("yellow", "triangle") and bg != color:
            assert cosine(query, space.embed_visual(picture(shape, color, bg), "x")) < target - 0.3


@pytest.mark.parametrize("version", ["3.0", "2.7"])
def test_a_yellow_scene_is_the_yellow_background_not_a_small_yellow_square(version: str) -> None:
    space = space_for(version)
    yellow_bg, blue_bg = space.embed_visual(segment(YELLOW_SCENE)), space.embed_visual(segment(BLUE_SCENE))
    for query in ("a yellow scene", "yellow background", "yellow"):
        q = space.embed_text(query)
        assert cosine(q, yellow_bg) > cosine(q, blue_bg) + 0.3, query
    # Even a large (15 %) yellow square on blue counts below a yellow background for a colour query.
    big = space.embed_visual(picture("square", "yellow", "blue", area=0.15))
    assert cosine(space.embed_text("a yellow scene"), yellow_bg) > cosine(
        space.embed_text("a yellow scene"), big
    )
    # ... and yet the small object is what its own name finds.
    for query, right, wrong in (
        ("yellow square", blue_bg, yellow_bg),
        ("small blue square", yellow_bg, blue_bg),
    ):
        q = space.embed_text(query)
        assert cosine(q, right) > cosine(q, wrong) + 0.1, query


def test_small_moving_objects_are_seen_with_their_shape_and_share() -> None:
    feats = segment(
        Shot(6.0, "green", (moving("circle", "red", 52, lane=0.2), moving("triangle", "white", 60, lane=0.8)))
    )
    assert feats.background == "green" and dict(feats.colors)["green"] > 0.9
    found = {(o.color, o.shape): o for o in feats.objects}
    assert set(found) == {("red", "circle"), ("white", "triangle")}
    assert all(0.015 < o.area < 0.035 and o.presence == 1.0 for o in found.values())
    space = space_for("3.0")
    vec = space.embed_visual(feats)
    assert cosine(space.embed_text("red circle"), vec) > cosine(space.embed_text("red triangle"), vec) + 0.2
    assert (
        cosine(space.embed_text("white triangle"), vec) > cosine(space.embed_text("white circle"), vec) + 0.2
    )


def test_an_object_counts_by_its_time_on_screen() -> None:
    space = space_for("3.0")
    query = space.embed_text("orange triangle")
    scores = []
    for appear in (0.0, 6.0, 10.0):  # on screen all, 40 % and none of a 10 s shot
        feats = segment(Shot(10.0, "purple", (moving("triangle", "orange", 56, appear_sec=appear),)))
        presence = {o.color: o.presence for o in feats.objects}.get("orange", 0.0)
        assert presence == pytest.approx((10.0 - appear) / 10.0, abs=0.02)
        scores.append(cosine(query, space.embed_visual(feats)))
    assert scores[0] > scores[1] + 0.15 > scores[2] + 0.3


@pytest.mark.parametrize("version", ["3.0", "2.7"])
def test_an_image_and_a_video_of_the_same_content_score_alike(version: str) -> None:
    space = space_for(version)
    for shot in (YELLOW_SCENE, BLUE_SCENE, Shot(6.0, "gray", (Sprite("circle", "magenta", 110),))):
        image, video = space.embed_visual(still(shot)), space.embed_visual(segment(shot))
        assert cosine(image, video) > 0.97
        for query in ("yellow", "a yellow scene", "blue square", "gray background", "magenta circle"):
            q = space.embed_text(query)
            assert abs(cosine(q, image) - cosine(q, video)) < 0.03, (shot.background, query)


TONES = (220.0, 440.0, 660.0, 880.0)  # octaves and a fifth


@pytest.mark.parametrize("version", ["3.0", "2.7"])
def test_tones_an_octave_or_a_fifth_apart_are_told_apart(version: str) -> None:
    space = space_for(version)
    audio = {hz: space.embed_audio([hz] * 8, f"{hz:g}") for hz in TONES}
    for a, b in itertools.combinations(TONES, 2):
        assert cosine(audio[a], audio[b]) < 0.5, (a, b)
    for hz in TONES:
        for query in (f"a {hz:g} Hz tone", f"{hz / 1000:g} kHz"):
            q = space.embed_text(query)
            scores = {other: cosine(q, vec) for other, vec in audio.items()}
            best = max(scores, key=lambda k: scores[k])
            assert best == hz, (query, scores)
            assert scores[hz] > max(s for k, s in scores.items() if k != hz) + 0.3, (query, scores)


def test_pitch_is_a_smooth_dimension() -> None:
    space = space_for("3.0")
    a4 = space.embed_audio([440.0])
    assert cosine(a4, space.embed_audio([441.0])) > 0.99  # a few cents: the same note
    semitone, whole_tone = cosine(a4, space.embed_audio([466.16])), cosine(a4, space.embed_audio([493.88]))
    assert 0.99 > semitone > whole_tone + 0.1
    assert midi_number(440.0) == 69.0 and midi_number(880.0) == 81.0


def test_a_segment_weighs_each_pitch_by_its_time() -> None:
    space = space_for("3.0")
    mixed = space.embed_audio([440.0] * 6 + [880.0] * 2 + [None] * 2)
    scores = {hz: cosine(space.embed_text(f"{hz:g} Hz"), mixed) for hz in (440.0, 880.0, 660.0)}
    assert scores[440.0] > scores[880.0] + 0.2 > scores[660.0] + 0.2
    assert cosine(space.embed_text("silence"), mixed) > cosine(
        space.embed_text("silence"), space.embed_audio([440.0])
    )


@pytest.mark.parametrize(
    ("text", "expected_hz"),
    [
        ("a 440 Hz tone", [440.0]),
        ("440hz", [440.0]),
        ("1.76 kHz whistle", [1760.0]),
        ("a 220 hertz hum", [220.0]),
        ("A4", [440.0]),
        ("the note a3", [220.0]),
        ("C#5 and Bb3", [554.37, 233.08]),
        ("middle C", [261.63]),
        ("a b c d e f g", []),
        ("yellow triangle", []),
    ],
)
def test_pitches_named_in_text(text: str, expected_hz: list[float]) -> None:
    pitches, rest = pitches_in_text(text)
    assert pitches == pytest.approx(expected_hz, abs=0.01)
    assert "hz" not in rest


def test_note_names_and_frequencies_are_one_query() -> None:
    space = space_for("3.0")
    assert cosine(space.embed_text("A4"), space.embed_text("440 Hz")) > 0.99
    assert cosine(space.embed_text("A5"), space.embed_text("A4")) < 0.5


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


def test_register_words_find_the_register() -> None:
    space = space_for("3.0")
    low_hum = space.embed_text("low hum")
    assert cosine(space.embed_audio([220.0]), low_hum) > cosine(space.embed_audio([1760.0]), low_hum) + 0.3
    assert cosine(space.embed_audio([150.0]), low_hum) > cosine(space.embed_audio([660.0]), low_hum) + 0.3
    assert cosine(space.embed_audio([None]), space.embed_text("silence")) > 0.95
    assert all(TEXT_VOCABULARY[w].startswith("tone:") for w in ("hum", "bass", "beep", "whistle"))
