"""The sample and content sets' ground truth is internally consistent and unambiguous."""

from __future__ import annotations

import math
from collections import Counter

from emulators.sample_media import (
    CONTENT_CLIP_KEY,
    CONTENT_PITCHES_KEY,
    CONTENT_SHOTS,
    CONTENT_STILLS,
    CONTENT_TONES,
    SampleObject,
    generate_content_media,
    generate_sample_media,
    shot_spans,
)


def test_layout(samples: dict[str, SampleObject]) -> None:
    by_modality = Counter(obj.modality for obj in samples.values())
    assert by_modality == {"video": 3, "audio": 2, "image": 2, None: 2}
    assert {k.split("/")[0] for k in samples} == {"videos", "audio", "images", "docs"}
    assert samples["videos/corrupt.mp4"].modality is None
    assert samples["docs/notes.txt"].content_type == "text/plain"
    assert all(obj.note for obj in samples.values())


def test_every_colour_shape_pair_is_unique(samples: dict[str, SampleObject]) -> None:
    pairs = [
        (s.color, s.shape) for o in samples.values() if o.modality in ("video", "image") for s in o.scenes
    ]
    assert len(pairs) == len(set(pairs))
    scenes = [s for o in samples.values() if o.modality == "video" for s in o.scenes]
    assert len({s.tone_hz for s in scenes}) == len(scenes)
    for obj in samples.values():
        if obj.modality == "video":
            assert 2 <= len(obj.scenes) <= 3
            assert obj.scenes[0].start_sec == 0
            for a, b in zip(obj.scenes, obj.scenes[1:], strict=False):
                assert a.end_sec == b.start_sec
            for s in obj.scenes:
                assert (
                    s.start_sec.is_integer() and s.end_sec.is_integer() and 4 <= s.end_sec - s.start_sec <= 6
                )


def test_generation_is_deterministic(samples: dict[str, SampleObject]) -> None:
    again = {o.key: o for o in generate_sample_media()}
    assert {k: o.data for k, o in again.items()} == {k: o.data for k, o in samples.items()}


def test_content_set_has_one_right_answer_per_query(content: dict[str, SampleObject]) -> None:
    assert set(content) == {CONTENT_CLIP_KEY, CONTENT_PITCHES_KEY, *CONTENT_STILLS}
    looks = [(s.color, s.shape) for shot in CONTENT_SHOTS for s in shot.sprites]
    assert len(looks) == len(set(looks)), "each object in one shot only (stills copy shots 0 and 1)"
    for shot in CONTENT_SHOTS:
        assert all(s.color != shot.background for s in shot.sprites)
        assert all(s.size <= 60 for s in shot.sprites), "small objects: at most ~3 % of the frame"
    backgrounds = [shot.background for shot in CONTENT_SHOTS]
    assert len(backgrounds) == len(set(backgrounds))
    clip_hz = [shot.tone_hz for shot in CONTENT_SHOTS]
    tone_hz = [hz for hz, _ in CONTENT_TONES]
    assert tone_hz == [220.0, 440.0, 660.0, 880.0], "octaves and a fifth"
    for a in clip_hz:
        assert all(abs(12 * math.log2(a / b)) > 1.9 for b in tone_hz), "a whole tone or more from any other"
    assert shot_spans(CONTENT_SHOTS)[-1] == (18.0, 38.0)
    again = {o.key: o.data for o in generate_content_media()}
    assert again == {k: o.data for k, o in content.items()}
