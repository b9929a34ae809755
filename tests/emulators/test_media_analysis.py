"""Decoding and segmentation on the sample media: exact frame times, robust colours and shapes."""

from __future__ import annotations

import pytest

from emulators.media_analysis import (
    MediaError,
    classify_tone,
    decode_image,
    decode_media,
    dynamic_segments,
    even_segments,
    fixed_segments,
    merge_short,
    probe_media,
    shape_from_fill_ratio,
    tone_in,
    visual_in,
)
from emulators.sample_media import SampleObject


def test_fill_ratio_and_tone_rules() -> None:
    assert [shape_from_fill_ratio(r) for r in (1.0, 0.785, 0.5)] == ["square", "circle", "triangle"]
    assert [classify_tone(hz, 0.3) for hz in (220, 440, 1760)] == ["low", "mid", "high"]
    assert classify_tone(440, 0.0) == "silence"


def test_segment_helpers() -> None:
    assert fixed_segments(0, 14, 4) == [(0, 4), (4, 8), (8, 12), (12, 14)]
    assert even_segments(0, 50) == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]
    assert even_segments(0, 16) == [(0, 8), (8, 16)]
    assert merge_short([(0, 4), (4, 5), (5, 10)], 4) == [(0, 5), (5, 10)]
    assert merge_short([(0, 1), (1, 6)], 4) == [(0, 6)]


def test_sample_videos_decode_to_their_scenes(samples: dict[str, SampleObject]) -> None:
    for obj in samples.values():
        if obj.modality != "video":
            continue
        media = decode_media(obj.data)
        assert media.duration == obj.scenes[-1].end_sec
        spans = dynamic_segments(media, 0.0, media.duration, 4.0)
        assert spans == [(s.start_sec, s.end_sec) for s in obj.scenes]
        for (start, end), scene in zip(spans, obj.scenes, strict=True):
            feats = visual_in(media, start, end)
            assert feats is not None
            assert (feats.foreground, feats.shape, feats.background) == (
                scene.color,
                scene.shape,
                scene.background,
            )
            tone, peak = tone_in(media, start, end)
            assert abs(peak - scene.tone_hz) < 5, (obj.key, scene)
            assert tone == classify_tone(scene.tone_hz, 1.0)


def test_sample_images_and_audio(samples: dict[str, SampleObject]) -> None:
    for obj in samples.values():
        if obj.modality == "image":
            f = decode_image(obj.data)
            scene = obj.scenes[0]
            assert (f.foreground, f.shape, f.background) == (scene.color, scene.shape, scene.background)
        elif obj.modality == "audio":
            media = decode_media(obj.data)
            assert media.duration == obj.scenes[0].end_sec
            assert abs(tone_in(media, 0, media.duration)[1] - obj.scenes[0].tone_hz) < 5


@pytest.mark.parametrize("key", ["videos/corrupt.mp4", "docs/notes.txt"])
def test_unreadable_media_is_rejected(samples: dict[str, SampleObject], key: str) -> None:
    for kind in ("video", "audio", "image"):
        with pytest.raises(MediaError):
            probe_media(samples[key].data, kind)
    with pytest.raises(MediaError):
        decode_media(samples[key].data)
