"""Probing classifies media from its container, and explains what it cannot use."""

import io

import av
import numpy as np
import pytest

from emulators.sample_media import SampleObject, generate_sample_media
from resources.media.probe import probe


@pytest.fixture(scope="module")
def samples() -> dict[str, SampleObject]:
    return {s.key: s for s in generate_sample_media()}


def test_sample_media_is_classified_with_durations(samples: dict[str, SampleObject]) -> None:
    for sample in samples.values():
        result = probe(sample.key, sample.content_type, io.BytesIO(sample.data))
        if sample.modality is None:
            assert result.status in {"unreadable", "unsupported"} and result.reason
            continue
        assert (result.status, result.modality) == ("ok", sample.modality), sample.key
        if sample.scenes and sample.modality != "image":
            assert result.duration_sec == pytest.approx(sample.scenes[-1].end_sec, abs=0.1)


def test_corrupt_and_unsupported_objects_carry_reasons(samples: dict[str, SampleObject]) -> None:
    corrupt = probe("videos/corrupt.mp4", "video/mp4", io.BytesIO(samples["videos/corrupt.mp4"].data))
    assert (corrupt.status, corrupt.reason) == (
        "unreadable",
        "cannot decode video: Invalid data found when processing input",
    )
    text = probe("docs/notes.txt", "text/plain", io.BytesIO(b"hello"))
    assert (text.status, text.reason) == (
        "unsupported",
        "unsupported file type .txt (content type text/plain)",
    )
    empty = probe("videos/empty.mp4", None, io.BytesIO(b""))
    assert empty.status == "unreadable"


def test_audio_only_mp4_is_audio() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        samples = (0.3 * np.sin(np.arange(16000 * 2) * 2 * np.pi * 440 / 16000)).astype(np.float32)
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + 1024], format="fltp", layout="mono"
            )
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    result = probe("talks/interview.mp4", "video/mp4", io.BytesIO(buffer.getvalue()))
    assert (result.status, result.modality) == ("ok", "audio")
    assert result.duration_sec == pytest.approx(2.0, abs=0.1)


def test_content_decides_the_type_not_the_extension(samples: dict[str, SampleObject]) -> None:
    png = samples["images/green_triangle.png"].data
    video = samples["videos/shapes_a.mp4"].data
    wav = samples["audio/hum_220hz.wav"].data
    as_video = probe("clips/really-a-picture.mp4", "video/mp4", io.BytesIO(png))
    assert (as_video.status, as_video.modality) == ("unsupported", None), "never billed as a video"
    assert (
        as_video.reason
        == "content is a PNG image, but its name (.mp4) says video: rename it, or re-encode it as video"
    )
    as_audio = probe("sounds/a-picture.wav", "audio/wav", io.BytesIO(png))
    assert as_audio.status == "unsupported" and "PNG image" in (as_audio.reason or "")
    as_image = probe("images/a-video.png", "image/png", io.BytesIO(video))
    assert as_image.status == "unsupported"
    assert (
        as_image.reason == "content is a video (mov,mp4,m4a,3gp,3g2,mj2), but its name (.png) says an image"
    )
    sound_as_image = probe("images/a-sound.jpg", "image/jpeg", io.BytesIO(wav))
    assert sound_as_image.reason == "content is audio (wav), but its name (.jpg) says an image"
    jpeg_as_png = probe(
        "images/named-png.png", "image/png", io.BytesIO(samples["images/purple_circle.jpg"].data)
    )
    assert (jpeg_as_png.status, jpeg_as_png.modality) == ("ok", "image"), (
        "a JPEG named .png is still an image Marengo takes"
    )


def test_an_image_format_marengo_does_not_take_is_refused_whatever_its_name() -> None:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="image2pipe") as out:
        stream = out.add_stream("bmp", rate=1)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "bgr24"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="bgr24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    result = probe("images/old.png", "image/png", io.BytesIO(buffer.getvalue()))
    assert (result.status, result.reason) == (
        "unsupported",
        "content is a BMP image, which Marengo does not take (PNG, JPEG or WebP)",
    )
