"""`mediaembed search` on ordinary and bad input: hits, or one line that says what to do, never a traceback.

One Bedrock emulator for the module (a text query never reads S3) and a small index whose segment
vectors are the emulator's own embeddings of known phrases, so the right hit is known.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from botocore.stub import Stubber

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from harness.demo import NEXT_QUERY, next_step
from harness.local_env import local_settings
from harness.local_searcher import stop_local_searcher
from mediaembed.cli import main as cli
from mediaembed.search import Searcher, SearchError, SearchSettings, query_token_bound, run_search
from resources.index.segment_index import SegmentIndex
from resources.providers.bedrock.client import embed_text, runtime_client
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.providers.errors import QueryEmbeddingError
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0, MarengoModel
from resources.providers.model_routes import route
from resources.search.segment_search import table_name
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import media_id, segments_table

REGION = "us-east-1"
ROOT = Path(__file__).resolve().parents[2]
PHRASES = {  # media object -> (phrase its segment embeds, option, scope, start, end)
    "s3://media/videos/shapes.mp4": ("red circle", "visual", "clip", 0.0, 4.0),
    "s3://media/audio/hum.wav": ("low hum", "audio", "clip", 6.0, 12.0),
    "s3://media/images/square.png": ("blue square", None, "asset", None, None),
}


def _segments(client: object, model: MarengoModel) -> pa.Table:
    tables = []
    for uri, (phrase, option, scope, start, end) in PHRASES.items():
        vector = embed_text(client, route("bedrock", model.key), REGION, phrase)
        modality = "image" if scope == "asset" else "video"
        job = EmbeddingJob(uri, "etag1", modality, model, EmbeddingOptions())
        segment = SegmentEmbedding(option, scope, start, end, vector)
        tables.append(
            segments_table(
                job,
                [segment],
                route=route("bedrock", job.model.key),
                invocation_id="inv",
                ingested_at=datetime.now(UTC),
            )
        )
    return pa.concat_tables(tables)


def _write(uri: Path, model: MarengoModel, table: pa.Table) -> SegmentIndex:
    index = SegmentIndex(uri=str(uri), storage=S3Storage(region_name=REGION))
    index.replace_media(model, table, [media_id(u) for u in PHRASES])
    return index


@pytest.fixture(scope="module")
def bedrock() -> Iterator[BedrockRuntimeEmulator]:
    emulator = BedrockRuntimeEmulator("http://127.0.0.1:9", region=REGION).start()
    with pytest.MonkeyPatch.context() as patch:  # credentials for the module's own set-up clients
        patch.setenv("AWS_ACCESS_KEY_ID", "test")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, bedrock: BedrockRuntimeEmulator) -> Path:
    client = runtime_client(REGION, bedrock.endpoint, "standard", 3)
    root = tmp_path_factory.mktemp("search") / "index"
    for model in (MARENGO_3_0, MARENGO_2_7):
        _write(root, model, _segments(client, model))
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
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",  # no profile region or endpoint from the machine
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(["search", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Runs a search that must fail: nothing on stdout, exactly one line on stderr, no traceback."""
    code, out, err = run(capsys, *argv)
    assert code != 0
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("mediaembed search: ") and "Traceback" not in err
    return code, err


def test_the_right_segment_comes_first_and_json_carries_what_text_shows(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, err = run(capsys, "red circle", "--top-k", "3")
    assert (code, err) == (0, "")
    code, out, _ = run(capsys, "red circle", "--top-k", "3", "--json")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(records) == len(text.splitlines()) == 3
    first = records[0]
    assert set(first) == {
        "rank",
        "media_uri",
        "start_sec",
        "end_sec",
        "score",
        "fused_score",
        "signal_scores",
        "model",
        "signals",
        "snippet",
        "embedding_option",
        "embedding_type",
        "embedding_scope",
    }
    assert (first["signals"], first["snippet"]) == (["visual"], None)
    assert [r["rank"] for r in records] == [1, 2, 3]
    assert [r["fused_score"] for r in records] == sorted((r["fused_score"] for r in records), reverse=True)
    assert (first["media_uri"], first["start_sec"], first["end_sec"]) == (
        "s3://media/videos/shapes.mp4",
        0.0,
        4.0,
    )
    assert (first["embedding_option"], first["embedding_type"], first["embedding_scope"], first["model"]) == (
        "visual",
        "separate",
        "clip",
        "marengo-3.0",
    )
    assert first["score"] == pytest.approx(1.0, abs=1e-5)
    for record, line in zip(records, text.splitlines(), strict=True):  # every field shown is in the JSON
        assert line.split()[0] == f"{record['rank']}."
        assert line.split()[1:3] == ["fused", f"{record['fused_score']:.4f}"], "what it is ranked by"
        assert record["media_uri"] in line and line.endswith(record["model"])
        scores = ", ".join(f"{signal} {score:.4f}" for signal, score in record["signal_scores"].items())
        assert f"({scores})" in line and f"{record['score']:.4f}" in scores
        assert list(record["signal_scores"])[: len(record["signals"])] == record["signals"]
        assert record["embedding_scope"] is None or f"), {record['embedding_scope']}  " in line
        if record["start_sec"] is not None:
            assert f"{record['start_sec']:6.2f}s - {record['end_sec']:6.2f}s" in line
    image = next(r for r in records if r["media_uri"].endswith(".png"))
    assert (image["embedding_option"], image["embedding_scope"], image["start_sec"]) == (None, "asset", None)
    assert image["signals"] == ["visual"], "an image's vector is what it shows"
    hum = next(r for r in records if r["media_uri"].endswith(".wav"))
    assert (hum["signals"], records[-1]) == (["audio"], hum), "a weak audio match comes after visual ones"


class ClosedPipe(io.StringIO):
    """stdout of `mediaembed search ... | head -1` once head has exited."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_reader_that_stops_early_is_not_an_error(env: dict[str, str]) -> None:
    err = io.StringIO()
    assert (
        run_search("red circle", 3, "marengo-3.0", as_json=False, out=ClosedPipe(), err=err, env=os.environ)
        == 0
    )
    assert err.getvalue() == ""


@pytest.mark.parametrize("top_k", ["0", "-3"])
def test_top_k_below_one_is_refused(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], top_k: str
) -> None:
    code, err = refused(capsys, "red circle", "--top-k", top_k)
    assert code == 2 and f"--top-k must be 1 or more, got {top_k}" in err


@pytest.mark.parametrize("query", ["", "   ", " \t\n "])
def test_an_empty_query_is_refused(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], query: str
) -> None:
    code, err = refused(capsys, query)
    assert code == 2 and "the query is empty" in err


def test_token_bound_never_undercounts() -> None:
    assert query_token_bound("red circle") == len("red circle") + 2
    assert query_token_bound("  red \t\n circle  ") == len("red circle") + 2, "whitespace runs count once"
    assert query_token_bound("café") == len("café".encode()) + 2 == 7
    assert query_token_bound("🎈") == 6
    words = " ".join(["word"] * 100)
    assert query_token_bound(words) >= len(words.split()) + 2


def test_a_query_over_the_3_0_limit_is_refused_naming_the_limit(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    longest = "a" * (MARENGO_3_0.max_text_tokens - 2)  # exactly at the bound: accepted
    code, _, err = run(capsys, longest, "--top-k", "1")
    assert (code, err) == (0, "")
    code, err = refused(capsys, longest + "b")
    assert code == 2 and "Marengo 3.0's 500-token text limit" in err and "shorten it" in err
    code, err = refused(capsys, " ".join(["red circle"] * 300))
    assert code == 2 and "500-token" in err


def test_a_query_over_the_2_7_limit_runs_truncated_and_says_so(
    env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    query = "red circle " + " ".join(["and more words"] * 40)
    code, out, err = run(capsys, query, "--model", "marengo-2.7", "--top-k", "1", "--json")
    assert code == 0 and len(out.splitlines()) == 1
    assert len(err.splitlines()) == 1
    assert "Marengo 2.7's 77-token text limit" in err and "textTruncate=end" in err
    code, out, err = run(capsys, "red circle", "--model", "marengo-2.7", "--top-k", "1", "--json")
    assert (code, err) == (0, "") and json.loads(out)["model"] == "marengo-2.7"


def test_a_missing_index_is_named_and_not_created(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nothing-yet" / "index"
    monkeypatch.setenv("MEDIAEMBED_INDEX_URI", str(missing))
    code, err = refused(capsys, "red circle")
    assert code == 1 and f"no search index at {missing} yet" in err and "make demo" in err
    assert not (tmp_path / "nothing-yet").exists(), "searching must not create the index directory"

    empty = tmp_path / "empty-index"
    empty.mkdir()
    monkeypatch.setenv("MEDIAEMBED_INDEX_URI", str(empty))
    code, err = refused(capsys, "red circle", "--model", "marengo-2.7")
    assert code == 1 and "holds no marengo-2.7 segments yet" in err
    assert list(empty.iterdir()) == [], "searching must not create a table"


def test_segment_index_search_does_not_create_the_directory_either(tmp_path: Path) -> None:
    index = SegmentIndex(uri=str(tmp_path / "idx"), storage=S3Storage(region_name=REGION))
    with pytest.raises(LookupError, match="no search index"):
        index.search(MARENGO_3_0, [0.0] * MARENGO_3_0.dimension, 3)
    assert not (tmp_path / "idx").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_endpoint_is_one_line_naming_it(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", endpoint)
    code, err = refused(capsys, "red circle")
    assert code == 1 and f"cannot reach the Bedrock runtime endpoint {endpoint}" in err


def test_an_unreachable_index_bucket_is_one_line_naming_the_endpoint(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("MEDIAEMBED_INDEX_URI", "s3://lake/lancedb")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    code, err = refused(capsys, "red circle")
    assert code == 1 and f"cannot open the search index at s3://lake/lancedb through {endpoint}" in err


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        (("MEDIAEMBED_INDEX_URI",), "MEDIAEMBED_INDEX_URI is not set"),
        (("MEDIAEMBED_LAKE_URI",), "MEDIAEMBED_LAKE_URI is not set"),
        (("AWS_REGION", "AWS_DEFAULT_REGION"), "AWS_REGION is not set"),
    ],
)
def test_a_missing_setting_is_named_with_where_to_get_it(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    unset: tuple[str, ...],
    named: str,
) -> None:
    for name in unset:
        monkeypatch.delenv(name, raising=False)
    code, err = refused(capsys, "red circle")
    assert code == 1 and named in err and "docs/configuration.md" in err
    assert "mediaembed search --local" in err


def test_missing_credentials_are_named(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    code, err = refused(capsys, "red circle")
    assert code == 1 and "no usable AWS credentials" in err


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("AccessDeniedException", "enable model access to TwelveLabs Marengo Embed 3.0 in us-east-1"),
        ("ValidationException", "Bedrock refused the query (ValidationException: bad body)"),
        ("ThrottlingException", "try again in a moment"),
    ],
)
def test_refusals_from_bedrock_become_one_actionable_line(code: str, says: str) -> None:
    client = runtime_client(REGION, "http://127.0.0.1:9", "standard", 1)
    with Stubber(client) as stub:
        stub.add_client_error("invoke_model", service_error_code=code, service_message="bad\nbody")
        with pytest.raises(QueryEmbeddingError) as raised:
            embed_text(client, route("bedrock", MARENGO_3_0.key), REGION, "red circle")
    assert says in str(raised.value)
    assert "\n" not in str(raised.value)


class TableOpenings:
    """A LanceDB connection that counts the tables opened through it."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.opened: list[str] = []

    def open_table(self, name: str) -> Any:
        self.opened.append(name)
        return self.db.open_table(name)


class CountingSearcher(Searcher):
    """A searcher whose one connection counts the tables it opens."""

    openings: TableOpenings | None = None

    def connection(self) -> Any:
        if self.openings is None:
            self.openings = TableOpenings(super().connection())
        return self.openings


def test_a_warm_searcher_reuses_its_table_and_sees_new_segments(
    env: dict[str, str], bedrock: BedrockRuntimeEmulator, tmp_path: Path
) -> None:
    client = runtime_client(REGION, bedrock.endpoint, "standard", 3)
    table = _segments(client, MARENGO_3_0)
    index = _write(tmp_path / "index", MARENGO_3_0, table.slice(0, 1))
    settings = SearchSettings(
        index_uri=str(tmp_path / "index"),
        region=REGION,
        bedrock_endpoint=bedrock.endpoint,
        lake_uri=str(tmp_path / "lake"),
    )
    searcher = CountingSearcher(settings, read_consistency_interval=timedelta(0))
    assert [h.media_uri for h in searcher.search("low hum", 5)] == ["s3://media/videos/shapes.mp4"]
    assert searcher.openings is not None and searcher.openings.opened == [table_name(MARENGO_3_0)]

    index.replace_media(MARENGO_3_0, table.slice(1, 1), [media_id("s3://media/audio/hum.wav")])
    hits = searcher.search("low hum", 5)
    assert hits[0].media_uri == "s3://media/audio/hum.wav" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert searcher.openings.opened == [table_name(MARENGO_3_0)], "one table handle for the searcher's life"
    with pytest.raises(SearchError, match="--top-k must be 1 or more"):
        searcher.search("low hum", 0)


def test_search_loads_neither_dagster_nor_the_code_location(env: dict[str, str]) -> None:
    probe = (
        "import sys\n"
        "from mediaembed.cli import main\n"
        "code = main(['search', 'red circle', '--top-k', '1'])\n"
        "heavy = {'dagster', 'dagster_aws', 'assets_defs'}\n"
        "light = {'pipelines', 'pipelines.settings'}  # the settings catalogue is free of Dagster\n"
        "loaded = {m for m in sys.modules if m.split('.')[0] in heavy}\n"
        "loaded |= {m for m in sys.modules if m.split('.')[0] == 'pipelines'} - light\n"
        "print(code, sorted(loaded))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], env={**os.environ}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 []"


def test_local_searches_the_work_folder_with_its_own_emulator(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, index_dir: Path
) -> None:
    for name in env:  # as after `make demo`: no settings, no emulators
        monkeypatch.delenv(name)
    try:
        code, out, err = run(capsys, "--local", "--workdir", str(index_dir.parent), "low hum", "--json")
        assert code == 0 and err.startswith("mediaembed search: started a local searcher for "), err
        assert len(err.splitlines()) == 1, err
        assert json.loads(out.splitlines()[0])["media_uri"] == "s3://media/audio/hum.wav"
        assert not {name for name in env if name in os.environ}, "--local leaves the environment as it was"
        code, out, err = run(capsys, "--local", "--workdir", str(index_dir.parent), "red circle", "--json")
        assert (code, err) == (0, ""), "the second command is answered by the searcher the first started"
        assert json.loads(out.splitlines()[0])["media_uri"] == "s3://media/videos/shapes.mp4"
    finally:
        assert stop_local_searcher(index_dir.parent) is not None


def test_local_without_a_demo_run_says_to_run_it_and_creates_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, err = refused(capsys, "--local", "--workdir", str(tmp_path / "never-ran"), "red circle")
    assert code == 1 and "run `make demo` first" in err
    assert not (tmp_path / "never-ran").exists()


def test_the_line_the_demo_prints_last_runs_as_printed_once_its_emulators_are_gone(
    bedrock: BedrockRuntimeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A demo-like run: an index where `make demo` writes it, then the printed line in a fresh process
    with no settings and no emulators in the environment."""
    client = runtime_client(REGION, bedrock.endpoint, "standard", 3)
    monkeypatch.chdir(tmp_path)
    index = Path(local_settings(Path(".local"))["MEDIAEMBED_INDEX_URI"])
    _write(index, MARENGO_3_0, _segments(client, MARENGO_3_0))
    line = next_step(Path(".local"))
    assert line.endswith(f'search --local "{NEXT_QUERY}"')
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAEMBED_", "DAGSTER_"))}
    clean["AWS_CONFIG_FILE"] = clean["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "no-aws-config")
    try:
        done = subprocess.run(shlex.split(line), env=clean, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "started a local searcher" in done.stderr, done.stderr
        top = done.stdout.splitlines()[0]
        assert "s3://media/videos/shapes.mp4  [  0.00s -   4.00s]" in top, done.stdout
    finally:
        assert stop_local_searcher(Path(".local")) is not None


def test_the_readme_quotes_the_line_the_demo_prints_in_a_fresh_clone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = tmp_path / ".venv" / "bin"  # a clone's layout: `make demo` runs .venv/bin/mediaembed
    venv_bin.mkdir(parents=True)
    (venv_bin / "mediaembed").write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    printed = next_step(Path(".local"))
    assert printed == f'.venv/bin/mediaembed search --local "{NEXT_QUERY}"'
    assert printed in (ROOT / "README.md").read_text()
    assert next_step(Path("/tmp/elsewhere")).endswith("--workdir /tmp/elsewhere")
