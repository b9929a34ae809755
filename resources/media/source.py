"""The S3 bucket/prefix that media teams drop objects into."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
from botocore.exceptions import ClientError
from pydantic import Field

from resources.media.probe import MediaProbe, probe
from resources.media.probe_batch import PROBE_BATCH_OBJECTS, parse_probe_batch
from resources.storage.s3_storage import S3Storage, S3Uri


@dataclass(frozen=True)
class MediaObject:
    uri: str
    key: str
    etag: str
    size_bytes: int
    last_modified: datetime


def is_folder_marker(key: str, size: int) -> bool:
    """A console "folder": a zero-byte key ending in `/`, not media."""
    return key.endswith("/") and size == 0


class MediaSource(dg.ConfigurableResource):
    uri: str = Field(description="s3://bucket/prefix to embed everything under.")
    storage: S3Storage
    probe_batch: str | None = Field(
        default=None,
        description=(
            "How many new or changed objects a listing probes itself; more are written pending and probed "
            f"by probe_media runs of this many each (unset: {PROBE_BATCH_OBJECTS:,})."
        ),
    )

    def probe_batch_objects(self) -> int:
        return parse_probe_batch(self.probe_batch)

    def list_objects(self) -> Iterator[MediaObject]:
        """Every object under the prefix, through boto3's paginator (1000 keys a call)."""
        for page in self.list_pages():
            yield from page

    def list_pages(self) -> Iterator[list[MediaObject]]:
        """The objects under the prefix a listing page (1000 keys) at a time, in S3's key order: a listing
        of any size in the memory of one page."""
        root = S3Uri.parse(self.uri)
        paginator = self.storage.get_client().get_paginator("list_objects_v2")
        # botocore asks for url-encoded keys and decodes them, so every key arrives exactly as stored.
        for page in paginator.paginate(Bucket=root.bucket, Prefix=root.key):
            yield [
                MediaObject(
                    uri=str(S3Uri(root.bucket, item["Key"])),
                    key=item["Key"],
                    etag=item["ETag"].strip('"'),
                    size_bytes=item["Size"],
                    last_modified=item["LastModified"],
                )
                for item in page.get("Contents", [])
                if not is_folder_marker(item["Key"], item["Size"])
            ]

    def contains(self, bucket: str, key: str) -> bool:
        """Whether an object is under the media prefix (a bucket's events may cover more than it)."""
        root = S3Uri.parse(self.uri)
        return bucket == root.bucket and key.startswith(root.key) and not is_folder_marker(key, 0)

    def head(self, key: str) -> MediaObject | None:
        """The object as it is now (an event's version may be gone already); None when there is none."""
        root = S3Uri.parse(self.uri)
        try:
            item = self.storage.get_client().head_object(Bucket=root.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return MediaObject(
            uri=str(S3Uri(root.bucket, key)),
            key=key,
            etag=item["ETag"].strip('"'),
            size_bytes=item["ContentLength"],
            last_modified=item["LastModified"],
        )

    def probe(self, obj: MediaObject) -> tuple[str | None, MediaProbe]:
        """Content type and media facts of the listed version, reading only the byte ranges the container
        parser asks for. Through boto3, not pyarrow: pyarrow cannot address keys with `//` or `..`."""
        with self.storage.open_object(S3Uri.parse(obj.uri), etag=obj.etag) as handle:
            return handle.content_type, probe(obj.key, handle.content_type, handle)
