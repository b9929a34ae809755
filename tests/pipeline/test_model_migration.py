"""A model migration on the emulators: search is served by the old version until the new one is complete
and checked, then cut over atomically, and rolled back in one step."""

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout

import dagster as dg
import pytest

from emulators.sample_media import SampleObject
from harness.runner import SensorDriver, run_job
from mediaembed.cli import main as cli
from pipelines.definitions import pipeline_resources
from pipelines.schedules import embed_new_media_schedule
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0, MARENGO_3_5
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_schema import media_id
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


def cli_err(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        code = cli(list(argv))
    return code, err.getvalue()


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

    # An object 2.7 serves that the 3.0 backfill misses (its rows gone from the table and the index) blocks
    # the cut-over by name; the sample's corrupt video, which no version can embed, does not.
    hum = "s3://media/audio/hum_220hz.wav"
    rows = EmbeddingTable(world.lake, MARENGO_3_0).read([media_id(hum)])
    assert rows.num_rows
    with dg.build_resources({"segment_index": pipeline_resources["segment_index"]}) as built:
        EmbeddingTable(world.lake, MARENGO_3_0).delete([media_id(hum)])
        built.segment_index.replace_media(MARENGO_3_0, rows.slice(0, 0), [media_id(hum)])
        code, err = cli_err("serving", "cut-over", MARENGO_3_0.key)
        ours = [line for line in err.splitlines() if line.startswith("mediaembed")]  # Dagster's banner aside
        assert code == 1 and len(ours) == 1 and "Traceback" not in err, err
        assert f"covers_every_eligible_object: 1 objects of 7 have no current {MARENGO_3_0.key}" in err, err
        assert hum in err and "corrupt.mp4" not in err, err
        refused = checked_coverage(err.rsplit("(run ", 1)[1].split(")")[0])
        why = str(refused.metadata["failures"].value)
        assert f"`{hum}`: the serving version marengo-2.7 holds it at this ETag" in why, why
        assert serving()["serving"] == MARENGO_2_7.key and serving()["history"] == []
        scene_answers(videos[:1], MARENGO_2_7.key)
        EmbeddingTable(world.lake, MARENGO_3_0).replace(rows, [media_id(hum)])
        built.segment_index.replace_media(MARENGO_3_0, rows, [media_id(hum)])

    # Whole again: the cut-over proceeds with the corrupt video still in the library, listed by the check.
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["serving", "cut-over", MARENGO_3_0.key, "--by", "tester"]) == 0
    run_id = out.getvalue().rsplit("(run ", 1)[1].split(")")[0]
    coverage = checked_coverage(run_id)
    assert coverage.passed and coverage.metadata["cannot_be_embedded_count"].value == 2
    listed = str(coverage.metadata["cannot_be_embedded"].value)
    assert "`s3://media/videos/corrupt.mp4`: corrupt: cannot decode video" in listed, listed
    assert "`s3://media/docs/notes.txt`: unsupported" in listed, listed
    assert coverage.description and "s3://media/videos/corrupt.mp4 (corrupt:" in coverage.description
    assert coverage.metadata["compared_with"].value == MARENGO_2_7.key
    state = serving()
    assert (state["serving"], state["previous"], state["by"]) == (MARENGO_3_0.key, MARENGO_2_7.key, "tester")
    scene_answers(videos, MARENGO_3_0.key)

    assert cli(["serving", "roll-back", "--by", "ops"]) == 0
    assert (serving()["serving"], serving()["by"]) == (MARENGO_2_7.key, "ops")
    scene_answers(videos, MARENGO_2_7.key)  # no re-embedding: the 2.7 tables were kept
    assert [h["action"] for h in serving()["history"]] == ["cut_over", "rollback"]


def checked_coverage(run_id: str) -> dg.AssetCheckEvaluation:
    """The coverage check's evaluation in a run of the instance the commands use (DAGSTER_HOME)."""
    with dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"]) as instance:
        events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    [evaluation] = [
        e.dagster_event.asset_check_evaluation_data
        for e in events
        if e.dagster_event is not None
        and e.dagster_event.asset_check_evaluation_data.check_name == "covers_every_eligible_object"
    ]
    return evaluation


def scheduled_run(world: World) -> str:
    """What the 15-minute schedule does: inventory and submit for the version the lake says serves."""
    resources = {n: pipeline_resources[n] for n in ("lake", "media_events")}
    with dg.build_schedule_context(resources=resources) as context:
        request = embed_new_media_schedule(context)
    assert isinstance(request, dg.RunRequest) and request.partition_key
    run_job(world.instance, "embed_new_media", request.partition_key)
    return request.partition_key


def test_3_0_on_bedrock_to_3_5_on_twelvelabs_with_new_media_kept_up_for_both(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIAEMBED_PROVIDERS", "marengo-3.0=bedrock,marengo-3.5=twelvelabs")
    videos = [s for s in world.samples if s.modality == "video"]
    assert scheduled_run(world) == MARENGO_3_0.key  # nothing recorded yet: the initial version
    SensorDriver(world.instance).drain(world.lake)
    scene_answers(videos, MARENGO_3_0.key)

    seen: list[set[str]] = []
    embed(world, MARENGO_3_5.key, lambda _: seen.append({h["model"] for h in search_json("blue square", 5)}))
    assert seen and all(models == {MARENGO_3_0.key} for models in seen), seen
    assert world.stack.twelvelabs.created_tasks > 0 and world.stack.bedrock.created_invocations > 0

    # New media arrive during the migration: the schedule submits them for the serving version, and the
    # sensor sees the inventory change and submits them for the target too.
    late = next(s for s in world.samples if s.key == "images/purple_circle.jpg")
    world.stack.s3.client().put_object(Bucket="media", Key="late/purple_circle.jpg", Body=late.data)
    assert scheduled_run(world) == MARENGO_3_0.key
    SensorDriver(world.instance).drain(world.lake)
    for model in (MARENGO_3_0, MARENGO_3_5):
        assert "s3://media/late/purple_circle.jpg" in EmbeddingTable(world.lake, model).media_uris().values()

    assert cli(["serving", "cut-over", MARENGO_3_5.key]) == 0
    scene_answers(videos, MARENGO_3_5.key)
    assert scheduled_run(world) == MARENGO_3_5.key, "the schedule follows the cut-over"
    twins = {"s3://media/late/purple_circle.jpg", "s3://media/images/purple_circle.jpg"}  # same picture
    for model in (MARENGO_3_5.key, MARENGO_3_0.key):  # after the cut-over, then after the rollback
        hits = search_json("purple circle", top_k=2)
        assert {h["media_uri"] for h in hits} == twins and {h["model"] for h in hits} == {model}
        if model == MARENGO_3_5.key:
            assert cli(["serving", "roll-back"]) == 0

    # Retiring 3.5 (it no longer serves): the sensor stops submitting new media for it.
    assert cli(["serving", "retire", MARENGO_3_5.key]) == 0
    assert serving()["retired"] == [MARENGO_3_5.key] and serving()["previous"] is None
    world.stack.s3.client().put_object(Bucket="media", Key="late/second.jpg", Body=late.data)
    created = world.stack.twelvelabs.created_tasks
    assert scheduled_run(world) == MARENGO_3_0.key
    SensorDriver(world.instance).drain(world.lake)
    assert "s3://media/late/second.jpg" in EmbeddingTable(world.lake, MARENGO_3_0).media_uris().values()
    assert world.stack.twelvelabs.created_tasks == created, "nothing new for a retired version"
