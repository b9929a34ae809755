"""One S3 configuration for every library that touches object storage.

boto3, pyarrow and LanceDB each take S3 settings differently. This resource resolves them once through
boto3's own configuration chain (including the standard `AWS_ENDPOINT_URL_S3` override), so pointing the
pipeline at a local emulator or at AWS changes only endpoints and credentials, never code.

An S3 key is an opaque string of up to 1,024 bytes: `#`, `?`, tabs, `%20`, `..`, `//`, a leading `/` or a
trailing space are all part of it. Media objects are therefore addressed only through boto3, which sends a
key exactly as given; pyarrow's filesystem (which refuses empty segments and resolves `..`) is used only for
the lake, whose paths this project chooses.
"""

from __future__ import annotations

import threading
from typing import Any

import pyarrow.fs as pafs
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr

from resources.storage.location import S3Keys, arrow_s3_filesystem, client_endpoint, object_store_options
from resources.storage.s3_objects import SCHEME, ObjectChanged, S3ObjectFile, S3Uri, open_s3_object

__all__ = ["SCHEME", "ObjectChanged", "S3ObjectFile", "S3Storage", "S3Uri", "open_s3_object"]


class S3Storage(S3Resource):
    """dagster-aws's S3 resource, plus the same settings for pyarrow and LanceDB.

    Endpoint and region are read off the boto3 client, so the standard AWS configuration chain applies to
    all three libraries. Keys are handed over only when configured here: otherwise pyarrow and LanceDB use
    the AWS credential chain themselves, which refreshes temporary credentials during long runs.
    """

    _client: Any = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _arrow_fs: pafs.S3FileSystem | None = PrivateAttr(default=None)

    def get_client(self) -> Any:
        """One boto3 S3 client per resource instance (thread-safe), built by dagster-aws."""
        with self._client_lock:  # the inventory probes from several threads at once
            if self._client is None:
                self._client = super().get_client()
        return self._client

    def open_object(self, location: S3Uri, etag: str | None = None) -> S3ObjectFile:
        """A seekable file over the object at exactly `location`, read in ranged requests by this
        resource's boto3 client; with `etag`, only that version (else `ObjectChanged`)."""
        return open_s3_object(self.get_client(), location, etag)

    def _keys(self) -> S3Keys:
        return S3Keys(self.aws_access_key_id, self.aws_secret_access_key, self.aws_session_token)

    def arrow_filesystem(self) -> pafs.S3FileSystem:
        """One pyarrow S3 filesystem per resource instance (thread-safe): ingest writes from many threads."""
        endpoint, region = client_endpoint(self.get_client())
        with self._client_lock:
            if self._arrow_fs is None:
                self._arrow_fs = arrow_s3_filesystem(endpoint, region, self._keys())
        return self._arrow_fs

    def lance_storage_options(self) -> dict[str, str]:
        """The object_store settings of delta-rs and LanceDB."""
        return object_store_options(*client_endpoint(self.get_client()), self._keys())
