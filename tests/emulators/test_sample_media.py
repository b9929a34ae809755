"""The sample set's ground truth is internally consistent and unambiguous."""

from __future__ import annotations

from collections import Counter

from emulators.sample_media import SampleObject, generate_sample_media


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
