"""The Bedrock runtime emulator's wire contract, driven through the real boto3 client."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from emulators.bedrock_runtime import (
    INJECTED_FAILURE_MESSAGE,
    MARENGO_2_7,
    MARENGO_3_0,
    BedrockRuntimeEmulator,
)
from emulators.sample_media import SampleObject, frames_zeroed
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET, REGION, make_client
from tests.emulators.contract import assert_output_conforms

VIDEO_URI = f"s3://{MEDIA_BUCKET}/videos/shapes_a.mp4"


def out_config(prefix: str = "out") -> dict[str, Any]:
    return {"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/{prefix}/"}}


def video_input(uri: str = VIDEO_URI, **extra: Any) -> dict[str, Any]:
    return {"inputType": "video", "video": {"mediaSource": {"s3Location": {"uri": uri}}, **extra}}


def text_input(text: str = "red circle") -> dict[str, Any]:
    return {"inputType": "text", "text": {"inputText": text}}


def start(client: Any, model_input: dict[str, Any], model: str = MARENGO_3_0, **kw: Any) -> str:
    response = client.start_async_invoke(
        modelId=model, modelInput=model_input, outputDataConfig=out_config(), **kw
    )
    assert_output_conforms("StartAsyncInvoke", response)
    return str(response["invocationArn"])


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


# --- StartAsyncInvoke / GetAsyncInvoke ---------------------------------------------------------------------


def test_start_then_get_completes_with_all_members(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    arn = start(client, video_input(), clientRequestToken="tok-get-1")
    assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:async-invoke/")
    bedrock.wait_until_idle(30)
    got = client.get_async_invoke(invocationArn=arn)
    assert_output_conforms("GetAsyncInvoke", got)
    assert got["status"] == "Completed"
    assert got["invocationArn"] == arn
    assert got["modelArn"] == f"arn:aws:bedrock:us-east-1::foundation-model/{MARENGO_3_0}"
    assert got["clientRequestToken"] == "tok-get-1"
    assert got["outputDataConfig"] == out_config()
    assert got["submitTime"] <= got["lastModifiedTime"] == got["endTime"]
    assert "failureMessage" not in got


def test_in_progress_while_latency_holds(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    bedrock.latency_sec = 60
    arn = start(client, text_input())
    got = client.get_async_invoke(invocationArn=arn)
    assert_output_conforms("GetAsyncInvoke", got)
    assert got["status"] == "InProgress"
    assert "endTime" not in got
    with pytest.raises(TimeoutError):
        bedrock.wait_until_idle(0.05)


def test_output_and_manifest_written_in_documented_format(
    client: Any, bedrock: BedrockRuntimeEmulator, s3_client: Any
) -> None:
    arn3 = start(client, video_input())
    arn27 = start(
        client,
        {"inputType": "video", "mediaSource": {"s3Location": {"uri": VIDEO_URI}}},
        model=MARENGO_2_7,
    )
    bedrock.wait_until_idle(30)
    for arn, dim in ((arn3, 512), (arn27, 1024)):
        inv_id = arn[-12:]
        manifest = json.loads(
            s3_client.get_object(Bucket=LAKE_BUCKET, Key=f"out/{inv_id}/manifest.json")["Body"].read()
        )
        assert manifest["invocationArn"] == arn
        assert manifest["status"] == "Completed"
        assert manifest["outputFiles"] == ["output.json"]
        uuid.UUID(manifest["requestId"])
        output = json.loads(
            s3_client.get_object(Bucket=LAKE_BUCKET, Key=f"out/{inv_id}/output.json")["Body"].read()
        )
        assert output["data"], output
        for item in output["data"]:
            assert len(item["embedding"]) == dim
            assert isinstance(item["startSec"], float) and isinstance(item["endSec"], float)
            assert item["endSec"] > item["startSec"]
            if dim == 512:
                assert item["embeddingOption"] in ("visual", "audio")
                assert item["embeddingScope"] == "clip"
            else:
                assert item["embeddingOption"] in ("visual-text", "visual-image", "audio")
                assert "embeddingScope" not in item
    options27 = {
        i["embeddingOption"]
        for i in json.loads(
            s3_client.get_object(Bucket=LAKE_BUCKET, Key=f"out/{arn27[-12:]}/output.json")["Body"].read()
        )["data"]
    }
    assert options27 == {"visual-text", "visual-image", "audio"}


def test_asset_scope_adds_whole_file_vectors(
    client: Any, bedrock: BedrockRuntimeEmulator, s3_client: Any
) -> None:
    arn = start(client, video_input(embeddingScope=["clip", "asset"], embeddingOption=["visual"]))
    bedrock.wait_until_idle(30)
    data = json.loads(
        s3_client.get_object(Bucket=LAKE_BUCKET, Key=f"out/{arn[-12:]}/output.json")["Body"].read()
    )["data"]
    assets = [d for d in data if d["embeddingScope"] == "asset"]
    assert [(a["embeddingOption"], a["startSec"], a["endSec"]) for a in assets] == [("visual", 0.0, 14.0)]
    assert {d["embeddingOption"] for d in data} == {"visual"}


def test_unknown_arn_is_validation_error(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        client.get_async_invoke(
            invocationArn="arn:aws:bedrock:us-east-1:123456789012:async-invoke/abcdefabcdef"
        )
    assert error_of(exc)[:2] == ("ValidationException", 400)


# --- idempotency -------------------------------------------------------------------------------------------


def test_same_token_same_body_replays_original_arn(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    first = start(client, text_input(), clientRequestToken="idem-1")
    created = bedrock.created_invocations
    again = start(client, text_input(), clientRequestToken="idem-1")
    assert again == first
    assert bedrock.created_invocations == created == 1
    assert len(bedrock.invocations) == 1


def test_same_token_different_body_conflicts(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    start(client, text_input("red circle"), clientRequestToken="idem-2")
    with pytest.raises(ClientError) as exc:
        start(client, text_input("blue square"), clientRequestToken="idem-2")
    assert error_of(exc)[:2] == ("ConflictException", 400)
    assert bedrock.created_invocations == 1


# --- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "model_input", "needle"),
    [
        (
            MARENGO_3_0,
            {"video": {"mediaSource": {"s3Location": {"uri": VIDEO_URI}}}},
            "required key [inputType]",
        ),
        (MARENGO_3_0, {"inputType": "video"}, "required key [video]"),
        (MARENGO_3_0, {**video_input(), "foo": 1}, "extraneous key [foo]"),
        (MARENGO_3_0, video_input(foo=1), "extraneous key [foo]"),
        (MARENGO_3_0, {"inputType": "movie"}, "#/inputType: movie is not a valid enum value"),
        (MARENGO_3_0, video_input(embeddingOption=["smell"]), "smell is not a valid enum value"),
        (
            MARENGO_3_0,
            video_input(segmentation={"method": "fixed", "fixed": {"durationSec": 11}}),
            "durationSec: 11 is not less or equal to 10",
        ),
        (MARENGO_3_0, {"inputType": "video", "video": {"mediaSource": {}}}, "exactly one of"),
        (
            MARENGO_2_7,
            {"inputType": "video", "mediaSource": {"s3Location": {"uri": VIDEO_URI}}, "video": {}},
            "extraneous key [video]",
        ),
        (MARENGO_2_7, {"inputType": "text_image"}, "text_image is not a valid enum value"),
        (
            MARENGO_2_7,
            {"inputType": "video", "mediaSource": {"s3Location": {"uri": VIDEO_URI}}, "useFixedLengthSec": 1},
            "useFixedLengthSec: 1 is not greater or equal to 2",
        ),
    ],
)
def test_body_validation_errors_name_the_key(
    client: Any, bedrock: BedrockRuntimeEmulator, model: str, model_input: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ClientError) as exc:
        start(client, model_input, model=model)
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("Malformed input request: ")
    assert needle in message, message
    assert bedrock.created_invocations == 0


def test_missing_object_is_validation_error_naming_uri(client: Any) -> None:
    uri = f"s3://{MEDIA_BUCKET}/videos/does-not-exist.mp4"
    with pytest.raises(ClientError) as exc:
        start(client, video_input(uri))
    code, _, message = error_of(exc)
    assert code == "ValidationException" and uri in message


ZEROED_KEY = "videos/zeroed_frames.mp4"
UNDECODABLE = ["videos/corrupt.mp4", "docs/notes.txt", ZEROED_KEY]


@pytest.fixture()
def zeroed_video(s3_client: Any, samples: dict[str, SampleObject]) -> str:
    """A video whose header is intact (streams, duration) and whose frames are zeros: nothing decodes."""
    data = frames_zeroed(samples["videos/shapes_a.mp4"].data)
    s3_client.put_object(Bucket=MEDIA_BUCKET, Key=ZEROED_KEY, Body=data)
    return f"s3://{MEDIA_BUCKET}/{ZEROED_KEY}"


@pytest.mark.parametrize("key", UNDECODABLE)
def test_unreadable_media_is_validation_error(
    client: Any,
    bedrock: BedrockRuntimeEmulator,
    samples: dict[str, SampleObject],
    zeroed_video: str,
    key: str,
) -> None:
    assert bedrock.undecodable_media == "refuse", "the default"
    uri = f"s3://{MEDIA_BUCKET}/{key}"
    with pytest.raises(ClientError) as exc:
        start(client, video_input(uri))
    code, _, message = error_of(exc)
    assert code == "ValidationException" and uri in message and "Unable to read media" in message
    assert bedrock.created_invocations == 0


@pytest.mark.parametrize("key", UNDECODABLE)
def test_undecodable_media_may_instead_fail_the_job_it_was_accepted_for(
    client: Any, s3: Any, s3_client: Any, zeroed_video: str, key: str
) -> None:
    uri = f"s3://{MEDIA_BUCKET}/{key}"
    with BedrockRuntimeEmulator(s3.endpoint, region=REGION, undecodable_media="fail") as emulator:
        arn = start(make_client(emulator.endpoint), video_input(uri))
        emulator.wait_until_idle(30)
        got = make_client(emulator.endpoint).get_async_invoke(invocationArn=arn)
    assert_output_conforms("GetAsyncInvoke", got)
    assert got["status"] == "Failed"
    assert got["failureMessage"].startswith(f"Unable to process media at {uri}: ")
    listed = s3_client.list_objects_v2(Bucket=LAKE_BUCKET, Prefix=f"out/{arn[-12:]}/")["Contents"]
    assert [o["Key"] for o in listed] == [f"out/{arn[-12:]}/manifest.json"], "no output.json"
    manifest = json.loads(s3_client.get_object(Bucket=LAKE_BUCKET, Key=listed[0]["Key"])["Body"].read())
    assert (manifest["status"], manifest["failureMessage"]) == ("Failed", got["failureMessage"])


def test_undecodable_media_mode_is_checked(s3: Any) -> None:
    with pytest.raises(ValueError, match="use one of refuse, fail"):
        BedrockRuntimeEmulator(s3.endpoint, undecodable_media="later")  # type: ignore[arg-type]


def test_missing_output_bucket_is_validation_error(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        client.start_async_invoke(
            modelId=MARENGO_3_0,
            modelInput=text_input(),
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://no-such-bucket-xyz/out/"}},
        )
    code, _, message = error_of(exc)
    assert code == "ValidationException" and "no-such-bucket-xyz" in message


FOREIGN_REGION = "eu-west-1"
FOREIGN_BUCKET = "media-eu-west-1"


@pytest.fixture()
def foreign_bucket(s3_client: Any, samples: dict[str, SampleObject]) -> str:
    """A bucket in another region than the emulator's (moto keeps each bucket's LocationConstraint),
    holding a readable video and image, so only the region can be why a request is refused."""
    if FOREIGN_BUCKET not in {b["Name"] for b in s3_client.list_buckets()["Buckets"]}:
        s3_client.create_bucket(
            Bucket=FOREIGN_BUCKET, CreateBucketConfiguration={"LocationConstraint": FOREIGN_REGION}
        )
        for key in ("videos/shapes_a.mp4", "images/green_triangle.png"):
            s3_client.put_object(Bucket=FOREIGN_BUCKET, Key=key, Body=samples[key].data)
    return FOREIGN_BUCKET


def test_media_bucket_in_another_region_is_refused(
    client: Any, bedrock: BedrockRuntimeEmulator, foreign_bucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        start(client, video_input(f"s3://{foreign_bucket}/videos/shapes_a.mp4"))
    code, status, message = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert foreign_bucket in message and FOREIGN_REGION in message and REGION in message
    assert bedrock.created_invocations == 0


def test_output_bucket_in_another_region_is_refused(
    client: Any, bedrock: BedrockRuntimeEmulator, foreign_bucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        client.start_async_invoke(
            modelId=MARENGO_3_0,
            modelInput=video_input(),
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{foreign_bucket}/out/"}},
        )
    code, _, message = error_of(exc)
    assert code == "ValidationException"
    assert f"output S3 bucket {foreign_bucket} is in {FOREIGN_REGION}" in message and REGION in message
    assert bedrock.created_invocations == 0


def test_invoke_model_refuses_an_image_in_another_region(client: Any, foreign_bucket: str) -> None:
    uri = f"s3://{foreign_bucket}/images/green_triangle.png"
    body = {"inputType": "image", "image": {"mediaSource": {"s3Location": {"uri": uri}}}}
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId="us." + MARENGO_3_0, body=json.dumps(body))
    code, _, message = error_of(exc)
    assert code == "ValidationException" and foreign_bucket in message and FOREIGN_REGION in message


def test_buckets_in_the_models_region_are_accepted_outside_us_east_1(s3: Any, foreign_bucket: str) -> None:
    """The rule compares regions, not names: an emulator in eu-west-1 takes the eu-west-1 bucket."""
    emulator = BedrockRuntimeEmulator(s3.endpoint, region=FOREIGN_REGION).start()
    try:
        eu_client = make_client(emulator.endpoint, region=FOREIGN_REGION)
        response = eu_client.start_async_invoke(
            modelId=MARENGO_3_0,
            modelInput=video_input(f"s3://{foreign_bucket}/videos/shapes_a.mp4"),
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{foreign_bucket}/out/"}},
        )
        emulator.wait_until_idle(30)
        got = eu_client.get_async_invoke(invocationArn=response["invocationArn"])
        assert got["status"] == "Completed", got.get("failureMessage")
    finally:
        emulator.stop()


def test_shape_pattern_checked_server_side(bedrock: BedrockRuntimeEmulator) -> None:
    """boto3 skips patterns client-side; the server must enforce the model's s3Uri pattern."""
    status, headers, body = raw_request(
        bedrock.endpoint,
        "POST",
        "/async-invoke",
        {
            "modelId": MARENGO_3_0,
            "modelInput": text_input(),
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "http://x"}},
        },
    )
    assert status == 400 and headers["x-amzn-ErrorType"] == "ValidationException:"
    assert "outputDataConfig.s3OutputDataConfig.s3Uri" in body["message"]


def test_unknown_model_is_validation_error(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        start(client, text_input(), model="twelvelabs.marengo-embed-9-9-v1:0")
    assert error_of(exc) == ("ValidationException", 400, "The provided model identifier is invalid.")


# --- InvokeModel -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "body", "dim"),
    [
        (MARENGO_3_0, text_input(), 512),
        ("us." + MARENGO_3_0, text_input(), 512),
        ("us." + MARENGO_2_7, {"inputType": "text", "inputText": "red circle"}, 1024),
    ],
)
def test_invoke_model_text(client: Any, model: str, body: dict[str, Any], dim: int) -> None:
    response = client.invoke_model(modelId=model, body=json.dumps(body), contentType="application/json")
    assert response["contentType"] == "application/json"
    data = json.loads(response["body"].read())["data"]
    assert len(data) == 1 and len(data[0]["embedding"]) == dim


@pytest.mark.parametrize(
    "model",
    [
        "apac." + MARENGO_3_0,  # Marengo 3.0 has no apac. profile
        MARENGO_2_7,  # 2.7 is invoked through a profile only
    ],
)
def test_invoke_model_rejects_ids_bedrock_does_not_serve(client: Any, model: str) -> None:
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId=model, body=json.dumps(text_input()), contentType="application/json")
    assert error_of(exc)[:2] == ("ValidationException", 400)


def test_start_async_invoke_takes_the_base_model_id_only(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        start(client, video_input(), model="us." + MARENGO_3_0)
    code, _, message = error_of(exc)
    assert code == "ValidationException" and "not supported for this operation" in message


def test_invoke_model_rejects_video(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId="us." + MARENGO_3_0, body=json.dumps(video_input()))
    code, _, message = error_of(exc)
    assert code == "ValidationException" and "video" in message


def test_invoke_model_unknown_model(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        client.invoke_model(modelId="us.anthropic.claude-v9", body=json.dumps(text_input()))
    assert error_of(exc) == ("ValidationException", 400, "The provided model identifier is invalid.")


# --- ListAsyncInvokes --------------------------------------------------------------------------------------


def test_list_filters_by_status_and_submit_time(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    arns = [start(client, text_input(f"word{i}")) for i in range(3)]
    bedrock.wait_until_idle(30)
    bedrock.failure_rate = 1.0
    failed = start(client, text_input("doomed"))
    bedrock.wait_until_idle(30)
    listed = client.list_async_invokes()
    assert_output_conforms("ListAsyncInvokes", listed)
    assert [s["invocationArn"] for s in listed["asyncInvokeSummaries"]] == [failed, *reversed(arns)]
    only_failed = client.list_async_invokes(statusEquals="Failed")["asyncInvokeSummaries"]
    assert [s["invocationArn"] for s in only_failed] == [failed]
    assert only_failed[0]["failureMessage"] == INJECTED_FAILURE_MESSAGE
    completed = client.list_async_invokes(statusEquals="Completed", sortOrder="Ascending")
    assert [s["invocationArn"] for s in completed["asyncInvokeSummaries"]] == arns
    second = client.get_async_invoke(invocationArn=arns[1])["submitTime"]
    after = client.list_async_invokes(submitTimeAfter=second, sortOrder="Ascending")["asyncInvokeSummaries"]
    assert [s["invocationArn"] for s in after] == [arns[2], failed]
    before = client.list_async_invokes(submitTimeBefore=second, sortOrder="Ascending")["asyncInvokeSummaries"]
    assert [s["invocationArn"] for s in before] == [arns[0]]


def test_list_paginates_with_boto3_paginator(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    arns = [start(client, text_input(f"page{i}")) for i in range(5)]
    bedrock.wait_until_idle(30)
    pages = list(client.get_paginator("list_async_invokes").paginate(PaginationConfig={"PageSize": 2}))
    for page in pages:
        assert_output_conforms("ListAsyncInvokes", page)
    assert [len(p["asyncInvokeSummaries"]) for p in pages] == [2, 2, 1]
    seen = [s["invocationArn"] for p in pages for s in p["asyncInvokeSummaries"]]
    assert seen == list(reversed(arns))
    ascending = client.get_paginator("list_async_invokes").paginate(
        sortOrder="Ascending", PaginationConfig={"PageSize": 3}
    )
    assert [s["invocationArn"] for p in ascending for s in p["asyncInvokeSummaries"]] == arns


def test_counts_calls_and_status_records_returned(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    arns = [start(client, text_input(f"count{i}")) for i in range(3)]
    bedrock.wait_until_idle(30)
    list(client.get_paginator("list_async_invokes").paginate(PaginationConfig={"PageSize": 2}))
    client.list_async_invokes(statusEquals="Failed")
    client.get_async_invoke(invocationArn=arns[0])
    with pytest.raises(ClientError):
        client.get_async_invoke(invocationArn=arns[0][:-1] + "x")
    assert dict(bedrock.calls) == {"StartAsyncInvoke": 3, "ListAsyncInvokes": 3, "GetAsyncInvoke": 2}
    assert bedrock.status_records == 3 + 0 + 1, "two pages of 2 and 1, none failed, one found by ARN"


def test_list_rejects_bad_next_token(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        client.list_async_invokes(nextToken="not-a-token")
    assert error_of(exc)[0] == "ValidationException"


# --- faults ------------------------------------------------------------------------------------------------


def test_quota_counts_in_flight_invocations(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    bedrock.latency_sec = 60
    bedrock.max_concurrent_invocations = 2
    first = start(client, text_input("a"), clientRequestToken="q-1")
    start(client, text_input("b"))
    with pytest.raises(ClientError) as exc:
        start(client, text_input("c"))
    code, status, _ = error_of(exc)
    assert (code, status) == ("ServiceQuotaExceededException", 400)
    assert (
        start(client, text_input("a"), clientRequestToken="q-1") == first
    )  # a replay is not a new invocation
    assert bedrock.created_invocations == 2


def test_quota_frees_up_when_invocations_finish(client: Any, bedrock: BedrockRuntimeEmulator) -> None:
    bedrock.max_concurrent_invocations = 1
    start(client, text_input("a"))
    bedrock.wait_until_idle(30)
    start(client, text_input("b"))
    assert bedrock.created_invocations == 2


def test_throttling_is_429(client_factory: Callable[..., Any], bedrock: BedrockRuntimeEmulator) -> None:
    no_retry = client_factory(retries={"total_max_attempts": 1})
    bedrock.throttle_rate = 1.0
    with pytest.raises(ClientError) as exc:
        no_retry.list_async_invokes()
    assert error_of(exc)[:2] == ("ThrottlingException", 429)
    with pytest.raises(ClientError) as exc:
        start(no_retry, text_input())
    assert error_of(exc)[:2] == ("ThrottlingException", 429)
    assert bedrock.created_invocations == 0
    bedrock.throttle_rate = 0.0
    assert no_retry.list_async_invokes()["asyncInvokeSummaries"] == []


def test_throttling_is_reproducible_with_seed(s3: Any, samples: Any) -> None:
    def outcomes() -> list[str]:
        emulator = BedrockRuntimeEmulator(s3.endpoint, seed=42, throttle_rate=0.5).start()
        try:
            from tests.emulators.conftest import make_client

            c = make_client(emulator.endpoint, retries={"total_max_attempts": 1})
            result = []
            for _ in range(12):
                try:
                    c.list_async_invokes()
                    result.append("ok")
                except ClientError as exc:
                    result.append(exc.response["Error"]["Code"])
            return result
        finally:
            emulator.stop()

    first = outcomes()
    assert first == outcomes()
    assert {"ok", "ThrottlingException"} == set(first)


def test_failure_rate_one_fails_with_message(
    client: Any, bedrock: BedrockRuntimeEmulator, s3_client: Any
) -> None:
    bedrock.failure_rate = 1.0
    arn = start(client, video_input())
    bedrock.wait_until_idle(30)
    got = client.get_async_invoke(invocationArn=arn)
    assert_output_conforms("GetAsyncInvoke", got)
    assert got["status"] == "Failed"
    assert got["failureMessage"] == INJECTED_FAILURE_MESSAGE
    assert "endTime" in got
    keys = [
        o["Key"]
        for o in s3_client.list_objects_v2(Bucket=LAKE_BUCKET, Prefix=f"out/{arn[-12:]}/")["Contents"]
    ]
    assert keys == [f"out/{arn[-12:]}/manifest.json"]


def test_decode_error_during_processing_fails(
    client: Any, bedrock: BedrockRuntimeEmulator, s3_client: Any, samples: dict[str, SampleObject]
) -> None:
    """The object is replaced by garbage after admission: processing must end Failed, naming the reason."""
    key = f"tmp/{uuid.uuid4().hex}.mp4"
    s3_client.put_object(Bucket=MEDIA_BUCKET, Key=key, Body=samples["videos/shapes_b.mp4"].data)
    bedrock.latency_sec = 1.0
    arn = start(client, video_input(f"s3://{MEDIA_BUCKET}/{key}"))
    s3_client.put_object(Bucket=MEDIA_BUCKET, Key=key, Body=samples["videos/corrupt.mp4"].data)
    bedrock.wait_until_idle(30)
    got = client.get_async_invoke(invocationArn=arn)
    assert got["status"] == "Failed"
    assert key in got["failureMessage"] and "Invalid data" in got["failureMessage"]


# --- raw wire ----------------------------------------------------------------------------------------------


def raw_request(
    endpoint: str,
    method: str,
    path: str,
    body: Any = None,
    auth: bool = True,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """One request outside boto3 (what another client might send), SigV4-signed by botocore's signer with
    the local key pair unless `auth` is False; `headers` are sent as given, after signing."""
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json"}
    if auth:
        signed = AWSRequest(method=method, url=endpoint + path, data=data, headers=sent)
        SigV4Auth(Credentials("test", "test"), "bedrock", REGION).add_auth(signed)
        sent = dict(signed.headers.items())
    sent.update(headers or {})
    request = urllib.request.Request(endpoint + path, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read())


def test_unsigned_request_is_access_denied(bedrock: BedrockRuntimeEmulator) -> None:
    status, headers, body = raw_request(bedrock.endpoint, "GET", "/async-invoke", auth=False)
    assert status == 403
    assert headers["x-amzn-ErrorType"] == "AccessDeniedException:"
    assert "message" in body


def test_model_id_is_url_decoded(bedrock: BedrockRuntimeEmulator) -> None:
    path = "/model/" + urllib.parse.quote("us." + MARENGO_3_0, safe="") + "/invoke"
    status, _, body = raw_request(bedrock.endpoint, "POST", path, text_input())
    assert status == 200 and len(body["data"][0]["embedding"]) == 512


def test_unknown_route(bedrock: BedrockRuntimeEmulator) -> None:
    status, headers, _ = raw_request(bedrock.endpoint, "GET", "/nope")
    assert status == 404 and headers["x-amzn-ErrorType"].endswith(":")
