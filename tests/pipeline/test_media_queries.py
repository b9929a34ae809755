"""Searching by images and sound, end to end: the pipeline embeds the sample library, then queries that carry
an image (on S3 or a local file), text with an image, several images, or a clip find the right object, with
either provider embedding the query (the emulators share one content-derived space)."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from harness.runner import SensorDriver, run_job
from mediaembed.cli import main as cli
from mediaembed.search import Searcher
from resources.providers.bedrock.client import embed_query as bedrock_embed_query
from resources.providers.bedrock.client import runtime_client
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.providers.model_routes import route
from resources.providers.twelvelabs.client import api_client
from resources.providers.twelvelabs.client import embed_query as twelvelabs_embed_query
from resources.search.marengo_query import MarengoQuery
from tests.pipeline.conftest import World

TRIANGLE = "s3://media/images/green_triangle.png"
CIRCLE = "s3://media/images/purple_circle.jpg"
HUM = "s3://media/audio/hum_220hz.wav"


def search(*args: str) -> tuple[int, list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(["search", *args, "--json"])
    return code, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


@pytest.fixture
def embedded(world: World) -> World:
    run_job(world.instance, "embed_new_media", MARENGO_3_0.key)
    world.stack.bedrock.wait_until_idle(timeout=60)
    SensorDriver(world.instance).tick()
    return world


@pytest.mark.parametrize("provider", ["bedrock", "twelvelabs"])
def test_an_image_finds_itself_by_s3_uri_and_as_a_local_file(
    embedded: World, provider: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIAEMBED_PROVIDERS", f"marengo-3.0={provider}")
    local = tmp_path / "triangle.png"
    local.write_bytes(embedded.sample("images/green_triangle.png").data)
    before = embedded.stack.twelvelabs.calls.copy() if provider == "twelvelabs" else None
    for spec in (TRIANGLE, str(local)):
        code, hits, err = search("--image", spec, "--top-k", "1")
        assert (code, err) == (0, "")
        assert hits[0]["media_uri"] == TRIANGLE and hits[0]["score"] > 0.99, spec
    if before is not None:
        assert embedded.stack.twelvelabs.calls != before, "the TwelveLabs API embedded the query"


def test_text_with_an_image_and_several_images_search_by_both(
    embedded: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, hits, _ = search("a green triangle", "--image", TRIANGLE, "--top-k", "3")
    assert code == 0 and TRIANGLE in [h["media_uri"] for h in hits], "Bedrock text_image"
    monkeypatch.setenv("MEDIAEMBED_PROVIDERS", "marengo-3.0=twelvelabs")
    code, hits, _ = search("--image", TRIANGLE, "--image", CIRCLE, "--top-k", "5")
    found = [h["media_uri"] for h in hits]
    assert code == 0 and TRIANGLE in found and CIRCLE in found, "TwelveLabs multi_input of two images"
    monkeypatch.setenv("MEDIAEMBED_PROVIDERS", "marengo-3.0=bedrock")
    code, hits, err = search("--image", TRIANGLE, "--image", CIRCLE)
    assert code == 2 and hits == [] and "not multi_input" in err and len(err.splitlines()) == 1


def test_a_clip_finds_the_audio_it_came_from(embedded: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIAEMBED_PROVIDERS", "marengo-3.0=twelvelabs")
    code, hits, err = search("--audio", HUM, "--top-k", "1")
    assert (code, err) == (0, "")
    assert hits[0]["media_uri"] == HUM
    monkeypatch.setenv("MEDIAEMBED_PROVIDERS", "marengo-3.0=bedrock")
    code, _, err = search("--audio", HUM)
    assert code == 2 and "not audio" in err and "TwelveLabs API" in err


def test_bad_media_in_a_query_is_one_line_naming_it(embedded: World, tmp_path: Path) -> None:
    for spec, reason in [
        ("s3://media/images/none.png", "no such object"),
        (str(tmp_path / "missing.png"), "No such file"),
    ]:
        code, hits, err = search("--image", spec)
        assert code == 2 and hits == [] and spec in err and reason in err and len(err.splitlines()) == 1


def test_the_legacy_2_7_text_call_lands_in_bedrock_2_7s_space(embedded: World) -> None:
    """The TwelveLabs API's Marengo-retrieval-2.7 (multipart, text_truncate) and Bedrock's 2.7 InvokeModel
    embed a text into the same 1024-d space."""
    settings = Searcher.from_env().settings
    stack = embedded.stack
    query = MarengoQuery("a red circle", text_truncate="none")
    legacy = twelvelabs_embed_query(
        api_client(stack.twelvelabs.api_key, stack.twelvelabs_base_url),
        route("twelvelabs", MARENGO_2_7.key),
        query,
        lambda uri: uri,
    )
    bedrock = bedrock_embed_query(
        runtime_client(settings.region, None, "standard", 3),
        route("bedrock", MARENGO_2_7.key),
        "us-east-1",
        query,
    )
    assert len(legacy) == MARENGO_2_7.dimension
    assert np.allclose(legacy, bedrock, atol=1e-6)
