"""Both emulated spaces on realistic content, through the real boto3 client: small objects moving over large
backgrounds, an object on screen for part of a shot, stills of the same shots, and tones an octave or a fifth
apart. The right object and the right seconds must come first, as with a model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from emulators.bedrock_runtime import MARENGO_2_7, MARENGO_3_0, BedrockRuntimeEmulator
from emulators.sample_media import CONTENT_CLIP_KEY, CONTENT_PITCHES_KEY, SampleObject
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET, make_client

MODELS = {"3.0": MARENGO_3_0, "2.7": MARENGO_2_7}
CLIP, TONES = CONTENT_CLIP_KEY, CONTENT_PITCHES_KEY
YELLOW_STILL, BLUE_STILL = "content/yellow_still.png", "content/blue_still.png"
Place = tuple[str, float | None, float | None]  # (key, startSec, endSec); images have no seconds


def _media_body(version: str, modality: str, uri: str) -> dict[str, Any]:
    source = {"mediaSource": {"s3Location": {"uri": uri}}}
    return (
        {"inputType": modality, **source} if version == "2.7" else {"inputType": modality, modality: source}
    )


def _invoke(client: Any, version: str, body: dict[str, Any]) -> list[float]:
    response = client.invoke_model(modelId="us." + MODELS[version], body=json.dumps(body))
    return list(json.loads(response["body"].read())["data"][0]["embedding"])


def _text(client: Any, version: str, text: str) -> np.ndarray:
    body = (
        {"inputType": "text", "inputText": text}
        if version == "2.7"
        else {"inputType": "text", "text": {"inputText": text}}
    )
    return np.asarray(_invoke(client, version, body))


@dataclass
class Index:
    """Model version -> every segment and still of the content set, and a client for text queries."""

    vectors: dict[str, list[tuple[Place, np.ndarray]]]
    client: Any

    def ranked(self, version: str, query: str) -> list[tuple[Place, float]]:
        """Places by their best-scoring vector (visual and audio rows of a segment share its place)."""
        q = _text(self.client, version, query)
        best: dict[Place, float] = {}
        for place, vec in self.vectors[version]:
            best[place] = max(best.get(place, -1.0), float(vec @ q))
        return sorted(best.items(), key=lambda kv: -kv[1])


@pytest.fixture(scope="module")
def index(s3: Any, s3_client: Any, content: dict[str, SampleObject]) -> Iterator[Index]:
    """Embed the content set once, with both versions, through the emulator."""
    emulator = BedrockRuntimeEmulator(s3.endpoint).start()
    try:
        client = make_client(emulator.endpoint)
        arns: dict[tuple[str, str], str] = {}
        for version, model in MODELS.items():
            for key in (CLIP, TONES):
                arns[(version, key)] = client.start_async_invoke(
                    modelId=model,
                    modelInput=_media_body(
                        version, content[key].modality or "", f"s3://{MEDIA_BUCKET}/{key}"
                    ),
                    outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/realistic"}},
                )["invocationArn"]
        vectors: dict[str, list[tuple[Place, np.ndarray]]] = {version: [] for version in MODELS}
        for version in MODELS:
            for key in (YELLOW_STILL, BLUE_STILL):
                body = _media_body(version, "image", f"s3://{MEDIA_BUCKET}/{key}")
                vectors[version].append(((key, None, None), np.asarray(_invoke(client, version, body))))
        emulator.wait_until_idle(60)
        assert {inv.status for inv in emulator.invocations.values()} == {"Completed"}
        for (version, key), arn in arns.items():
            output = f"realistic/{arn[-12:]}/output.json"
            for item in json.loads(s3_client.get_object(Bucket=LAKE_BUCKET, Key=output)["Body"].read())[
                "data"
            ]:
                vectors[version].append(
                    ((key, item["startSec"], item["endSec"]), np.asarray(item["embedding"]))
                )
        yield Index(vectors, client)
    finally:
        emulator.stop()


@pytest.mark.parametrize("version", ["3.0", "2.7"])
def test_a_colour_scene_is_its_background_and_stills_rank_like_video(index: Index, version: str) -> None:
    for query, video, still, decoys in (
        ("a yellow scene", (CLIP, 0.0, 6.0), YELLOW_STILL, [(CLIP, 6.0, 12.0), (BLUE_STILL, None, None)]),
        ("blue background", (CLIP, 6.0, 12.0), BLUE_STILL, [(CLIP, 0.0, 6.0), (YELLOW_STILL, None, None)]),
    ):
        hits = index.ranked(version, query)
        scores = dict(hits)
        assert {place for place, _ in hits[:2]} == {video, (still, None, None)}, (query, hits[:4])
        assert abs(scores[video] - scores[(still, None, None)]) < 0.03, "a still and a video of one scene"
        assert all(scores[video] > scores[decoy] + 0.3 for decoy in decoys), (query, hits[:4])


@pytest.mark.parametrize("version", ["3.0", "2.7"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("small yellow square", {(CLIP, 6.0, 12.0), (BLUE_STILL, None, None)}),
        ("a blue square", {(CLIP, 0.0, 6.0), (YELLOW_STILL, None, None)}),
        ("red circle", {(CLIP, 12.0, 18.0)}),
        ("white triangle", {(CLIP, 12.0, 18.0)}),
        # On screen for the whole of 28-38 s, for 40 % of 18-28 s: the full segment first, the partial second.
        ("orange triangle", {(CLIP, 28.0, 38.0)}),
    ],
)
def test_the_small_object_named_comes_first(
    index: Index,
    version: str,
    query: str,
    expected: set[Place],
) -> None:
    hits = index.ranked(version, query)
    top = {place for place, _ in hits[: len(expected)]}
    assert top == expected, (query, hits[:4])
    assert hits[len(expected) - 1][1] > hits[len(expected)][1] + 0.1, (query, hits[:4])
    if query == "orange triangle":
        assert hits[1][0] == (CLIP, 18.0, 28.0)


@pytest.mark.parametrize("version", ["3.0", "2.7"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a 220 Hz tone", [(TONES, 0.0, 10.0)]),
        ("A4", [(TONES, 10.0, 20.0)]),
        ("660 Hz", [(TONES, 20.0, 30.0)]),
        ("an 880 Hz beep", [(TONES, 30.0, 40.0)]),
        ("B4", [(CLIP, 6.0, 12.0)]),  # 494 Hz: a whole tone above 440 Hz, still told apart
        ("a 1.48 kHz whistle", [(CLIP, 18.0, 28.0), (CLIP, 28.0, 38.0)]),  # the 20 s shot's two segments
    ],
)
def test_the_pitch_named_comes_first(index: Index, version: str, query: str, expected: list[Place]) -> None:
    hits = index.ranked(version, query)
    n = len(expected)
    assert {place for place, _ in hits[:n]} == set(expected), (query, hits[:4])
    assert hits[n - 1][1] > hits[n][1] + 0.25, (query, hits[:4])
