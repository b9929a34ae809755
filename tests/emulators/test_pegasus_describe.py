"""The emulated Pegasus's pure parts: model-id and region rules, body defaults, schema filling."""

from __future__ import annotations

import json
from typing import Any

import pytest

from emulators.bedrock_runtime.errors import ServiceError
from emulators.bedrock_runtime.models import PEGASUS_1_2, base_model_id, pegasus_base, resolve_pegasus
from emulators.bedrock_runtime.pegasus_body import parse_pegasus_body, prompt_tokens
from emulators.bedrock_runtime.pegasus_describe import (
    SceneInfo,
    describe_json,
    describe_text,
    estimate_tokens,
    keywords,
    truncate,
)

SCENES = [
    SceneInfo(0, 0.0, 4.0, "blue", (("red", "circle"),), "mid", 440.0),
    SceneInfo(1, 4.0, 6.5, "orange", (), "silence", 0.0),
]


@pytest.mark.parametrize(
    ("region", "model"),
    [
        ("us-east-1", "us." + PEGASUS_1_2),
        ("us-west-2", "global." + PEGASUS_1_2),
        ("eu-west-1", "eu." + PEGASUS_1_2),
        ("eu-central-2", "global." + PEGASUS_1_2),
        ("ap-northeast-2", "apac." + PEGASUS_1_2),
        ("ca-central-1", "global." + PEGASUS_1_2),
        ("us-east-1", f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{PEGASUS_1_2}"),
    ],
)
def test_profiles_taken_in_their_geography(region: str, model: str) -> None:
    assert resolve_pegasus(model, region=region) in ("us.", "eu.", "apac.", "global.")


@pytest.mark.parametrize(
    ("region", "model", "needle"),
    [
        ("us-east-1", "eu." + PEGASUS_1_2, "use us." + PEGASUS_1_2),
        ("eu-west-1", "us." + PEGASUS_1_2, "use eu." + PEGASUS_1_2),
        ("ap-south-1", "eu." + PEGASUS_1_2, "use apac." + PEGASUS_1_2),
        ("ca-central-1", "us." + PEGASUS_1_2, "use global." + PEGASUS_1_2),
        ("eu-west-1", PEGASUS_1_2, "on-demand throughput isn't supported"),
        ("cn-north-1", "global." + PEGASUS_1_2, "is not offered in cn-north-1"),
    ],
)
def test_profiles_refused_outside_their_geography(region: str, model: str, needle: str) -> None:
    with pytest.raises(ServiceError) as exc:
        resolve_pegasus(model, region=region)
    assert exc.value.code == "ValidationException" and needle in exc.value.message


def test_base_ids_for_counting() -> None:
    assert pegasus_base("apac." + PEGASUS_1_2) == PEGASUS_1_2
    assert pegasus_base("us.twelvelabs.marengo-embed-3-0-v1:0") is None
    assert base_model_id("global." + PEGASUS_1_2) == PEGASUS_1_2
    assert base_model_id("eu.twelvelabs.marengo-embed-2-7-v1:0") == "twelvelabs.marengo-embed-2-7-v1:0"
    assert base_model_id("some.other-model") == "some.other-model"


def test_body_defaults_and_prompt_token_bound() -> None:
    req = parse_pegasus_body(
        {
            "inputPrompt": "hi",
            "mediaSource": {"s3Location": {"uri": "s3://media/a.mp4", "bucketOwner": "1" * 12}},
        }
    )
    assert (req.temperature, req.max_output_tokens, req.json_schema) == (0.2, None, None)
    assert (req.media.uri, req.bucket_owner) == ("s3://media/a.mp4", "1" * 12)
    assert prompt_tokens("abc") == 3 and prompt_tokens("日本") == 6


def test_text_names_every_scene_with_its_times() -> None:
    assert describe_text(SCENES, 6.5) == (
        "A 6.5-second video in 2 scenes.\n"
        "0-4 s: A red circle on a blue background, with a mid tone (440 Hz).\n"
        "4-6.5 s: A plain orange picture, in silence."
    )
    assert SCENES[1].title == "plain orange"
    seen = ["red circle", "red", "circle", "blue", "blue background", "mid tone"]
    assert keywords(SCENES) == [*seen, "orange", "orange background"]


def test_schema_with_nullable_branches_bounds_and_enums() -> None:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "chapters": {
                "type": "array",
                "minItems": 3,
                "items": {
                    "type": "object",
                    "properties": {
                        "startSec": {"type": "integer"},
                        "endSec": {"anyOf": [{"type": "null"}, {"type": "number", "maximum": 5}]},
                        "title": {"type": ["null", "string"]},
                        "kind": {"const": "scene"},
                    },
                },
            },
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "language": {"enum": ["en", "fr"]},
            "extra": {"type": "object"},
            "nothing": {"type": "null"},
        },
    }
    got = describe_json(schema, SCENES, 6.5)
    assert got["chapters"] == [
        {"startSec": 0, "endSec": 4.0, "title": "red circle", "kind": "scene"},
        {"startSec": 4, "endSec": 5.0, "title": "plain orange", "kind": "scene"},
        {"startSec": 4, "endSec": 5.0, "title": "plain orange", "kind": "scene"},
    ]
    assert (got["rating"], got["language"], got["extra"], got["nothing"]) == (1, "en", {}, None)
    json.dumps(got)  # always serialisable


def test_recursive_schema_terminates() -> None:
    schema = {
        "$ref": "#/$defs/node",
        "$defs": {"node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}}},
    }
    got = describe_json(schema, SCENES, 6.5)
    depth = 0
    while got:
        got, depth = got["child"], depth + 1
    assert 1 < depth < 20


def test_truncation_follows_the_token_estimate() -> None:
    assert estimate_tokens("") == 1 and estimate_tokens("abcde") == 2
    assert truncate("abcdefghij", 2) == "abcdefgh"
