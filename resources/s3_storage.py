"""One S3 configuration for every library that touches object storage.

boto3, pyarrow and LanceDB each take S3 settings differently. This resource resolves them once through
boto3's own configuration chain (including the standard `AWS_ENDPOINT_URL_S3` override), so pointing the
pipeline at a local emulator or at AWS changes only endpoints and credentials, never code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs as pafs
from dagster_aws.s3 import S3Resource
from pydantic import PrivateAttr


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3:// URI: {uri!r}")
        return cls(parsed.netloc, parsed.path.lstrip("/"))

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return S3Uri(self.bucket, key)


class S3Storage(S3Resource):
    """dagster-aws's S3 resource, plus the same settings for pyarrow and LanceDB.

    Endpoint and region are read off the boto3 client, so the standard AWS configuration chain applies to
    all three libraries. Keys are handed over only when configured here: otherwise pyarrow and LanceDB use
    the AWS credential chain themselves, which refreshes temporary credentials during long runs.
    """

    _client: Any = PrivateAttr(default=None)
    _arrow_fs: pafs.S3FileSystem | None = PrivateAttr(default=None)

    def get_client(self) -> Any:
        """One boto3 S3 client per resource instance (thread-safe), built by dagster-aws."""
        if self._client is None:
            self._client = super().get_client()
        return self._client

    def _endpoint_and_region(self) -> tuple[str, str]:
        meta = self.get_client().meta
        return meta.endpoint_url, meta.region_name

    def arrow_filesystem(self) -> pafs.S3FileSystem:
        if self._arrow_fs is None:
            endpoint, region = self._endpoint_and_region()
            parsed = urlparse(endpoint)
            self._arrow_fs = pafs.S3FileSystem(
                access_key=self.aws_access_key_id,
                secret_key=self.aws_secret_access_key,
                session_token=self.aws_session_token,
                region=region,
                endpoint_override=parsed.netloc,
                scheme=parsed.scheme or "https",
            )
        return self._arrow_fs

    def lance_storage_options(self) -> dict[str, str]:
        endpoint, region = self._endpoint_and_region()
        options = {"aws_region": region, "aws_endpoint": endpoint}
        if endpoint.startswith("http://"):
            options["allow_http"] = "true"
        if self.aws_access_key_id and self.aws_secret_access_key:
            options["aws_access_key_id"] = self.aws_access_key_id
            options["aws_secret_access_key"] = self.aws_secret_access_key
        if self.aws_session_token:
            options["aws_session_token"] = self.aws_session_token
        return options
