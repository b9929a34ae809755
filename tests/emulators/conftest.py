"""Fixtures: one moto S3 for this package with the sample media (and the realistic content when asked for),
a fresh Bedrock emulator and a fresh TwelveLabs API emulator (with the real SDK on it) per test.

moto keeps one state per process and every S3Emulator start resets it, so the S3 lives for this package
only: under pytest-xdist a worker that runs pipeline tests in between sets it up afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from twelvelabs import TwelveLabs
from twelvelabs.core.api_error import ApiError

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.s3 import S3Emulator
from emulators.sample_media import SampleObject, generate_content_media, upload_sample_media
from emulators.twelvelabs_api import TwelveLabsEmulator

REGION = "us-east-1"
MEDIA_BUCKET = "media"
LAKE_BUCKET = "lake"
_SESSION = boto3.session.Session()
NO_RETRY: Any = {"max_retries": 0}


@pytest.fixture(scope="package")
def s3() -> Iterator[S3Emulator]:
    emulator = S3Emulator(region=REGION).start()
    client = emulator.client()
    for bucket in (MEDIA_BUCKET, LAKE_BUCKET):
        client.create_bucket(Bucket=bucket)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="package")
def s3_client(s3: S3Emulator) -> Any:
    return s3.client()


@pytest.fixture(scope="package")
def samples(s3_client: Any) -> dict[str, SampleObject]:
    return {obj.key: obj for obj in upload_sample_media(s3_client, MEDIA_BUCKET)}


@pytest.fixture(scope="package")
def content(s3_client: Any) -> dict[str, SampleObject]:
    """The realistic-content set (moving objects, several shots, several pitches), uploaded under content/."""
    objects = {obj.key: obj for obj in generate_content_media()}
    for obj in objects.values():
        s3_client.put_object(Bucket=MEDIA_BUCKET, Key=obj.key, Body=obj.data, ContentType=obj.content_type)
    return objects


@pytest.fixture()
def bedrock(s3: S3Emulator, samples: dict[str, SampleObject]) -> Iterator[BedrockRuntimeEmulator]:
    emulator = BedrockRuntimeEmulator(s3.endpoint, region=REGION, seed=7).start()
    yield emulator
    emulator.stop()


def make_client(
    endpoint: str,
    *,
    region: str = REGION,
    key: str = "test",
    secret: str = "test",
    **config: Any,
) -> Any:
    """The real boto3 bedrock-runtime client, as production code would build it: signed for `region` with
    the emulators' local key pair unless told otherwise."""
    return _SESSION.client(
        "bedrock-runtime",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(**config) if config else None,
    )


@pytest.fixture()
def client(bedrock: BedrockRuntimeEmulator) -> Any:
    return make_client(bedrock.endpoint)


@pytest.fixture()
def client_factory(bedrock: BedrockRuntimeEmulator) -> Callable[..., Any]:
    return lambda **config: make_client(bedrock.endpoint, **config)


@pytest.fixture()
def api(s3: S3Emulator, samples: dict[str, SampleObject]) -> Iterator[TwelveLabsEmulator]:
    emulator = TwelveLabsEmulator(retry_after_sec=0, seed=3).start()
    yield emulator
    emulator.stop()


@pytest.fixture()
def sdk(api: TwelveLabsEmulator) -> TwelveLabs:
    return TwelveLabs(api_key=api.api_key, base_url=api.base_url)


def url_of(s3_client: Any, key: str, bucket: str = MEDIA_BUCKET, expires: int = 600) -> str:
    """A presigned GET URL of an object, as production hands media to the TwelveLabs API."""
    params = {"Bucket": bucket, "Key": key}
    return str(s3_client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires))


def refusal(call: Callable[[], object]) -> ApiError:
    """The SDK error a call raises (the test fails if it raises none)."""
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value
