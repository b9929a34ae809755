"""S3 as Bedrock reaches it: the account's buckets only, in the model's region, read with the S3 emulator's
client; what cannot be read is a ValidationException naming the object."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.marengo_body import MediaRef

# GetBucketLocation's legacy answers: no constraint is us-east-1, and "EU" is eu-west-1.
LEGACY_LOCATIONS = {"": "us-east-1", "EU": "eu-west-1"}
# How long what S3 said about a bucket that exists (that it does, and its region, which never changes while
# it exists) is taken as still true: a burst of StartAsyncInvoke calls asks S3 once, not three times each.
BUCKET_FACTS_SEC = 5.0
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
        self._facts: dict[tuple[str, str], tuple[float, str]] = {}  # (bucket, fact) -> (when, answer)
        self._facts_lock = threading.Lock()

    def _recent(self, bucket: str, fact: str, ask: Callable[[], str | None]) -> str | None:
        """`ask()` about `bucket`, or its answer of the last BUCKET_FACTS_SEC; None answers (S3 could not
        say) are never kept, so a bucket made or fixed since is seen at once."""
        now = time.monotonic()
        with self._facts_lock:
            kept = self._facts.get((bucket, fact))
        if kept is not None and now - kept[0] < BUCKET_FACTS_SEC:
            return kept[1]
        answer = ask()
        if answer is not None:
            with self._facts_lock:
                self._facts[(bucket, fact)] = (now, answer)
        return answer

    def bucket_exists(self, bucket: str) -> bool:
        """HeadBucket succeeds (the account can reach the bucket)."""

        def ask() -> str | None:
            try:
                self.s3.head_bucket(Bucket=bucket)
            except ClientError:
                return None
            return "yes"

        return self._recent(bucket, "exists", ask) is not None

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

        def ask() -> str | None:
            try:
                constraint = self.s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or ""
            except (ClientError, BotoCoreError):
                return None
            return LEGACY_LOCATIONS.get(constraint, constraint)

        return self._recent(bucket, "region", ask)

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
