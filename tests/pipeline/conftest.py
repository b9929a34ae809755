"""A fresh local world per test: emulators on free loopback ports, sample media, an empty lake."""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from emulators.sample_media import SampleObject, upload_sample_media
from emulators.stack import LocalStack, start_local_stack
from harness.local_env import local_settings
from pipelines.definitions import pipeline_resources

SECRET = "s3cr3t-never-in-metadata-7f3a"


@dataclass
class World:
    stack: LocalStack
    samples: list[SampleObject]
    instance: dg.DagsterInstance
    lake: object

    def sample(self, key: str) -> SampleObject:
        return next(s for s in self.samples if s.key == key)


def _world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: dict[str, str]) -> Iterator[World]:
    # Bedrock verifies signatures and the TwelveLabs API the media URLs: the stack's secret is the one
    # the pipeline signs with.
    with start_local_stack(secret_access_key=SECRET) as stack:
        env = {**stack.env(), **local_settings(tmp_path), **overrides}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        samples = upload_sample_media(stack.s3.client(), "media")
        with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
            yield World(stack, samples, dg.DagsterInstance.ephemeral(), built.lake)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield from _world(tmp_path, monkeypatch, {})


@pytest.fixture
def s3_lake_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """The lake and the index on S3 rather than a local directory."""
    overrides = {"MEDIAEMBED_LAKE_URI": "s3://lake/warehouse", "MEDIAEMBED_INDEX_URI": "s3://lake/lancedb"}
    yield from _world(tmp_path, monkeypatch, overrides)
