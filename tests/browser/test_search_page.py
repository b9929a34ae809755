"""The search page as a person uses it, in Debian's chromium (Playwright's Python package driving
/usr/bin/chromium, never its own browser download): a text search, a hit's play button seeking the inline
player to the span's start, an image upload query, and the page's own API answering what the CLI's `--json`
prints for the same query.

The server is `mediaembed serve` (in this process, on a free loopback port) over an index of the fused-search
test's rows, whose media are real files on the S3 emulator, so the player loads the presigned URL the page
gives it. Screenshots go to `test-artifacts/` (git-ignored) for CI to keep.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.s3 import S3Emulator
from emulators.sample_media import (
    AUDIO_TONES,
    IMAGE_SCENES,
    VIDEO_SCENES,
    make_audio,
    make_image,
    make_video,
)
from mediaembed.cli import main as cli
from mediaembed.search import Searcher
from mediaembed.web.server import running
from resources.media.thumbnails import make_thumbnails, s3_media_opener
from resources.providers.bedrock.client import runtime_client
from resources.storage.location import location

# The same chromium and playwright gate as the UI tests (skips this module without them).
from tests.browser.test_ui_backfill import ARTIFACTS, CHROMIUM, PAGE_MS, sync_api
from tests.pipeline.test_fused_search import HUM, REGION, ROWS, SQUARE, VIDEO, _index

SPAN_START = 4.0  # the 4-9 s segment of VIDEO is the best match for "red circle"


@dataclass
class Site:
    url: str
    image: Path


def _key(uri: str) -> str:
    return uri.removeprefix("s3://media/")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("search_page")
    s3 = S3Emulator(region=REGION).start()
    bedrock = BedrockRuntimeEmulator(s3.endpoint, region=REGION).start()
    image = make_image(IMAGE_SCENES["images/green_triangle.png"], "png")
    (root / "green_triangle.png").write_bytes(image)
    try:
        client = s3.client()
        client.create_bucket(Bucket="media")
        hz, seconds = AUDIO_TONES["audio/hum_220hz.wav"]
        bodies = {
            VIDEO: (make_video(VIDEO_SCENES["videos/shapes_a.mp4"]), "video/mp4"),
            HUM: (make_audio(hz, seconds, "wav"), "audio/wav"),
            SQUARE: (image, "image/png"),
        }
        for uri, (body, kind) in bodies.items():
            client.put_object(Bucket="media", Key=_key(uri), Body=body, ContentType=kind)
        with pytest.MonkeyPatch.context() as patch:
            env = {
                "MEDIAEMBED_INDEX_URI": str(root / "index"),
                "MEDIAEMBED_LAKE_URI": str(root / "lake"),  # no serving record: the initial 3.0
                "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.endpoint,
                "AWS_ENDPOINT_URL_S3": s3.endpoint,
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_CONFIG_FILE": "/nonexistent/aws-config",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
            }
            for name, value in env.items():
                patch.setenv(name, value)
            for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "MEDIAEMBED_API_TOKEN"):
                patch.delenv(name, raising=False)
            _index(runtime_client(REGION, bedrock.endpoint, "standard", 3), root / "index")
            _posters(client, root / "lake")
            with running(Searcher.from_env(env)) as url:
                yield Site(url, root / "green_triangle.png")
    finally:
        bedrock.stop()
        s3.stop()


def _posters(client: Any, lake: Path) -> None:
    """The posters an ingest makes of the index's rows, read from the S3 emulator as the ingest reads."""
    modality = {VIDEO: "video", HUM: "audio", SQUARE: "image"}
    rows = pa.Table.from_pylist(
        [
            {
                "media_uri": uri,
                "etag": client.head_object(Bucket="media", Key=_key(uri))["ETag"].strip('"'),
                "modality": modality[uri],
                "start_sec": start,
            }
            for uri, _, _, _, start, _ in ROWS
        ]
    )
    counts = make_thumbnails(location(str(lake)), rows, "marengo-3.0", s3_media_opener(lambda: client))
    assert (counts.objects, counts.problems) == (2, ()), "the video and the image; audio has none"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    opened = browser.new_page(viewport={"width": 1100, "height": 900})
    opened.set_default_timeout(PAGE_MS)
    problems: list[str] = []
    opened.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    yield opened
    opened.close()
    csp = [p for p in problems if "Content Security Policy" in p]
    assert not csp, f"the page broke its own Content-Security-Policy: {csp}"


def _search(page: Any, base: str, text: str) -> None:
    page.goto(base + "/")
    assert page.locator("#empty-state").is_visible(), "the empty state before a query"
    page.fill("input[name=q]", text)
    page.click("button[type=submit]")
    page.wait_for_selector("li.hit")
    assert "q=" + text.replace(" ", "+") in page.url, "a text search has an address to keep"


def test_a_search_shows_the_best_span_first_with_its_fused_and_signal_scores(page: Any, site: Site) -> None:
    _search(page, site.url, "red circle")
    first = page.locator("li.hit").first
    assert first.locator(".name").inner_text() == "shapes.mp4"
    assert first.locator("button.play").inner_text().endswith("4.00s - 9.00s")
    assert first.locator(".fused").inner_text().startswith("fused 0.04")
    signals = first.locator(".signal").all_inner_texts()
    assert [s.split()[0] for s in signals] == ["visual", "audio", "transcription"], signals
    fused = [float(t.split()[1]) for t in page.locator(".fused").all_inner_texts()]
    assert fused == sorted(fused, reverse=True) and len(fused) >= 3
    poster = first.locator("img.thumb")
    page.wait_for_function("img => img.complete", arg=poster.element_handle(), timeout=PAGE_MS)
    assert poster.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [160, 120], "the poster loaded"
    hum = page.locator("li.hit", has=page.locator(".name", has_text="hum.wav"))
    assert hum.locator(".thumb.placeholder").inner_text() == "audio"
    page.screenshot(path=str(ARTIFACTS / "search_page_results.png"), full_page=True)


def test_the_play_button_seeks_the_inline_player_to_the_spans_start(page: Any, site: Site) -> None:
    _search(page, site.url, "red circle")
    first = page.locator("li.hit").first
    player = first.locator("video.player")
    assert player.get_attribute("src").endswith("#t=4,9")
    first.locator("button.play").click()
    page.wait_for_function(
        "el => el.readyState >= 1 && !el.error", arg=player.element_handle(), timeout=PAGE_MS
    )
    current = float(player.evaluate("el => el.currentTime"))
    assert abs(current - SPAN_START) <= 0.5, current
    assert player.evaluate("el => el.duration") > 9, "the whole video loaded from the presigned URL"
    page.screenshot(path=str(ARTIFACTS / "search_page_playing.png"), full_page=True)


def test_an_image_upload_finds_hits(page: Any, site: Site) -> None:
    page.goto(site.url + "/")
    page.set_input_files("input[name=image]", str(site.image))
    page.click("button[type=submit]")
    page.wait_for_selector("li.hit")
    assert "green_triangle.png" in page.locator(".summary").inner_text()
    assert page.locator("li.hit").count() >= 1 and not page.locator(".error").count()
    page.screenshot(path=str(ARTIFACTS / "search_page_image_query.png"), full_page=True)


def test_the_api_answers_what_the_cli_prints(
    page: Any, site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    page.goto(site.url + "/")
    answer = page.evaluate(
        "() => fetch('/api/search?q=' + encodeURIComponent('red circle') + '&top_k=4').then(r => r.json())"
    )
    assert cli(["search", "red circle", "--top-k", "4", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert answer["version"] == "marengo-3.0"
    without_thumbnails = [{k: v for k, v in h.items() if k != "thumbnail_url"} for h in answer["hits"]]
    assert without_thumbnails == [json.loads(line) for line in out.splitlines()], "thumbnail_url: API only"
    (ARTIFACTS / "search_page_api_answer.json").write_text(json.dumps(answer, indent=2) + "\n")
