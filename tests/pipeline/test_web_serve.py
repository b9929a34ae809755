"""`mediaembed serve` over a real socket on the Bedrock emulator: the JSON API (its answer is the CLI's
`--json`, its errors the CLI's one line, both valid against the served OpenAPI document), the page (player,
scores, empty / no-results / error states, "more results"), what every response carries (security headers,
one access-log line, never a traceback), concurrency, the bearer token, and a graceful stop.

The index is test_fused_search's: a video whose 4-9 s segment matches "red circle" on three signals, and
decoys.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import av
import jsonschema
import psutil
import pyarrow as pa
import pytest

from emulators.sample_media import IMAGE_SCENES, VIDEO_SCENES, make_audio, make_image, make_video
from mediaembed.cli import main as cli
from mediaembed.search import Searcher, SearchSettings
from mediaembed.web.auth import BindRefused, check_bind
from mediaembed.web.guard import SECURITY_HEADERS
from mediaembed.web.server import default_workers, running
from resources.media.thumbnails import make_thumbnails
from resources.search.fusion import TextHit
from resources.storage.location import location
from resources.tables.segment_schema import media_id
from tests.pipeline import test_fused_search as fused
from tests.pipeline.test_fused_search import CHAPTERS, HUM, NO_S3, SQUARE, VIDEO

# The fused-search test's emulator, index and environment, shared with it.
bedrock, index_dir, env = fused.bedrock, fused.index_dir, fused.env

HEADERS = {name.decode(): value.decode() for name, value in SECURITY_HEADERS}
SHAPE = IMAGE_SCENES["images/green_triangle.png"]


def fetch(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def multipart(fields: dict[str, str], files: Sequence[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = "mediaembed-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    for field, filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, Any]]:
    code = cli(["search", *argv, "--json"])
    out, err = capsys.readouterr()
    assert (code, err) == (0, ""), err
    return [json.loads(line) for line in out.splitlines()]


def cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert cli(["search", *argv]) != 0
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    return err.strip().removeprefix("mediaembed search: ")


@pytest.fixture
def base(env: dict[str, str]) -> Iterator[str]:
    with running(Searcher.from_env(os.environ)) as url:
        yield url


@pytest.fixture(scope="module")
def openapi(bedrock: Any, index_dir: Path) -> dict[str, Any]:
    settings = SearchSettings(index_uri=str(index_dir), region="us-east-1")
    with running(Searcher(settings)) as url:
        status, headers, body = fetch(url + "/api/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    document: dict[str, Any] = json.loads(body)
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {"/api/search", "/thumbnails/{model}/{media_id}/{name}"}
    return document


def cli_fields(hits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The API's hits without `thumbnail_url`, the one field the CLI's `--json` does not print (a path on
    the server means nothing to the command line): the rest must equal the CLI's lines."""
    assert all("thumbnail_url" in hit for hit in hits)
    return [{k: v for k, v in hit.items() if k != "thumbnail_url"} for hit in hits]


def validate(document: dict[str, Any], name: str, body: Any) -> None:
    """`body` against components/schemas/`name` of the served document (its $refs resolved in it)."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    jsonschema.validate(body, schema)


def test_the_api_answers_what_the_cli_prints_with_the_serving_version(
    base: str, openapi: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    status, headers, body = fetch(base + "/api/search?" + urlencode({"q": "red circle", "top_k": 4}))
    assert status == 200 and headers["content-type"] == "application/json"
    answer = json.loads(body)
    validate(openapi, "Answer", answer)
    assert answer["version"] == "marengo-3.0", "no serving record: the initial version"
    assert answer["query"] == {"q": "red circle", "mode": "vector", "top_k": 4, "model": None, "uploads": []}
    assert cli_fields(answer["hits"]) == cli_json(capsys, "red circle", "--top-k", "4")
    fused = [hit["fused_score"] for hit in answer["hits"]]
    assert fused == sorted(fused, reverse=True) and answer["hits"][0]["media_uri"] == VIDEO
    assert set(answer["hits"][0]["signal_scores"]) == {"visual", "audio", "transcription"}

    named = json.loads(fetch(base + "/api/search?q=red+circle&model=marengo-3.0")[2])
    assert named["version"] == "marengo-3.0" and named["hits"][0]["media_uri"] == VIDEO


def test_an_uploaded_image_or_clip_is_searched_as_the_cli_searches_that_file(
    base: str, openapi: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    image = make_image(IMAGE_SCENES["images/green_triangle.png"], "png")
    body, kind = multipart({"top_k": "3"}, [("image", "green_triangle.png", image)])
    status, _, raw = fetch(base + "/api/search", body, {"Content-Type": kind})
    answer = json.loads(raw)
    assert status == 200, answer
    validate(openapi, "Answer", answer)
    assert answer["query"]["uploads"] == [{"kind": "image", "filename": "green_triangle.png"}]
    path = tmp_path / "green_triangle.png"
    path.write_bytes(image)
    assert cli_fields(answer["hits"]) == cli_json(capsys, "--image", str(path), "--top-k", "3")
    assert answer["hits"]

    clip = make_audio(220.0, 6.0, "wav")
    body, kind = multipart({"top_k": "3"}, [("audio", "hum.wav", clip)])
    status, _, raw = fetch(base + "/api/search", body, {"Content-Type": kind})
    (tmp_path / "hum.wav").write_bytes(clip)
    refused = cli_error(capsys, "--audio", str(tmp_path / "hum.wav"), "--top-k", "3")
    assert (status, json.loads(raw)) == (400, {"error": refused}), "Bedrock's 3.0 takes no audio query"
    assert "audio queries are served by the TwelveLabs API" in refused


@pytest.mark.parametrize(
    ("params", "argv", "status"),
    [
        ({"q": "red circle", "top_k": "0"}, ["red circle", "--top-k", "0"], 400),
        ({"q": "red circle", "mode": "text"}, ["red circle", "--mode", "text"], 503),
        ({"q": "red circle", "mode": "hybrid"}, ["red circle", "--mode", "hybrid"], 503),
    ],
)
def test_errors_are_json_with_the_clis_one_line(
    base: str,
    openapi: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    params: dict[str, str],
    argv: list[str],
    status: int,
) -> None:
    got, headers, body = fetch(base + "/api/search?" + urlencode(params))
    error = json.loads(body)
    validate(openapi, "Error", error)
    assert (got, error) == (status, {"error": cli_error(capsys, *argv)})
    assert HEADERS.items() <= headers.items()


def test_bad_requests_name_what_is_wrong(base: str, openapi: dict[str, Any]) -> None:
    for query, words in [("q=red&top_k=many", "top_k must be a whole number"), ("", "give words to search")]:
        status, _, body = fetch(base + "/api/search?" + query)
        error = json.loads(body)
        validate(openapi, "Error", error)
        assert status == 400 and words in error["error"], error
    body, kind = multipart({}, [("audio", "hum.wav", b"not audio at all")])
    status, _, raw = fetch(base + "/api/search", body, {"Content-Type": kind})
    assert status == 400 and "hum.wav" in json.loads(raw)["error"]
    status, headers, raw = fetch(base + "/api/nothing")
    assert (status, headers["content-type"]) == (404, "application/json")
    assert "/api/search" in json.loads(raw)["error"]


def test_the_page_plays_each_hits_span_and_shows_the_fused_score_with_each_signals(base: str) -> None:
    status, headers, raw = fetch(base + "/?" + urlencode({"q": "red circle", "top_k": 4}))
    page = raw.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert HEADERS.items() <= headers.items()
    first = page.split('<li class="hit"')[1]
    assert "shapes.mp4" in first and "▶ 4.00s - 9.00s" in first
    src = first.split('<video class="player" controls preload="metadata" src="')[1].split('"')[0]
    assert src.startswith(f"{NO_S3}/media/videos/shapes.mp4?") and src.endswith("#t=4,9")
    assert "Signature=" in src, "a presigned GET URL"
    assert "fused 0.0492" in first and all(
        f'data-signal="{s}">{s} 1.000' in first for s in ("visual", "audio", "transcription")
    )
    fused = [float(part.split("</span>")[0]) for part in page.split('">fused ')[1:]]
    assert fused == sorted(fused, reverse=True) and len(fused) == 4
    more = page.split('id="more-results" href="')[1].split('"')[0]
    assert "top_k=14" in more.replace("&amp;", "&"), "more results: ten more"

    more_page = fetch(base + more.replace("&amp;", "&"))[2].decode()
    assert more_page.count('<li class="hit"') == 4 and "more-results" not in more_page, "all there is"


@pytest.fixture
def posters(env: dict[str, str]) -> Iterator[Path]:
    """The posters an ingest would have made for the index's video (its 4 s and 9 s segments) and image,
    in the lake the server reads; removed afterwards, so the other tests see none."""
    lake = Path(env["MEDIAEMBED_LAKE_URI"])
    rows = pa.Table.from_pylist(
        [
            {"media_uri": VIDEO, "etag": "etag1", "modality": "video", "start_sec": 4.0},
            {"media_uri": VIDEO, "etag": "etag1", "modality": "video", "start_sec": 9.0},
            {"media_uri": SQUARE, "etag": "etag1", "modality": "image", "start_sec": None},
        ]
    )
    media = {VIDEO: make_video(VIDEO_SCENES["videos/shapes_a.mp4"]), SQUARE: make_image(SHAPE, "png")}
    counts = make_thumbnails(
        location(str(lake)), rows, "marengo-3.0", lambda obj: io.BytesIO(media[obj.media_uri])
    )
    assert (counts.made, counts.problems) == (3, ())
    yield lake / "thumbnails"
    shutil.rmtree(lake / "thumbnails")


def test_each_hit_shows_its_poster_frame_or_a_placeholder_and_the_api_names_it(
    base: str, openapi: dict[str, Any], posters: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = json.loads(fetch(base + "/api/search?" + urlencode({"q": "red circle", "top_k": 10}))[2])
    validate(openapi, "Answer", answer)
    urls = {(h["media_uri"], h["start_sec"]): h["thumbnail_url"] for h in answer["hits"]}
    video, square = media_id(VIDEO), media_id(SQUARE)
    assert urls[(VIDEO, 4.0)] == f"/thumbnails/marengo-3.0/{video}/4000.jpg"
    assert urls[(VIDEO, 9.0)] == f"/thumbnails/marengo-3.0/{video}/9000.jpg"
    assert urls[(SQUARE, None)] == f"/thumbnails/marengo-3.0/{square}/whole.jpg"
    assert urls[(HUM, 0.0)] is None, "audio has no poster"
    assert cli_fields(answer["hits"]) == cli_json(capsys, "red circle", "--top-k", "10")

    status, headers, jpeg = fetch(base + urls[(VIDEO, 4.0)])
    assert (status, headers["content-type"]) == (200, "image/jpeg") and jpeg.startswith(b"\xff\xd8")
    assert HEADERS.items() <= headers.items()
    with av.open(io.BytesIO(jpeg)) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (120, 160, 3) and frame[2, 2].tolist() < [40, 40, 40], "the 4 s scene is black"

    page = fetch(base + "/?" + urlencode({"q": "red circle", "top_k": 10}))[2].decode()
    items = {
        item.split('title="')[1].split('"')[0] + item.split('data-start="')[1].split('"')[0]: item
        for item in page.split('<li class="hit"')[1:]
    }
    assert f'<img class="thumb" src="/thumbnails/marengo-3.0/{video}/4000.jpg"' in items[VIDEO + "4.0"]
    assert '<div class="thumb placeholder" aria-hidden="true">audio</div>' in items[HUM + "0.0"]

    for missing in (
        f"/thumbnails/marengo-3.0/{video}/1000.jpg",
        "/thumbnails/marengo-3.0/..%2F..%2Fx/a.jpg",
        f"/thumbnails/marengo-3.0/{video}/version-0123.jpg",
    ):
        status, headers, body = fetch(base + missing)
        assert (status, headers["content-type"]) == (404, "text/plain; charset=utf-8"), missing
        assert body.decode().count("\n") == 1


def test_without_posters_every_hit_shows_a_placeholder(base: str) -> None:
    answer = json.loads(fetch(base + "/api/search?" + urlencode({"q": "red circle", "top_k": 10}))[2])
    assert [h["thumbnail_url"] for h in answer["hits"]] == [None] * len(answer["hits"])
    page = fetch(base + "/?" + urlencode({"q": "red circle", "top_k": 10}))[2].decode()
    assert page.count('<div class="thumb placeholder"') == page.count('<li class="hit"') > 0
    assert '<img class="thumb"' not in page


def test_the_page_has_an_empty_state_a_no_results_state_and_an_error_state(env: dict[str, str]) -> None:
    class Nothing:
        def search_text(self, text: str, limit: int) -> Sequence[TextHit]:
            return []

    with running(Searcher(SearchSettings.from_env(os.environ), text_source=Nothing())) as url:
        empty = fetch(url + "/")[2].decode()
        none = fetch(url + "/?" + urlencode({"q": "red circle", "mode": "text"}))[2].decode()
        status, _, raw = fetch(url + "/?" + urlencode({"q": "red circle", "mode": "fuzzy"}))
    assert 'id="empty-state"' in empty and '<li class="hit"' not in empty
    assert 'id="no-results"' in none and "Nothing matched “red circle”" in none
    line = raw.decode().split('<p class="error" role="alert">')[1].split("</p>")[0]
    assert status == 400 and line.startswith("--mode must be one of") and "\n" not in line


def test_the_page_escapes_what_it_is_given(base: str) -> None:
    payload = '"><script>alert(1)</script>'
    page = fetch(base + "/?" + urlencode({"q": payload}))[2].decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_every_response_has_the_security_headers_and_one_access_line(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mediaembed.web.access")
    paths = ["/", "/?q=red+circle", "/api/search?q=red+circle", "/api/openapi.json", "/static/search.css"]
    paths += ["/nowhere"]
    with running(Searcher.from_env(os.environ)) as base:
        for path in paths:
            headers = fetch(base + path)[1]
            assert HEADERS.items() <= headers.items(), path
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
    # Read once the server has stopped: a line is written when its response is done, which may be just
    # after the client has read it.
    lines = [r.getMessage() for r in caplog.records if r.name == "mediaembed.web.access"]
    assert len(lines) == len(paths), lines
    [api] = [line for line in lines if '"GET /api/search HTTP/1.1" 200 ' in line]
    assert "red" not in api and api.endswith("ms"), "no query in the log, and how long it took"
    assert sum('"GET /nowhere HTTP/1.1" 404 ' in line for line in lines) == 1


def test_an_unexpected_error_is_one_line_and_never_a_traceback(
    env: dict[str, str], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    class Broken:
        def search_text(self, text: str, limit: int) -> Sequence[TextHit]:
            raise ZeroDivisionError("the text index divided by zero")

    caplog.set_level(logging.INFO, logger="mediaembed.web")
    with running(Searcher(SearchSettings.from_env(os.environ), text_source=Broken())) as url:
        status, headers, body = fetch(url + "/api/search?q=red&mode=text")
        page_status, _, page = fetch(url + "/?q=red&mode=text")
    assert status == 500 and HEADERS.items() <= headers.items()
    assert json.loads(body) == {
        "error": "unexpected ZeroDivisionError: the text index divided by zero "
        "(MEDIAEMBED_DEBUG=1 logs the traceback)"
    }
    assert page_status == 500 and page.decode().count("\n") == 1
    logged = "\n".join(r.getMessage() for r in caplog.records) + "".join(capfd.readouterr())
    assert "Traceback" not in logged and all(r.exc_info is None for r in caplog.records)
    assert "unexpected ZeroDivisionError" in logged


class Gate:
    """A text source that holds every search until released: a request in flight, for as long as asked."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def search_text(self, text: str, limit: int) -> Sequence[TextHit]:
        self.entered.set()
        assert self.release.wait(60), "never released"
        return CHAPTERS.hits


def test_a_search_in_flight_and_an_idle_connection_hold_no_other_request(env: dict[str, str]) -> None:
    gate = Gate()
    with running(Searcher(SearchSettings.from_env(os.environ), text_source=gate)) as url:
        held: list[int] = []
        slow = threading.Thread(target=lambda: held.append(fetch(url + "/api/search?q=red&mode=text")[0]))
        slow.start()
        assert gate.entered.wait(60)
        port = urlparse(url).port
        with socket.create_connection(("127.0.0.1", port)):  # connected, silent
            status, _, body = fetch(url + "/api/search?q=red+circle")
            assert status == 200 and json.loads(body)["hits"]
            assert slow.is_alive() and not held, "answered while the other search is still in flight"
        gate.release.set()
        slow.join(60)
    assert held == [200]


def test_a_stop_lets_the_search_in_flight_finish(env: dict[str, str]) -> None:
    gate = Gate()
    held: list[int] = []
    with running(Searcher(SearchSettings.from_env(os.environ), text_source=gate)) as url:
        slow = threading.Thread(target=lambda: held.append(fetch(url + "/api/search?q=red&mode=text")[0]))
        slow.start()
        assert gate.entered.wait(60)
        threading.Timer(0.5, gate.release.set).start()  # released while the server is stopping
    slow.join(60)
    assert held == [200], "the stop waited for the search in flight"


def test_the_token_guards_everything_but_the_api_description(env: dict[str, str]) -> None:
    with running(Searcher.from_env(os.environ), token="s3cret") as url:
        for path in ("/api/search?q=red", "/"):
            status, headers, body = fetch(url + path)
            assert status == 401 and headers["www-authenticate"].startswith("Bearer")
            assert "MEDIAEMBED_API_TOKEN" in json.loads(body)["error"]
        assert fetch(url + "/api/search?q=red", headers={"Authorization": "Bearer wrong"})[0] == 401
        assert fetch(url + "/api/search?q=red", headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert fetch(url + "/api/openapi.json")[0] == 200


def test_another_address_without_a_token_is_refused_in_one_line(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, "")
    with pytest.raises(BindRefused, match="MEDIAEMBED_API_TOKEN"):
        check_bind("0.0.0.0", "")
    check_bind("0.0.0.0", "s3cret")
    monkeypatch.delenv("MEDIAEMBED_API_TOKEN", raising=False)
    assert cli(["serve", "--host", "0.0.0.0", "--port", "0"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert "refusing to serve on 0.0.0.0 without MEDIAEMBED_API_TOKEN" in err and "--host 127.0.0.1" in err


@pytest.mark.parametrize(
    ("stop", "workers"),
    [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGTERM, 2), (signal.SIGTERM, None)],
)
def test_serve_stops_cleanly_on_sigterm_and_sigint(
    env: dict[str, str], stop: signal.Signals, workers: int | None
) -> None:
    """Without --workers, one process per core serves the port (a single one serves when there is one)."""
    flag = [] if workers is None else ["--workers", str(workers)]
    process = subprocess.Popen(
        [sys.executable, "-m", "mediaembed.cli", "serve", "--port", "0", *flag],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("mediaembed serve: searching at http://127.0.0.1:"), line
        url = line.split("searching at ")[1].split()[0].rstrip("/")
        assert fetch(url + "/api/search?q=red+circle")[0] == 200
        serving = workers or default_workers()
        assert len(server_workers(process.pid)) == (serving if serving > 1 else 0)
        connection = http.client.HTTPConnection(urlparse(url).hostname, urlparse(url).port, timeout=30)
        connection.connect()  # an idle keep-alive connection must not hold the stop
        process.send_signal(stop)
        _, err = process.communicate(timeout=60)
        connection.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in err, err
    assert [line for line in err.splitlines() if "access" not in line and '"GET' not in line] == [], err


def server_workers(pid: int) -> list[psutil.Process]:
    """The worker processes a `mediaembed serve` supervisor runs (multiprocessing's spawned children; its
    resource tracker aside)."""
    return [
        child
        for child in psutil.Process(pid).children()
        if "spawn_main" in " ".join(child.cmdline()) and "resource_tracker" not in " ".join(child.cmdline())
    ]


def test_workers_below_one_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["serve", "--port", "0", "--workers", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "mediaembed serve: --workers 0: pass 1 or more processes\n"
