"""A query's image or clip, named by a person (a local path or an s3:// URI), resolved into the facts its
limits are checked on: size, duration, the bucket's region. Dagster-free, like the search it serves.

S3 objects are looked at (HeadObject, GetBucketLocation, a ranged read for a clip's duration) and sent by
reference; local files are read and sent inline. Nothing here calls a model provider.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from resources.media.probe import probe
from resources.search.marengo_query import MAX_BASE64_BYTES, QueryLimitError, QueryMedia, QueryMediaKind
from resources.storage.s3_objects import SCHEME, S3Uri, bucket_region, open_s3_object


class QueryMediaError(ValueError):
    """The named file or object cannot be used; `str()` is one line saying why and what to do."""


def resolve_query_media(
    spec: str, kind: QueryMediaKind, s3_client: Callable[[], Any] | None, name: str = ""
) -> QueryMedia:
    """The facts of the image or clip at `spec`; a file that is missing or unreadable is named. `s3_client`
    makes the S3 client, called only for an s3:// URI."""
    if spec.startswith(SCHEME):
        if s3_client is None:
            raise QueryMediaError(f"{spec}: no S3 client to read it with")
        return _s3_media(spec, kind, s3_client(), name)
    return _local_media(spec, kind, name)


def _local_media(spec: str, kind: QueryMediaKind, name: str) -> QueryMedia:
    path = Path(spec).expanduser()
    try:
        size = path.stat().st_size
    except OSError as error:
        raise QueryMediaError(f"{spec}: {error.strerror or error}; give an existing {kind} file") from None
    if not path.is_file():
        raise QueryMediaError(f"{spec}: not a file; give an {kind} file or an s3:// URI")
    if size > MAX_BASE64_BYTES:  # refused by its size alone: not read into memory
        return QueryMedia(kind, spec, size, name=name)
    data = path.read_bytes()
    duration = _duration(spec, kind, path.open("rb")) if kind == "audio" else None
    return QueryMedia(kind, spec, size, data=data, duration_sec=duration, name=name)


def _s3_media(spec: str, kind: QueryMediaKind, client: Any, name: str) -> QueryMedia:
    try:
        location = S3Uri.parse(spec)
    except ValueError as error:
        raise QueryMediaError(f"{spec}: {error}") from None
    try:
        head = client.head_object(Bucket=location.bucket, Key=location.key)
        region = bucket_region(client, location.bucket)
        duration = None
        if kind == "audio":
            duration = _duration(spec, kind, open_s3_object(client, location, head.get("ETag")))
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            raise QueryMediaError(f"{spec}: no such object; check the bucket and key") from None
        if code in ("403", "AccessDenied"):
            allow = "allow s3:GetObject and s3:GetBucketLocation"
            raise QueryMediaError(f"{spec}: access denied; {allow}") from None
        raise QueryMediaError(f"{spec}: S3 refused ({code or 'error'}); check the URI and access") from None
    except BotoCoreError as error:
        reason = f"cannot reach S3 ({type(error).__name__})"
        raise QueryMediaError(f"{spec}: {reason}; check AWS_ENDPOINT_URL_S3 and the network") from None
    size = int(head["ContentLength"])
    return QueryMedia(kind, spec, size, s3_uri=spec, duration_sec=duration, bucket_region=region, name=name)


def _duration(spec: str, kind: QueryMediaKind, file: Any) -> float | None:
    """The clip's duration, read by the same probe the inventory uses; an unplayable file is named."""
    with file:
        found = probe(os.path.basename(spec) or "clip.wav", None, file)
    if found.status != "ok":
        raise QueryLimitError(f"{spec}: {found.reason}; give a playable {kind} file")
    return found.duration_sec


def uploaded_media(data: bytes, filename: str, kind: QueryMediaKind) -> QueryMedia:
    """An image or clip a person uploaded (the search page, `POST /api/search`): sent inline, named by its
    file name; a clip's duration is read as for a local file, and a file too large to send inline is only
    measured (the query's check refuses it)."""
    label = filename or f"the uploaded {kind}"
    if not data:
        raise QueryMediaError(f"{label}: the upload is empty; choose an {kind} file")
    if len(data) > MAX_BASE64_BYTES:
        return QueryMedia(kind, label, len(data), name=filename)
    duration = _duration(label, kind, io.BytesIO(data)) if kind == "audio" else None
    return QueryMedia(kind, label, len(data), data=data, duration_sec=duration, name=filename)
