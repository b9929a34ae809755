"""Thumbnails beside the embedding tables: one poster JPEG per segment start, at
`<lake>/thumbnails/<model>/<media_id>/<start_ms>.jpg` (`whole.jpg` for a row without a start).

`make_thumbnails` is what an ingest run calls after its commit, for the objects it committed: each video or
image is read once (one GET; a very large one through ranged reads around its starts), and its frames
written. A folder whose version marker names the object's current ETag and that holds every start's JPEG is
left alone, so a re-run makes none again. It never raises: an object whose thumbnails cannot be made is one
line in `ThumbnailCounts.problems` (naming the object and the reason), and the page shows a placeholder.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.fs as pafs
from botocore.exceptions import BotoCoreError, ClientError

from resources.media.poster_frames import PosterFrameError, poster_frames
from resources.storage.location import Location
from resources.storage.s3_objects import SCHEME, S3Uri, open_s3_object
from resources.tables.segment_schema import media_id

FOLDER = "thumbnails"
THUMBNAIL_THREADS = 4
# Media up to this size are read in one GET; larger ones by ranged reads of RANGE_BYTES around each start
# (a seek lands on a keyframe and the decode reads forward from it).
WHOLE_GET_BYTES = 64 * 1024 * 1024
RANGE_BYTES = 4 * 1024 * 1024
_NAME = re.compile(r"^(?:\d{1,10}|whole)\.jpg$")
_MODEL = re.compile(r"^[a-z0-9][a-z0-9.-]{0,40}$")
_MEDIA_ID = re.compile(r"^[0-9a-f]{24}$")


def thumbnail_name(start_sec: float | None) -> str:
    """The file of a segment's poster: its start in whole milliseconds, or `whole` for no start."""
    return "whole.jpg" if start_sec is None else f"{round(start_sec * 1000)}.jpg"


def pick_thumbnail(names: set[str], start_sec: float | None) -> str | None:
    """The poster for a hit at `start_sec` among an object's JPEG `names`: its own segment's, else that
    of the last segment starting before it (a description's span has its own start), else `whole.jpg`."""
    if start_sec is None:
        return "whole.jpg" if "whole.jpg" in names else min(names, key=_start_ms, default=None)
    own = thumbnail_name(start_sec)
    if own in names:
        return own
    before = [n for n in names if n != "whole.jpg" and _start_ms(n) <= round(start_sec * 1000)]
    if before:
        return max(before, key=_start_ms)
    return "whole.jpg" if "whole.jpg" in names else None


def _start_ms(name: str) -> int:
    stem = name.removesuffix(".jpg")
    return int(stem) if stem.isdigit() else -1


def version_marker(etag: str) -> str:
    """The file that says which version of the object a folder's JPEGs are of."""
    return f"version-{hashlib.sha256(etag.encode()).hexdigest()[:16]}"


def thumbnail_path(model_key: str, media: str, name: str) -> str | None:
    """`thumbnails/<model>/<media_id>/<name>` relative to the lake, or None when a part is not one this
    module makes (so a request can never name another file of the lake)."""
    if not (_MODEL.match(model_key) and _MEDIA_ID.match(media) and _NAME.match(name)):
        return None
    return f"{FOLDER}/{model_key}/{media}/{name}"


@dataclass(frozen=True)
class ThumbnailCounts:
    """What one run's thumbnails came to, for the embeddings' materialization."""

    made: int = 0  # JPEGs written
    objects: int = 0  # objects that got them
    already_there: int = 0  # objects whose thumbnails of this version were there: not redone
    problems: tuple[str, ...] = ()  # one line each: "<media_uri>: <reason>"

    def __add__(self, other: ThumbnailCounts) -> ThumbnailCounts:
        """Two parts of one run's thumbnails (an ingest run commits a chunk of objects at a time)."""
        return ThumbnailCounts(
            self.made + other.made,
            self.objects + other.objects,
            self.already_there + other.already_there,
            self.problems + other.problems,
        )


@dataclass(frozen=True)
class _Object:
    media_uri: str
    etag: str
    modality: str
    starts: tuple[float | None, ...]


def _objects(written: pa.Table) -> list[_Object]:
    """Each committed video or image with the distinct starts of its rows (audio has no pictures)."""
    found: dict[tuple[str, str, str], set[float | None]] = {}
    columns = written.select(["media_uri", "etag", "modality", "start_sec"]).to_pylist()
    for row in columns:
        if row["modality"] in ("video", "image"):
            key = (row["media_uri"], row["etag"], row["modality"])
            found.setdefault(key, set()).add(row["start_sec"])
    return [
        _Object(uri, etag, modality, tuple(sorted(starts, key=lambda s: -1.0 if s is None else s)))
        for (uri, etag, modality), starts in found.items()
    ]


class ThumbnailStore:
    """The thumbnails folder of a lake: where they are written and what the search page reads."""

    def __init__(self, lake: Location) -> None:
        self.lake = lake

    def read(self, model_key: str, media: str, name: str) -> bytes | None:
        path = thumbnail_path(model_key, media, name)
        if path is None:
            return None
        try:
            return self.lake.read_bytes(path)
        except (FileNotFoundError, OSError, ClientError, BotoCoreError):
            return None

    def names(self, model_key: str, media: str) -> set[str]:
        """The JPEG names in an object's folder: one listing (none for a folder this module never makes,
        or one that cannot be listed: the page then shows a placeholder)."""
        if thumbnail_path(model_key, media, "whole.jpg") is None:
            return set()
        try:
            return set(self.lake.list_names(f"{FOLDER}/{model_key}/{media}", ".jpg"))
        except (OSError, ClientError, BotoCoreError):
            return set()

    def remove(self, model_key: str, media_ids: Sequence[str]) -> list[str]:
        """Delete the folders of objects that left a version's table (one recursive delete each). Never
        raises: returns one line per folder that could not be deleted (left behind: never shown, since no
        hit names its object, and about 1 KB a segment)."""
        fs, problems = self.lake.filesystem(), []
        for media in media_ids:
            if thumbnail_path(model_key, media, "whole.jpg") is None:
                continue
            folder = self.lake.arrow_path(f"{FOLDER}/{model_key}/{media}")
            try:
                if fs.get_file_info(folder).type == pafs.FileType.Directory:
                    fs.delete_dir(folder)
            except (OSError, ClientError, BotoCoreError) as error:
                problems.append(f"{folder}: not deleted ({' '.join(str(error).split())[:200]})")
        return problems

    def _write(self, relative: str, body: bytes) -> None:
        def write(path: str, fs: Any) -> None:
            with fs.open_output_stream(path) as out:
                out.write(body)

        self.lake.write_whole(relative, write)

    def make(self, obj: _Object, model_key: str, open_media: Callable[[_Object], BinaryIO]) -> int | None:
        """The JPEGs of one object, written; None when they were there already."""
        folder = f"{FOLDER}/{model_key}/{media_id(obj.media_uri)}"
        names = set(self.lake.list_names(folder))
        marker = version_marker(obj.etag)
        if marker in names and all(thumbnail_name(s) in names for s in obj.starts):
            return None
        with open_media(obj) as media:
            frames = poster_frames(media, obj.starts, obj.modality)  # type: ignore[arg-type]
        if not frames:
            raise PosterFrameError("no frame could be decoded at any segment start")
        for start, jpeg in frames.items():
            self._write(f"{folder}/{thumbnail_name(start)}", jpeg)
        self._write(f"{folder}/{marker}", obj.etag.encode())
        return len(frames)


def s3_media_opener(s3_client: Callable[[], Any]) -> Callable[[_Object], BinaryIO]:
    """How `make_thumbnails` reads an object: one GET of that version (IfMatch its ETag), or, for one past
    WHOLE_GET_BYTES, a seekable file of ranged reads; `s3_client` is called only then. A local path (tests,
    a local library) is opened."""

    def open_media(obj: _Object) -> BinaryIO:
        if not obj.media_uri.startswith(SCHEME):
            return open(obj.media_uri, "rb")
        where, client = S3Uri.parse(obj.media_uri), s3_client()
        etag = obj.etag if obj.etag.startswith('"') else f'"{obj.etag}"'
        response = client.get_object(Bucket=where.bucket, Key=where.key, IfMatch=etag)
        body = response["Body"]
        if int(response.get("ContentLength") or 0) > WHOLE_GET_BYTES:
            body.close()
            return open_s3_object(client, where, obj.etag, RANGE_BYTES)
        with body:
            return io.BytesIO(body.read())

    return open_media


def make_thumbnails(
    lake: Location,
    written: pa.Table,
    model_key: str,
    open_media: Callable[[_Object], BinaryIO],
    threads: int = THUMBNAIL_THREADS,
) -> ThumbnailCounts:
    """The thumbnails of the videos and images in `written` (the rows a run committed), on `threads`
    threads. Never raises: an object that fails is a line in `problems` and the others go on."""
    store = ThumbnailStore(lake)
    objects = _objects(written)

    def one(obj: _Object) -> int | str | None:
        try:
            return store.make(obj, model_key, open_media)
        except Exception as error:  # a thumbnail is never worth failing the ingest for
            reason = " ".join(str(error).split())[:300] or type(error).__name__
            return f"{obj.media_uri}: no thumbnail ({type(error).__name__}: {reason})"

    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(pool.map(one, objects))
    made = [r for r in results if isinstance(r, int)]
    return ThumbnailCounts(
        made=sum(made),
        objects=len(made),
        already_there=sum(r is None for r in results),
        problems=tuple(r for r in results if isinstance(r, str)),
    )
