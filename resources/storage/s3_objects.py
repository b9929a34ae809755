"""S3 object addresses and seekable reads of one object version, with any boto3 client and no Dagster.

The pipeline's `S3Storage` reads through these, and so does `mediaembed search` (a query's image or clip
on S3), which must start without loading Dagster.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

SCHEME = "s3://"
# GetBucketLocation's legacy answers: no constraint is us-east-1, and "EU" is eu-west-1.
LEGACY_LOCATIONS = {"": "us-east-1", "EU": "eu-west-1"}
# Bytes fetched per ranged GetObject: a container header and its first packets in one or two requests,
# while a probe of a multi-gigabyte video still reads only the few regions the demuxer seeks to.
READ_AHEAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class S3Uri:
    """`s3://bucket/key`, where the key is everything after the first `/` that follows the bucket."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """Split at the first `/` after the bucket and keep the key byte for byte.

        Not a URL parser: urlparse cuts the key at `#` or `?` and drops tabs and newlines, all of which are
        legal in an S3 key and would silently point at another object.
        """
        if uri[: len(SCHEME)].lower() != SCHEME:
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len(SCHEME) :].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in the S3 URI {uri!r}: write it as s3://bucket/key")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        """`parts` under this prefix: one `/` between the prefix and each part, nothing else changed."""
        key = self.key
        for part in parts:
            key = f"{key}{part}" if not key or key.endswith("/") else f"{key}/{part}"
        return S3Uri(self.bucket, key)

    def arrow_path(self) -> str:
        """`bucket/prefix` for pyarrow's S3FileSystem, which cannot address every key.

        pyarrow refuses empty segments (`//`, a leading `/`) and resolves `.` and `..`, so such a prefix is
        refused here by name instead of reading or writing somewhere else.
        """
        segments = self.key.rstrip("/").split("/") if self.key.rstrip("/") else []
        if any(segment in ("", ".", "..") for segment in segments):
            raise ValueError(
                f"{self} has an empty, '.' or '..' path segment, which pyarrow cannot address: "
                "choose a prefix without them"
            )
        return "/".join([self.bucket, *segments])


class ObjectChanged(RuntimeError):
    """The object was replaced while it was being read: its bytes would mix two versions."""


class S3ObjectFile(io.BufferedReader):
    """A seekable, read-only file over one version of an S3 object (see `S3Storage.open_object`)."""

    def __init__(self, raw: _RangedObject, buffer_size: int = READ_AHEAD_BYTES) -> None:
        super().__init__(raw, buffer_size)
        self.content_type = raw.content_type
        self.size = raw.size


class _RangedObject(io.RawIOBase):
    """Raw reads of one S3 object: each a ranged GetObject pinned to the ETag first seen."""

    def __init__(self, client: Any, location: S3Uri, etag: str | None) -> None:
        super().__init__()
        self._client, self._location = client, location
        try:
            head = client.head_object(**self._request(etag))
        except ClientError as error:
            raise _object_error(error, location, etag) from error
        self.size: int = head["ContentLength"]
        self.content_type: str | None = head.get("ContentType") or None
        self._etag: str = head["ETag"]
        self._position = 0

    def _request(self, etag: str | None) -> dict[str, Any]:
        request = {"Bucket": self._location.bucket, "Key": self._location.key}
        if etag:
            request["IfMatch"] = etag if etag.startswith('"') else f'"{etag}"'
        return request

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset} in {self._location}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self.size or len(buffer) == 0:
            return 0
        last = min(self._position + len(buffer), self.size) - 1
        try:
            response = self._client.get_object(
                **self._request(self._etag), Range=f"bytes={self._position}-{last}"
            )
        except ClientError as error:
            raise _object_error(error, self._location, self._etag) from error
        data = response["Body"].read()
        memoryview(buffer)[: len(data)] = data
        self._position += len(data)
        return len(data)


def _object_error(error: ClientError, location: S3Uri, etag: str | None) -> Exception:
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code in ("PreconditionFailed", "412"):
        changed = f"{location} changed while it was read (no longer ETag {etag})"
        return ObjectChanged(f"{changed}; the next run reads the new version")
    return error


def is_conflict(error: ClientError) -> bool:
    """The condition of a conditional write did not hold: the object exists, changed, or is being written."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(error.response.get("Error", {}).get("Code", ""))
    return status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict")


def media_link(make_client: Callable[[], Any], uri: str, expires_sec: int) -> str:
    """A GET URL for an s3:// object, presigned for `expires_sec` by the client `make_client` makes (called
    only then); any other URI (https, a local path) as it is."""
    if not uri.startswith(SCHEME):
        return uri
    location = S3Uri.parse(uri)
    params = {"Bucket": location.bucket, "Key": location.key}
    return str(make_client().generate_presigned_url("get_object", Params=params, ExpiresIn=expires_sec))


def open_s3_object(
    client: Any, location: S3Uri, etag: str | None = None, buffer_size: int = READ_AHEAD_BYTES
) -> S3ObjectFile:
    """A seekable file over the object at exactly `location`, read in ranged requests of `buffer_size` by
    `client`; with `etag`, only that version (else `ObjectChanged`)."""
    return S3ObjectFile(_RangedObject(client, location, etag), buffer_size)


def bucket_region(client: Any, bucket: str) -> str:
    """The region `bucket` is in, from GetBucketLocation (its errors go up to the caller)."""
    constraint = client.get_bucket_location(Bucket=bucket).get("LocationConstraint") or ""
    return LEGACY_LOCATIONS.get(constraint, constraint)
