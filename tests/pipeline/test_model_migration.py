"""A model migration on the emulators: search is served by the old version until the new one is complete
and checked, then cut over atomically, and rolled back in one step."""

import io
import json
from contextlib import redirect_stderr, redirect_stdout

import pytest

from emulators.sample_media import SampleObject
from mediaembed.cli import main as cli
from mediaembed.runner import SensorDriver, run_job
from resources.marengo_models import MARENGO_2_7, MARENGO_3_0
from tests.pipeline.conftest import World


def search_json(text: str, top_k: int = 3) -> list[dict]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert cli(["search", text, "--top-k", str(top_k), "--json"]) == 0, err.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def serving() -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["serving", "--json"]) == 0
    return json.loads(out.getvalue())


def scene_answers(videos: list[SampleObject], model_key: str) -> None:
    """Every scene of every sample video is the top hit for its words, from `model_key`, at its seconds."""
    for video in videos:
        for scene in video.scenes:
            [top] = search_json(f"{scene.color} {scene.shape}", top_k=1)
            assert top["model"] == model_key
            assert top["media_uri"] == f"s3://media/{video.key}"
            assert (top["start_sec"], top["end_sec"]) == (scene.start_sec, scene.end_sec)


def embed(world: World, model_key: str, between_ticks: object = None) -> SensorDriver:
    run_job(world.instance, "embed_new_media", model_key)
    driver = SensorDriver(world.instance)
    driver.drain(world.lake, progress=between_ticks)  # type: ignore[arg-type]
    return driver


@pytest.fixture
def on_2_7(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """A library embedded with 2.7, which serves search (the lake's initial version)."""
    monkeypatch.setenv("MEDIAEMBED_SERVING_VERSION", MARENGO_2_7.key)
    embed(world, MARENGO_2_7.key)
    return world


def test_backfill_keeps_2_7_serving_until_cut_over_then_rollback_returns_it(on_2_7: World) -> None:
    world = on_2_7
    videos = [s for s in world.samples if s.modality == "video"]
    assert serving()["serving"] == MARENGO_2_7.key
    scene_answers(videos, MARENGO_2_7.key)

    # The 3.0 backfill: between every sensor tick search still answers, only ever from 2.7.
    seen: list[set[str]] = []
    embed(world, MARENGO_3_0.key, lambda _: seen.append({h["model"] for h in search_json("red circle", 5)}))
    assert seen and all(models == {MARENGO_2_7.key} for models in seen), seen
    scene_answers(videos, MARENGO_2_7.key)

    assert cli(["serving", "cut-over", MARENGO_3_0.key, "--by", "tester"]) == 0
    state = serving()
    assert (state["serving"], state["previous"], state["by"]) == (MARENGO_3_0.key, MARENGO_2_7.key, "tester")
    scene_answers(videos, MARENGO_3_0.key)

    assert cli(["serving", "roll-back"]) == 0
    assert serving()["serving"] == MARENGO_2_7.key
    scene_answers(videos, MARENGO_2_7.key)  # no re-embedding: the 2.7 tables were kept
    assert [h["action"] for h in serving()["history"]] == ["cut_over", "rollback"]
