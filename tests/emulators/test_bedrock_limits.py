"""Marengo's documented input limits and InvokeModel's body limit, driven through the real boto3 client.

Limits (reference "Model ids, regions, dimensions, limits"): images 5 MB, base64 media 36 MB (decoded),
video/audio by S3 2 GB / 2 h (2.7) and 6 GB / 4 h (3.0), InvokeModel `body` 25000000 bytes (botocore's
model). MB and GB are decimal; each refusal is a ValidationException (400) naming the limit.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulators.bedrock_runtime import MARENGO_2_7, MARENGO_3_0, BedrockRuntimeEmulator
from emulators.bedrock_runtime.limits import MarengoLimits
from emulators.sample_media import SampleObject, make_sparse_video, padded_mp4
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET

US3 = "us." + MARENGO_3_0
OUT = {"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/limits/"}}
IMAGE_KEY = "images/green_triangle.png"
VIDEO_KEY = "videos/shapes_a.mp4"


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def inline(data: bytes) -> dict[str, Any]:
    return {"base64String": base64.b64encode(data).decode()}


def s3(uri: str) -> dict[str, Any]:
    return {"s3Location": {"uri": uri}}


def image_input(source: dict[str, Any]) -> dict[str, Any]:
    return {"inputType": "image", "image": {"mediaSource": source}}


def media_input(version: str, kind: str, source: dict[str, Any]) -> dict[str, Any]:
    if version == "2.7":
        return {"inputType": kind, "mediaSource": source}
    return {"inputType": kind, kind: {"mediaSource": source}}


def put(s3_client: Any, key: str, data: bytes) -> str:
    s3_client.put_object(Bucket=MEDIA_BUCKET, Key=key, Body=data)
    return f"s3://{MEDIA_BUCKET}/{key}"


def sized(data: bytes, total: int) -> bytes:
    """A picture grown to `total` bytes by trailing zeros (image readers stop at the end of the picture)."""
    return data + bytes(total - len(data))


def test_the_documented_limits_are_the_defaults(bedrock: BedrockRuntimeEmulator) -> None:
    assert bedrock.marengo_limits == {
        "2.7": MarengoLimits(5_000_000, 36_000_000, 2_000_000_000, 7200.0),
        "3.0": MarengoLimits(5_000_000, 36_000_000, 6_000_000_000, 14400.0),
    }
    assert bedrock.max_invoke_body_bytes == 25_000_000


# --- images: 5 MB, sync and async, inline and by S3 -------------------------------------------------------


@pytest.mark.parametrize("transport", ["inline", "s3"])
@pytest.mark.parametrize("api", ["InvokeModel", "StartAsyncInvoke"])
def test_an_image_over_5_mb_is_refused_and_one_of_5_mb_is_taken(
    client: Any,
    bedrock: BedrockRuntimeEmulator,
    s3_client: Any,
    samples: dict[str, SampleObject],
    api: str,
    transport: str,
) -> None:
    picture = samples[IMAGE_KEY].data

    def send(size: int) -> None:
        data = sized(picture, size)
        source = inline(data) if transport == "inline" else s3(put(s3_client, f"limits/{size}.png", data))
        if api == "InvokeModel":
            client.invoke_model(modelId=US3, body=json.dumps(image_input(source)))
        else:
            client.start_async_invoke(
                modelId=MARENGO_3_0, modelInput=image_input(source), outputDataConfig=OUT
            )

    send(5_000_000)
    with pytest.raises(ClientError) as exc:
        send(7_700_000)
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert "is 7700000 bytes; Marengo 3.0 takes images of at most 5000000 bytes (5 MB)" in message
    assert bedrock.created_invocations == (1 if api == "StartAsyncInvoke" else 0)


# --- inline media: 36 MB of decoded bytes -----------------------------------------------------------------


def test_a_37_mb_base64_video_is_refused(
    client: Any, bedrock: BedrockRuntimeEmulator, samples: dict[str, SampleObject]
) -> None:
    video = padded_mp4(samples[VIDEO_KEY].data, 37_000_000)  # decodes as the 14 s sample
    with pytest.raises(ClientError) as exc:
        client.start_async_invoke(
            modelId=MARENGO_3_0, modelInput=media_input("3.0", "video", inline(video)), outputDataConfig=OUT
        )
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert "mediaSource.base64String is 37000000 bytes decoded" in message
    assert "at most 36000000 bytes (36 MB): send it by s3Location" in message
    assert bedrock.created_invocations == 0


@pytest.mark.parametrize("version", ["2.7", "3.0"])
def test_the_base64_limit_counts_decoded_bytes_not_base64_text(
    client: Any, bedrock: BedrockRuntimeEmulator, samples: dict[str, SampleObject], version: str
) -> None:
    video = samples[VIDEO_KEY].data
    model = {"2.7": MARENGO_2_7, "3.0": MARENGO_3_0}[version]
    body = media_input(version, "video", inline(video))
    # The limit at exactly the decoded size: taken, though the base64 text is a third longer.
    bedrock.marengo_limits[version] = replace(bedrock.marengo_limits[version], base64_bytes=len(video))
    assert len(inline(video)["base64String"]) > len(video)
    client.start_async_invoke(modelId=model, modelInput=body, outputDataConfig=OUT)
    bedrock.marengo_limits[version] = replace(bedrock.marengo_limits[version], base64_bytes=len(video) - 1)
    with pytest.raises(ClientError) as exc:
        client.start_async_invoke(modelId=model, modelInput=body, outputDataConfig=OUT)
    assert error_of(exc)[0] == "ValidationException"
    assert f"is {len(video)} bytes decoded; Marengo {version} takes base64 media" in error_of(exc)[2]
    assert bedrock.created_invocations == 1


# --- InvokeModel's body: 25000000 bytes --------------------------------------------------------------------


def test_an_invoke_model_body_over_25_000_000_bytes_is_refused(
    client: Any, bedrock: BedrockRuntimeEmulator, samples: dict[str, SampleObject]
) -> None:
    text = json.dumps({"inputType": "text", "text": {"inputText": "red circle"}})
    exact = text + " " * (25_000_000 - len(text))  # JSON allows trailing whitespace
    response = client.invoke_model(modelId=US3, body=exact)
    assert len(json.loads(response["body"].read())["data"][0]["embedding"]) == 512
    image = sized(samples[IMAGE_KEY].data, 20_000_000)  # 26.7 MB once in base64: the body limit answers first
    heavy = json.dumps(image_input(inline(image)))
    assert 26_600_000 < len(heavy) < 26_800_000
    for body in (exact + " ", heavy):
        with pytest.raises(ClientError) as exc:
            client.invoke_model(modelId=US3, body=body)
        code, status, message = error_of(exc)
        assert (code, status) == ("ValidationException", 400)
        assert "Value at 'body' failed to satisfy constraint" in message
        assert "less than or equal to 25000000" in message and f"is {len(body)} bytes" in message


# --- video and audio by S3: the model's size and length ---------------------------------------------------


@pytest.mark.parametrize(("version", "model"), [("2.7", MARENGO_2_7), ("3.0", MARENGO_3_0)])
@pytest.mark.parametrize("key", [VIDEO_KEY, "audio/hum_220hz.wav"])
def test_media_by_s3_over_the_models_size_is_refused_before_it_is_read(
    client: Any,
    bedrock: BedrockRuntimeEmulator,
    samples: dict[str, SampleObject],
    version: str,
    model: str,
    key: str,
) -> None:
    size, kind = len(samples[key].data), str(samples[key].modality)
    body = media_input(version, kind, s3(f"s3://{MEDIA_BUCKET}/{key}"))
    limits = bedrock.marengo_limits[version]
    bedrock.marengo_limits[version] = replace(limits, s3_media_bytes=size - 1)  # no test uploads gigabytes
    with pytest.raises(ClientError) as exc:
        client.start_async_invoke(modelId=model, modelInput=body, outputDataConfig=OUT)
    code, _, message = error_of(exc)
    assert code == "ValidationException"
    assert (
        f"The {kind} at s3://{MEDIA_BUCKET}/{key} is {size} bytes; Marengo {version} reads {kind}" in message
    )
    bedrock.marengo_limits[version] = replace(limits, s3_media_bytes=size)
    client.start_async_invoke(modelId=model, modelInput=body, outputDataConfig=OUT)
    assert bedrock.created_invocations == 1


@pytest.mark.parametrize(("version", "model", "hours"), [("2.7", MARENGO_2_7, 2), ("3.0", MARENGO_3_0, 4)])
def test_a_video_over_the_models_length_is_refused(
    client: Any, bedrock: BedrockRuntimeEmulator, s3_client: Any, version: str, model: str, hours: int
) -> None:
    seconds = hours * 3600 + 1
    uri = put(s3_client, f"limits/long-{seconds}.mp4", make_sparse_video(seconds))
    with pytest.raises(ClientError) as exc:
        client.start_async_invoke(
            modelId=model, modelInput=media_input(version, "video", s3(uri)), outputDataConfig=OUT
        )
    code, _, message = error_of(exc)
    assert code == "ValidationException"
    assert f"The video at {uri} is {seconds} s long; Marengo {version} takes video of at most" in message
    assert f"{hours * 3600} s ({hours} h)" in message
    assert bedrock.created_invocations == 0
