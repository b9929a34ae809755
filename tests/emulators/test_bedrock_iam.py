"""The Bedrock emulator's IAM mode: a caller's requests checked against its policy, through the real boto3
client. Each operation asks for what AWS documents it needs (authorization.py), Bedrock's S3 reads and
writes for the caller included, and a refusal is Bedrock's AccessDeniedException on the wire: HTTP 403,
`x-amzn-ErrorType: AccessDeniedException:`, AWS's "User: ... is not authorized to perform: ..." message,
never retried by botocore, nothing created."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulators.bedrock_runtime import MARENGO_3_0, PEGASUS_1_2, BedrockRuntimeEmulator, Identity
from emulators.iam_policy import Policy
from emulators.s3 import S3Emulator
from emulators.sample_media import SampleObject
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET, REGION, make_client

ACCOUNT = "123456789012"
KEY, SECRET = "AKIAPIPELINEEXAMPLE", "pipeline-secret"
PRINCIPAL = f"arn:aws:iam::{ACCOUNT}:user/pipeline"
VIDEO = "videos/shapes_a.mp4"
OUT = {"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/iam-mode/"}}
FOUNDATION = f"arn:aws:bedrock:{REGION}::foundation-model/{MARENGO_3_0}"
US_FOUNDATIONS = [
    f"arn:aws:bedrock:{r}::foundation-model/{MARENGO_3_0}"
    for r in ("us-east-1", "us-east-2", "us-west-1", "us-west-2")
]
TEXT = json.dumps({"inputType": "text", "text": {"inputText": "red circle"}})
NO_RETRIES = {"retries": {"mode": "standard", "max_attempts": 5}}


def statement(action: Any, resource: Any = "*", effect: str = "Allow") -> dict[str, Any]:
    return {"Effect": effect, "Action": action, "Resource": resource}


def policy(*statements: dict[str, Any]) -> Policy:
    return Policy({"Version": "2012-10-17", "Statement": list(statements)})


EVERYTHING = policy(statement(["bedrock:*", "s3:*"]))


def video_input(key: str = VIDEO) -> dict[str, Any]:
    return {
        "inputType": "video",
        "video": {"mediaSource": {"s3Location": {"uri": f"s3://{MEDIA_BUCKET}/{key}"}}},
    }


def pegasus_body(source: dict[str, Any]) -> str:
    return json.dumps({"inputPrompt": "Summarize this video", "mediaSource": source})


S3_VIDEO = {"s3Location": {"uri": f"s3://{MEDIA_BUCKET}/{VIDEO}", "bucketOwner": ACCOUNT}}


@pytest.fixture()
def bedrock(s3: S3Emulator, samples: dict[str, SampleObject]) -> Iterator[BedrockRuntimeEmulator]:
    emulator = BedrockRuntimeEmulator(
        s3.endpoint, region=REGION, iam_identities={KEY: Identity(PRINCIPAL, EVERYTHING)}
    )
    emulator.credentials[KEY] = SECRET
    with emulator:
        yield emulator


@pytest.fixture()
def caller(bedrock: BedrockRuntimeEmulator) -> Any:
    return make_client(bedrock.endpoint, key=KEY, secret=SECRET, **NO_RETRIES)


def holding(bedrock: BedrockRuntimeEmulator, granted: Policy) -> None:
    bedrock.iam_identities[KEY] = Identity(PRINCIPAL, granted)


def denied(call: Any) -> tuple[str, int, str, str, int]:
    """(code, status, x-amzn-ErrorType, message, retries) of the refusal a call gets."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    meta = response["ResponseMetadata"]
    return (
        response["Error"]["Code"],
        meta["HTTPStatusCode"],
        meta["HTTPHeaders"].get("x-amzn-errortype", ""),
        response["Error"]["Message"],
        meta["RetryAttempts"],
    )


def refusal(action: str, resource: str, explicit: bool = False) -> tuple[str, int, str, str, int]:
    why = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else f"because no identity-based policy allows the {action} action"
    )
    message = f"User: {PRINCIPAL} is not authorized to perform: {action} on resource: {resource} {why}"
    return "AccessDeniedException", 403, "AccessDeniedException:", message, 0


def checks(bedrock: BedrockRuntimeEmulator) -> list[tuple[str, str]]:
    found = [(c.action, c.resource) for c in bedrock.iam_checks]
    bedrock.reset_calls()
    return found


def test_each_operation_asks_for_what_aws_documents(bedrock: BedrockRuntimeEmulator, caller: Any) -> None:
    caller.list_async_invokes(maxResults=1)
    assert checks(bedrock) == [("bedrock:ListAsyncInvokes", "*")]

    arn = caller.start_async_invoke(modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=OUT)[
        "invocationArn"
    ]
    results = f"arn:aws:s3:::{LAKE_BUCKET}/iam-mode/{arn[-12:]}"
    assert checks(bedrock) == [
        ("bedrock:StartAsyncInvoke", FOUNDATION),
        ("bedrock:InvokeModel", FOUNDATION),
        ("bedrock:StartAsyncInvoke", arn),
        ("bedrock:InvokeModel", arn),
        ("s3:GetObject", f"arn:aws:s3:::{MEDIA_BUCKET}/{VIDEO}"),
        ("s3:PutObject", f"{results}/output.json"),
        ("s3:PutObject", f"{results}/manifest.json"),
    ]
    caller.get_async_invoke(invocationArn=arn)
    assert checks(bedrock) == [("bedrock:GetAsyncInvoke", arn)]

    caller.invoke_model(modelId=f"us.{MARENGO_3_0}", body=TEXT)
    assert checks(bedrock) == [
        ("bedrock:InvokeModel", f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/us.{MARENGO_3_0}"),
        *[("bedrock:InvokeModel", foundation) for foundation in US_FOUNDATIONS],
    ]
    caller.invoke_model(modelId=MARENGO_3_0, body=TEXT)  # the base id, where us-east-1 takes it
    assert checks(bedrock) == [("bedrock:InvokeModel", FOUNDATION)]

    caller.invoke_model(modelId=f"global.{PEGASUS_1_2}", body=pegasus_body(S3_VIDEO))
    assert checks(bedrock) == [
        ("bedrock:InvokeModel", f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/global.{PEGASUS_1_2}"),
        ("bedrock:InvokeModel", f"arn:aws:bedrock:::foundation-model/{PEGASUS_1_2}"),
        ("s3:GetObject", f"arn:aws:s3:::{MEDIA_BUCKET}/{VIDEO}"),
    ]


def test_a_refusal_is_bedrocks_access_denied_and_creates_nothing(
    bedrock: BedrockRuntimeEmulator, caller: Any
) -> None:
    holding(bedrock, policy(statement("bedrock:StartAsyncInvoke")))
    start = lambda: caller.start_async_invoke(  # noqa: E731
        modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=OUT
    )
    assert denied(start) == refusal("bedrock:InvokeModel", FOUNDATION)
    assert denied(lambda: caller.list_async_invokes()) == refusal("bedrock:ListAsyncInvokes", "*")
    assert bedrock.created_invocations == 0
    assert bedrock.calls["StartAsyncInvoke"] == 1, "one request: botocore retried no AccessDenied"


def test_an_explicit_deny_wins_and_says_so(bedrock: BedrockRuntimeEmulator, caller: Any) -> None:
    holding(bedrock, policy(statement("bedrock:*"), statement("bedrock:InvokeModel", FOUNDATION, "Deny")))
    assert denied(lambda: caller.invoke_model(modelId=MARENGO_3_0, body=TEXT)) == refusal(
        "bedrock:InvokeModel", FOUNDATION, explicit=True
    )


def test_an_inference_profile_needs_the_model_in_every_region_it_routes_to(
    bedrock: BedrockRuntimeEmulator, caller: Any
) -> None:
    profile = f"arn:aws:bedrock:{REGION}:{ACCOUNT}:inference-profile/us.{MARENGO_3_0}"
    holding(bedrock, policy(statement("bedrock:InvokeModel", [profile, FOUNDATION])))
    elsewhere = f"arn:aws:bedrock:us-east-2::foundation-model/{MARENGO_3_0}"
    call = lambda: caller.invoke_model(modelId=f"us.{MARENGO_3_0}", body=TEXT)  # noqa: E731
    assert denied(call) == refusal("bedrock:InvokeModel", elsewhere)
    holding(bedrock, policy(statement("bedrock:InvokeModel", [FOUNDATION.replace(REGION, "*")])))
    assert denied(call) == refusal("bedrock:InvokeModel", profile), "the profile itself must be granted"
    holding(bedrock, policy(statement("bedrock:InvokeModel", [profile, FOUNDATION.replace(REGION, "*")])))
    assert "data" in json.loads(call()["body"].read())


def test_list_async_invokes_has_no_resource_level_permission(
    bedrock: BedrockRuntimeEmulator, caller: Any
) -> None:
    holding(bedrock, policy(statement("bedrock:ListAsyncInvokes", f"arn:aws:bedrock:{REGION}:{ACCOUNT}:*")))
    assert denied(lambda: caller.list_async_invokes()) == refusal("bedrock:ListAsyncInvokes", "*")


def test_get_async_invoke_is_asked_on_the_invocation(bedrock: BedrockRuntimeEmulator, caller: Any) -> None:
    arn = caller.start_async_invoke(modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=OUT)[
        "invocationArn"
    ]
    holding(bedrock, policy(statement("bedrock:GetAsyncInvoke", "arn:aws:bedrock:*:*:async-invoke/other")))
    get = lambda: caller.get_async_invoke(invocationArn=arn)  # noqa: E731
    assert denied(get) == refusal("bedrock:GetAsyncInvoke", arn)


def test_bedrock_reads_the_media_and_writes_the_results_as_the_caller(
    bedrock: BedrockRuntimeEmulator, caller: Any
) -> None:
    start = lambda: caller.start_async_invoke(  # noqa: E731
        modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=OUT
    )
    holding(bedrock, policy(statement("bedrock:*")))
    assert denied(start) == refusal("s3:GetObject", f"arn:aws:s3:::{MEDIA_BUCKET}/{VIDEO}")
    read_media = statement("s3:GetObject", f"arn:aws:s3:::{MEDIA_BUCKET}/*")
    holding(bedrock, policy(statement("bedrock:*"), read_media))
    code, status, error_type, message, _ = denied(start)
    assert (code, status, error_type) == ("AccessDeniedException", 403, "AccessDeniedException:")
    assert f"s3:PutObject on resource: arn:aws:s3:::{LAKE_BUCKET}/iam-mode/" in message
    assert message.endswith("/output.json because no identity-based policy allows the s3:PutObject action")
    assert bedrock.created_invocations == 0
    holding(
        bedrock,
        policy(
            statement("bedrock:*"),
            read_media,
            statement("s3:PutObject", f"arn:aws:s3:::{LAKE_BUCKET}/iam-mode/*"),
        ),
    )
    arn = start()["invocationArn"]
    bedrock.wait_until_idle(timeout=30)
    assert caller.get_async_invoke(invocationArn=arn)["status"] == "Completed"


def test_pegasus_reads_an_s3_video_as_the_caller_and_base64_needs_no_s3(
    bedrock: BedrockRuntimeEmulator, caller: Any, samples: dict[str, SampleObject]
) -> None:
    holding(bedrock, policy(statement("bedrock:InvokeModel")))
    call = lambda source: caller.invoke_model(  # noqa: E731
        modelId=f"us.{PEGASUS_1_2}", body=pegasus_body(source)
    )
    assert denied(lambda: call(S3_VIDEO)) == refusal("s3:GetObject", f"arn:aws:s3:::{MEDIA_BUCKET}/{VIDEO}")
    inline = {"base64String": base64.b64encode(samples[VIDEO].data).decode()}
    assert json.loads(call(inline)["body"].read())["finishReason"] == "stop"
    assert bedrock.pegasus_calls[-1].media_uri is None and len(bedrock.pegasus_calls) == 1


def test_a_caller_without_an_identity_is_not_checked(bedrock: BedrockRuntimeEmulator) -> None:
    holding(bedrock, policy(statement("s3:GetObject", "arn:aws:s3:::nothing/*")))
    account_key = make_client(bedrock.endpoint)  # the account's own key pair ("test")
    account_key.list_async_invokes()
    assert account_key.invoke_model(modelId=MARENGO_3_0, body=TEXT)["body"].read()
    assert bedrock.iam_checks == ()


def test_a_replay_is_asked_for_too(bedrock: BedrockRuntimeEmulator, caller: Any) -> None:
    """The same token and body answer the first invocation, but only to a caller still allowed to start it."""
    start = lambda: caller.start_async_invoke(  # noqa: E731
        clientRequestToken="iam-replay", modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=OUT
    )
    arn = start()["invocationArn"]
    assert start()["invocationArn"] == arn and bedrock.created_invocations == 1
    holding(bedrock, policy(statement("bedrock:*"), statement("s3:GetObject")))
    code, status, _, message, _ = denied(start)
    assert (code, status) == ("AccessDeniedException", 403) and "s3:PutObject" in message
    assert bedrock.created_invocations == 1
