"""Search on realistic content through the whole pipeline: the right object and the right seconds first.

One stack for the module, with only the generated content set in the bucket: a 38 s clip of four shots
(small objects, 2-3 % of the frame, moving over large plain backgrounds; one enters halfway through a 20 s
shot), stills of its first two shots, and 40 s of tones at 220, 440, 660 and 880 Hz. The pipeline runs once
(inventory, StartAsyncInvoke, sensor, Parquet, LanceDB), then `mediaembed search --json` answers.
"""

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from typing import Any

import dagster as dg
import pytest

from emulators.sample_media import (
    CONTENT_CLIP_KEY,
    CONTENT_PITCHES_KEY,
    CONTENT_SHOTS,
    CONTENT_TONES,
    generate_content_media,
    shot_spans,
)
from emulators.stack import start_local_stack
from harness.local_env import local_settings
from harness.runner import SensorDriver, materialization_metadata, run_job
from mediaembed.cli import main as cli
from resources.providers.marengo_models import MARENGO_3_0

CLIP = f"s3://media/{CONTENT_CLIP_KEY}"
TONES = f"s3://media/{CONTENT_PITCHES_KEY}"
YELLOW_STILL, BLUE_STILL = "s3://media/content/yellow_still.png", "s3://media/content/blue_still.png"
Place = tuple[str, float | None, float | None]


def search(text: str, top_k: int = 5) -> list[dict[str, Any]]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["search", text, "--top-k", str(top_k), "--json"]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def place(hit: dict[str, Any]) -> Place:
    return (hit["media_uri"], hit["start_sec"], hit["end_sec"])


def places(hits: list[dict[str, Any]]) -> list[Place]:
    """Distinct places in rank order: a segment's visual and audio rows share one place."""
    return list(dict.fromkeys(place(hit) for hit in hits))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with start_local_stack() as stack, pytest.MonkeyPatch.context() as env:
        for name, value in {**stack.env(), **local_settings(tmp_path_factory.mktemp("content"))}.items():
            env.setenv(name, value)
        s3 = stack.s3.client()
        for obj in generate_content_media():
            s3.put_object(Bucket="media", Key=obj.key, Body=obj.data, ContentType=obj.content_type)
        instance = dg.DagsterInstance.ephemeral()
        submitted = materialization_metadata(
            run_job(instance, "embed_new_media", MARENGO_3_0.key), ["marengo", "invocations"]
        )
        stack.bedrock.wait_until_idle(timeout=60)
        driver = SensorDriver(instance)
        driver.tick()
        [result] = driver.results
        yield {"submitted": submitted, "ingest": materialization_metadata(result, ["marengo", "embeddings"])}


def test_every_content_object_is_embedded(ingested: dict[str, Any]) -> None:
    assert (ingested["submitted"]["submitted"], ingested["submitted"]["rejected"]) == (4, 0)
    assert (ingested["ingest"]["objects_embedded"], ingested["ingest"]["objects_failed"]) == (4, 0)


def test_shots_are_the_segments(ingested: dict[str, Any]) -> None:
    """The clip is cut at its shots (moving objects are not cuts) and the 20 s shot in two; every place
    the tests below expect exists, so a miss is a ranking failure, not a segmentation one."""
    clip = {p for p in places(search("purple", top_k=200)) if p[0] == CLIP}
    spans = shot_spans(CONTENT_SHOTS)
    expected = [*spans[:3], (18.0, 28.0), (28.0, 38.0)]
    assert sorted((a, b) for _, a, b in clip) == expected


@pytest.mark.parametrize(
    ("query", "scene", "still", "decoys"),
    [
        ("a yellow scene", (CLIP, 0.0, 6.0), YELLOW_STILL, [(CLIP, 6.0, 12.0), (BLUE_STILL, None, None)]),
        ("blue background", (CLIP, 6.0, 12.0), BLUE_STILL, [(CLIP, 0.0, 6.0), (YELLOW_STILL, None, None)]),
    ],
)
def test_a_colour_finds_the_background_and_a_still_ranks_like_its_video(
    ingested: dict[str, Any], query: str, scene: Place, still: str, decoys: list[Place]
) -> None:
    hits = search(query, top_k=10)
    scores = {place(h): h["score"] for h in reversed(hits)}  # the best row of each place wins
    assert set(places(hits)[:2]) == {scene, (still, None, None)}, hits[:4]
    assert abs(scores[scene] - scores[(still, None, None)]) < 0.03, "an image and a video of one scene"
    for decoy in decoys:  # the same colour as a small moving square: far below
        assert scores[scene] > scores.get(decoy, -1.0) + 0.3, (decoy, hits[:4])


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("small yellow square", [(CLIP, 6.0, 12.0), (BLUE_STILL, None, None)]),
        ("a blue square", [(CLIP, 0.0, 6.0), (YELLOW_STILL, None, None)]),
        ("red circle", [(CLIP, 12.0, 18.0)]),
        ("white triangle", [(CLIP, 12.0, 18.0)]),
    ],
)
def test_a_small_moving_object_is_found_by_name(
    ingested: dict[str, Any], query: str, expected: list[Place]
) -> None:
    assert set(places(search(query, top_k=10))[: len(expected)]) == set(expected)


def test_an_object_ranks_its_seconds_by_time_on_screen(ingested: dict[str, Any]) -> None:
    """The orange triangle enters 6 s into the 18-38 s shot: all of 28-38 s, 40 % of 18-28 s."""
    assert places(search("orange triangle", top_k=10))[:2] == [(CLIP, 28.0, 38.0), (CLIP, 18.0, 28.0)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a 220 Hz tone", (TONES, 0.0, 10.0)),
        ("A4", (TONES, 10.0, 20.0)),  # an octave above 220 Hz
        ("660 Hz", (TONES, 20.0, 30.0)),  # a fifth above 440 Hz
        ("an 880 Hz beep", (TONES, 30.0, 40.0)),  # an octave above 440 Hz
        ("a 247 Hz hum", (CLIP, 0.0, 6.0)),  # the clip's own tones: B3 ...
        ("B4", (CLIP, 6.0, 12.0)),  # ... B4, a whole tone above 440 Hz
        ("740 Hz", (CLIP, 12.0, 18.0)),
    ],
)
def test_a_pitch_finds_its_seconds(ingested: dict[str, Any], query: str, expected: Place) -> None:
    hits = search(query, top_k=3)
    assert place(hits[0]) == expected, hits
    assert hits[0].get("embedding_option", "audio") == "audio"
    assert hits[0]["score"] > hits[1]["score"] + 0.25, hits


def test_the_truth_the_tests_use() -> None:
    """Guard the expectations above against an edit of the content set."""
    assert [shot.tone_hz for shot in CONTENT_SHOTS] == [247.0, 494.0, 740.0, 1480.0]
    assert [hz for hz, _ in CONTENT_TONES] == [220.0, 440.0, 660.0, 880.0]
    assert [shot.background for shot in CONTENT_SHOTS] == ["yellow", "blue", "green", "purple"]
