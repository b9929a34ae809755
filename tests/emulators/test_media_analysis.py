"""Decoding and segmentation on the sample media: exact frame times, robust colours and shapes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from emulators.media_analysis import (
    MediaError,
    analyse_frame,
    classify_tone,
    decode_image,
    decode_media,
    dynamic_segments,
    even_segments,
    fixed_segments,
    merge_short,
    pitches_in,
    probe_media,
    shape_from_fill_ratio,
    tone_in,
    visual_in,
)
from emulators.sample_media import (
    CONTENT_CLIP_KEY,
    CONTENT_PITCHES_KEY,
    CONTENT_SHOTS,
    CONTENT_STILLS,
    CONTENT_TONES,
    SampleObject,
    render_shot_frame,
    shot_spans,
)


def test_fill_ratio_and_tone_rules() -> None:
    assert [shape_from_fill_ratio(r) for r in (1.0, 0.785, 0.5, 0.62)] == [
        "square",
        "circle",
        "triangle",
        "triangle",
    ]
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


def test_moving_objects_are_found_by_share_of_frame_and_time(content: dict[str, SampleObject]) -> None:
    media = decode_media(content[CONTENT_CLIP_KEY].data)
    spans = dynamic_segments(media, 0.0, media.duration, 4.0)
    # Small objects moving (or appearing) never look like a cut; the 20 s shot is split into two 10 s.
    assert spans == [(0.0, 6.0), (6.0, 12.0), (12.0, 18.0), (18.0, 28.0), (28.0, 38.0)]
    shots = [0, 1, 2, 3, 3]
    presence = [1.0, 1.0, 1.0, 0.4, 1.0]  # the orange triangle appears 6 s into the last shot
    for (start, end), index, share in zip(spans, shots, presence, strict=True):
        shot = CONTENT_SHOTS[index]
        feats = visual_in(media, start, end)
        assert feats is not None
        assert feats.background == shot.background and dict(feats.colors)[shot.background] > 0.9
        # Codec blur along edges forms no object of its own: exactly the sprites, with their shapes.
        assert {(o.color, o.shape) for o in feats.objects} == {(s.color, s.shape) for s in shot.sprites}
        for obj in feats.objects:
            assert 0.015 < obj.area < 0.035, obj
            assert obj.presence == pytest.approx(share, abs=0.03), obj


def test_stills_show_their_shot(content: dict[str, SampleObject]) -> None:
    for key, index in CONTENT_STILLS.items():
        feats = decode_image(content[key].data)
        shot = CONTENT_SHOTS[index]
        assert feats.background == shot.background
        assert [(o.color, o.shape) for o in feats.objects] == [(s.color, s.shape) for s in shot.sprites]


def test_pitch_windows_follow_the_tones(content: dict[str, SampleObject]) -> None:
    tones = decode_media(content[CONTENT_PITCHES_KEY].data)
    for (start, end), (hz, _) in zip(even_segments(0.0, tones.duration), CONTENT_TONES, strict=True):
        heard = pitches_in(tones, start, end)
        assert len(heard) == 40 and all(p is not None and abs(p - hz) < 0.5 for p in heard), (hz, heard)
    clip = decode_media(content[CONTENT_CLIP_KEY].data)
    for (start, end), shot in zip(shot_spans(CONTENT_SHOTS), CONTENT_SHOTS, strict=True):
        heard = pitches_in(clip, start + 0.25, end - 0.25)  # AAC smears the change over a few ms
        assert all(p is not None and abs(p - shot.tone_hz) < 1.0 for p in heard), (shot.tone_hz, heard)
    # Across a change of tone each window hears the pitch of its own time.
    heard = pitches_in(tones, 9.0, 11.0)
    assert [round(p or 0) for p in heard] == [220] * 4 + [440] * 4


def test_a_large_frame_reads_like_a_small_one() -> None:
    """Large frames are analysed on a coarser grid: the same colours and objects, at the same cost."""
    shot = CONTENT_SHOTS[2]
    small = analyse_frame(render_shot_frame(shot, 1.0, 320, 240))
    sprites = tuple(replace(s, size=s.size * 6) for s in shot.sprites)
    large = analyse_frame(render_shot_frame(replace(shot, sprites=sprites), 1.0, 1920, 1440))
    assert large.background == small.background
    assert [(o.color, o.shape) for o in large.objects] == [(o.color, o.shape) for o in small.objects]
    for a, b in zip(large.objects, small.objects, strict=True):
        assert a.area == pytest.approx(b.area, rel=0.15)
