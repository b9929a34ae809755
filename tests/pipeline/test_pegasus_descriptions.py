"""Pegasus on the emulators: every sample video described and chaptered at its scene times, nothing asked
twice, a changed prompt re-asked alone, throttling waited out, one failing video stopping nothing else."""

import json
from pathlib import Path
from typing import Any

import dagster as dg

from assets_defs.inventory.media_inventory import media_inventory
from pipelines.definitions import defs, pipeline_resources
from resources.tables.description_tables import chapter_table, description_table
from tests.pipeline.conftest import World

PROMPTS = ("summary", "chapters", "keywords")


def describe(world: World, **config: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """One run of the describe_media job (inventory first, as the schedule's run leaves it)."""
    instance = world.instance
    assert dg.materialize([media_inventory], resources=pipeline_resources, instance=instance).success
    run_config = {"ops": {"pegasus__descriptions": {"config": config}}} if config else None
    result = defs.resolve_job_def("describe_media").execute_in_process(
        instance=instance, run_config=run_config
    )
    assert result.success
    rows = description_table(world.lake).read().to_pylist()
    return {(r["media_uri"], r["prompt_id"]): r for r in rows}


def test_every_video_is_described_and_chaptered_at_its_scene_times(world: World) -> None:
    rows = describe(world)
    videos = [s for s in world.samples if s.modality == "video"]
    for video in videos:
        uri = f"s3://media/{video.key}"
        for prompt in PROMPTS:
            row = rows[(uri, prompt)]
            assert (row["status"], row["finish_reason"]) == ("ok", "stop"), row
        summary = rows[(uri, "summary")]["text"]
        for scene in video.scenes:
            assert f"{scene.color} {scene.shape}" in summary, summary
        keywords = json.loads(rows[(uri, "keywords")]["parsed_json"])
        assert {scene.color for scene in video.scenes} <= set(" ".join(keywords).split()), keywords
    chapters = chapter_table(world.lake).read().to_pylist()
    for video in videos:
        mine = sorted(
            (c for c in chapters if c["media_uri"] == f"s3://media/{video.key}"),
            key=lambda c: c["chapter_index"],
        )
        assert [(c["start_sec"], c["end_sec"]) for c in mine] == [
            (s.start_sec, s.end_sec) for s in video.scenes
        ]
        assert [c["title"] for c in mine] == [f"{s.color} {s.shape}" for s in video.scenes]
    assert not any(uri.endswith("corrupt.mp4") for uri, _ in rows), "an unusable object is never asked about"


def test_only_what_changed_is_asked_again_and_a_failure_stops_nothing_else(
    world: World, tmp_path: Path
) -> None:
    bedrock = world.stack.bedrock
    videos = sorted(f"s3://media/{s.key}" for s in world.samples if s.modality == "video")
    throttled, failing = videos[0], videos[1]
    bedrock.inject_pegasus_fault(throttled, "throttling", times=3)
    bedrock.inject_pegasus_fault(failing, "model_error")
    rows = describe(world)
    assert all(rows[(throttled, p)]["status"] == "ok" for p in PROMPTS), "throttling is waited out"
    assert all(rows[(failing, p)]["status"] == "failed" and rows[(failing, p)]["reason"] for p in PROMPTS)
    assert all(rows[(v, p)]["status"] == "ok" for v in videos[2:] for p in PROMPTS)

    bedrock.clear_pegasus_faults()
    before = len(bedrock.pegasus_calls)
    rows = describe(world)
    retried = bedrock.pegasus_calls[before:]
    assert sorted(c.media_uri for c in retried) == [failing] * len(PROMPTS), "only the failed ones again"
    assert all(rows[(failing, p)]["status"] == "ok" for p in PROMPTS)

    before = len(bedrock.pegasus_calls)
    describe(world)
    assert len(bedrock.pegasus_calls) == before, "nothing changed: no call"

    changed = tmp_path / "prompts.json"
    keywords = {"id": "keywords", "prompt": "Ten keywords, most telling first.", "kind": "json"}
    keywords["json_schema"] = {"type": "array", "items": {"type": "string"}}  # type: ignore[assignment]
    changed.write_text(json.dumps({"prompts": [keywords]}))
    rows = describe(world, prompts_file=str(changed))
    asked = bedrock.pegasus_calls[before:]
    assert sorted(c.media_uri for c in asked) == videos, "each video once"
    assert {c.prompt for c in asked} == {keywords["prompt"]}, "only the changed prompt"
    assert all(rows[(v, "keywords")]["status"] == "ok" for v in videos)
