"""The whole local world in one call: S3, the Bedrock runtime and the TwelveLabs API, buckets created, and
the environment production code reads to reach them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emulators.bedrock_runtime import BedrockRuntimeEmulator, Identity
from emulators.bedrock_runtime.models import ACCOUNT_ID
from emulators.bedrock_runtime.server import LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY, UndecodableMedia
from emulators.iam_policy import Policy
from emulators.s3 import S3Emulator
from emulators.twelvelabs_api import TwelveLabsEmulator

MEDIA_EVENT_QUEUE = "media-events"
# Faults of start_local_stack by the name each emulator gives them.
_TWELVELABS_FAULTS = {
    "latency_sec": "latency_sec",
    "max_concurrent_invocations": "max_concurrent_tasks",
    "throttle_rate": "throttle_rate",
    "failure_rate": "failure_rate",
    "seed": "seed",
}


class LocalStack:
    """A running S3 emulator, and the Bedrock and TwelveLabs emulators that read media from it."""

    def __init__(
        self,
        s3: S3Emulator,
        bedrock: BedrockRuntimeEmulator,
        twelvelabs: TwelveLabsEmulator,
        region: str,
        access_key_id: str = LOCAL_ACCESS_KEY_ID,
        secret_access_key: str = LOCAL_SECRET_ACCESS_KEY,
        media_queue_url: str | None = None,
    ) -> None:
        self.s3 = s3
        self.bedrock = bedrock
        self.twelvelabs = twelvelabs
        self.region = region
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.media_queue_url = media_queue_url  # the SQS queue the media buckets notify, if any

    @property
    def s3_endpoint(self) -> str:
        return self.s3.endpoint

    @property
    def bedrock_endpoint(self) -> str:
        return self.bedrock.endpoint

    @property
    def twelvelabs_base_url(self) -> str:
        return self.twelvelabs.base_url

    def env(self) -> dict[str, str]:
        """Standard AWS variables an unmodified boto3 client honours (service-specific endpoint URLs), and the
        base URL and key the `twelvelabs` SDK reads, and the stack's one AWS key pair. With a media event
        queue, its URL (MEDIAEMBED_MEDIA_QUEUE_URL) and SQS's endpoint, which is S3's: moto serves both."""
        events = (
            {"AWS_ENDPOINT_URL_SQS": self.s3_endpoint, "MEDIAEMBED_MEDIA_QUEUE_URL": self.media_queue_url}
            if self.media_queue_url
            else {}
        )
        return {
            "TWELVELABS_BASE_URL": self.twelvelabs_base_url,
            "TWELVELABS_API_KEY": self.twelvelabs.api_key,
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.bedrock_endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            **events,
        }

    def stop(self) -> None:
        """The providers first (they read and write S3), then S3."""
        self.twelvelabs.stop()
        self.bedrock.stop()
        self.s3.stop()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_local_stack(
    *,
    s3_port: int = 0,
    bedrock_port: int = 0,
    twelvelabs_port: int = 0,
    region: str = "us-east-1",
    buckets: Sequence[str] = ("media", "lake"),
    workdir: Path | str | None = None,
    twelvelabs_workdir: Path | str | None = None,
    prepare_s3: Callable[[Any], object] | None = None,
    account_id: str = ACCOUNT_ID,
    access_key_id: str = LOCAL_ACCESS_KEY_ID,
    secret_access_key: str = LOCAL_SECRET_ACCESS_KEY,
    undecodable_media: UndecodableMedia = "refuse",
    iam_policy: Policy | None = None,
    media_event_buckets: Sequence[str] = (),
    **faults: Any,
) -> LocalStack:
    """Start S3, then Bedrock and the TwelveLabs API with the same faults (latency_sec,
    max_concurrent_invocations, throttle_rate, failure_rate, seed; Bedrock alone takes pegasus_length_rate,
    pegasus_failure_rate and pegasus_faults), and create `buckets` (existing ones are kept).

    `workdir` keeps Bedrock's invocations on disk across restarts, `twelvelabs_workdir` the API's tasks.
    `prepare_s3(client)` runs once the buckets exist and before the providers start, so jobs they carry on
    from an earlier run find their media. The stack has one account and one key pair (what `env()`
    exports): Bedrock verifies every signature against it, and the TwelveLabs API accepts only presigned
    URLs signed with it (moto checks none). `undecodable_media` says whether Bedrock refuses media it
    cannot decode at submit ("refuse") or accepts the job and fails it ("fail"). With `iam_policy`, Bedrock
    checks the stack's key pair against it (its IAM mode, as the user `mediaembed`); S3 checks nothing.
    `media_event_buckets` send their ObjectCreated and ObjectRemoved events to the SQS queue `media-events`
    (MEDIA_EVENT_QUEUE), as a bucket notification does on AWS; it is set up before `prepare_s3` uploads.
    """
    s3 = S3Emulator(port=s3_port, region=region).start()
    try:
        client = s3.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in buckets:
            if bucket not in existing:
                if region == "us-east-1":
                    client.create_bucket(Bucket=bucket)
                else:
                    client.create_bucket(
                        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
                    )
        queue_url = notify_queue(s3, region, media_event_buckets) if media_event_buckets else None
        if prepare_s3 is not None:
            prepare_s3(client)
        bedrock = BedrockRuntimeEmulator(
            s3.endpoint,
            region=region,
            port=bedrock_port,
            workdir=workdir,
            account_id=account_id,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            undecodable_media=undecodable_media,
            iam_identities=None
            if iam_policy is None
            else {access_key_id: Identity(f"arn:aws:iam::{account_id}:user/mediaembed", iam_policy)},
            **faults,
        ).start()
    except BaseException:
        s3.stop()
        raise
    try:
        # Bedrock-only faults (pegasus_*) have no TwelveLabs counterpart.
        tl_faults = {_TWELVELABS_FAULTS[n]: v for n, v in faults.items() if not n.startswith("pegasus_")}
        twelvelabs = TwelveLabsEmulator(
            port=twelvelabs_port,
            workdir=twelvelabs_workdir,
            retry_after_sec=0,
            s3_credentials={access_key_id: secret_access_key},
            **tl_faults,
        ).start()
    except BaseException:
        bedrock.stop()
        s3.stop()
        raise
    return LocalStack(s3, bedrock, twelvelabs, region, access_key_id, secret_access_key, queue_url)


def notify_queue(s3: S3Emulator, region: str, buckets: Sequence[str]) -> str:
    """The queue MEDIA_EVENT_QUEUE (created, or kept) and each bucket's notification to it; its URL.
    The visibility timeout outlasts an inventory run, as docs/deployment.md sets it on AWS."""
    sqs = s3.sqs_client()
    url: str = sqs.create_queue(QueueName=MEDIA_EVENT_QUEUE, Attributes={"VisibilityTimeout": "900"})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    client = s3.client()
    for bucket in buckets:
        client.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )
    return url
