"""The emulator keeps its jobs under a workdir across restarts, and its hooks lose or corrupt a job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulators.bedrock_runtime import MARENGO_3_0, BedrockRuntimeEmulator, ServiceError
from emulators.s3 import S3Emulator
from emulators.sample_media import SampleObject
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET, REGION, make_client

VIDEO = {
    "inputType": "video",
    "video": {"mediaSource": {"s3Location": {"uri": f"s3://{MEDIA_BUCKET}/videos/shapes_a.mp4"}}},
}
OUTPUT = {"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/state-test/"}}


def start(client: Any, token: str) -> str:
    response = client.start_async_invoke(
        modelId=MARENGO_3_0, modelInput=VIDEO, outputDataConfig=OUTPUT, clientRequestToken=token
    )
    return str(response["invocationArn"])


def emulator(s3: S3Emulator, **kwargs: Any) -> BedrockRuntimeEmulator:
    return BedrockRuntimeEmulator(s3.endpoint, region=REGION, **kwargs).start()


def test_a_restart_over_the_same_workdir_loses_no_job(
    s3: S3Emulator, samples: dict[str, SampleObject], s3_client: Any, tmp_path: Path
) -> None:
    first = emulator(s3, workdir=tmp_path)
    done = start(make_client(first.endpoint), "done-before")
    first.wait_until_idle(30)
    first.latency_sec = 60  # still InProgress when it stops
    arn = start(make_client(first.endpoint), "keep-me")
    first.stop()
    assert first.invocations[arn].status == "InProgress"
    done_output = f"state-test/{done[-12:]}/output.json"
    expected = s3_client.get_object(Bucket=LAKE_BUCKET, Key=done_output)["Body"].read()
    s3_client.delete_object(Bucket=LAKE_BUCKET, Key=done_output)  # the local S3 restarts empty

    second = emulator(s3, workdir=tmp_path)
    try:
        client = make_client(second.endpoint)
        assert client.get_async_invoke(invocationArn=arn)["status"] in ("InProgress", "Completed")
        second.wait_until_idle(30)
        got = client.get_async_invoke(invocationArn=arn)
        assert (got["status"], got["clientRequestToken"]) == ("Completed", "keep-me")
        key = f"state-test/{arn[-12:]}/output.json"
        assert json.loads(s3_client.get_object(Bucket=LAKE_BUCKET, Key=key)["Body"].read())["data"]
        assert start(client, "keep-me") == arn, "the token is remembered too: a replay bills nothing"
        assert second.created_invocations == 2
        listed = {s["invocationArn"] for s in client.list_async_invokes()["asyncInvokeSummaries"]}
        assert listed == {arn, done}
        assert client.get_async_invoke(invocationArn=done)["status"] == "Completed"
        restored = s3_client.get_object(Bucket=LAKE_BUCKET, Key=done_output)["Body"].read()
        assert json.loads(restored) == json.loads(expected), "a finished job's output is never lost"
    finally:
        second.stop()

    fresh = emulator(s3)  # no workdir: a new account that never saw the job
    try:
        with pytest.raises(ClientError) as exc:
            make_client(fresh.endpoint).get_async_invoke(invocationArn=arn)
        assert exc.value.response["Error"]["Code"] == "ValidationException"
    finally:
        fresh.stop()


def test_forget_loses_the_job_and_its_token(bedrock: BedrockRuntimeEmulator, client: Any) -> None:
    arn = start(client, "forget-me")
    bedrock.wait_until_idle(30)
    bedrock.forget(arn)
    with pytest.raises(ClientError) as exc:
        client.get_async_invoke(invocationArn=arn)
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert arn not in {s["invocationArn"] for s in client.list_async_invokes()["asyncInvokeSummaries"]}
    assert start(client, "forget-me") != arn, "a provider that lost the job no longer knows its token"


def test_replace_output_corrupts_a_completed_job(
    bedrock: BedrockRuntimeEmulator, client: Any, s3_client: Any
) -> None:
    arn = start(client, "corrupt-me")
    bedrock.wait_until_idle(30)
    key = bedrock.replace_output(arn, b"\xff\xfe not utf-8")
    assert key.endswith(f"{arn[-12:]}/output.json")
    assert s3_client.get_object(Bucket=LAKE_BUCKET, Key=key)["Body"].read() == b"\xff\xfe not utf-8"


def test_operation_errors_answer_every_call_of_one_operation(
    bedrock: BedrockRuntimeEmulator, client: Any
) -> None:
    arn = start(client, "deny-get")
    bedrock.operation_errors["GetAsyncInvoke"] = ServiceError("AccessDeniedException", 403, "not allowed")
    with pytest.raises(ClientError) as exc:
        client.get_async_invoke(invocationArn=arn)
    assert exc.value.response["Error"]["Code"] == "AccessDeniedException"
    assert client.list_async_invokes()["asyncInvokeSummaries"], "other operations still answer"
