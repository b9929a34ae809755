"""The whole chain on the emulators: inventory, StartAsyncInvoke, sensor, Parquet, LanceDB, search.

The tests that only read what one embedding pass left share the module's `embedded_world`; those that run
the pipeline again, change media or inject faults get their own `world`."""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from assets_defs import keys
from assets_defs.inventory.media_inventory import read_inventory
from harness.runner import SensorDriver, materialization_metadata, run_job
from resources.providers.marengo_models import MARENGO_3_0
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_schema import media_id
from resources.tables.submission_ledger import SubmissionLedger
from tests.pipeline.conftest import (
    SECRET,
    USABLE,
    EmbeddedWorld,
    World,
    ingest_when_idle,
    search_json,
    submit,
)

UNUSABLE = {"s3://media/videos/corrupt.mp4": "unreadable", "s3://media/docs/notes.txt": "unsupported"}


def test_scene_search_returns_the_right_video_and_seconds(embedded_world: EmbeddedWorld) -> None:
    world, submitted = embedded_world, embedded_world.submitted
    inventory = read_inventory(world.lake).set_index("media_uri")
    assert (inventory["status"] == "ok").sum() == USABLE
    for uri, status in UNUSABLE.items():
        assert inventory.loc[uri, "status"] == status
        assert inventory.loc[uri, "reason"], f"{uri} must carry a reason"
    for sample in world.samples:
        assert inventory.loc[f"s3://media/{sample.key}", "content_type"] == sample.content_type
    assert submitted["submitted"] == USABLE and submitted["rejected"] == 0

    driver = world.ingest
    assert len(driver.results) == 1, "one finished batch -> one ingest run"
    ingest = materialization_metadata(driver.results[0], ["marengo", "embeddings"])
    assert ingest["objects_embedded"] == USABLE and ingest["objects_failed"] == 0
    checks = driver.results[0].get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks), [(c.check_name, c.passed) for c in checks]
    assert SubmissionLedger(world.lake, None).in_progress().empty

    videos = [s for s in world.samples if s.modality == "video"]
    for video in videos:
        for scene in video.scenes:
            [top] = search_json(f"{scene.color} {scene.shape}", top_k=1)
            assert set(top) == {
                "rank",
                "media_uri",
                "start_sec",
                "end_sec",
                "score",
                "fused_score",
                "model",
                "signals",
                "signal_scores",
                "snippet",
                "embedding_option",
                "embedding_type",
                "embedding_scope",
            }
            assert (top["signals"], top["snippet"]) == (["visual"], None)
            assert top["signal_scores"]["visual"] == top["score"], "the one signal: its score ranked it"
            assert (top["embedding_option"], top["embedding_type"], top["embedding_scope"]) == (
                "visual",
                "separate",
                "clip",
            )
            assert top["media_uri"] == f"s3://media/{video.key}"
            assert (top["start_sec"], top["end_sec"]) == (scene.start_sec, scene.end_sec)
            assert top["model"] == MARENGO_3_0.key


def test_rerun_on_unchanged_media_submits_nothing(world: World) -> None:
    assert submit(world)["submitted"] == USABLE
    ingest_when_idle(world)
    created = world.stack.bedrock.created_invocations

    again = submit(world)
    assert (again["submitted"], again["already_handled"]) == (0, USABLE)
    assert world.stack.bedrock.created_invocations == created
    assert SensorDriver(world.instance).tick() == 0, "nothing in flight, nothing to ingest"


def test_changed_object_is_re_embedded_and_replaces_its_rows(world: World) -> None:
    submit(world)
    ingest_when_idle(world)
    # A manual materialization from the UI: nothing new to ingest, the index reports its size.
    manual = run_job(world.instance, "ingest_marengo_embeddings", MARENGO_3_0.key)
    nothing_new = materialization_metadata(manual, ["marengo", "embeddings"])
    assert nothing_new["invocations_finished"] == 0
    rows_before = materialization_metadata(manual, ["search", "marengo_segments"])["dagster/row_count"]
    # The row count is the table's, whatever this run wrote: a run that wrote nothing shows the table.
    table_rows = EmbeddingTable(world.lake, MARENGO_3_0).read().num_rows
    assert (nothing_new["dagster/row_count"], nothing_new["rows_written"]) == (table_rows, 0)
    assert table_rows == rows_before > USABLE
    [before] = search_json("green triangle", top_k=1)
    assert before["media_uri"] == "s3://media/images/green_triangle.png"

    # The object under the same key now holds a purple circle: a new ETag, so a new job.
    purple = world.sample("images/purple_circle.jpg")
    world.stack.s3.client().put_object(Bucket="media", Key="images/green_triangle.png", Body=purple.data)
    assert submit(world)["submitted"] == 1
    driver = ingest_when_idle(world)
    index = materialization_metadata(driver.results[0], ["search", "marengo_segments"])
    assert index["objects_updated"] == 1 and index["dagster/row_count"] == rows_before
    replaced = materialization_metadata(driver.results[0], ["marengo", "embeddings"])
    table_rows = EmbeddingTable(world.lake, MARENGO_3_0).read().num_rows
    assert replaced["dagster/row_count"] == table_rows == rows_before
    assert 0 < replaced["rows_written"] < table_rows, "this run's rows are a separate figure"
    top_two = {hit["media_uri"] for hit in search_json("purple circle", top_k=2)}
    assert top_two == {"s3://media/images/green_triangle.png", "s3://media/images/purple_circle.jpg"}
    [after] = search_json("green triangle", top_k=1)
    assert after["media_uri"] != "s3://media/images/green_triangle.png"


def test_failed_invocations_are_recorded_and_retried_with_a_new_token(world: World) -> None:
    world.stack.bedrock.failure_rate = 1.0
    assert submit(world)["submitted"] == USABLE
    driver = ingest_when_idle(world)
    ingest = materialization_metadata(driver.results[0], ["marengo", "embeddings"])
    assert (ingest["objects_embedded"], ingest["objects_failed"]) == (0, USABLE)
    failed = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    assert set(failed["status"]) == {"failed"} and failed["reason"].str.contains("injected").all()

    world.stack.bedrock.failure_rate = 0.0
    retry = submit(world)
    assert retry["submitted"] == USABLE
    ingest_when_idle(world)
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    assert sorted(jobs["status"].value_counts().items()) == [("completed", USABLE), ("failed", USABLE)]
    assert submit(world)["submitted"] == 0


def test_quota_defers_the_rest_without_failing(world: World) -> None:
    """More usable objects than Bedrock takes at once: a run that does not hold the quota stops at the
    refusal without failing; the invocation sensor submits the rest as jobs finish, and a holding run
    submits as they finish (tests/pipeline/test_completion_driven.py)."""
    world.stack.bedrock.max_concurrent_invocations = 3
    # The three jobs run until the emulator stops (its timers are cancelled then): the fourth request is
    # refused however slowly this machine submits, not only when it submits within the jobs' run time.
    world.stack.bedrock.latency_sec = 3600.0
    first = submit(world, hold_quota_sec=0)
    assert first["submitted"] == 3 and first["deferred"] == USABLE - 3
    assert "ServiceQuotaExceededException" in first["deferred_reason"]
    capped = submit(world, max_in_flight=3, hold_quota_sec=0)
    assert (capped["submitted"], capped["deferred"], capped["in_flight_before"]) == (0, USABLE - 3, 3)
    assert world.stack.bedrock.created_invocations == 3


def test_lake_and_index_on_s3(s3_lake_world: World) -> None:
    world = s3_lake_world
    assert submit(world)["submitted"] == USABLE
    driver = ingest_when_idle(world)
    index = materialization_metadata(driver.results[0], ["search", "marengo_segments"])
    assert index["dagster/row_count"] > USABLE
    [top] = search_json("yellow triangle", top_k=1)
    assert (top["media_uri"], top["start_sec"], top["end_sec"]) == (
        "s3://media/videos/shapes_a.mp4",
        4.0,
        9.0,
    )
    keys = [o["Key"] for o in world.stack.s3.client().list_objects_v2(Bucket="lake")["Contents"]]
    assert "warehouse/tables/marengo_embeddings/marengo-3.0/_delta_log/00000000000000000001.json" in keys
    assert any(k.startswith("lancedb/segments_marengo_3_0.lance/") for k in keys)
    # Poster frames beside the tables, in the lake's bucket: the video's segment starts, each image itself,
    # no audio; corrupt.mp4 was never committed, so it has none to fail on.
    posters = "warehouse/thumbnails/marengo-3.0/"
    video = f"{posters}{media_id('s3://media/videos/shapes_a.mp4')}/"
    assert {f"{video}0.jpg", f"{video}4000.jpg", f"{video}9000.jpg"} <= set(keys)
    assert any(k.startswith(f"{posters}{media_id('s3://media/images/green_triangle.png')}/") for k in keys)
    assert not any(k.startswith(f"{posters}{media_id('s3://media/audio/hum_220hz.wav')}/") for k in keys)
    made = [materialization_metadata(r, ["marengo", "embeddings"]) for r in driver.results]
    assert sum(m["thumbnails_made"] for m in made) >= 3 and all(m["thumbnail_failures"] == 0 for m in made)


def test_no_secret_reaches_run_logs_or_metadata(embedded_world: EmbeddedWorld) -> None:
    world = embedded_world
    for run in world.instance.get_runs():
        records = world.instance.all_logs(run.run_id)
        assert SECRET not in json.dumps([str(r) for r in records])
        assert SECRET not in json.dumps(run.tags) and SECRET not in str(run.run_config)


def test_embedding_table_rows_are_per_segment_and_typed(embedded_world: EmbeddedWorld) -> None:
    world = embedded_world
    embeddings = EmbeddingTable(world.lake, MARENGO_3_0)
    delta = embeddings.open()
    assert delta is not None and delta.version() == 1, "created, then one commit for the whole ingest run"
    table = embeddings.read()
    assert pc.count_distinct(table.column("media_uri")).as_py() == USABLE
    vector_type = table.schema.field("vector").type
    assert pa.types.is_fixed_size_list(vector_type) and vector_type.list_size == 512
    assert vector_type.value_type == pa.float32()
    frame = table.select(["media_uri", "embedding_option", "start_sec", "end_sec"]).to_pandas()
    visual = frame[
        (frame["media_uri"] == "s3://media/videos/shapes_a.mp4") & (frame["embedding_option"] == "visual")
    ]
    scenes = world.sample("videos/shapes_a.mp4").scenes
    assert sorted(zip(visual["start_sec"], visual["end_sec"], strict=True)) == [
        (s.start_sec, s.end_sec) for s in scenes
    ]


def test_any_to_any_a_sound_query_finds_low_tones(embedded_world: EmbeddedWorld) -> None:
    """'low hum' must land on spans whose audio is a low tone: the 220 Hz file or a low-tone video scene."""
    world = embedded_world
    low: set[tuple[str, tuple[float, float] | None]] = {("s3://media/audio/hum_220hz.wav", None)}
    for video in (s for s in world.samples if s.modality == "video"):
        low |= {
            (f"s3://media/{video.key}", (sc.start_sec, sc.end_sec)) for sc in video.scenes if sc.tone_hz < 300
        }
    for hit in search_json("low hum", top_k=3):
        span = (
            None if hit["media_uri"].startswith("s3://media/audio/") else (hit["start_sec"], hit["end_sec"])
        )
        assert (hit["media_uri"], span) in low, hit


def test_deleted_object_leaves_the_index(world: World) -> None:
    submit(world)
    ingest_when_idle(world)
    world.stack.s3.client().delete_object(Bucket="media", Key="videos/shapes_a.mp4")
    submit(world)  # refreshes the inventory
    index = materialization_metadata(
        run_job(world.instance, "ingest_marengo_embeddings", MARENGO_3_0.key),
        ["search", "marengo_segments"],
    )
    assert index["objects_removed"] == 1
    assert all(
        hit["media_uri"] != "s3://media/videos/shapes_a.mp4" for hit in search_json("yellow triangle", 5)
    )
    posters = Path(world.lake.root) / "thumbnails" / MARENGO_3_0.key  # type: ignore[attr-defined]
    assert not (posters / media_id("s3://media/videos/shapes_a.mp4")).exists(), "its posters went with it"
    assert (posters / media_id("s3://media/videos/shapes_b.mp4") / "0.jpg").is_file()


def test_object_changed_while_embedding_keeps_the_newer_result(world: World) -> None:
    world.stack.bedrock.latency_sec = 3.0  # the first job is still running when the object changes
    submit(world)
    purple = world.sample("images/purple_circle.jpg")
    world.stack.s3.client().put_object(Bucket="media", Key="images/green_triangle.png", Body=purple.data)
    world.stack.bedrock.latency_sec = 0.0
    assert submit(world)["submitted"] == 1
    driver = ingest_when_idle(world)
    ingest = materialization_metadata(driver.results[0], ["marengo", "embeddings"])
    assert (ingest["objects_embedded"], ingest["objects_superseded"]) == (USABLE, 1)
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    [old] = jobs[jobs["status"] == "superseded"].to_dict("records")
    assert old["media_uri"] == "s3://media/images/green_triangle.png" and "object changed" in old["reason"]
    top_two = {hit["media_uri"] for hit in search_json("purple circle", top_k=2)}
    assert top_two == {"s3://media/images/green_triangle.png", "s3://media/images/purple_circle.jpg"}


def test_setup_problem_stops_submitting_and_fails_a_check(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIAEMBED_ASYNC_OUTPUT_URI", "s3://no-such-output-bucket/marengo")
    result = run_job(world.instance, "embed_new_media", MARENGO_3_0.key)
    meta = materialization_metadata(result, ["marengo", "invocations"])
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (0, 3, USABLE - 3)
    assert "no-such-output-bucket" in meta["deferred_reason"]
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "provider_accepts_requests"]
    assert not check.passed
    assert world.stack.bedrock.created_invocations == 0


def test_one_malformed_output_fails_alone_with_its_reason(world: World) -> None:
    submit(world)
    world.stack.bedrock.wait_until_idle(timeout=60)
    s3 = world.stack.s3.client()
    outputs = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="marengo-async/")["Contents"]]
    victim = next(k for k in outputs if k.endswith("output.json"))
    s3.put_object(Bucket="lake", Key=victim, Body=b'{"data": [{"embedding": ["NaN?"], "startSec": 0}]}')
    driver = SensorDriver(world.instance)
    driver.tick()
    ingest = materialization_metadata(driver.results[0], ["marengo", "embeddings"])
    assert (ingest["objects_embedded"], ingest["objects_failed"]) == (USABLE - 1, 1)
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    [failed] = jobs[jobs["status"] == "failed"].to_dict("records")
    assert failed["reason"] == "unusable output: segment 0 has non-numeric values"


def test_an_empty_listing_does_not_empty_the_index(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    submit(world)
    driver = ingest_when_idle(world)
    rows = materialization_metadata(driver.results[0], ["search", "marengo_segments"])["dagster/row_count"]
    monkeypatch.setenv("MEDIAEMBED_MEDIA_URI", "s3://media/typo-in-the-prefix/")
    assert submit(world)["submitted"] == 0
    result = run_job(world.instance, "ingest_marengo_embeddings", MARENGO_3_0.key)
    index = materialization_metadata(result, ["search", "marengo_segments"])
    assert (index["objects_removed"], index["dagster/row_count"]) == (0, rows)
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "matches_embedding_table"]
    assert not check.passed, "the mismatch is visible in the UI"
    [top] = search_json("yellow triangle", top_k=1)
    assert top["media_uri"] == "s3://media/videos/shapes_a.mp4"


def test_the_first_ingest_records_what_serves_on_the_serving_asset(world: World) -> None:
    """Before any cut-over the UI's serving asset shows the initial version, materialized by the first
    ingest that makes a version searchable; later ingests leave it alone (a cut-over writes the next)."""
    serving = dg.AssetRecordsFilter(keys.SEARCH_SERVING_VERSION)
    assert not world.instance.fetch_materializations(serving, limit=5).records, "a new instance has none"
    submit(world)
    ingest_when_idle(world)
    [record] = world.instance.fetch_materializations(serving, limit=5).records
    materialization = record.asset_materialization
    assert materialization is not None and materialization.partition == MARENGO_3_0.key
    shown = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    assert (shown["action"], shown["from"], shown["to"], shown["sequence"]) == (
        "initial",
        "none",
        MARENGO_3_0.key,
        0,
    )
    assert shown["serving"] == world.lake.serving_versions().current().describe()  # type: ignore[attr-defined]
    run_job(world.instance, "ingest_marengo_embeddings", MARENGO_3_0.key)
    assert len(world.instance.fetch_materializations(serving, limit=5).records) == 1
