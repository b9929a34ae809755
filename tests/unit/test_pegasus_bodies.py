"""Pegasus bodies, ids, limits and parsing against the documented JSON (bedrock-runtime.md, seed 003)."""

import base64
import io
import json
from pathlib import Path

import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from resources.pegasus.prompts import DEFAULT_PROMPTS, PegasusPrompt, load_prompts
from resources.providers.bedrock.marengo_bodies import s3_media_source
from resources.providers.bedrock.pegasus import BedrockPegasus, PegasusCallError
from resources.providers.bedrock.pegasus_bodies import (
    MAX_S3_BYTES,
    PEGASUS_MODEL_ID,
    PegasusOutputError,
    base64_source,
    limit_problem,
    parse_answer,
    parse_chapters,
    parse_json_message,
    pegasus_body,
    pegasus_model_id,
)
from resources.storage.s3_storage import S3Storage

MB = 10**6  # decimal, as the documented limits


def test_the_body_matches_the_documented_s3_example() -> None:
    body = pegasus_body(
        "Summarize this video",
        s3_media_source("s3://my-video-bucket/my_video.mp4", "123456789012"),
    )
    assert json.loads(json.dumps(body)) == {
        "inputPrompt": "Summarize this video",
        "mediaSource": {
            "s3Location": {"uri": "s3://my-video-bucket/my_video.mp4", "bucketOwner": "123456789012"}
        },
        "temperature": 0.2,
    }


def test_structured_output_sends_the_schema_and_the_token_cap() -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    body = pegasus_body("Keywords", base64_source(b"\x00\x01video"), 0.0, 512, schema)
    assert body["responseFormat"] == {"jsonSchema": schema}
    assert body["maxOutputTokens"] == 512 and body["temperature"] == 0.0
    assert base64.b64decode(body["mediaSource"]["base64String"]) == b"\x00\x01video"
    assert "s3Location" not in body["mediaSource"]


@pytest.mark.parametrize(
    ("region", "scope", "expected"),
    [
        ("us-east-1", "geographic", f"us.{PEGASUS_MODEL_ID}"),
        ("eu-west-1", "geographic", f"eu.{PEGASUS_MODEL_ID}"),
        ("ap-northeast-2", "geographic", f"apac.{PEGASUS_MODEL_ID}"),
        ("us-west-2", "global", f"global.{PEGASUS_MODEL_ID}"),
        ("ca-central-1", "geographic", f"global.{PEGASUS_MODEL_ID}"),  # no geographic profile there
    ],
)
def test_the_inference_profile_follows_the_region(region: str, scope: str, expected: str) -> None:
    assert pegasus_model_id(region, scope) == expected  # type: ignore[arg-type]


def test_a_region_without_pegasus_names_where_it_is() -> None:
    with pytest.raises(ValueError, match=r"not offered in 'cn-north-1'.*us-east-1"):
        pegasus_model_id("cn-north-1")


def test_limits_are_checked_before_any_call() -> None:
    assert limit_problem(3600, 10 * MB, "s3", "Summarize") is None
    assert "1-hour limit" in (limit_problem(3600.5, 10 * MB, "s3", "Summarize") or "")
    assert "2 GB" in (limit_problem(60, MAX_S3_BYTES + 1, "s3", "Summarize") or "")
    assert limit_problem(60, MAX_S3_BYTES, "s3", "Summarize") is None
    assert "36 MB" in (limit_problem(60, 36 * MB + 1, "base64", "Summarize") or "")
    # Under 36 MB but too big for InvokeModel's 25 MB body once base64-encoded: refused too, by S3 hint.
    assert "request body" in (limit_problem(60, 20 * MB, "base64", "Summarize") or "")
    assert limit_problem(60, 10 * MB, "base64", "Summarize") is None
    assert "2000-token" in (limit_problem(60, MB, "s3", "x" * 1999) or "")
    assert limit_problem(60, MB, "s3", "x" * 1998) is None
    assert limit_problem(None, None, "base64", "Summarize") is None  # unknown: Bedrock decides


def test_the_documented_response_parses_with_counts_from_headers() -> None:
    answer = parse_answer(
        {"message": "A red circle.", "finishReason": "stop"},
        {"X-Amzn-Bedrock-Input-Token-Count": "812", "x-amzn-bedrock-output-token-count": "9"},
    )
    assert (answer.message, answer.finish_reason, answer.input_tokens, answer.output_tokens) == (
        "A red circle.",
        "stop",
        812,
        9,
    )
    bare = parse_answer({"message": "cut", "finishReason": "length"})
    assert bare.finish_reason == "length" and bare.input_tokens is None and bare.output_tokens is None


@pytest.mark.parametrize(
    "payload", [[], {"finishReason": "stop"}, {"message": "x"}, {"message": 3, "finishReason": "stop"}]
)
def test_an_undocumented_response_is_an_output_error(payload: object) -> None:
    with pytest.raises(PegasusOutputError):
        parse_answer(payload)


def test_chapters_parse_from_a_list_or_an_object_and_refuse_bad_times() -> None:
    one = {"start_sec": 0, "end_sec": 4.5, "title": "Red", "summary": "A red circle."}
    assert parse_chapters(parse_json_message(json.dumps([one])))[0].end_sec == 4.5
    assert parse_chapters({"chapters": [one]})[0].title == "Red"
    assert parse_json_message('```json\n["a", "b"]\n```') == ["a", "b"]
    with pytest.raises(PegasusOutputError, match="chapter 0"):
        parse_chapters([{**one, "end_sec": -1}])
    with pytest.raises(PegasusOutputError, match="not the JSON"):
        parse_json_message('[{"start_sec": 0, "end')


def test_prompt_hash_covers_what_is_sent_and_how_it_is_read_and_nothing_else() -> None:
    base = PegasusPrompt("p", "Describe", "json", {"type": "array"}, 0.2, 100)
    variants = [
        PegasusPrompt("p", "Describe it", "json", {"type": "array"}, 0.2, 100),
        PegasusPrompt("p", "Describe", "json", {"type": "object"}, 0.2, 100),
        PegasusPrompt("p", "Describe", "json", {"type": "array"}, 0.3, 100),
        PegasusPrompt("p", "Describe", "json", {"type": "array"}, 0.2, 101),
        # The same words read as chapters instead of plain JSON: stored answers would not parse as such.
        PegasusPrompt("p", "Describe", "chapters", {"type": "array"}, 0.2, 100),
    ]
    assert len({base.prompt_hash, *(v.prompt_hash for v in variants)}) == 6
    assert PegasusPrompt("q", "Describe", "json", {"type": "array"}, 0.2, 100).prompt_hash == base.prompt_hash


def test_the_defaults_and_a_prompts_file_merge_by_id(tmp_path: Path) -> None:
    assert [p.prompt_id for p in DEFAULT_PROMPTS] == ["summary", "chapters", "keywords"]
    assert [p.kind for p in DEFAULT_PROMPTS] == ["text", "chapters", "json"]
    file = tmp_path / "prompts.yaml"
    file.write_text(
        "prompts:\n"
        "  - id: summary\n    prompt: One sentence, please.\n    max_output_tokens: 200\n"
        "  - id: keywords\n    disabled: true\n"
        "  - id: people\n    prompt: Who appears?\n    kind: json\n"
        "    json_schema: {type: array, items: {type: string}}\n"
    )
    prompts = {p.prompt_id: p for p in load_prompts(str(file))}
    assert sorted(prompts) == ["chapters", "people", "summary"]
    assert (
        prompts["summary"].prompt == "One sentence, please." and prompts["summary"].max_output_tokens == 200
    )
    assert prompts["people"].json_schema == {"type": "array", "items": {"type": "string"}}


@pytest.mark.parametrize(
    ("entry", "fault"),
    [
        ({"id": "x", "prompt": "p", "max_output_tokens": 5000}, "max_output_tokens from 1 to 4096"),
        ({"id": "x", "prompt": "p", "temperature": 1.5}, "temperature from 0 to 1"),
        ({"id": "x", "prompt": "p", "kind": "json"}, "needs a `json_schema`"),
        ({"id": "x", "prompt": ""}, "non-empty `prompt`"),
        ({"prompt": "p"}, "needs an `id`"),
    ],
)
def test_a_bad_prompt_file_names_the_prompt_and_the_fault(tmp_path: Path, entry: dict, fault: str) -> None:
    file = tmp_path / "prompts.json"
    file.write_text(json.dumps({"prompts": [entry]}))
    with pytest.raises(ValueError, match=fault):
        load_prompts(str(file))


# --- the resource over a real botocore client, stubbed at the wire (botocore's Stubber) ----------------


def _stubbed(**kwargs: object) -> tuple[BedrockPegasus, Stubber]:
    pegasus = BedrockPegasus(
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:9",
        storage=S3Storage(region_name="eu-west-1"),
        **kwargs,  # type: ignore[arg-type]
    )
    stubber = Stubber(pegasus.client())
    stubber.activate()
    return pegasus, stubber


def test_the_resource_sends_the_body_to_the_regions_profile_and_parses_the_answer() -> None:
    pegasus, stubber = _stubbed(bucket_owner="123456789012")
    prompt = DEFAULT_PROMPTS[2]
    expected = pegasus_body(
        prompt.prompt,
        s3_media_source("s3://media/a.mp4", "123456789012"),
        prompt.temperature,
        prompt.max_output_tokens,
        prompt.json_schema,
    )
    raw = json.dumps({"message": '["red"]', "finishReason": "stop"}).encode()
    stubber.add_response(
        "invoke_model",
        {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"},
        {
            "modelId": f"eu.{PEGASUS_MODEL_ID}",
            "body": json.dumps(expected),
            "contentType": "application/json",
            "accept": "application/json",
        },
    )
    answer = pegasus.describe("s3://media/a.mp4", "etag", prompt)
    assert (answer.message, answer.finish_reason) == ('["red"]', "stop")
    stubber.assert_no_pending_responses()
    # botocore counts `max_attempts` as retries: 10 retries after the first attempt.
    assert pegasus.client().meta.config.retries == {"mode": "adaptive", "total_max_attempts": 11}


def test_throttling_left_after_the_retries_fails_that_call_with_a_one_line_reason() -> None:
    pegasus, stubber = _stubbed(max_attempts=1, bucket_owner="123456789012")
    stubber.add_client_error("invoke_model", "ThrottlingException", "Too many requests", 429)
    with pytest.raises(PegasusCallError, match="ThrottlingException: Too many requests after 1 retries"):
        pegasus.describe("s3://media/a.mp4", "etag", DEFAULT_PROMPTS[0])
