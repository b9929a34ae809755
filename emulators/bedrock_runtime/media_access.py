"""S3 as Bedrock reaches it: the account's buckets only, in the model's region, read with the S3 emulator's
client; what cannot be read is a ValidationException naming the object."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.marengo_body import MediaRef

# GetBucketLocation's legacy answers: no constraint is us-east-1, and "EU" is eu-west-1.
LEGACY_LOCATIONS = {"": "us-east-1", "EU": "eu-west-1"}
_SESSION = boto3.session.Session()
_SESSION_LOCK = threading.Lock()


def s3_client(endpoint: str, region: str, credentials: tuple[str, str] = ("test", "test")) -> Any:
    """A boto3 S3 client for the S3 emulator (path-style addressing), signing with `credentials`."""
    with _SESSION_LOCK:  # sessions are costly to build and client creation is not thread-safe
        return _SESSION.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=credentials[0],
            aws_secret_access_key=credentials[1],
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}),
        )


class MediaAccess:
    """Media sources and output buckets of one account (`account_id`) in one region (`region`)."""

    def __init__(self, s3: Any, *, region: str, account_id: str) -> None:
        self.s3 = s3
        self.region = region
        self.account_id = account_id

    def read(self, ref: MediaRef, check_size: Callable[[int], None] | None = None) -> bytes:
        """Bytes of an inline or S3 media source; a missing object is a ValidationException naming the URI.
        `check_size(size)` may refuse the media by its size before an S3 object's body is read."""
        if ref.data is not None:
            if check_size is not None:
                check_size(len(ref.data))
            return ref.data
        bucket, key = ref.bucket_key
        try:
            response = self.s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            raise errors.validation(
                f"The provided S3 object {ref.uri} does not exist or is not accessible ({code})."
            ) from exc
        with contextlib.closing(response["Body"]) as body:
            if check_size is not None:
                check_size(int(response["ContentLength"]))
            return bytes(body.read())

    def bucket_region(self, bucket: str) -> str | None:
        """The region S3 says `bucket` is in, or None when S3 cannot say (the read that follows then
        reports the missing or inaccessible bucket in its own words)."""
        try:
            constraint = self.s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or ""
        except (ClientError, BotoCoreError):
            return None
        return LEGACY_LOCATIONS.get(constraint, constraint)

    def check_region(self, bucket: str, role: str) -> None:
        """Bedrock's same-region rule: an input or output bucket outside the model's region is refused."""
        region = self.bucket_region(bucket)
        if region is not None and region != self.region:
            raise errors.validation(
                f"The {role} S3 bucket {bucket} is in {region}, but the model runs in {self.region}: "
                "S3 input and output buckets must be in the same region as the model."
            )

    def check_owner(self, bucket: str, owner: str | None, role: str) -> None:
        """`bucketOwner` is the account the caller expects to own the bucket (S3's expected-bucket-owner
        check): every bucket here belongs to this emulator's account, so naming another one is refused."""
        if owner is not None and owner != self.account_id:
            raise errors.access_denied(
                f"Access denied to the {role} S3 bucket {bucket}: it is not owned by account {owner}, "
                "the bucketOwner of the request."
            )

    def check_access(self, ref: MediaRef | None) -> None:
        """An S3 media source's bucket: owned by the account the request names, in the model's region."""
        if ref is not None and ref.uri is not None:
            bucket = ref.bucket_key[0]
            self.check_owner(bucket, ref.owner, "input")
            self.check_region(bucket, "input")
