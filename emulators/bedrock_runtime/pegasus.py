"""Pegasus 1.2 on InvokeModel: the body checked, injected faults applied, the video read and held to the
model's limits, then described; every call whose body was valid is recorded with how it ended."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Protocol, get_args

from werkzeug.wrappers import Request, Response

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.authorization import s3_object_arn
from emulators.bedrock_runtime.embedding import decode_cached
from emulators.bedrock_runtime.errors import ServiceError
from emulators.bedrock_runtime.media_access import MediaAccess
from emulators.bedrock_runtime.models import resolve_pegasus
from emulators.bedrock_runtime.pegasus_body import PegasusRequest, parse_pegasus_body
from emulators.bedrock_runtime.pegasus_describe import (
    describe_json,
    describe_scenes,
    describe_text,
    estimate_tokens,
    truncate,
)
from emulators.bedrock_runtime.wire import body_json
from emulators.http_base import json_response
from emulators.media_analysis import MediaError, probe_media

INJECTED_MODEL_ERROR_MESSAGE = "The model failed to process the request (injected)."
# What a per-object Pegasus fault does to a call: end it early ("length"), or answer with an error.
PegasusFault = Literal["length", "throttling", "model_error", "timeout", "internal"]
PEGASUS_FAULTS: tuple[str, ...] = get_args(PegasusFault)
ANY_MEDIA = "*"  # the per-object fault key matching every media source (base64 included)


@dataclass(frozen=True)
class PegasusCall:
    """One Pegasus InvokeModel whose body was valid: what was asked about which media, and how it ended."""

    model_id: str
    media_uri: str | None  # None: base64String
    prompt: str
    json_schema: dict[str, Any] | None
    outcome: str  # "stop" | "length" | the error code it was answered with


class PegasusSettings(Protocol):
    """What Pegasus reads from the emulator at every call (plain attributes a test may change)."""

    region: str
    pegasus_length_rate: float
    pegasus_failure_rate: float
    pegasus_max_base64_bytes: int
    pegasus_max_s3_bytes: int
    pegasus_max_video_sec: float
    pegasus_require_bucket_owner: bool

    def authorize(self, request: Request, checks: Sequence[tuple[str, str]]) -> None: ...


class PegasusApi:
    """Pegasus calls, their per-media faults and the record of them; `rng` and `lock` are the emulator's."""

    def __init__(
        self, settings: PegasusSettings, media: MediaAccess, *, rng: random.Random, lock: threading.RLock
    ) -> None:
        self._settings = settings
        self._media = media
        self._rng = rng
        self._lock = lock
        self._faults: dict[str, tuple[PegasusFault, int | None]] = {}
        self._calls: list[PegasusCall] = []

    # --- faults and the record --------------------------------------------------------------------------

    def inject_fault(self, media_uri: str, kind: PegasusFault, times: int | None = None) -> None:
        if kind not in PEGASUS_FAULTS:
            raise ValueError(f"unknown Pegasus fault {kind!r}: use one of {', '.join(PEGASUS_FAULTS)}")
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for every call), got {times}")
        with self._lock:
            self._faults[media_uri] = (kind, times)

    @property
    def faults(self) -> Mapping[str, tuple[PegasusFault, int | None]]:
        with self._lock:
            return MappingProxyType(dict(self._faults))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def calls(self) -> tuple[PegasusCall, ...]:
        with self._lock:
            return tuple(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # --- the call ---------------------------------------------------------------------------------------

    def invoke(self, request: Request, model_id: str) -> Response:
        """Validate, apply injected faults, read and check the media, describe it; record how it ended."""
        settings = self._settings
        resolve_pegasus(model_id, region=settings.region)
        req = parse_pegasus_body(
            body_json(request),
            max_base64_bytes=settings.pegasus_max_base64_bytes,
            require_bucket_owner=settings.pegasus_require_bucket_owner,
        )
        if req.media.uri is not None:  # Bedrock reads the video as the caller
            settings.authorize(request, [("s3:GetObject", s3_object_arn(*req.media.bucket_key))])
        try:
            message, finish = self._answer(req)
        except ServiceError as exc:
            self._record(model_id, req, exc.code)
            raise
        self._record(model_id, req, finish)
        return json_response({"message": message, "finishReason": finish})

    def _record(self, model_id: str, req: PegasusRequest, outcome: str) -> None:
        call = PegasusCall(model_id, req.media.uri, req.prompt, req.json_schema, outcome)
        with self._lock:
            self._calls.append(call)

    def _take_fault(self, uri: str | None) -> PegasusFault | None:
        """The per-object fault for this call, if any (a fault with a count is used up by it)."""
        with self._lock:
            key = uri if uri is not None and uri in self._faults else ANY_MEDIA
            found = self._faults.get(key)
            if found is None:
                return None
            kind, times = found
            if times is not None:
                if times <= 1:
                    del self._faults[key]
                else:
                    self._faults[key] = (kind, times - 1)
            return kind

    def _answer(self, req: PegasusRequest) -> tuple[str, str]:
        settings = self._settings
        fault = self._take_fault(req.media.uri)
        if fault == "throttling":
            raise errors.throttling()
        if fault == "timeout":
            raise errors.model_timeout("The model took too long to process the request (injected).")
        if fault == "internal":
            raise errors.internal()
        with self._lock:
            failed = settings.pegasus_failure_rate > 0 and self._rng.random() < settings.pegasus_failure_rate
            cut = settings.pegasus_length_rate > 0 and self._rng.random() < settings.pegasus_length_rate
        if fault == "model_error" or failed:
            raise errors.model_error(INJECTED_MODEL_ERROR_MESSAGE)
        data = self._read_media(req)
        where = req.media.uri or "mediaSource.base64String"
        try:
            probed = probe_media(data, "video")
            if probed.still_image:
                raise errors.validation(
                    f"The media at {where} is a still image ({probed.format_name}), not a video: Pegasus 1.2 "
                    "analyzes video files only."
                )
            declared = probed.declared_sec
            if declared is not None and declared > settings.pegasus_max_video_sec:
                raise self._too_long(where, declared)
            media = decode_cached(data)
        except MediaError as exc:
            raise errors.validation(f"Unable to read the video at {where}: {exc}") from exc
        if media.duration > settings.pegasus_max_video_sec:
            raise self._too_long(where, media.duration)
        scenes = describe_scenes(media)
        if req.json_schema is not None:
            message = json.dumps(describe_json(req.json_schema, scenes, media.duration))
        else:
            message = describe_text(scenes, media.duration)
        finish = "stop"
        if req.max_output_tokens is not None and estimate_tokens(message) > req.max_output_tokens:
            message, finish = truncate(message, req.max_output_tokens), "length"
        if fault == "length" or cut:
            message, finish = message[: max(0, len(message) // 2)], "length"
        return message, finish

    def _too_long(self, where: str, seconds: float) -> ServiceError:
        return errors.validation(
            f"The video at {where} is {seconds:.0f} s long; Pegasus 1.2 takes videos of at most "
            f"{self._settings.pegasus_max_video_sec:.0f} s (1 hour): send a shorter video."
        )

    def _read_media(self, req: PegasusRequest) -> bytes:
        """Inline bytes, or the S3 object after the same-region rule and the 2 GB limit (its Content-Length,
        checked before the body is read)."""
        ref = req.media
        if ref.uri is None:
            return self._media.read(ref)
        self._media.check_access(ref)
        max_bytes = self._settings.pegasus_max_s3_bytes

        def check_size(size: int) -> None:
            if size > max_bytes:
                raise errors.validation(
                    f"The S3 object {ref.uri} is {size} bytes; Pegasus 1.2 reads at most "
                    f"{max_bytes} bytes (2 GB) from S3: send a smaller video."
                )

        return self._media.read(ref, check_size)
