"""Probing classifies media from its container, and explains what it cannot use."""

import io

import av
import numpy as np
import pytest

from emulators.sample_media import SampleObject, generate_sample_media
from resources.media_probe import probe


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
