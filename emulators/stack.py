"""The whole local world in one call: S3 + Bedrock runtime, buckets created, env vars for production code."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.s3 import S3Emulator


class LocalStack:
    """A running S3 emulator and Bedrock emulator pointed at it."""

    def __init__(self, s3: S3Emulator, bedrock: BedrockRuntimeEmulator, region: str) -> None:
        self.s3 = s3
        self.bedrock = bedrock
        self.region = region

    @property
    def s3_endpoint(self) -> str:
        return self.s3.endpoint

    @property
    def bedrock_endpoint(self) -> str:
        return self.bedrock.endpoint

    def env(self) -> dict[str, str]:
        """Standard AWS variables an unmodified boto3 client honours (service-specific endpoint URLs)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.bedrock_endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }

    def stop(self) -> None:
        """Bedrock first (its workers write to S3), then S3."""
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
    region: str = "us-east-1",
    buckets: Sequence[str] = ("media", "lake"),
    workdir: Path | str | None = None,
    prepare_s3: Callable[[Any], object] | None = None,
    **faults: Any,
) -> LocalStack:
    """Start S3 then Bedrock (faults: latency_sec, max_concurrent_invocations, throttle_rate, failure_rate,
    seed) and create `buckets` (existing ones are kept).

    `workdir` keeps Bedrock's invocations on disk across restarts. `prepare_s3(client)` runs once the
    buckets exist and before Bedrock starts, so jobs it carries on from an earlier run find their media.
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
        if prepare_s3 is not None:
            prepare_s3(client)
        bedrock = BedrockRuntimeEmulator(
            s3.endpoint, region=region, port=bedrock_port, workdir=workdir, **faults
        ).start()
    except BaseException:
        s3.stop()
        raise
    return LocalStack(s3, bedrock, region)
