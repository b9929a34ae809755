"""The embeddings answered at once: `POST /embed-v2` (each source within the documented sync limits, 3.5's
usage report) and the legacy multipart `POST /embed` for `Marengo-retrieval-2.7`."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from emulators.bedrock_runtime.embedding import decode_cached
from emulators.http_base import Route, json_response
from emulators.media_analysis import MediaError
from emulators.twelvelabs_api.embedding_data import compute
from emulators.twelvelabs_api.errors import invalid
from emulators.twelvelabs_api.limits import (
    MULTI_INPUT_SOURCE_MAX_BYTES,
    SYNC_MAX_MEDIA_SEC,
    check_duration,
    check_image,
    check_sync_audio_format,
    declared_duration,
    too_large,
)
from emulators.twelvelabs_api.requests import TlRequest, parse_v1, parse_v2
from emulators.twelvelabs_api.sources import SourceMedia
from emulators.twelvelabs_api.wire import json_body


def check_sync_clip(blob: bytes, path: str, kind: str, version: str) -> None:
    """Sync audio and video: at most 10 minutes on 3.0 (30 s on 3.5); 3.0's sync audio is WAV, MP3 or
    FLAC (3.5's formats are on a model page the reference does not capture)."""
    if kind == "audio" and version == "3.0":
        check_sync_audio_format(blob, path)
    limit, what = SYNC_MAX_MEDIA_SEC[version], "sync"
    declared = declared_duration(blob, path)
    if declared is not None:  # refused before the costly decode
        check_duration(declared, path, limit, what)
    try:
        duration = decode_cached(blob).duration
    except MediaError as exc:
        raise invalid(f"{path}: cannot decode the media: {exc}") from exc
    check_duration(duration, path, limit, f"{what} embedding")


class SyncEmbedApi:
    def __init__(self, sources: SourceMedia) -> None:
        self._sources = sources

    def routes(self) -> list[Route]:
        return [
            Route("/embed-v2", "POST", "Embed", self.embed),
            Route("/embed", "POST", "LegacyEmbed", self.legacy_embed),
        ]

    def embed(self, request: Request) -> Response:
        req = parse_v2(json_body(request), task=False)
        media = self._sync_media(req)
        try:
            data = compute(req, media)
        except MediaError as exc:
            raise invalid(f"cannot process the media: {exc}") from exc
        answer: dict[str, Any] = {"data": data}
        if req.version == "3.5":  # only 3.5 reports usage; the emulator counts text tokens as words
            usage: dict[str, Any] = {"input_tokens": {}, "truncated": req.truncated}
            if req.text is not None:
                usage["input_tokens"]["text"] = len(req.text.split())
            if req.truncated:
                usage["truncation_reason"] = "model_context_window"
            answer["usage"] = usage
        return json_response(answer)

    def legacy_embed(self, request: Request) -> Response:
        """Text, an image and an audio file in one call: one `*_embedding` part for each given."""
        if request.mimetype != "multipart/form-data":
            raise invalid("the legacy embed endpoint takes multipart/form-data")
        files = {name: f.read() for name, f in request.files.items()}
        answer: dict[str, Any] = {}
        for req in parse_v1(request.form.to_dict(), files):
            media = [self._sources.read(s) for s in req.sources]
            if req.input_type == "image":
                check_image(media[0], req.sources[0].path)
            try:
                items = compute(req, media)
            except MediaError as exc:
                raise invalid(f"{req.sources[0].path}: cannot process the media: {exc}") from exc
            segments = []
            for item in items:
                segment: dict[str, Any] = {"float": item["embedding"]}
                if "start_sec" in item:
                    segment["start_offset_sec"] = item["start_sec"]
                    segment["end_offset_sec"] = item["end_sec"]
                segments.append(segment)
            answer["model_name"] = req.model_name
            answer[f"{req.input_type}_embedding"] = {"segments": segments}
        return json_response(answer)

    def _sync_media(self, req: TlRequest) -> list[bytes]:
        """The media of a sync embed, each within the documented limits of what it is used as."""
        media = [self._sources.read(s) for s in req.sources]
        for source, blob in zip(req.sources, media, strict=True):
            kind = source.media_type if req.input_type == "multi_input" else req.input_type
            if kind == "text_image":
                kind = "image"
            if req.version == "3.5" and len(blob) > MULTI_INPUT_SOURCE_MAX_BYTES:
                raise too_large(source.path, len(blob), MULTI_INPUT_SOURCE_MAX_BYTES)
            if kind == "image":
                check_image(blob, source.path)
            elif kind in ("audio", "video") and req.version != "2.7":
                check_sync_clip(blob, source.path, kind, req.version)
        return media
