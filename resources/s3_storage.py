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


@dataclass(frozen=True)
class _Resolved:
    endpoint_url: str
    region: str
    access_key: str | None
    secret_key: str | None
    session_token: str | None


class S3Storage(S3Resource):
    """dagster-aws's S3 resource, plus the same settings for pyarrow and LanceDB."""

    _resolved_settings: _Resolved | None = PrivateAttr(default=None)
    _client: Any = PrivateAttr(default=None)
    _arrow_fs: pafs.S3FileSystem | None = PrivateAttr(default=None)

    def arrow_filesystem(self) -> pafs.S3FileSystem:
        if self._arrow_fs is None:
            self._arrow_fs = self._new_arrow_filesystem()
        return self._arrow_fs

    def _new_arrow_filesystem(self) -> pafs.S3FileSystem:
        r = self._resolved()
        parsed = urlparse(r.endpoint_url)
        return pafs.S3FileSystem(
            access_key=r.access_key,
            secret_key=r.secret_key,
            session_token=r.session_token,
            region=r.region,
            endpoint_override=parsed.netloc,
            scheme=parsed.scheme or "https",
        )

    def lance_storage_options(self) -> dict[str, str]:
        r = self._resolved()
        options = {"aws_region": r.region, "aws_endpoint": r.endpoint_url}
        if r.endpoint_url.startswith("http://"):
            options["allow_http"] = "true"
        if r.access_key and r.secret_key:
            options["aws_access_key_id"] = r.access_key
            options["aws_secret_access_key"] = r.secret_key
        if r.session_token:
            options["aws_session_token"] = r.session_token
        return options

    def _resolved(self) -> _Resolved:
        """Endpoint, region and credentials as boto3 resolves them, once per resource instance."""
        if self._resolved_settings is None:
            self._resolved_settings = self._resolve()
        return self._resolved_settings

    def _resolve(self) -> _Resolved:
        client: Any = self.get_client()
        # Keys are handed over only when configured here: otherwise pyarrow and LanceDB use the AWS
        # credential chain themselves, which refreshes temporary credentials during long runs.
        return _Resolved(
            endpoint_url=client.meta.endpoint_url,
            region=client.meta.region_name,
            access_key=self.aws_access_key_id,
            secret_key=self.aws_secret_access_key,
            session_token=self.aws_session_token,
        )

    def get_client(self) -> Any:
        """One boto3 S3 client per resource instance (thread-safe), built by dagster-aws."""
        if self._client is None:
            self._client = super().get_client()
        return self._client
