"""Local worlds: emulators on free loopback ports, sample media, an empty lake, and the builders that run the
pipeline in them.

A test that changes its world gets a fresh one (`world`, `s3_lake_world`: one per test). A module whose tests
only read a world after one embedding pass shares one (`embedded_world`: one per module, its settings in a
module-scoped environment), built by the same `build_world` and `embed`; its teardown fails the module if
a test ran the pipeline in it.
"""

import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from emulators.sample_media import SampleObject, upload_sample_media
from emulators.stack import LocalStack, start_local_stack
from harness.local_env import local_settings
from harness.runner import SensorDriver, materialization_metadata, run_job
from mediaembed.cli import main as cli
from pipelines.definitions import pipeline_resources
from resources.providers.marengo_models import MARENGO_3_0

SECRET = "s3cr3t-never-in-metadata-7f3a"
USABLE = 7  # of the sample media: three videos, two audio files, two images


@dataclass
class World:
    stack: LocalStack
    samples: list[SampleObject]
    instance: dg.DagsterInstance
    lake: object

    def sample(self, key: str) -> SampleObject:
        return next(s for s in self.samples if s.key == key)


@contextmanager
def build_world(
    folder: Path, env: pytest.MonkeyPatch, overrides: Mapping[str, str] | None = None
) -> Iterator[World]:
    """A stack with the sample media uploaded, a lake and index under `folder`, and its settings set
    through `env` (whose scope is the world's: a test's monkeypatch, or a module's MonkeyPatch.context)."""
    # Bedrock verifies signatures and the TwelveLabs API the media URLs: the stack's secret is the one
    # the pipeline signs with.
    with start_local_stack(secret_access_key=SECRET) as stack:
        for name, value in {**stack.env(), **local_settings(folder), **(overrides or {})}.items():
            env.setenv(name, value)
        samples = upload_sample_media(stack.s3.client(), "media")
        with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
            yield World(stack, samples, dg.DagsterInstance.ephemeral(), built.lake)


def submit(world: World, **config: object) -> dict:
    """One embed_new_media run for Marengo 3.0 (`config`: the invocations asset's); its metadata."""
    run_config = {"ops": {"marengo__invocations": {"config": config}}} if config else None
    result = run_job(world.instance, "embed_new_media", MARENGO_3_0.key, run_config=run_config)
    return materialization_metadata(result, ["marengo", "invocations"])


def ingest_when_idle(world: World) -> SensorDriver:
    """Once Bedrock has finished every job: one tick of the sensor, which runs the ingest it requests."""
    world.stack.bedrock.wait_until_idle(timeout=60)
    driver = SensorDriver(world.instance)
    driver.tick()
    return driver


def search_json(text: str, top_k: int = 3) -> list[dict]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["search", text, "--top-k", str(top_k), "--json"]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


@dataclass
class EmbeddedWorld(World):
    """A world after one embedding pass: one submission run and, once Bedrock was idle, one sensor tick."""

    submitted: dict  # the submission run's metadata
    ingest: SensorDriver  # the tick's driver: the ingest runs it ran in `results`


def embed(world: World) -> EmbeddedWorld:
    submitted = submit(world)
    ingest = ingest_when_idle(world)
    return EmbeddedWorld(world.stack, world.samples, world.instance, world.lake, submitted, ingest)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with build_world(tmp_path, monkeypatch) as built:
        yield built


@pytest.fixture
def s3_lake_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The lake and the index on S3 rather than a local directory."""
    overrides = {"MEDIAEMBED_LAKE_URI": "s3://lake/warehouse", "MEDIAEMBED_INDEX_URI": "s3://lake/lancedb"}
    with build_world(tmp_path, monkeypatch, overrides) as built:
        yield built


@pytest.fixture(scope="module")
def embedded_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedWorld]:
    """One embedded world for the module's tests, which only read it (a test may still change settings
    through its own monkeypatch: they are undone after it, back to this world's)."""
    with pytest.MonkeyPatch.context() as env, build_world(tmp_path_factory.mktemp("embedded"), env) as built:
        shared = embed(built)
        runs = [run.run_id for run in shared.instance.get_runs()]
        yield shared
        assert [run.run_id for run in shared.instance.get_runs()] == runs, (
            "a test ran the pipeline in the module's shared world: give it its own `world`"
        )
