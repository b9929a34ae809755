"""Where the lake and the index live, parsed once: a local directory or s3://bucket/prefix.

Everything that reads, writes, lists, deletes or creates-if-absent in the lake or the index goes through a
`Location`, so the difference between a local disk and S3 is written once, here, in its two kinds:

- a pyarrow filesystem and paths on it (`filesystem`, `arrow_path`, `arrow_paths`) for the Parquet files;
- the URI and `object_store` options delta-rs (`delta_table`) and LanceDB (`lance_database`) take;
- small objects: `list_names`, `read_bytes`, and `create_if_absent`, an atomic write that fails if the name
  exists (an exclusive hard link on a local disk, `PutObject` with `If-None-Match: *` on S3), which the
  serving record is built on;
- whole-file writes (`write_whole`: a temporary file and an atomic rename on a local disk, one PUT on S3)
  and the sweep of what killed local writes left behind;
- the writer lock of a table (`writer_lock`: an flock locally, a lease object on S3).

S3 settings come from one `S3Access` (the pipeline's `S3Storage`, or `BotoAccess` over a plain boto3 client
where Dagster must not load), so boto3, pyarrow, delta-rs and LanceDB all reach the same endpoint: the
endpoint and region are read off the boto3 client, which resolves `AWS_ENDPOINT_URL_S3` and the rest of the
AWS configuration chain.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

import pyarrow.fs as pafs
from botocore.exceptions import ClientError

from resources.storage.s3_objects import SCHEME, S3Uri, is_conflict

if TYPE_CHECKING:  # the lock kinds are imported by writers only: filelock loads asyncio (~0.1 s), which
    # `mediaembed search`, never writing, does not pay
    from resources.storage.locks import WriterLock


class S3Access(Protocol):
    """One S3 configuration for the libraries that touch object storage (`S3Storage` is one)."""

    def get_client(self) -> Any: ...

    def arrow_filesystem(self) -> pafs.FileSystem: ...

    def lance_storage_options(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class S3Keys:
    """Keys handed to pyarrow and object_store only when configured: otherwise each library uses the AWS
    credential chain itself, which refreshes temporary credentials during long runs."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None


def arrow_s3_filesystem(endpoint: str, region: str, keys: S3Keys) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem pointed at the endpoint and region a boto3 client resolved."""
    parsed = urlparse(endpoint)
    return pafs.S3FileSystem(
        access_key=keys.access_key_id,
        secret_key=keys.secret_access_key,
        session_token=keys.session_token,
        region=region,
        endpoint_override=parsed.netloc,
        scheme=parsed.scheme or "https",
    )


def object_store_options(endpoint: str, region: str, keys: S3Keys) -> dict[str, str]:
    """The `object_store` settings delta-rs and LanceDB both take, for the same endpoint and region."""
    options = {"aws_region": region, "aws_endpoint": endpoint}
    if endpoint.startswith("http://"):
        options["allow_http"] = "true"
    if keys.access_key_id and keys.secret_access_key:
        options["aws_access_key_id"] = keys.access_key_id
        options["aws_secret_access_key"] = keys.secret_access_key
    if keys.session_token:
        options["aws_session_token"] = keys.session_token
    return options


def client_endpoint(client: Any) -> tuple[str, str]:
    """(endpoint URL, region) a boto3 client resolved from its configuration chain."""
    return client.meta.endpoint_url, client.meta.region_name


@dataclass
class BotoAccess:
    """`S3Access` over a boto3 client made on first use, for callers that must not load Dagster (the
    `mediaembed` search and serving commands); the AWS credential chain supplies the keys."""

    make_client: Callable[[], Any]
    _client: Any = field(default=None, init=False, repr=False)
    _arrow_fs: pafs.S3FileSystem | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self.make_client()
        return self._client

    def arrow_filesystem(self) -> pafs.S3FileSystem:
        endpoint, region = client_endpoint(self.get_client())
        with self._lock:
            if self._arrow_fs is None:
                self._arrow_fs = arrow_s3_filesystem(endpoint, region, S3Keys())
        return self._arrow_fs

    def lance_storage_options(self) -> dict[str, str]:
        return object_store_options(*client_endpoint(self.get_client()), S3Keys())


class Location(ABC):
    """A local directory or an S3 prefix; the paths its methods take are relative to it (`a/b.parquet`)."""

    uri: str  # as configured

    # --- pyarrow -----------------------------------------------------------------------------------------

    @abstractmethod
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem the paths of `arrow_path` and `arrow_paths` are on."""

    @abstractmethod
    def arrow_path(self, relative: str = "") -> str:
        """`relative` under this location, as a path on `filesystem()`."""

    @abstractmethod
    def arrow_paths(self, uris: list[str]) -> list[str]:
        """Paths on `filesystem()` of files a table library names (absolute paths, or s3:// URIs)."""

    def rooted_filesystem(self) -> pafs.SubTreeFileSystem:
        """`filesystem()` rooted here, for code that only ever uses relative paths."""
        return pafs.SubTreeFileSystem(self.arrow_path(), self.filesystem())

    # --- table libraries ---------------------------------------------------------------------------------

    @abstractmethod
    def delta_table(self, relative: str) -> tuple[str, dict[str, str] | None]:
        """(table URI, storage_options) of the Delta table in the folder `relative`."""

    @abstractmethod
    def lance_database(self) -> tuple[str, dict[str, str] | None]:
        """(URI, storage_options) of a LanceDB database kept here."""

    @abstractmethod
    def bucket(self) -> str | None:
        """The S3 bucket this location is in; None on a local disk."""

    @abstractmethod
    def known_absent(self) -> bool:
        """True only when nothing can be stored here yet: a local directory that does not exist (where
        `lancedb.connect` would create one). An S3 prefix is never known absent without listing it."""

    # --- whole files -------------------------------------------------------------------------------------

    @abstractmethod
    def write_whole(self, relative: str, write: Callable[[str, pafs.FileSystem], None]) -> None:
        """Have `write(path, filesystem)` write the file `relative` so that readers see all of it or none."""

    @abstractmethod
    def remove_stale_temporaries(
        self, relative_dir: str, pattern: re.Pattern[str], older_than_sec: float, recursive: bool
    ) -> list[str]:
        """Delete the temporary files (names matching `pattern`, older than `older_than_sec`) killed writes
        left under a folder; returns their relative paths."""

    # --- small objects -----------------------------------------------------------------------------------

    @abstractmethod
    def list_names(self, relative_dir: str, suffix: str = "") -> list[str]:
        """Sorted names ending in `suffix` directly in the folder `relative_dir` (none if it is absent)."""

    @abstractmethod
    def read_bytes(self, relative: str) -> bytes: ...

    @abstractmethod
    def create_if_absent(self, relative: str, body: bytes) -> bool:
        """Write `relative` atomically unless it exists; False when it already did (someone else won)."""

    # --- locks -------------------------------------------------------------------------------------------

    @abstractmethod
    def writer_lock(self, relative: str, table: str, holder: str, lease_sec: float) -> WriterLock:
        """The lock of `table`, kept at `relative` (without a suffix): an flock on `<relative>.lock`
        locally, a lease object `<relative>.lease` on S3 that lapses `lease_sec` after its last renewal."""


@dataclass(frozen=True)
class LocalLocation(Location):
    """A directory on a local disk (an absolute, resolved path)."""

    uri: str
    path: Path

    def _path(self, relative: str) -> str:
        return f"{self.path}/{relative}" if relative else str(self.path)

    def filesystem(self) -> pafs.FileSystem:
        return pafs.LocalFileSystem()

    def arrow_path(self, relative: str = "") -> str:
        return self._path(relative)

    def arrow_paths(self, uris: list[str]) -> list[str]:
        return list(uris)

    def delta_table(self, relative: str) -> tuple[str, dict[str, str] | None]:
        return str(self.path / relative), None

    def lance_database(self) -> tuple[str, dict[str, str] | None]:
        return str(self.path), None

    def bucket(self) -> str | None:
        return None

    def known_absent(self) -> bool:
        return not self.path.is_dir()

    def write_whole(self, relative: str, write: Callable[[str, pafs.FileSystem], None]) -> None:
        """Through `<file>.<uuid4 hex>.tmp` and an atomic rename."""
        fs, path = self.filesystem(), self._path(relative)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        write(tmp, fs)
        fs.move(tmp, path)

    def remove_stale_temporaries(
        self, relative_dir: str, pattern: re.Pattern[str], older_than_sec: float, recursive: bool
    ) -> list[str]:
        folder = self._path(relative_dir).rstrip("/")
        prefix = len(str(self.path)) + 1
        return [p[prefix:] for p in _remove_stale(folder, pattern, time.time() - older_than_sec, recursive)]

    def list_names(self, relative_dir: str, suffix: str = "") -> list[str]:
        folder = self.path / relative_dir
        return sorted(p.name for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []

    def read_bytes(self, relative: str) -> bytes:
        return (self.path / relative).read_bytes()

    def create_if_absent(self, relative: str, body: bytes) -> bool:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(body)
        try:
            os.link(tmp, target)  # atomic, and fails if the name exists: a complete file or none
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        return True

    def writer_lock(self, relative: str, table: str, holder: str, lease_sec: float) -> WriterLock:
        from resources.storage.locks import LocalWriterLock

        return LocalWriterLock(self.path / f"{relative}.lock", table, holder)


def _remove_stale(folder: str, pattern: re.Pattern[str], cutoff: float, recursive: bool) -> list[str]:
    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    removed += _remove_stale(entry.path, pattern, cutoff, recursive=True)
            elif pattern.search(entry.name) and entry.stat().st_mtime < cutoff:
                os.remove(entry.path)
                removed.append(entry.path)
        except FileNotFoundError:
            continue  # renamed by its writer or removed by another sweep meanwhile
    return removed


@dataclass(frozen=True)
class S3Location(Location):
    """An S3 prefix (`prefix` is the parsed URI, with no trailing `/`), reached through `s3`."""

    uri: str
    prefix: S3Uri
    s3: S3Access | None

    def _access(self) -> S3Access:
        if self.s3 is None:
            raise ValueError(f"{self.uri} is on S3, and no S3 client was given to reach it")
        return self.s3

    def _key(self, relative: str) -> str:
        return self.prefix.join(relative).key

    def filesystem(self) -> pafs.FileSystem:
        return self._access().arrow_filesystem()

    def arrow_path(self, relative: str = "") -> str:
        base = self.prefix.arrow_path()  # refuses a prefix pyarrow cannot address, by name
        return f"{base}/{relative}" if relative else base

    def arrow_paths(self, uris: list[str]) -> list[str]:
        return [S3Uri.parse(u).arrow_path() for u in uris]

    def delta_table(self, relative: str) -> tuple[str, dict[str, str] | None]:
        return f"{self.uri.rstrip('/')}/{relative}", self._access().lance_storage_options()

    def lance_database(self) -> tuple[str, dict[str, str] | None]:
        return self.uri, self._access().lance_storage_options()

    def bucket(self) -> str | None:
        return self.prefix.bucket

    def known_absent(self) -> bool:
        return False

    def write_whole(self, relative: str, write: Callable[[str, pafs.FileSystem], None]) -> None:
        """One PUT (or a multipart upload): S3 shows an object whole or not at all."""
        write(self.arrow_path(relative), self.filesystem())

    def remove_stale_temporaries(
        self, relative_dir: str, pattern: re.Pattern[str], older_than_sec: float, recursive: bool
    ) -> list[str]:
        """Nothing to remove: a killed PUT leaves no object, and an incomplete multipart upload is removed by
        the bucket's AbortIncompleteMultipartUpload lifecycle rule."""
        return []

    def list_names(self, relative_dir: str, suffix: str = "") -> list[str]:
        prefix = self.prefix.join(relative_dir).key
        prefix = f"{prefix}/" if prefix and not prefix.endswith("/") else prefix
        names: list[str] = []
        pages = self._access().get_client().get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.prefix.bucket, Prefix=prefix):
            names += [o["Key"][len(prefix) :] for o in page.get("Contents", [])]
        return sorted(n for n in names if n.endswith(suffix) and "/" not in n)

    def read_bytes(self, relative: str) -> bytes:
        client = self._access().get_client()
        body: bytes = client.get_object(Bucket=self.prefix.bucket, Key=self._key(relative))["Body"].read()
        return body

    def create_if_absent(self, relative: str, body: bytes) -> bool:
        client = self._access().get_client()
        try:
            client.put_object(Bucket=self.prefix.bucket, Key=self._key(relative), Body=body, IfNoneMatch="*")
        except ClientError as error:
            if is_conflict(error):
                return False
            raise
        return True

    def writer_lock(self, relative: str, table: str, holder: str, lease_sec: float) -> WriterLock:
        from resources.storage.locks import S3WriterLease

        client, key = self._access().get_client(), self._key(f"{relative}.lease")
        return S3WriterLease(client, self.prefix.bucket, key, table, holder, lease_sec)


def location(uri: str, s3: S3Access | None = None) -> Location:
    """The location `uri` names: s3://bucket/prefix (reached through `s3`, needed only once something is
    read or written there), or a local directory (`~` expanded, made absolute)."""
    if uri.startswith(SCHEME):
        return S3Location(uri, S3Uri.parse(uri.rstrip("/")), s3)
    if "://" in uri:
        raise ValueError(f"{uri}: the lake and the index live in a local directory or under s3://")
    return LocalLocation(uri, Path(uri).expanduser().resolve())
