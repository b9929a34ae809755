"""Assets (`/v1.3/assets`): reusable uploads that embed requests and tasks name by `asset_id`.

Shapes follow SDK 1.3.6 (`twelvelabs/assets/raw_client.py`, `types/asset.py`, `types/asset_detail.py`):
create is a multipart form (`method` = `url` with a `url` field, or `direct` with a `file` part; optional
`filename`, `enable_hls`, `enable_thumbnail`, `user_metadata` as a JSON string) answered with an `Asset` in
the `processing` status; retrieve and list answer `AssetDetail` (`size`, `duration`, `technical_metadata`
once `ready`, `error.message` once `failed`); list pages newest first (`page`, `page_limit` <= 50,
`asset_ids`, `asset_types`, `filename`); delete answers 204.

The emulator checks an upload the way the platform documents: the upload size limits (video and audio up to
200 MB as a local file, 4 GB by URL; images up to 32 MB), supported content (video, audio, images; PDF, text
and Markdown documents), and a file that cannot be read fails the asset (`failed`, with the reason). It
produces no HLS stream or thumbnail, so `hls` and `thumbnail` are never set.
"""

from __future__ import annotations

import io
import json
import mimetypes
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import av

from emulators.twelvelabs_api.errors import invalid
from emulators.twelvelabs_api.limits import (
    ASSET_MAX_DIRECT_MEDIA_BYTES,
    ASSET_MAX_IMAGE_BYTES,
    ASSET_MAX_URL_MEDIA_BYTES,
    too_large,
)

METHODS = ("direct", "url")
ASSET_TYPES = ("image", "video", "audio", "document")
DOCUMENT_TYPES = {".pdf": "application/pdf", ".txt": "text/plain", ".md": "text/markdown"}
STILL_CODECS = {"png", "mjpeg", "webp", "bmp", "gif", "tiff"}
FORM_FIELDS = ("method", "url", "filename", "enable_hls", "enable_thumbnail", "user_metadata")


@dataclass(frozen=True)
class AssetUpload:
    """A validated create request (the media is fetched after this)."""

    method: str
    url: str | None
    file: bytes | None
    filename: str | None
    user_metadata: dict[str, Any] | None


def _flag(form: dict[str, str], name: str) -> None:
    value = form.get(name)
    if value is not None and value.lower() not in ("true", "false"):
        raise invalid(f"{name} must be true or false, not {value!r}")


def parse_upload(form: dict[str, str], files: dict[str, tuple[str | None, bytes]]) -> AssetUpload:
    """The create form, refused as the API refuses it (400 `parameter_invalid` naming the field)."""
    unknown = sorted((set(form) - set(FORM_FIELDS)) | (set(files) - {"file"}))
    if unknown:
        raise invalid(f"unknown field(s) {', '.join(unknown)}")
    method = form.get("method")
    if method not in METHODS:
        raise invalid(f"method {method!r} is not one of {', '.join(METHODS)}")
    url = form.get("url")
    upload = files.get("file")
    if method == "url":
        if upload is not None or not url:
            raise invalid("method url takes the url parameter (and no file)")
        if not url.startswith(("http://", "https://")):
            raise invalid(f"url must be an http(s) URL the platform can download, not {url!r}")
    elif upload is None or url is not None:
        raise invalid("method direct takes a file (and no url)")
    for name in ("enable_hls", "enable_thumbnail"):
        _flag(form, name)
    metadata = None
    if form.get("user_metadata") is not None:
        try:
            metadata = json.loads(form["user_metadata"])
        except json.JSONDecodeError as exc:
            raise invalid("user_metadata must be a JSON-encoded object") from exc
        if not isinstance(metadata, dict):
            raise invalid("user_metadata must be a JSON-encoded object")
    filename = form.get("filename") or (upload[0] if upload is not None else None)
    return AssetUpload(
        method=method,
        url=url,
        file=upload[1] if upload is not None else None,
        filename=filename,
        user_metadata=metadata,
    )


def filename_of(upload: AssetUpload) -> str:
    if upload.filename:
        return upload.filename
    path = (upload.url or "").split("?", 1)[0].rstrip("/")
    return path.rsplit("/", 1)[-1] or "asset"


@dataclass(frozen=True)
class MediaFacts:
    """What the platform reads from an uploaded file."""

    kind: str  # image, video, audio or document
    mime: str
    duration: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None


def _media_facts(data: bytes, filename: str) -> MediaFacts:
    """Probe a media file; raises ValueError when nothing in it can be read."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            seconds = float(container.duration) / av.time_base if container.duration else None
            if video is not None:
                ctx = video.codec_context
                width, height, codec = int(ctx.width), int(ctx.height), str(ctx.name)
                if codec in STILL_CODECS and audio is None and not seconds:
                    mime = (
                        mimetypes.guess_type(filename)[0] or f"image/{'jpeg' if codec == 'mjpeg' else codec}"
                    )
                    return MediaFacts("image", mime, None, width, height, codec)
                mime = mimetypes.guess_type(filename)[0] or "video/mp4"
                return MediaFacts("video", mime, seconds, width, height, codec)
            if audio is not None:
                mime = mimetypes.guess_type(filename)[0] or "audio/mpeg"
                return MediaFacts("audio", mime, seconds, None, None, str(audio.codec_context.name))
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise ValueError(f"the file is not readable media ({exc})") from exc
    raise ValueError("the file holds no video, audio or image stream")


def read_upload(data: bytes, filename: str, method: str) -> MediaFacts:
    """Type and facts of an uploaded file. Unsupported content and files over the upload limits are refused
    (400 / 413); a file that claims to be media but cannot be read raises ValueError (the asset fails)."""
    suffix = "." + filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix in DOCUMENT_TYPES:
        return MediaFacts("document", DOCUMENT_TYPES[suffix])
    facts = _media_facts(data, filename)
    if facts.kind == "image":
        limit = ASSET_MAX_IMAGE_BYTES
    else:
        limit = ASSET_MAX_DIRECT_MEDIA_BYTES if method == "direct" else ASSET_MAX_URL_MEDIA_BYTES
    if len(data) > limit:
        raise too_large("file" if method == "direct" else "url", len(data), limit)
    return facts


@dataclass
class Asset:
    """One asset; its bytes are kept beside it (in memory, and under the workdir when there is one)."""

    asset_id: str
    method: str
    filename: str
    created_at: datetime
    url: str | None = None
    user_metadata: dict[str, Any] | None = None
    status: str = "processing"
    facts: MediaFacts | None = None
    size: int | None = None
    error: str | None = None

    def public(self, rfc3339: Any) -> dict[str, Any]:
        """`Asset` (what create answers)."""
        out: dict[str, Any] = {
            "_id": self.asset_id,
            "method": self.method,
            "status": self.status,
            "filename": self.filename,
            "created_at": rfc3339(self.created_at),
        }
        if self.facts is not None:
            out["file_type"] = self.facts.mime
        if self.user_metadata is not None:
            out["user_metadata"] = self.user_metadata
        return out

    def detail(self, rfc3339: Any) -> dict[str, Any]:
        """`AssetDetail` (what retrieve and list answer): size, duration and metadata once ready."""
        out = self.public(rfc3339)
        if self.status == "failed":
            out["error"] = {"message": self.error or "The file could not be processed."}
        if self.status != "ready" or self.facts is None:
            return out
        facts = self.facts
        out["size"] = self.size
        meta: dict[str, Any] = {"file_size_bytes": self.size, "file_mime_type": facts.mime}
        if facts.kind in ("video", "audio"):
            out["duration"] = facts.duration
            meta[f"{facts.kind}_duration_seconds"] = facts.duration
            meta[f"{facts.kind}_codec"] = facts.codec
        if facts.kind == "video":
            meta.update(video_width=facts.width, video_height=facts.height)
        if facts.kind == "image":
            meta.update(image_width=facts.width, image_height=facts.height)
        out["technical_metadata"] = {k: v for k, v in meta.items() if v is not None}
        return out

    def document(self) -> dict[str, Any]:
        facts = self.facts
        return {
            "asset_id": self.asset_id,
            "method": self.method,
            "filename": self.filename,
            "created_at": self.created_at.isoformat(),
            "url": self.url,
            "user_metadata": self.user_metadata,
            "status": self.status,
            "facts": None if facts is None else facts.__dict__,
            "size": self.size,
            "error": self.error,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Asset:
        return cls(
            asset_id=doc["asset_id"],
            method=doc["method"],
            filename=doc["filename"],
            created_at=datetime.fromisoformat(doc["created_at"]),
            url=doc["url"],
            user_metadata=doc["user_metadata"],
            status=doc["status"],
            facts=None if doc["facts"] is None else MediaFacts(**doc["facts"]),
            size=doc["size"],
            error=doc["error"],
        )
