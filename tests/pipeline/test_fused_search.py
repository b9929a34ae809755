"""Fused search end to end on the Bedrock emulator: each segment once whatever options matched it, text and
hybrid modes through a text-hit source (tests/pipeline/test_web_serve.py serves the same index).

The index holds a video whose 4-9 s segment has a visual, an audio and a transcription row (all the
emulator's embedding of "red circle", so each option matches), and decoys with one option each.
"""

from __future__ import annotations

import io
import json
import os
import socket
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from mediaembed.cli import main as cli
from mediaembed.search import Searcher, SearchSettings, run_search
from resources.index.segment_index import SegmentIndex
from resources.providers.bedrock.client import embed_text, runtime_client
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.providers.marengo_models import MARENGO_3_0
from resources.providers.model_routes import route
from resources.search.fusion import TextHit
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import media_id, segments_table

REGION = "us-east-1"
VIDEO = "s3://media/videos/shapes.mp4"
HUM = "s3://media/audio/hum.wav"
SQUARE = "s3://media/images/square.png"
NO_S3 = "http://127.0.0.1:9"  # presigning never connects: the link only has to name the endpoint
ROWS = [  # (object, phrase its row embeds, option, scope, start, end)
    (VIDEO, "red circle", "visual", "clip", 4.0, 9.0),
    (VIDEO, "red circle", "audio", "clip", 4.0, 9.0),
    (VIDEO, "red circle", "transcription", "clip", 4.0, 9.0),
    (VIDEO, "green square", "visual", "clip", 9.0, 14.0),
    (HUM, "low hum", "audio", "clip", 0.0, 6.0),
    (SQUARE, "blue square", None, "asset", None, None),
]


def _index(client: object, root: Path) -> None:
    tables = []
    for uri in dict.fromkeys(r[0] for r in ROWS):
        modality = "image" if uri == SQUARE else "video"
        job = EmbeddingJob(uri, "etag1", modality, MARENGO_3_0, EmbeddingOptions())
        segments = [
            SegmentEmbedding(
                option, scope, start, end, embed_text(client, route("bedrock", "marengo-3.0"), REGION, p)
            )
            for u, p, option, scope, start, end in ROWS
            if u == uri
        ]
        tables.append(
            segments_table(
                job,
                segments,
                route=route("bedrock", "marengo-3.0"),
                invocation_id="inv",
                ingested_at=datetime.now(UTC),
            )
        )
    index = SegmentIndex(uri=str(root), storage=S3Storage(region_name=REGION))
    index.replace_media(
        MARENGO_3_0, pa.concat_tables(tables), [media_id(u) for u in dict.fromkeys(r[0] for r in ROWS)]
    )


@pytest.fixture(scope="module")
def bedrock() -> Iterator[BedrockRuntimeEmulator]:
    emulator = BedrockRuntimeEmulator(NO_S3, region=REGION).start()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "test")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, bedrock: BedrockRuntimeEmulator) -> Path:
    root = tmp_path_factory.mktemp("fused") / "index"
    _index(runtime_client(REGION, bedrock.endpoint, "standard", 3), root)
    return root


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, bedrock: BedrockRuntimeEmulator, index_dir: Path) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith(("AWS_", "MEDIAEMBED_")):
            monkeypatch.delenv(name)
    values = {
        "MEDIAEMBED_INDEX_URI": str(index_dir),
        "MEDIAEMBED_LAKE_URI": str(index_dir.parent / "lake"),  # no serving record: the initial 3.0
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.endpoint,
        "AWS_ENDPOINT_URL_S3": NO_S3,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


class Chapters:
    """A typed fake of the description index: fixed chapter and description hits for any query."""

    def __init__(self, hits: Sequence[TextHit]) -> None:
        self.hits = list(hits)
        self.asked: list[tuple[str, int]] = []

    def search_text(self, text: str, limit: int) -> Sequence[TextHit]:
        self.asked.append((text, limit))
        return self.hits[:limit]


CHAPTERS = Chapters(
    [
        TextHit(VIDEO, 4.0, 9.0, "chapter", "A red circle on a black background", 2.0),
        TextHit(HUM, None, None, "description", "A steady low hum at 220 Hz", 1.0),
    ]
)


def search_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict]:
    code = cli(["search", *argv, "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    return [json.loads(line) for line in out.splitlines()]


def test_a_query_returns_each_segment_once_with_the_signals_that_matched(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    records = search_json(capsys, "red circle", "--top-k", "5")
    spans = [(r["media_uri"], r["start_sec"], r["end_sec"]) for r in records]
    assert len(spans) == len(set(spans)) == 4, "four segments, each once (six rows)"
    first = records[0]
    assert (first["media_uri"], first["start_sec"], first["end_sec"]) == (VIDEO, 4.0, 9.0)
    assert sorted(first["signals"]) == ["audio", "transcription", "visual"]
    assert first["score"] == pytest.approx(1.0, abs=1e-5) and first["snippet"] is None
    assert first["fused_score"] == pytest.approx(3 / 61, abs=1e-6), "first in all three lists"


def test_text_mode_without_a_description_index_says_to_run_the_describe_job(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    for mode in ("text", "hybrid"):
        code = cli(["search", "red circle", "--mode", mode])
        out, err = capsys.readouterr()
        assert (code, out) == (1, "")
        assert (
            len(err.splitlines()) == 1 and "descriptions are not indexed yet" in err and "describe job" in err
        )


def test_hybrid_fuses_chapters_with_segments_and_text_mode_ranks_text_alone(env: dict[str, str]) -> None:
    searcher = Searcher(SearchSettings.from_env(os.environ), text_source=CHAPTERS)
    out = io.StringIO()
    assert run_search("red circle", 3, None, as_json=True, mode="hybrid", out=out, searcher=searcher) == 0
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    first = records[0]
    assert (first["media_uri"], first["start_sec"]) == (VIDEO, 4.0)
    assert first["signals"][0] == "visual" and "chapter" in first["signals"]
    assert first["snippet"] == "A red circle on a black background"
    assert sum(r["media_uri"] == VIDEO and r["start_sec"] == 4.0 for r in records) == 1
    assert CHAPTERS.asked and CHAPTERS.asked[-1][0] == "red circle"

    text = searcher.search("red circle", 5, mode="text")
    assert [(h.media_uri, h.start_sec, h.signals) for h in text] == [
        (VIDEO, 4.0, ("chapter",)),
        (HUM, None, ("description",)),
    ]


def test_the_text_output_shows_the_fused_score_it_is_ranked_by_with_each_signal_beside_it(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["search", "red circle", "--top-k", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    fused = [float(line.split("fused ", 1)[1].split()[0]) for line in lines]
    assert fused == sorted(fused, reverse=True) and len(fused) == 4, lines
    first = lines[0]
    assert first.startswith(" 1. fused 0.0492 (") and "shapes.mp4" in first, first
    assert all(f"{signal} 1.0000" in first for signal in ("visual", "audio", "transcription")), first


def test_serve_on_a_port_in_use_is_one_line_naming_it(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli(["serve", "--port", str(port)])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert len(err.splitlines()) == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
