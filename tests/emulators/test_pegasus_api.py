"""The emulator's Pegasus 1.2 InvokeModel, driven through the real boto3 client: validation, descriptions
derived from the decoded sample media (scene times, colours, shapes, tones), region rules and faults."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulators.bedrock_runtime import (
    ANY_MEDIA,
    INJECTED_MODEL_ERROR_MESSAGE,
    MARENGO_3_0,
    PEGASUS_1_2,
    BedrockRuntimeEmulator,
    PegasusFault,
)
from emulators.sample_media import SampleObject, make_sparse_video
from tests.emulators.conftest import MEDIA_BUCKET, REGION, make_client
from tests.emulators.contract import assert_output_conforms

US = "us." + PEGASUS_1_2
OWNER = "123456789012"
VIDEO_A = f"s3://{MEDIA_BUCKET}/videos/shapes_a.mp4"
VIDEO_B = f"s3://{MEDIA_BUCKET}/videos/shapes_b.mp4"
CHAPTER = {
    "type": "object",
    "properties": {
        "start_sec": {"type": "number"},
        "end_sec": {"type": "number"},
        "title": {"type": "string"},
        "summary": {"type": "string"},
    },
    "required": ["start_sec", "end_sec", "title", "summary"],
}
CHAPTERS_SCHEMA = {"type": "object", "properties": {"chapters": {"type": "array", "items": CHAPTER}}}
KEYWORDS_SCHEMA = {"type": "array", "items": {"type": "string"}}
SCENES_A = [
    (0.0, 4.0, "red circle", "blue"),
    (4.0, 9.0, "yellow triangle", "black"),
    (9.0, 14.0, "green square", "white"),
]


def s3_source(uri: str = VIDEO_A, owner: str = OWNER) -> dict[str, Any]:
    return {"s3Location": {"uri": uri, "bucketOwner": owner}}


def body(prompt: str = "Summarize this video", source: dict[str, Any] | None = None, **extra: Any) -> str:
    return json.dumps(
        {"inputPrompt": prompt, "mediaSource": s3_source() if source is None else source, **extra}
    )


def invoke(client: Any, payload: str, model: str = US) -> dict[str, Any]:
    response = client.invoke_model(
        modelId=model, body=payload, contentType="application/json", accept="application/json"
    )
    assert_output_conforms("InvokeModel", response)
    assert response["contentType"] == "application/json"
    answer = json.loads(response["body"].read())
    assert set(answer) == {"message", "finishReason"}, "the documented response has no other field"
    return dict(answer)


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def chapters_of(answer: dict[str, Any]) -> list[tuple[float, float, str]]:
    return [(c["start_sec"], c["end_sec"], c["title"]) for c in json.loads(answer["message"])["chapters"]]


# --- descriptions from decoded content ---------------------------------------------------------------------


def test_s3_video_gets_one_chapter_per_scene_with_scene_times(
    client: Any, bedrock: BedrockRuntimeEmulator
) -> None:
    answer = invoke(client, body("Chapter this video", responseFormat={"jsonSchema": CHAPTERS_SCHEMA}))
    assert answer["finishReason"] == "stop"
    assert chapters_of(answer) == [(a, b, title) for a, b, title, _ in SCENES_A]
    summaries = [c["summary"] for c in json.loads(answer["message"])["chapters"]]
    assert summaries[0] == "A red circle on a blue background, with a mid tone (440 Hz)."
    assert "low tone (220 Hz)" in summaries[1] and "high tone (1760 Hz)" in summaries[2]


def test_top_level_chapter_list_schema(client: Any) -> None:
    schema = {"type": "array", "items": CHAPTER}
    answer = invoke(client, body(source=s3_source(VIDEO_B), responseFormat={"jsonSchema": schema}))
    chapters = json.loads(answer["message"])
    assert [(c["start_sec"], c["end_sec"], c["title"]) for c in chapters] == [
        (0.0, 5.0, "magenta square"),
        (5.0, 11.0, "cyan triangle"),
    ]


def test_prompt_without_response_format_gets_plain_text_with_scene_times(client: Any) -> None:
    answer = invoke(client, body())
    assert answer["finishReason"] == "stop"
    lines = answer["message"].splitlines()
    assert lines[0] == "A 14-second video in 3 scenes."
    assert lines[1] == "0-4 s: A red circle on a blue background, with a mid tone (440 Hz)."
    assert lines[2].startswith("4-9 s: A yellow triangle on a black background")
    assert lines[3].startswith("9-14 s: A green square on a white background")
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer["message"])


def test_keywords_schema_gets_a_json_list_of_what_is_seen_and_heard(client: Any) -> None:
    answer = invoke(client, body("Keywords", responseFormat={"jsonSchema": KEYWORDS_SCHEMA}))
    words = json.loads(answer["message"])
    assert isinstance(words, list) and all(isinstance(w, str) for w in words)
    assert {"red circle", "yellow triangle", "green square", "blue background", "high tone"} <= set(words)
    assert "magenta" not in words, "only what this video shows"


def test_generic_schema_is_filled_by_type_and_field_name(client: Any) -> None:
    schema = {
        "type": "object",
        "properties": {
            "headline": {"type": "string"},
            "duration_sec": {"type": "number"},
            "scene_count": {"type": "integer"},
            "mood": {"type": "string", "enum": ["calm", "tense"]},
            "has_audio": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "scenes": {"type": "array", "items": {"$ref": "#/$defs/scene"}},
        },
        "required": ["headline", "duration_sec", "scene_count", "mood", "has_audio", "tags", "scenes"],
        "$defs": {
            "scene": {
                "type": "object",
                "properties": {"start": {"type": "number"}, "colour": {"type": "string"}},
            }
        },
    }
    answer = invoke(client, body(responseFormat={"jsonSchema": schema}))
    got = json.loads(answer["message"])
    assert got["duration_sec"] == 14.0 and got["scene_count"] == 3
    assert got["mood"] == "calm" and got["has_audio"] is True
    assert got["tags"] == ["red circle", "red"]
    assert got["scenes"] == [
        {"start": 0.0, "colour": "red"},
        {"start": 4.0, "colour": "yellow"},
        {
            "start": 9.0,
            "colour": "green",
        },
    ]
    assert "14-second video" in got["headline"]


def test_base64_video_through_the_global_profile(client: Any, samples: dict[str, SampleObject]) -> None:
    inline = {"base64String": base64.b64encode(samples["videos/shapes_b.mp4"].data).decode()}
    answer = invoke(
        client,
        body(
            source=inline, responseFormat={"jsonSchema": CHAPTERS_SCHEMA}, temperature=0, maxOutputTokens=4096
        ),
        model="global." + PEGASUS_1_2,
    )
    assert chapters_of(answer) == [(0.0, 5.0, "magenta square"), (5.0, 11.0, "cyan triangle")]


def test_profile_arn_is_accepted(client: Any) -> None:
    arn = f"arn:aws:bedrock:{REGION}:{OWNER}:inference-profile/{US}"
    assert invoke(client, body(), model=arn)["finishReason"] == "stop"


# --- validation ------------------------------------------------------------------------------------------


def _without(key: str) -> str:
    payload = json.loads(body())
    del payload[key]
    return json.dumps(payload)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (_without("inputPrompt"), "#: required key [inputPrompt] not found"),
        (_without("mediaSource"), "#: required key [mediaSource] not found"),
        (body(""), "#/inputPrompt: expected minLength: 1"),
        (body("x" * 2001), "#/inputPrompt: the prompt has up to 2001 tokens, over the 2000-token limit"),
        (body("é" * 1001), "#/inputPrompt: the prompt has up to 2002 tokens"),
        (body(source={}), "#/mediaSource: exactly one of [base64String, s3Location] is required, found 0"),
        (
            body(source={**s3_source(), "base64String": "AAAA"}),
            "#/mediaSource: exactly one of [base64String, s3Location] is required, found 2",
        ),
        (
            body(source={"s3Location": {"uri": VIDEO_A}}),
            "#/mediaSource/s3Location: required key [bucketOwner]",
        ),
        (body(source={"s3Location": {"bucketOwner": OWNER}}), "#/mediaSource/s3Location: required key [uri]"),
        (
            body(source=s3_source(owner="me")),
            "#/mediaSource/s3Location/bucketOwner: string [me] does not match",
        ),
        (
            body(source=s3_source(uri="https://x/y.mp4")),
            "#/mediaSource/s3Location/uri: string [https://x/y.mp4]",
        ),
        (body(source={"base64String": "not base64!"}), "#/mediaSource/base64String: not valid base64"),
        (body(temperature=1.5), "#/temperature: 1.5 is not less or equal to 1"),
        (body(temperature=-0.1), "#/temperature: -0.1 is not greater or equal to 0"),
        (body(temperature="hot"), "#/temperature: expected type: Number, found: String"),
        (body(maxOutputTokens=4097), "#/maxOutputTokens: 4097 is not less or equal to 4096"),
        (body(maxOutputTokens=0), "#/maxOutputTokens: 0 is not greater or equal to 1"),
        (body(maxOutputTokens=10.5), "#/maxOutputTokens: expected type: Integer"),
        (body(responseFormat={}), "#/responseFormat: required key [jsonSchema] not found"),
        (body(responseFormat={"jsonSchema": "{}"}), "#/responseFormat/jsonSchema: expected type: JSONObject"),
        (body(responseFormat={"jsonSchema": {}, "type": "json"}), "#/responseFormat: extraneous key [type]"),
        (body(topP=0.5), "#: extraneous key [topP] is not permitted"),
        ("[1, 2]", "#: expected type: JSONObject, found: JSONArray"),
    ],
)
def test_invalid_body_is_a_validation_exception_naming_the_field(
    client: Any, bedrock: BedrockRuntimeEmulator, payload: str, needle: str
) -> None:
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=US, body=payload)
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert needle in message
    assert message.startswith("Malformed input request: ") and "\n" not in message
    assert bedrock.model_calls == {("InvokeModel", PEGASUS_1_2): 1}
    assert bedrock.pegasus_calls == (), "an invalid body never reaches the model"


def test_bucket_owner_may_be_made_optional(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    bedrock.pegasus_require_bucket_owner = False
    answer = invoke(client, body(source={"s3Location": {"uri": VIDEO_A}}))
    assert answer["message"].startswith("A 14-second video in 3 scenes.")
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=US, body=body(source=s3_source(owner="12345")))
    assert "bucketOwner: string [12345] does not match" in error_of(exc)[2], "a malformed owner still is not"


def test_prompt_of_exactly_2000_tokens_is_accepted(client: Any) -> None:
    assert invoke(client, body("x" * 2000))["finishReason"] == "stop"


def test_base64_over_the_limit_is_refused(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    # 36 MB decoded is 48 MB of base64, over InvokeModel's 25 MB body: the body limit refuses it first
    # (tests/emulators/test_bedrock_limits.py), so a lower limit stands in for it here.
    bedrock.pegasus_max_base64_bytes = 1000
    too_big = base64.b64encode(b"\0" * 1001).decode()
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=US, body=body(source={"base64String": too_big}))
    code, _, message = error_of(exc)
    assert code == "ValidationException"
    assert "#/mediaSource/base64String: decoded media is 1001 bytes, over the limit of 1000 bytes" in message
    assert bedrock.pegasus_calls == ()


def test_s3_object_over_the_size_limit_is_refused_before_it_is_read(
    client: Any, bedrock: BedrockRuntimeEmulator, samples: dict[str, SampleObject]
) -> None:
    size = len(samples["videos/shapes_a.mp4"].data)
    bedrock.pegasus_max_s3_bytes = size - 1  # stands in for 2 GB: no test uploads gigabytes
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=US, body=body())
    code, _, message = error_of(exc)
    assert code == "ValidationException"
    assert f"The S3 object {VIDEO_A} is {size} bytes" in message
    bedrock.pegasus_max_s3_bytes = size
    assert invoke(client, body())["finishReason"] == "stop"


def test_video_over_one_hour_is_refused(client: Any, s3_client: Any) -> None:
    s3_client.put_object(Bucket=MEDIA_BUCKET, Key="pegasus/long.mp4", Body=make_sparse_video(3601))
    uri = f"s3://{MEDIA_BUCKET}/pegasus/long.mp4"
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=US, body=body(source=s3_source(uri)))
    code, _, message = error_of(exc)
    assert code == "ValidationException"
    assert f"The video at {uri} is 3601 s long" in message and "at most 3600 s" in message


def test_missing_object_and_audio_only_file_are_refused(client: Any) -> None:
    missing = f"s3://{MEDIA_BUCKET}/pegasus/nope.mp4"
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=US, body=body(source=s3_source(missing)))
    assert error_of(exc)[0] == "ValidationException" and missing in error_of(exc)[2]
    audio = f"s3://{MEDIA_BUCKET}/audio/hum_220hz.wav"
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=US, body=body(source=s3_source(audio)))
    code, _, message = error_of(exc)
    assert code == "ValidationException" and audio in message and "no video stream" in message


@pytest.mark.parametrize("key", ["images/green_triangle.png", "images/purple_circle.jpg"])
@pytest.mark.parametrize("transport", ["s3", "base64"])
def test_a_still_image_is_not_a_video(
    client: Any, bedrock: BedrockRuntimeEmulator, samples: dict[str, SampleObject], key: str, transport: str
) -> None:
    """Decided by content: the picture decodes (one frame), but Pegasus takes video files only."""
    uri = f"s3://{MEDIA_BUCKET}/{key}"
    source = (
        s3_source(uri)
        if transport == "s3"
        else {"base64String": base64.b64encode(samples[key].data).decode()}
    )
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=US, body=body(source=source))
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    where = uri if transport == "s3" else "mediaSource.base64String"
    assert f"The media at {where} is a still image" in message and "video files only" in message
    assert [c.outcome for c in bedrock.pegasus_calls] == ["ValidationException"]


# --- model ids and regions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        ("eu." + PEGASUS_1_2, f"inference profile eu.{PEGASUS_1_2} is not available in {REGION}"),
        ("apac." + PEGASUS_1_2, f"inference profile apac.{PEGASUS_1_2} is not available in {REGION}"),
        (PEGASUS_1_2, "with on-demand throughput isn't supported"),
    ],
)
def test_model_id_bedrock_would_not_take_here_is_refused(client: Any, model: str, needle: str) -> None:
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=model, body=body())
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert needle in message


def test_pegasus_is_not_an_async_model(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        client.start_async_invoke(
            modelId=PEGASUS_1_2,
            modelInput={"inputPrompt": "x", "mediaSource": s3_source()},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://lake/out/"}},
        )
    code, _, message = error_of(exc)
    assert code == "ValidationException" and "InvokeModel only" in message


def test_eu_emulator_takes_the_eu_profile_and_refuses_the_us_one(s3: Any, s3_client: Any) -> None:
    bucket = "pegasus-eu-west-1"
    if bucket not in {b["Name"] for b in s3_client.list_buckets()["Buckets"]}:
        s3_client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3_client.copy_object(
        Bucket=bucket, Key="a.mp4", CopySource={"Bucket": MEDIA_BUCKET, "Key": "videos/shapes_a.mp4"}
    )
    emulator = BedrockRuntimeEmulator(s3.endpoint, region="eu-west-1").start()
    try:
        eu = make_client(emulator.endpoint, region="eu-west-1")
        payload = body(
            source=s3_source(f"s3://{bucket}/a.mp4"), responseFormat={"jsonSchema": CHAPTERS_SCHEMA}
        )
        assert chapters_of(invoke(eu, payload, model="eu." + PEGASUS_1_2))[0] == (0.0, 4.0, "red circle")
        with pytest.raises(ClientError) as exc:
            eu.invoke_model(modelId=US, body=payload)
        assert error_of(exc)[0] == "ValidationException" and "not available in eu-west-1" in error_of(exc)[2]
        with pytest.raises(ClientError) as exc:
            eu.invoke_model(modelId="eu." + PEGASUS_1_2, body=body())  # media bucket is in us-east-1
        code, _, message = error_of(exc)
        assert code == "ValidationException" and f"input S3 bucket {MEDIA_BUCKET} is in us-east-1" in message
    finally:
        emulator.stop()


# --- faults ----------------------------------------------------------------------------------------------


def test_max_output_tokens_cuts_the_message_with_finish_reason_length(client: Any) -> None:
    full = invoke(client, body())["message"]
    cut = invoke(client, body(maxOutputTokens=5))
    assert cut["finishReason"] == "length"
    assert cut["message"] == full[:20], "5 tokens of 4 characters"


def test_forced_length_for_one_object_truncates_only_its_answers(
    client: Any, bedrock: BedrockRuntimeEmulator
) -> None:
    full = invoke(client, body(responseFormat={"jsonSchema": CHAPTERS_SCHEMA}))["message"]
    bedrock.inject_pegasus_fault(VIDEO_A, "length")
    cut = invoke(client, body(responseFormat={"jsonSchema": CHAPTERS_SCHEMA}))
    assert cut["finishReason"] == "length"
    assert full.startswith(cut["message"]) and len(cut["message"]) < len(full)
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut["message"])
    assert invoke(client, body(source=s3_source(VIDEO_B)))["finishReason"] == "stop"
    assert [c.outcome for c in bedrock.pegasus_calls] == ["stop", "length", "stop"]


def test_length_rate_at_start_cuts_every_answer(s3: Any, samples: dict[str, SampleObject]) -> None:
    with BedrockRuntimeEmulator(s3.endpoint, region=REGION, pegasus_length_rate=1.0) as emulator:
        assert invoke(make_client(emulator.endpoint), body())["finishReason"] == "length"


def test_throttling_of_one_object_clears_after_the_given_calls(
    client_factory: Callable[..., Any], bedrock: BedrockRuntimeEmulator
) -> None:
    bedrock.inject_pegasus_fault(VIDEO_A, "throttling", times=2)
    assert dict(bedrock.pegasus_faults) == {VIDEO_A: ("throttling", 2)}
    retrying = client_factory(retries={"mode": "standard", "max_attempts": 3})
    assert invoke(retrying, body())["finishReason"] == "stop"
    assert [c.outcome for c in bedrock.pegasus_calls] == [
        "ThrottlingException",
        "ThrottlingException",
        "stop",
    ]
    assert bedrock.model_calls == {("InvokeModel", PEGASUS_1_2): 3}
    assert dict(bedrock.pegasus_faults) == {}, "used up"


def test_throttling_every_call_is_429(
    client_factory: Callable[..., Any], bedrock: BedrockRuntimeEmulator
) -> None:
    bedrock.inject_pegasus_fault(ANY_MEDIA, "throttling")
    no_retry = client_factory(retries={"total_max_attempts": 1})
    with pytest.raises(ClientError) as exc:
        no_retry.invoke_model(modelId=US, body=body())
    assert error_of(exc)[:2] == ("ThrottlingException", 429)
    bedrock.clear_pegasus_faults()
    assert invoke(no_retry, body())["finishReason"] == "stop"


def test_failures_at_start_and_per_object(s3: Any, samples: dict[str, SampleObject]) -> None:
    with BedrockRuntimeEmulator(s3.endpoint, region=REGION, pegasus_failure_rate=1.0) as emulator:
        with pytest.raises(ClientError) as exc:
            make_client(emulator.endpoint).invoke_model(modelId=US, body=body())
        assert error_of(exc) == ("ModelErrorException", 424, INJECTED_MODEL_ERROR_MESSAGE)
    faults: dict[str, PegasusFault] = {VIDEO_B: "model_error"}
    with BedrockRuntimeEmulator(s3.endpoint, region=REGION, pegasus_faults=faults) as emulator:
        client = make_client(emulator.endpoint, retries={"total_max_attempts": 1})
        with pytest.raises(ClientError) as exc:
            client.invoke_model(modelId=US, body=body(source=s3_source(VIDEO_B)))
        assert error_of(exc)[:2] == ("ModelErrorException", 424)
        assert invoke(client, body())["finishReason"] == "stop", "another object is unaffected"
        emulator.inject_pegasus_fault(VIDEO_A, "timeout", times=1)
        with pytest.raises(ClientError) as exc:
            client.invoke_model(modelId=US, body=body())
        assert error_of(exc)[:2] == ("ModelTimeoutException", 408)


def test_unknown_fault_is_refused(bedrock: BedrockRuntimeEmulator) -> None:
    with pytest.raises(ValueError, match="unknown Pegasus fault 'slow'"):
        bedrock.inject_pegasus_fault(VIDEO_A, "slow")  # type: ignore[arg-type]


# --- call counts -----------------------------------------------------------------------------------------


def test_calls_are_counted_per_operation_and_model(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    invoke(client, body("one"))
    invoke(client, body("two", responseFormat={"jsonSchema": KEYWORDS_SCHEMA}), model="global." + PEGASUS_1_2)
    client.invoke_model(
        modelId="us." + MARENGO_3_0, body=json.dumps({"inputType": "text", "text": {"inputText": "x"}})
    )
    assert dict(bedrock.calls) == {"InvokeModel": 3}
    assert dict(bedrock.model_calls) == {("InvokeModel", PEGASUS_1_2): 2, ("InvokeModel", MARENGO_3_0): 1}
    calls = bedrock.pegasus_calls
    assert [(c.model_id, c.media_uri, c.prompt, c.outcome) for c in calls] == [
        (US, VIDEO_A, "one", "stop"),
        ("global." + PEGASUS_1_2, VIDEO_A, "two", "stop"),
    ]
    assert calls[0].json_schema is None and calls[1].json_schema == KEYWORDS_SCHEMA
    bedrock.reset_calls()
    assert dict(bedrock.calls) == {} and dict(bedrock.model_calls) == {} and bedrock.pegasus_calls == ()
