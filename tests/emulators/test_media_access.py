"""What the Bedrock emulator asks S3 about a bucket: once per burst of calls, and never a stale "missing"."""

from typing import Any

import pytest
from botocore.exceptions import ClientError

from emulators.bedrock_runtime import media_access
from emulators.bedrock_runtime.media_access import MediaAccess


class CountingS3:
    """HeadBucket and GetBucketLocation of the buckets in `regions`, counted; others are 404."""

    def __init__(self, regions: dict[str, str]) -> None:
        self.regions, self.calls = regions, 0

    def _known(self, bucket: str, operation: str) -> str:
        self.calls += 1
        if bucket not in self.regions:
            raise ClientError({"Error": {"Code": "NoSuchBucket", "Message": bucket}}, operation)
        return self.regions[bucket]

    def head_bucket(self, Bucket: str) -> dict[str, Any]:
        self._known(Bucket, "HeadBucket")
        return {}

    def get_bucket_location(self, Bucket: str) -> dict[str, Any]:
        return {"LocationConstraint": self._known(Bucket, "GetBucketLocation")}


def test_a_burst_asks_s3_once_per_bucket_and_a_missing_bucket_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(media_access.time, "monotonic", lambda: now[0])
    s3 = CountingS3({"out": "eu-west-1"})
    access = MediaAccess(s3, region="us-east-1", account_id="123456789012")
    for _ in range(10):
        assert access.bucket_exists("out") and access.bucket_region("out") == "eu-west-1"
    assert s3.calls == 2
    assert not access.bucket_exists("new") and access.bucket_region("new") is None
    s3.regions["new"] = "us-east-1"  # made since: seen at once, a "missing" is never kept
    assert access.bucket_exists("new") and access.bucket_region("new") == "us-east-1"
    calls = s3.calls
    now[0] += media_access.BUCKET_FACTS_SEC
    del s3.regions["out"]  # gone: seen once what was said about it is old
    assert not access.bucket_exists("out") and access.bucket_region("out") is None
    assert s3.calls == calls + 2
