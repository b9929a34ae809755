"""Every StartAsyncInvoke body production builds, sent through the real boto3 client to the emulator.

boto3 checks the request against botocore's model of the HTTP shape, the emulator checks the Marengo body
as Bedrock documents it and runs it; the output then shows the body asked for what it meant to (the
span's seconds, the text and image together, media read inline)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.sample_media import SampleObject
from resources.providers.bedrock.marengo_bodies import (
    async_media_input,
    async_model_input,
    async_text_image_input,
    async_text_input,
    base64_media_source,
    s3_media_source,
)
from resources.providers.embedding_jobs import EmbeddingOptions
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0, Modality
from resources.providers.model_routes import ModelRoute, route
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET

V3 = route("bedrock", MARENGO_3_0.key)
V27 = route("bedrock", MARENGO_2_7.key)
VIDEO = "videos/shapes_a.mp4"  # 14 s
AUDIO = "audio/hum_220hz.wav"
IMAGE = "images/green_triangle.png"
OWNER = "123456789012"
MODALITY: dict[str, Modality] = {VIDEO: "video", AUDIO: "audio", IMAGE: "image"}


def run(client: Any, bedrock: BedrockRuntimeEmulator, s3_client: Any, model: ModelRoute, body: Any) -> list:
    """Submit `body`, let it finish, and return its output.json's segments."""
    prefix = f"bodies-{uuid.uuid4().hex[:8]}"
    arn = client.start_async_invoke(
        modelId=model.model_id,
        modelInput=body,
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/{prefix}/"}},
    )["invocationArn"]
    bedrock.wait_until_idle(30)
    got = client.get_async_invoke(invocationArn=arn)
    assert got["status"] == "Completed", got.get("failureMessage")
    key = f"{prefix}/{arn[-12:]}/output.json"
    data: list = json.loads(s3_client.get_object(Bucket=LAKE_BUCKET, Key=key)["Body"].read())["data"]
    assert data and all(len(item["embedding"]) == model.model.dimension for item in data)
    return data


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (V3, async_text_input(V3, "a red circle")),
        (V27, async_text_input(V27, "a red circle")),
        (V27, async_text_input(V27, "a red circle", truncate=False)),
    ],
    ids=["3.0", "2.7", "2.7-textTruncate-none"],
)
def test_text(
    client: Any, bedrock: BedrockRuntimeEmulator, s3_client: Any, model: ModelRoute, body: dict[str, Any]
) -> None:
    assert len(run(client, bedrock, s3_client, model, body)) == 1


@pytest.mark.parametrize("inline", [False, True], ids=["s3Location-with-bucketOwner", "base64String"])
def test_text_image(
    client: Any,
    bedrock: BedrockRuntimeEmulator,
    s3_client: Any,
    samples: dict[str, SampleObject],
    inline: bool,
) -> None:
    if inline:
        source = base64_media_source(samples[IMAGE].data)
    else:
        source = s3_media_source(f"s3://{MEDIA_BUCKET}/{IMAGE}", OWNER)
    body = async_text_image_input(V3, "a green triangle", source)
    assert len(run(client, bedrock, s3_client, V3, body)) == 1


@pytest.mark.parametrize("model", [V3, V27], ids=["3.0", "2.7"])
@pytest.mark.parametrize("key", [VIDEO, AUDIO, IMAGE])
def test_media_read_inline(
    client: Any,
    bedrock: BedrockRuntimeEmulator,
    s3_client: Any,
    samples: dict[str, SampleObject],
    model: ModelRoute,
    key: str,
) -> None:
    modality = MODALITY[key]
    assert samples[key].modality == modality
    body = async_media_input(model, modality, base64_media_source(samples[key].data), EmbeddingOptions())
    by_s3 = async_model_input(model, modality, f"s3://{MEDIA_BUCKET}/{key}", EmbeddingOptions(), OWNER)
    inline, referenced = (run(client, bedrock, s3_client, model, b) for b in (body, by_s3))
    assert [i["embedding"] for i in inline] == [r["embedding"] for r in referenced]


@pytest.mark.parametrize("model", [V3, V27], ids=["3.0-endSec", "2.7-lengthSec"])
@pytest.mark.parametrize("key", [VIDEO, AUDIO])
def test_span(
    client: Any,
    bedrock: BedrockRuntimeEmulator,
    s3_client: Any,
    samples: dict[str, SampleObject],
    model: ModelRoute,
    key: str,
) -> None:
    modality = MODALITY[key]
    assert samples[key].modality == modality
    options = EmbeddingOptions(segmentation="fixed", fixed_segment_sec=2, start_sec=4, end_sec=10)
    body = async_model_input(model, modality, f"s3://{MEDIA_BUCKET}/{key}", options)
    data = run(client, bedrock, s3_client, model, body)
    assert min(item["startSec"] for item in data) == 4.0
    assert max(item["endSec"] for item in data) == 10.0
