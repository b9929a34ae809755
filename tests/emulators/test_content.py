"""Embeddings derived from decoded content: known media give known segments and a known best match."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from emulators.bedrock_runtime import MARENGO_2_7, MARENGO_3_0, BedrockRuntimeEmulator
from emulators.marengo_space import cosine
from emulators.media_analysis import COLORS, SHAPES
from emulators.sample_media import SampleObject
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET, make_client

VIDEOS = ("videos/shapes_a.mp4", "videos/shapes_b.mp4", "videos/shapes_c.mp4")


def _read_output(s3_client: Any, arn: str, prefix: str) -> list[dict[str, Any]]:
    body = s3_client.get_object(Bucket=LAKE_BUCKET, Key=f"{prefix}/{arn[-12:]}/output.json")["Body"].read()
    return list(json.loads(body)["data"])


@pytest.fixture(scope="module")
def outputs(
    s3: Any, s3_client: Any, samples: dict[str, SampleObject]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(model version, key) -> output.json data for every sample video and audio file, both versions."""
    emulator = BedrockRuntimeEmulator(s3.endpoint).start()
    try:
        client = make_client(emulator.endpoint)
        arns: dict[tuple[str, str], str] = {}
        for key, obj in samples.items():
            if obj.modality not in ("video", "audio"):
                continue
            uri = f"s3://{MEDIA_BUCKET}/{key}"
            v3 = {"inputType": obj.modality, obj.modality: {"mediaSource": {"s3Location": {"uri": uri}}}}
            v27 = {"inputType": obj.modality, "mediaSource": {"s3Location": {"uri": uri}}}
            for version, model, body in (("3.0", MARENGO_3_0, v3), ("2.7", MARENGO_2_7, v27)):
                arns[(version, key)] = client.start_async_invoke(
                    modelId=model,
                    modelInput=body,
                    outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/content"}},
                )["invocationArn"]
        emulator.wait_until_idle(60)
        assert {inv.status for inv in emulator.invocations.values()} == {"Completed"}
        return {k: _read_output(s3_client, arn, "content") for k, arn in arns.items()}
    finally:
        emulator.stop()


def _text_vector(client: Any, model: str, text: str) -> np.ndarray:
    body = (
        {"inputType": "text", "text": {"inputText": text}}
        if model == MARENGO_3_0
        else {
            "inputType": "text",
            "inputText": text,
        }
    )
    response = client.invoke_model(modelId="us." + model, body=json.dumps(body))
    return np.asarray(json.loads(response["body"].read())["data"][0]["embedding"])


@pytest.mark.parametrize(("version", "option"), [("3.0", "visual"), ("2.7", "visual-text")])
def test_dynamic_segments_match_scenes_exactly(
    outputs: dict[tuple[str, str], list[dict[str, Any]]],
    samples: dict[str, SampleObject],
    version: str,
    option: str,
) -> None:
    for key in VIDEOS:
        spans = [
            (d["startSec"], d["endSec"]) for d in outputs[(version, key)] if d["embeddingOption"] == option
        ]
        assert spans == [(s.start_sec, s.end_sec) for s in samples[key].scenes], key


def test_audio_files_split_evenly(outputs: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    spans = {
        k: [(d["startSec"], d["endSec"]) for d in data] for (v, k), data in outputs.items() if v == "3.0"
    }
    assert spans["audio/hum_220hz.wav"] == [(0.0, 6.0), (6.0, 12.0)]
    assert spans["audio/whistle_1760hz.flac"] == [(0.0, 8.0)]


@pytest.mark.parametrize(("version", "model", "dim"), [("3.0", MARENGO_3_0, 512), ("2.7", MARENGO_2_7, 1024)])
def test_text_query_ranks_its_scene_first(
    outputs: dict[tuple[str, str], list[dict[str, Any]]],
    samples: dict[str, SampleObject],
    bedrock: BedrockRuntimeEmulator,
    version: str,
    model: str,
    dim: int,
) -> None:
    client = make_client(bedrock.endpoint)
    pool = [(key, d) for (v, key), data in outputs.items() if v == version for d in data]
    assert all(len(d["embedding"]) == dim for _, d in pool)
    matrix = np.asarray([d["embedding"] for _, d in pool])
    for key in VIDEOS:
        for scene in samples[key].scenes:
            query = _text_vector(client, model, f"{scene.color} {scene.shape}")
            assert query.shape == (dim,)
            scores = matrix @ query
            best_key, best = pool[int(scores.argmax())]
            assert (best_key, best["startSec"], best["endSec"]) == (key, scene.start_sec, scene.end_sec)
            assert best["embeddingOption"].startswith("visual")
            assert scores.max() > 0.75
            others = [
                float(sc)
                for sc, (k, d) in zip(scores, pool, strict=True)
                if (k, d["startSec"]) != (key, scene.start_sec)
            ]
            assert max(others) < scores.max() - 0.3  # a clear margin over every other scene


def test_audio_segments_match_tone_words(
    outputs: dict[tuple[str, str], list[dict[str, Any]]], bedrock: BedrockRuntimeEmulator
) -> None:
    client = make_client(bedrock.endpoint)
    low, high = (
        _text_vector(client, MARENGO_3_0, "low hum"),
        _text_vector(client, MARENGO_3_0, "high whistle"),
    )
    hum = outputs[("3.0", "audio/hum_220hz.wav")][0]["embedding"]
    whistle = outputs[("3.0", "audio/whistle_1760hz.flac")][0]["embedding"]
    assert cosine(hum, low) > cosine(hum, high) + 0.3
    assert cosine(whistle, high) > cosine(whistle, low) + 0.3
    # The exact pitch is closer still than its register: a tone is findable by its frequency.
    hz220 = _text_vector(client, MARENGO_3_0, "a 220 Hz tone")
    assert cosine(hum, hz220) > cosine(hum, low) + 0.2
    assert cosine(hum, hz220) > cosine(whistle, hz220) + 0.4


def test_versions_are_incompatible_spaces(outputs: dict[tuple[str, str], list[dict[str, Any]]]) -> None:
    assert {len(d["embedding"]) for (v, _), data in outputs.items() if v == "3.0" for d in data} == {512}
    assert {len(d["embedding"]) for (v, _), data in outputs.items() if v == "2.7" for d in data} == {1024}


@pytest.mark.parametrize("key", ["images/green_triangle.png", "images/purple_circle.jpg"])
@pytest.mark.parametrize("source", ["base64", "s3"])
def test_image_nearest_to_its_own_text(
    bedrock: BedrockRuntimeEmulator, samples: dict[str, SampleObject], key: str, source: str
) -> None:
    client = make_client(bedrock.endpoint)
    media = (
        {"base64String": base64.b64encode(samples[key].data).decode()}
        if source == "base64"
        else {"s3Location": {"uri": f"s3://{MEDIA_BUCKET}/{key}"}}
    )
    body = {"inputType": "image", "image": {"mediaSource": media}}
    response = client.invoke_model(modelId="us." + MARENGO_3_0, body=json.dumps(body))
    image = np.asarray(json.loads(response["body"].read())["data"][0]["embedding"])
    texts = [f"{c} {s}" for c in COLORS for s in SHAPES]
    scores = [float(image @ _text_vector(client, MARENGO_3_0, t)) for t in texts]
    scene = samples[key].scenes[0]
    assert texts[int(np.argmax(scores))] == f"{scene.color} {scene.shape}"


def test_text_image_fuses_both(bedrock: BedrockRuntimeEmulator) -> None:
    client = make_client(bedrock.endpoint)
    body = {
        "inputType": "text_image",
        "text_image": {
            "inputText": "green triangle",
            "mediaSource": {"s3Location": {"uri": f"s3://{MEDIA_BUCKET}/images/green_triangle.png"}},
        },
    }
    response = client.invoke_model(modelId=MARENGO_3_0, body=json.dumps(body))
    fused = json.loads(response["body"].read())["data"][0]["embedding"]
    assert len(fused) == 512
    assert cosine(fused, _text_vector(client, MARENGO_3_0, "green triangle")) > 0.9


@pytest.mark.parametrize(
    ("model", "body", "expected"),
    [
        (
            MARENGO_3_0,
            {
                "inputType": "video",
                "video": {
                    "mediaSource": {"s3Location": {"uri": f"s3://{MEDIA_BUCKET}/videos/shapes_a.mp4"}},
                    "startSec": 2,
                    "endSec": 11,
                    "segmentation": {"method": "fixed", "fixed": {"durationSec": 4}},
                    "embeddingOption": ["visual"],
                },
            },
            [(2.0, 6.0), (6.0, 10.0), (10.0, 11.0)],
        ),
        (
            MARENGO_2_7,
            {
                "inputType": "video",
                "mediaSource": {"s3Location": {"uri": f"s3://{MEDIA_BUCKET}/videos/shapes_b.mp4"}},
                "useFixedLengthSec": 5,
                "embeddingOption": ["visual-text"],
            },
            [(0.0, 5.0), (5.0, 10.0), (10.0, 11.0)],
        ),
    ],
)
def test_fixed_segmentation_and_range(
    bedrock: BedrockRuntimeEmulator, s3_client: Any, model: str, body: dict[str, Any], expected: list[Any]
) -> None:
    client = make_client(bedrock.endpoint)
    arn = client.start_async_invoke(
        modelId=model,
        modelInput=body,
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/fixed"}},
    )["invocationArn"]
    bedrock.wait_until_idle(30)
    data = _read_output(s3_client, arn, "fixed")
    assert [(d["startSec"], d["endSec"]) for d in data] == expected
    view = bedrock.invocations
    assert view[arn].status == "Completed"
    with pytest.raises(TypeError):
        view[arn] = view[arn]  # type: ignore[index]
