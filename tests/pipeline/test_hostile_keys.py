"""Every key S3 allows goes through inventory, submission, ingest and search unchanged.

One stack for the module: an image and a one-second video under each key of the matrix, the pipeline run
once, then each stage is checked. A URL parser cuts `#`/`?` and drops tabs; a filesystem path refuses `//`
and resolves `..`: any of that here shows up as an object that is unreadable, missing or renamed.
"""

import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from itertools import product
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from assets_defs.inventory.media_inventory import read_inventory
from emulators.media_analysis import COLORS, SHAPES
from emulators.sample_media import Scene, make_image, make_video
from emulators.stack import start_local_stack
from harness.local_env import local_settings
from harness.runner import SensorDriver, materialization_metadata, run_job
from mediaembed.cli import main as cli
from pipelines.definitions import pipeline_resources
from resources.providers.marengo_models import MARENGO_3_0
from resources.tables.submission_ledger import SubmissionLedger
from tests.s3_key_matrix import hostile_keys

IMAGES = hostile_keys(".png")
VIDEOS = hostile_keys(".mp4")
VIDEO_SCENE = Scene(0.0, 1.0, "square", "gray", "black", 440.0)
# One (colour, shape) per image, none the video's, so "<colour> <shape>" has exactly one right image.
IMAGE_LOOKS = [
    (color, shape)
    for color, shape in product(COLORS, SHAPES)
    if (color, shape) != (VIDEO_SCENE.color, VIDEO_SCENE.shape) and color not in ("black", "white")
][: len(IMAGES)]


@dataclass
class Run:
    expected_uris: dict[str, str]  # media uri -> matrix label
    image_queries: dict[str, str]  # "<colour> <shape>" -> media uri
    inventory: pd.DataFrame
    submitted: dict[str, Any]
    ingested: dict[str, Any]
    jobs: pd.DataFrame


def search_json(text: str, top_k: int) -> list[dict[str, Any]]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["search", text, "--top-k", str(top_k), "--json"]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with start_local_stack() as stack, pytest.MonkeyPatch.context() as env:
        for name, value in {**stack.env(), **local_settings(tmp_path_factory.mktemp("keys"))}.items():
            env.setenv(name, value)
        s3 = stack.s3.client()
        video = make_video((VIDEO_SCENE,))
        expected, queries = {}, {}
        for (label, key), (color, shape) in zip(IMAGES.items(), IMAGE_LOOKS, strict=True):
            image = make_image(
                Scene(0.0, 0.0, shape, color, "black" if color != "gray" else "white", 0), "png"
            )
            s3.put_object(Bucket="media", Key=key, Body=image, ContentType="image/png")
            expected[f"s3://media/{key}"] = f"image, {label}"
            queries[f"{color} {shape}"] = f"s3://media/{key}"
        for label, key in VIDEOS.items():
            s3.put_object(Bucket="media", Key=key, Body=video, ContentType="video/mp4")
            expected[f"s3://media/{key}"] = f"video, {label}"

        instance = dg.DagsterInstance.ephemeral()
        submitted = materialization_metadata(
            run_job(instance, "embed_new_media", MARENGO_3_0.key), ["marengo", "invocations"]
        )
        stack.bedrock.wait_until_idle(timeout=60)
        driver = SensorDriver(instance)
        driver.tick()
        ingested = {}
        for result in driver.results:
            for name, value in materialization_metadata(result, ["marengo", "embeddings"]).items():
                ingested[name] = ingested.get(name, 0) + value if isinstance(value, int) else value
        with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
            inventory = read_inventory(built.lake)
            jobs = SubmissionLedger(built.lake, None).jobs(MARENGO_3_0.key)
        yield Run(expected, queries, inventory, submitted, ingested, jobs)


def test_every_key_is_listed_and_probed_as_usable(run: Run) -> None:
    rows = run.inventory.set_index("media_uri")
    assert set(rows.index) == set(run.expected_uris)
    problems = rows[rows["status"] != "ok"]
    assert problems.empty, {run.expected_uris[uri]: reason for uri, reason in problems["reason"].items()}
    for uri in run.expected_uris:
        assert f"s3://media/{rows.loc[uri, 'key']}" == uri
        assert rows.loc[uri, "modality"] == ("image" if uri.rstrip().endswith(".png") else "video")


def test_every_object_is_submitted_and_embedded(run: Run) -> None:
    count = len(run.expected_uris)
    assert (run.submitted["submitted"], run.submitted["rejected"]) == (count, 0)
    assert (run.ingested["objects_embedded"], run.ingested["objects_failed"]) == (count, 0)
    assert set(run.jobs["media_uri"]) == set(run.expected_uris)
    assert set(run.jobs["status"]) == {"completed"}


def test_search_returns_every_key_exactly(run: Run) -> None:
    every_hit = search_json("gray square", top_k=10 * len(run.expected_uris))
    returned = {hit["media_uri"] for hit in every_hit}
    missing = {run.expected_uris[uri] for uri in set(run.expected_uris) - returned}
    assert not missing and returned == set(run.expected_uris), (missing, returned - set(run.expected_uris))
    for query, uri in run.image_queries.items():
        [top] = search_json(query, top_k=1)
        assert top["media_uri"] == uri, (query, run.expected_uris[uri])
