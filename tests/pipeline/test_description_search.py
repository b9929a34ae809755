"""Word search over Pegasus descriptions on the emulators: embed, describe (the Bedrock emulator answers
Pegasus from the decoded scenes), then `mediaembed search --mode text|hybrid` finds the chapter at its
scene's seconds, and hybrid returns each segment once with the chapter among its signals."""

import io
import json
from contextlib import redirect_stdout

from harness.runner import materialization_metadata, run_job
from mediaembed.cli import main as cli
from resources.providers.marengo_models import MARENGO_3_0
from tests.pipeline.conftest import World, ingest_when_idle, submit

SHAPES_A = "s3://media/videos/shapes_a.mp4"


def search_json(*argv: str) -> list[dict]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["search", *argv, "--json"]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_word_search_finds_the_chapter_and_hybrid_returns_each_segment_once(world: World) -> None:
    submit(world)
    ingest_when_idle(world)
    described = run_job(world.instance, "describe_media", None)
    index = materialization_metadata(described, ["search", "description_index"])
    videos = [s for s in world.samples if s.modality == "video"]
    assert index["chapters"] == sum(len(v.scenes) for v in videos)
    assert index["objects_updated"] == len(videos) and index["unindexed_rows"] == 0
    assert all(c.passed for c in described.get_asset_check_evaluations())

    [red] = world.sample("videos/shapes_a.mp4").scenes[:1]
    hits = search_json("red circle", "--mode", "text", "--top-k", "5")
    chapters = [h for h in hits if h["signals"] == ["chapter"]]
    assert (chapters[0]["media_uri"], chapters[0]["start_sec"], chapters[0]["end_sec"]) == (
        SHAPES_A,
        red.start_sec,
        red.end_sec,
    )
    assert "red circle" in chapters[0]["snippet"].lower()
    whole = [h for h in hits if h["signals"] == ["description"]]
    assert whole and whole[0]["media_uri"] == SHAPES_A and whole[0]["start_sec"] is None

    hybrid = search_json("red circle", "--mode", "hybrid", "--top-k", "10")
    spans = [(h["media_uri"], h["start_sec"], h["end_sec"]) for h in hybrid]
    assert len(spans) == len(set(spans)), "each segment once, whatever matched it"
    top = hybrid[0]
    assert (top["media_uri"], top["start_sec"], top["end_sec"]) == (SHAPES_A, red.start_sec, red.end_sec)
    assert {"visual", "chapter"} <= set(top["signals"]) and top["model"] == MARENGO_3_0.key
    assert "red circle" in top["snippet"].lower()

    again = run_job(world.instance, "describe_media", None)
    rerun = materialization_metadata(again, ["search", "description_index"])
    assert (rerun["objects_updated"], rerun["objects_removed"]) == (0, 0), "nothing new, nothing written"
    assert rerun["table_version"] == index["table_version"]


def test_on_s3_the_index_is_written_under_its_lease_and_text_search_reads_it(s3_lake_world: World) -> None:
    world = s3_lake_world
    submit(world)  # the inventory: which videos there are
    described = run_job(world.instance, "describe_media", None)
    index = materialization_metadata(described, ["search", "description_index"])
    assert index["uri"] == "s3://lake/lancedb" and index["dagster/row_count"] > 0
    listed = world.stack.s3.client().list_objects_v2(Bucket="lake", Prefix="lancedb/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert any(k.startswith("lancedb/pegasus_text.lance/") for k in keys)
    assert "lancedb/_locks/pegasus_text.lease" not in keys, "the writer lease is released"

    [first] = world.sample("videos/shapes_b.mp4").scenes[:1]
    [top] = search_json(f"{first.color} {first.shape}", "--mode", "text", "--top-k", "1")
    assert (top["media_uri"], top["start_sec"], top["end_sec"]) == (
        "s3://media/videos/shapes_b.mp4",
        first.start_sec,
        first.end_sec,
    )
