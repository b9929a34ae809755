"""Who may call the emulator and from where: SigV4 verified against the account's keys, one region served,
inference profiles per the client's region, `bucketOwner` of the account only. Driven through the real
boto3 client; a few raw requests show what botocore would never send.

AWS's answers: UnrecognizedClientException (403) for an unknown key, InvalidSignatureException (403) for a
wrong secret, scope or time, IncompleteSignatureException (400) for a header missing a part; botocore maps
them through `x-amzn-ErrorType` though the bedrock-runtime model lists none of them, and retries none.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from emulators.bedrock_runtime import MARENGO_2_7, MARENGO_3_0, PEGASUS_1_2, BedrockRuntimeEmulator
from emulators.s3 import S3Emulator
from tests.emulators.conftest import LAKE_BUCKET, MEDIA_BUCKET, REGION, make_client

OUT = {"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/identity/"}}
VIDEO_URI = f"s3://{MEDIA_BUCKET}/videos/shapes_a.mp4"
IMAGE_URI = f"s3://{MEDIA_BUCKET}/images/green_triangle.png"
OWN_ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
TEXT_3 = json.dumps({"inputType": "text", "text": {"inputText": "red circle"}})
TEXT_27 = json.dumps({"inputType": "text", "inputText": "red circle"})
NO_RETRIES = {"retries": {"mode": "standard", "max_attempts": 5}}  # botocore retries none of these


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Message"]


def video_input(uri: str = VIDEO_URI, owner: str | None = None) -> dict[str, Any]:
    location = {"uri": uri} | ({"bucketOwner": owner} if owner else {})
    return {"inputType": "video", "video": {"mediaSource": {"s3Location": location}}}


def signed_request(
    endpoint: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    secret: str = "test",
    at: datetime | None = None,
) -> AWSRequest:
    """A request signed by botocore's SigV4 signer as boto3 would sign it, optionally at another time.

    `add_auth` signs at the clock's time; at another time, the same steps through the signer's public
    methods: the X-Amz-Date header, then the canonical request, string to sign and signature, then the
    Authorization header of the signed headers' scope."""
    request = AWSRequest(
        method=method, url=endpoint + path, data=body, headers={"Content-Type": "application/json"}
    )
    signer = SigV4Auth(Credentials("test", secret), "bedrock", REGION)
    if at is None:
        signer.add_auth(request)
        return request
    request.context["timestamp"] = request.headers["X-Amz-Date"] = at.strftime(SIGV4_TIMESTAMP)
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signed = signer.signed_headers(signer.headers_to_sign(request))
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={signer.scope(request)}, SignedHeaders={signed}, Signature={signature}"
    )
    return request


def send(request: AWSRequest, *, body: bytes | None = None, **headers: str) -> tuple[int, str, str]:
    """(status, x-amzn-ErrorType, message) of the signed request, with `body` or `headers` changed after."""
    sent = dict(request.headers.items()) | headers
    data = request.data if body is None else body
    raw = urllib.request.Request(request.url, data=data, method=request.method, headers=sent)
    try:
        with urllib.request.urlopen(raw, timeout=10) as response:
            return response.status, "", ""
    except urllib.error.HTTPError as err:
        return err.code, str(err.headers.get("x-amzn-ErrorType", "")), json.loads(err.read())["message"]


# --- the signature ---------------------------------------------------------------------------------------


def test_an_unknown_access_key_is_an_unrecognized_client(bedrock: BedrockRuntimeEmulator) -> None:
    stranger = make_client(bedrock.endpoint, key="AKIDNOBODYKNOWS", **NO_RETRIES)
    calls = (
        lambda: stranger.list_async_invokes(),
        lambda: stranger.invoke_model(modelId="us." + MARENGO_3_0, body=TEXT_3),
        lambda: stranger.start_async_invoke(
            modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=OUT
        ),
    )
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == (
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
        )
        assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert bedrock.created_invocations == 0
    assert sum(bedrock.calls.values()) == 3, "one request per call: botocore retried none"


def test_a_wrong_secret_is_an_invalid_signature(bedrock: BedrockRuntimeEmulator) -> None:
    wrong = make_client(bedrock.endpoint, secret="not-the-secret", **NO_RETRIES)
    for call in (
        lambda: wrong.list_async_invokes(),
        lambda: wrong.start_async_invoke(modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=OUT),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        code, status, message = error_of(exc)
        assert (code, status) == ("InvalidSignatureException", 403)
        assert message.startswith("The request signature we calculated does not match the signature you")
        assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert bedrock.created_invocations == 0


def test_the_signature_covers_the_request_as_received(bedrock: BedrockRuntimeEmulator) -> None:
    body = json.dumps({"inputType": "text", "text": {"inputText": "red circle"}}).encode()
    path = "/model/us.twelvelabs.marengo-embed-3-0-v1%3A0/invoke"  # botocore sends the ':' encoded
    assert send(signed_request(bedrock.endpoint, "POST", path, body))[0] == 200
    tampered = body.replace(b"red", b"tan")
    assert send(signed_request(bedrock.endpoint, "POST", path, body), body=tampered)[:2] == (
        403,
        "InvalidSignatureException:",
    )
    assert send(signed_request(bedrock.endpoint, "POST", path, body), **{"Content-Type": "text/plain"})[
        1
    ] == ("InvalidSignatureException:")
    listing = "/async-invoke?maxResults=5&statusEquals=Completed&submitTimeAfter=2026-01-01T00%3A00%3A00Z"
    assert send(signed_request(bedrock.endpoint, "GET", listing))[0] == 200
    assert send(signed_request(bedrock.endpoint, "GET", listing.replace("=5", "=6")))[0] == 200
    assert send(signed_request(bedrock.endpoint, "GET", listing), **{"Host": "localhost"})[1] == (
        "InvalidSignatureException:"
    )


def test_a_signature_more_than_5_minutes_off_is_refused(bedrock: BedrockRuntimeEmulator) -> None:
    now = datetime.now(UTC)
    assert (
        send(signed_request(bedrock.endpoint, "GET", "/async-invoke", at=now - timedelta(minutes=4)))[0]
        == 200
    )
    for skew, words in ((-10, "Signature expired: "), (10, "Signature not yet current: ")):
        status, kind, message = send(
            signed_request(bedrock.endpoint, "GET", "/async-invoke", at=now + timedelta(minutes=skew))
        )
        assert (status, kind) == (403, "InvalidSignatureException:")
        assert message.startswith(words)


@pytest.mark.parametrize(
    ("authorization", "needle"),
    [
        ("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/bedrock/aws4_request", "requires 'Signature'"),
        ("AWS4-HMAC-SHA256 Credential=test/us-east-1, SignedHeaders=host, Signature=00", "5 slash-delimited"),
        ("Bearer abc", "requires the AWS4-HMAC-SHA256 algorithm"),
    ],
)
def test_an_incomplete_authorization_header_is_refused(
    bedrock: BedrockRuntimeEmulator, authorization: str, needle: str
) -> None:
    status, kind, message = send(
        signed_request(bedrock.endpoint, "GET", "/async-invoke"), Authorization=authorization
    )
    assert (status, kind) == (400, "IncompleteSignatureException:")
    assert needle in message


def test_an_unsigned_request_is_still_access_denied(bedrock: BedrockRuntimeEmulator) -> None:
    raw = urllib.request.Request(bedrock.endpoint + "/async-invoke", method="GET")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(raw, timeout=10)
    assert exc.value.code == 403 and exc.value.headers["x-amzn-ErrorType"] == "AccessDeniedException:"


def test_the_account_and_its_keys_are_settings(s3: S3Emulator, samples: Any) -> None:
    with BedrockRuntimeEmulator(
        s3.endpoint, account_id="111122223333", access_key_id="AKIDMARKER", secret_access_key="marker-secret"
    ) as emulator:
        own = make_client(emulator.endpoint, key="AKIDMARKER", secret="marker-secret")
        arn = own.start_async_invoke(
            modelId=MARENGO_3_0, modelInput=video_input(owner="111122223333"), outputDataConfig=OUT
        )["invocationArn"]
        assert arn.startswith(f"arn:aws:bedrock:{REGION}:111122223333:async-invoke/")
        with pytest.raises(ClientError) as exc:
            make_client(emulator.endpoint).list_async_invokes()  # the local key pair is not this account's
        assert error_of(exc)[0] == "UnrecognizedClientException"
        with pytest.raises(ClientError) as exc:
            own.start_async_invoke(
                modelId=MARENGO_3_0, modelInput=video_input(owner=OWN_ACCOUNT), outputDataConfig=OUT
            )
        assert error_of(exc)[:2] == ("AccessDeniedException", 403)


# --- bucketOwner -----------------------------------------------------------------------------------------


def test_a_media_bucket_owner_of_another_account_is_access_denied(
    client: Any, bedrock: BedrockRuntimeEmulator
) -> None:
    with pytest.raises(ClientError) as exc:
        client.start_async_invoke(
            modelId=MARENGO_3_0, modelInput=video_input(owner=OTHER_ACCOUNT), outputDataConfig=OUT
        )
    code, status, message = error_of(exc)
    assert (code, status) == ("AccessDeniedException", 403)
    assert f"input S3 bucket {MEDIA_BUCKET}" in message and OTHER_ACCOUNT in message
    foreign = {"bucketOwner": OTHER_ACCOUNT}
    for model_id, body in (
        ("us." + MARENGO_2_7, {"inputType": "image", "mediaSource": {"s3Location": {"uri": IMAGE_URI}}}),
        (
            "us." + PEGASUS_1_2,
            {"inputPrompt": "Summarize", "mediaSource": {"s3Location": {"uri": VIDEO_URI}}},
        ),
    ):
        body["mediaSource"]["s3Location"].update(foreign)  # type: ignore[index]
        with pytest.raises(ClientError) as exc:
            client.invoke_model(modelId=model_id, body=json.dumps(body))
        assert error_of(exc)[:2] == ("AccessDeniedException", 403), model_id
    client.start_async_invoke(
        modelId=MARENGO_3_0, modelInput=video_input(owner=OWN_ACCOUNT), outputDataConfig=OUT
    )
    assert bedrock.created_invocations == 1


def test_an_output_bucket_owner_of_another_account_is_access_denied(
    client: Any, bedrock: BedrockRuntimeEmulator
) -> None:
    output = {"s3OutputDataConfig": {"s3Uri": f"s3://{LAKE_BUCKET}/identity/", "bucketOwner": OTHER_ACCOUNT}}
    with pytest.raises(ClientError) as exc:
        client.start_async_invoke(modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=output)
    code, status, message = error_of(exc)
    assert (code, status) == ("AccessDeniedException", 403)
    assert f"output S3 bucket {LAKE_BUCKET}" in message and OTHER_ACCOUNT in message
    output["s3OutputDataConfig"]["bucketOwner"] = OWN_ACCOUNT
    client.start_async_invoke(modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=output)
    assert bedrock.created_invocations == 1


# --- regions: the one served, and the profiles of the client's region --------------------------------------


@pytest.fixture()
def regional(s3: S3Emulator, samples: Any) -> Iterator[Any]:
    """`regional(region)`: an emulator serving `region` and a client signed for it (stopped after)."""
    started: list[BedrockRuntimeEmulator] = []

    def make(region: str) -> tuple[BedrockRuntimeEmulator, Any]:
        emulator = BedrockRuntimeEmulator(s3.endpoint, region=region).start()
        started.append(emulator)
        return emulator, make_client(emulator.endpoint, region=region)

    yield make
    for emulator in started:
        emulator.stop()


def test_a_request_signed_for_another_region_is_refused(bedrock: BedrockRuntimeEmulator) -> None:
    elsewhere = make_client(bedrock.endpoint, region="eu-west-1", **NO_RETRIES)
    with pytest.raises(ClientError) as exc:
        elsewhere.invoke_model(modelId="eu." + MARENGO_3_0, body=TEXT_3)
    assert error_of(exc) == (
        "InvalidSignatureException",
        403,
        "Credential should be scoped to a valid region, not 'eu-west-1'.",
    )
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 0


# (client region, model id, body, accepted?) per the reference's profiles table: 2.7 us./eu./apac., 3.0
# us./eu. plus the base id in us-east-1 and ap-northeast-2; a geographic profile only from its geography.
PROFILE_CASES = {
    "us-east-1": [
        ("us." + MARENGO_3_0, TEXT_3, True),
        (MARENGO_3_0, TEXT_3, True),
        ("eu." + MARENGO_3_0, TEXT_3, False),
        ("us." + MARENGO_2_7, TEXT_27, True),
        ("eu." + MARENGO_2_7, TEXT_27, False),
        ("apac." + MARENGO_2_7, TEXT_27, False),
        (f"arn:aws:bedrock:us-east-1:{OWN_ACCOUNT}:inference-profile/us.{MARENGO_3_0}", TEXT_3, True),
        (f"arn:aws:bedrock:eu-west-1:{OWN_ACCOUNT}:inference-profile/eu.{MARENGO_3_0}", TEXT_3, False),
    ],
    "eu-west-1": [
        ("eu." + MARENGO_3_0, TEXT_3, True),
        ("us." + MARENGO_3_0, TEXT_3, False),
        ("eu." + MARENGO_2_7, TEXT_27, True),
        ("us." + MARENGO_2_7, TEXT_27, False),
        ("apac." + MARENGO_2_7, TEXT_27, False),
    ],
    "ap-northeast-2": [
        (MARENGO_3_0, TEXT_3, True),
        ("us." + MARENGO_3_0, TEXT_3, False),
        ("apac." + MARENGO_2_7, TEXT_27, True),
        ("eu." + MARENGO_2_7, TEXT_27, False),
    ],
}


@pytest.mark.parametrize("region", list(PROFILE_CASES))
def test_inference_profiles_answer_per_the_clients_region(regional: Any, region: str) -> None:
    _, client = regional(region)
    for model_id, body, accepted in PROFILE_CASES[region]:
        if accepted:
            client.invoke_model(modelId=model_id, body=body)
            continue
        with pytest.raises(ClientError) as exc:
            client.invoke_model(modelId=model_id, body=body)
        assert error_of(exc) == ("ValidationException", 400, "The provided model identifier is invalid."), (
            model_id
        )


def test_marengo_is_refused_where_bedrock_does_not_offer_it(regional: Any, s3_client: Any) -> None:
    emulator, client = regional("us-west-2")
    for call in (
        lambda: client.invoke_model(modelId="us." + MARENGO_3_0, body=TEXT_3),
        lambda: client.start_async_invoke(
            modelId=MARENGO_3_0, modelInput=video_input(), outputDataConfig=OUT
        ),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert error_of(exc) == ("ValidationException", 400, "The provided model identifier is invalid.")
    assert emulator.created_invocations == 0
