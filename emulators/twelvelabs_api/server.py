"""A wire-compatible TwelveLabs API (v1.3) for Marengo embeddings, on 127.0.0.1.

It answers exactly the requests the official `twelvelabs` SDK sends (`shared/reference/twelvelabs-wire.md`):
sync `POST /embed-v2`, embed tasks (`POST /embed-v2/tasks`, `GET /embed-v2/tasks[/{id}]`), the legacy
multipart `POST /embed` for `Marengo-retrieval-2.7`, and assets (`/assets`: create by URL or direct upload,
retrieve, list, delete) that media sources name by `asset_id`. Media arrive by URL (presigned S3 URLs of
the local S3 emulator, fetched over loopback only), base64 or asset. Vectors come from the same
content-derived spaces as the Bedrock emulator, so both providers give the same answers on the same media.
Faults: 429 with rate-limit headers, 5xx, failed tasks, latency, a cap on tasks processing at once.

Every documented input limit is enforced (`limits.py`). A media URL is checked as S3 would check it before
the download (moto's S3 serves any GET): an expired, tampered or unsigned presigned URL, or one signed by a
key that is not in `s3_credentials`, is refused as any URL the platform cannot download is: 400
`parameter_invalid`, "<field>: the platform cannot download the media: <reason>". A `resource_not_exist` 404
answers an unknown task or asset id, in embeds too.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import logging
import random
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from emulators.bedrock_runtime.embedding import decode_cached, embed, image_vector
from emulators.bedrock_runtime.marengo_body import EmbedRequest, MediaRef
from emulators.bedrock_runtime.state import InvocationStore
from emulators.marengo_space import normalize, space_for
from emulators.media_analysis import MediaError, container_duration
from emulators.presigned import LOCAL_S3_CREDENTIALS, PresignedUrlError, check_presigned_url
from emulators.twelvelabs_api.assets import ASSET_TYPES, Asset, filename_of, parse_upload, read_upload
from emulators.twelvelabs_api.errors import ApiFault, invalid, not_found
from emulators.twelvelabs_api.limits import (
    IMAGE_TASK_MAX_BYTES,
    MULTI_INPUT_SOURCE_MAX_BYTES,
    SYNC_MAX_MEDIA_SEC,
    TASK_MAX_MEDIA_SEC,
    check_duration,
    check_image,
    check_sync_audio_format,
    declared_duration,
    too_large,
)
from emulators.twelvelabs_api.requests import Source, TlRequest, parse_v1, parse_v2

log = logging.getLogger(__name__)

API_PREFIX = "/v1.3"
LOCAL_API_KEY = "tlk-local"
INJECTED_FAILURE_MESSAGE = "The embedding task failed (injected)"
MAX_PAGE_LIMIT = 50
DB_NAME = "twelvelabs-tasks.sqlite3"
ASSETS_DB_NAME = "twelvelabs-assets.sqlite3"
# The answers whose error body is `{"error": {"code", "message"}}`: SDK 1.3.6 parses the 413 of a sync embed
# as `ErrorResponse` (embed/v_2/raw_client.py), and a flat body there would not even raise its typed error.
ENVELOPED_ERRORS = {("Embed", 413)}
ASSET_FILES = "twelvelabs-assets"


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str, name: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(f"{name} {text!r} is not an RFC 3339 date-time") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _listed(values: Iterable[str]) -> list[str]:
    """A list query parameter, sent repeated (`a=1&a=2`) or comma-separated."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def multi_input_option(req: TlRequest) -> str:
    """The `embedding_option` of a multi_input vector (seed 001 lists it on each item): the one modality it
    embeds (`text`, `visual` for images and video, `audio`), or `fused` when it combines several."""
    kinds = {"audio" if s.media_type == "audio" else "visual" for s in req.sources}
    if req.text is not None:
        kinds.add("text")
    return kinds.pop() if len(kinds) == 1 else "fused"


@dataclass
class Task:
    """One embed task; mutable inside the emulator, handed to tests only as copies."""

    task_id: str
    body: dict[str, Any]
    request: TlRequest
    created_at: datetime
    updated_at: datetime
    status: str = "processing"
    data: list[dict[str, Any]] | None = None
    error: str | None = None
    duration: float = 0.0
    inject_failure: bool = False
    # The media as fetched when the task was created (kept in memory only: after a restart over a workdir
    # the sources are fetched again).
    media: list[bytes] | None = None

    def listed(self) -> dict[str, Any]:
        """`MediaEmbeddingTask`, as task listings return it."""
        return {
            "_id": self.task_id,
            "model_name": self.request.model_name,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }

    def retrieved(self) -> dict[str, Any]:
        """`EmbeddingTaskResponse`."""
        req = self.request
        source = req.source
        metadata: dict[str, Any] = {
            "input_type": req.input_type,
            "input_url": source.url if source else None,
            "embedding_options": list(req.options),
            "embedding_scopes": list(req.scopes),
            "duration": self.duration,
            "start_offset_sec": req.start_sec,
        }
        if req.end_sec is not None:
            metadata["end_offset_sec"] = req.end_sec
        if req.dimension is not None:
            metadata["embedding_dimension"] = req.dimension
        out: dict[str, Any] = {
            **self.listed(),
            "data": self.data if self.status == "ready" else None,
            "metadata": metadata,
        }
        if self.status == "failed":
            out["error"] = {"message": self.error or "failed"}
        return out

    def document(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "body": self.body,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "status": self.status,
            "data": self.data,
            "error": self.error,
            "duration": self.duration,
            "inject_failure": self.inject_failure,
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Task:
        return cls(
            task_id=doc["task_id"],
            body=doc["body"],
            request=parse_v2(doc["body"], task=True),
            created_at=_parse_time(doc["created_at"], "created_at"),
            updated_at=_parse_time(doc["updated_at"], "updated_at"),
            status=doc["status"],
            data=doc["data"],
            error=doc["error"],
            duration=doc["duration"],
            inject_failure=doc["inject_failure"],
        )


class TwelveLabsEmulator:
    """The TwelveLabs API on 127.0.0.1; faults are constructor kwargs and plain attributes tests may flip.

    With a `workdir`, tasks are kept on disk (SQLite), so a restart forgets none and finishes those still
    processing; without one it starts empty, like a new account.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        api_key: str = LOCAL_API_KEY,
        host: str = "127.0.0.1",
        latency_sec: float = 0.0,
        max_concurrent_tasks: int = 50,
        throttle_rate: float = 0.0,
        server_error_rate: float = 0.0,
        failure_rate: float = 0.0,
        retry_after_sec: int = 1,
        seed: int | None = None,
        workers: int = 4,
        workdir: Path | str | None = None,
        s3_credentials: Mapping[str, str] = LOCAL_S3_CREDENTIALS,
        clock: Callable[[], datetime] | None = None,
        complete_on_create: bool = False,
    ) -> None:
        if complete_on_create and latency_sec > 0:
            raise ValueError("complete_on_create finishes tasks at once: it takes no latency_sec")
        self.api_key = api_key
        # Process each task inside its create call, so the first retrieve finds it finished: for code that
        # polls with a sleep between retrieves (seed 004's loop), which then never sleeps.
        self.complete_on_create = complete_on_create
        # Access key -> secret key: the S3 credentials presigned media URLs must be signed with.
        self.s3_credentials = dict(s3_credentials)
        # The time URL expiry is judged at (tests move it to expire a URL without waiting).
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.host = host
        self._requested_port = port
        self.latency_sec = latency_sec
        self.max_concurrent_tasks = max_concurrent_tasks
        self.throttle_rate = throttle_rate
        self.server_error_rate = server_error_rate
        self.failure_rate = failure_rate
        self.retry_after_sec = retry_after_sec
        self._rng = random.Random(seed)
        # Operation name -> the fault every call of it answers with (e.g. "RetrieveTask" -> a 500).
        self.operation_errors: dict[str, ApiFault] = {}
        self._workers = workers
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._tasks: dict[str, Task] = {}
        self._created = 0
        self._calls: dict[str, int] = {}
        self._timers: set[threading.Timer] = set()
        self._stopping = threading.Event()
        self._assets: dict[str, Asset] = {}
        self._asset_data: dict[str, bytes] = {}
        self._store = InvocationStore(Path(workdir), DB_NAME) if workdir is not None else None
        self._asset_store = InvocationStore(Path(workdir), ASSETS_DB_NAME) if workdir is not None else None
        self._asset_dir = Path(workdir) / ASSET_FILES if workdir is not None else None
        if self._store is not None:
            documents, created = self._store.load()
            for doc in documents:
                task = Task.from_document(doc)
                self._tasks[task.task_id] = task
            self._created = len(documents) if created is None else created
        if self._asset_store is not None and self._asset_dir is not None:
            for doc in self._asset_store.load()[0]:
                asset = Asset.from_document(doc)
                self._assets[asset.asset_id] = asset
                blob = self._asset_dir / asset.asset_id
                if blob.exists():
                    self._asset_data[asset.asset_id] = blob.read_bytes()
        self._pool: ThreadPoolExecutor | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._url_map = Map(
            [
                Rule(f"{API_PREFIX}/embed-v2", methods=["POST"], endpoint="Embed"),
                Rule(f"{API_PREFIX}/embed-v2/tasks", methods=["POST"], endpoint="CreateTask"),
                Rule(f"{API_PREFIX}/embed-v2/tasks", methods=["GET"], endpoint="ListTasks"),
                Rule(f"{API_PREFIX}/embed-v2/tasks/<task_id>", methods=["GET"], endpoint="RetrieveTask"),
                Rule(f"{API_PREFIX}/embed", methods=["POST"], endpoint="LegacyEmbed"),
                Rule(f"{API_PREFIX}/assets", methods=["POST"], endpoint="CreateAsset"),
                Rule(f"{API_PREFIX}/assets", methods=["GET"], endpoint="ListAssets"),
                Rule(f"{API_PREFIX}/assets/<asset_id>", methods=["GET"], endpoint="RetrieveAsset"),
                Rule(f"{API_PREFIX}/assets/<asset_id>", methods=["DELETE"], endpoint="DeleteAsset"),
            ],
            strict_slashes=False,
        )
        self._handlers: dict[str, Callable[..., Response]] = {
            "Embed": self._embed,
            "CreateTask": self._create_task,
            "ListTasks": self._list_tasks,
            "RetrieveTask": self._retrieve_task,
            "LegacyEmbed": self._legacy_embed,
            "CreateAsset": self._create_asset,
            "ListAssets": self._list_assets,
            "RetrieveAsset": self._retrieve_asset,
            "DeleteAsset": self._delete_asset,
        }

    # --- lifecycle ----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("TwelveLabsEmulator is not started")
        return int(self._server.server_port)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What the SDK takes as `base_url` (or TWELVELABS_BASE_URL)."""
        return f"{self.endpoint}{API_PREFIX}"

    def start(self) -> TwelveLabsEmulator:
        if self._server is not None:
            return self
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="twelvelabs-emu-worker")
        self._server = make_server(self.host, self._requested_port, self._wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="twelvelabs-emu",
            daemon=True,
        )
        self._thread.start()
        with self._lock:
            for task in [t for t in self._tasks.values() if t.status == "processing"]:
                self._schedule(task)
            for asset in [a for a in self._assets.values() if a.status == "processing"]:
                self._later(self._finish_asset, asset.asset_id)
        return self

    def stop(self) -> None:
        """Stop serving and abandon queued work (it stays processing, and carries on at the next start)."""
        self._stopping.set()
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._server = self._thread = self._pool = None

    def __enter__(self) -> TwelveLabsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test hooks -----------------------------------------------------------------------------------------

    @property
    def created_tasks(self) -> int:
        """Embed tasks created: each one is billed."""
        with self._lock:
            return self._created

    @property
    def tasks(self) -> Mapping[str, Task]:
        with self._lock:
            return MappingProxyType({k: copy.deepcopy(t) for k, t in self._tasks.items()})

    @property
    def calls(self) -> Mapping[str, int]:
        """Requests answered per operation (errors included), e.g. {"ListTasks": 3}."""
        with self._lock:
            return MappingProxyType(dict(self._calls))

    @property
    def assets(self) -> Mapping[str, Asset]:
        with self._lock:
            return MappingProxyType({k: copy.deepcopy(a) for k, a in self._assets.items()})

    def forget(self, task_id: str) -> None:
        """Lose a task, as an expired one is: its id answers 404."""
        with self._idle:
            self._tasks.pop(task_id)
            if self._store is not None:
                self._store.delete(task_id)
            self._idle.notify_all()

    def processing(self) -> int:
        with self._lock:
            return sum(1 for t in self._tasks.values() if t.status == "processing")

    def wait_until_idle(self, timeout: float = 30.0) -> None:
        with self._idle:
            if not self._idle.wait_for(lambda: self.processing() == 0, timeout=timeout):
                raise TimeoutError(f"{self.processing()} task(s) still processing after {timeout:g}s")

    # --- HTTP plumbing --------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except ApiFault as fault:
            response = self._fault(fault)
        except Exception as exc:  # never an HTML stack trace: answer as the API would
            log.exception("twelvelabs emulator: unhandled error")
            response = self._fault(ApiFault(500, "internal_error", f"{type(exc).__name__}: {exc}"))
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        adapter = self._url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound as exc:
            raise ApiFault(404, "not_found", f"no endpoint at {request.path}") from exc
        except MethodNotAllowed as exc:
            raise ApiFault(
                405, "method_not_allowed", f"{request.method} not allowed on {request.path}"
            ) from exc
        name = str(endpoint)
        with self._lock:
            self._calls[name] = self._calls.get(name, 0) + 1
            throttled = self.throttle_rate > 0 and self._rng.random() < self.throttle_rate
            broken = (
                not throttled and self.server_error_rate > 0 and self._rng.random() < self.server_error_rate
            )
        if request.headers.get("x-api-key") != self.api_key:
            raise ApiFault(401, "api_key_invalid", "The API key you provided is not valid.")
        if throttled:
            raise ApiFault(429, "too_many_requests", "You have exceeded the rate limit. Try again later.")
        if broken:
            raise ApiFault(
                500, "internal_error", "The server had an error processing your request (injected)."
            )
        injected = self.operation_errors.get(name)
        if injected is not None:
            raise injected
        try:
            return self._handlers[name](request, **args)
        except ApiFault as fault:
            if (name, fault.status) in ENVELOPED_ERRORS:
                return self._fault(fault, enveloped=True)
            raise

    @staticmethod
    def _json(payload: Any, status: int = 200) -> Response:
        return Response(json.dumps(payload), status=status, content_type="application/json")

    def _fault(self, fault: ApiFault, enveloped: bool = False) -> Response:
        response = self._json(fault.body(enveloped), fault.status)
        if fault.status == 429:
            response.headers.update(
                {
                    "X-Ratelimit-Limit": "60",
                    "X-Ratelimit-Remaining": "0",
                    "X-Ratelimit-Used": "60",
                    "X-Ratelimit-Reset": str(self.retry_after_sec),
                    "Retry-After": str(self.retry_after_sec),
                }
            )
        return response

    @staticmethod
    def _body(request: Request) -> Any:
        if request.mimetype != "application/json":
            raise invalid(f"expected content-type application/json, got {request.mimetype or 'none'}")
        try:
            return json.loads(request.get_data(cache=True) or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise invalid("the request body is not valid JSON") from exc

    # --- media ---------------------------------------------------------------------------------------------

    def _fetch(self, url: str, path: str) -> bytes:
        """The bytes behind a media URL. Only loopback URLs are reachable (the local S3's presigned URLs), and
        each is checked as S3 would check it before moto serves it; what cannot be downloaded is refused."""

        def refuse(reason: str) -> ApiFault:
            return invalid(f"{path}: the platform cannot download the media: {reason}")

        parts = urlsplit(url)
        host = parts.hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise refuse(f"{parts.netloc or url} is not reachable")
        try:
            check_presigned_url(url, self.s3_credentials, self.clock())
        except PresignedUrlError as exc:
            raise refuse(f"HTTP 403 ({exc})") from exc
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise refuse(f"HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise refuse(str(exc)) from exc

    def _asset_media(self, source: Source) -> bytes:
        """The bytes of a ready asset of a kind the input can take (an audio input also takes a video)."""
        asset_id = source.asset_id or ""
        with self._lock:
            asset, data = self._assets.get(asset_id), self._asset_data.get(asset_id)
        if asset is None or data is None:
            raise not_found(asset_id, "assets")
        if asset.status != "ready" or asset.facts is None:
            raise invalid(
                f"{source.path}: asset {asset_id} is {asset.status}, not ready; retrieve it until it is ready"
            )
        kinds = {"audio": ("audio", "video")}.get(source.media_type, (source.media_type,))
        if asset.facts.kind not in kinds:
            raise invalid(f"{source.path}: asset {asset_id} is {asset.facts.kind}, not {source.media_type}")
        return data

    def _media(self, source: Source) -> bytes:
        if source.data is not None:
            return source.data
        if source.asset_id is not None:
            return self._asset_media(source)
        return self._fetch(source.url or "", source.path)

    # --- embeddings -----------------------------------------------------------------------------------------

    @staticmethod
    def _bedrock_shaped(req: TlRequest, data: bytes | None) -> EmbedRequest:
        return EmbedRequest(
            version=req.version,
            input_type=req.input_type,
            text=req.text,
            media=MediaRef(data=data) if data is not None else None,
            start_sec=req.start_sec,
            end_sec=req.end_sec,
            segmentation=req.segmentation,
            options=req.options,
            scopes=req.scopes,
        )

    def _compute(self, req: TlRequest, media: list[bytes]) -> list[dict[str, Any]]:
        """The `data` list (EmbeddingData items, snake_case) for a validated request."""
        space = space_for(req.version)
        items: list[dict[str, Any]]
        if req.input_type == "multi_input":
            vectors = [self._source_vector(req, s, blob) for s, blob in zip(req.sources, media, strict=True)]
            if req.text is not None:
                vectors.insert(0, space.embed_text(req.text))
            items = [{"embedding": space.combine(vectors), "embedding_option": multi_input_option(req)}]
        else:
            raw = embed(self._bedrock_shaped(req, media[0] if media else None), media[0] if media else None)
            items = [
                {
                    "embedding": np.asarray(item["embedding"]),
                    "embedding_option": item.get("embeddingOption"),
                    "embedding_scope": item.get("embeddingScope"),
                    "start_sec": item.get("startSec"),
                    "end_sec": item.get("endSec"),
                }
                for item in raw
            ]
            if req.input_type in ("video", "audio"):
                items = self._with_types(req, items, space)
        out = []
        for item in items:
            vec = np.asarray(item["embedding"], dtype=np.float64)
            if req.dimension is not None:  # Matryoshka: the first d components, renormalized
                vec = normalize(vec[: req.dimension])
            out.append(
                {k: v for k, v in {**item, "embedding": [float(x) for x in vec]}.items() if v is not None}
            )
        return out

    @staticmethod
    def _source_vector(req: TlRequest, source: Source, blob: bytes) -> np.ndarray:
        """One multi_input source's vector: an image's, or the whole-clip vector of audio or video (3.5)."""
        space = space_for(req.version)
        if source.media_type == "image":
            return image_vector(space, blob)
        if source.media_type not in ("audio", "video"):
            raise invalid(f"{source.path}: {source.media_type} sources are not offered by this emulator")
        options = ("visual", "audio") if source.media_type == "video" else ("audio",)
        shaped = EmbedRequest(
            version=req.version, input_type=source.media_type, options=options, scopes=("asset",)
        )
        return space.combine([np.asarray(item["embedding"]) for item in embed(shaped, blob)])

    @staticmethod
    def _with_types(req: TlRequest, items: list[dict[str, Any]], space: Any) -> list[dict[str, Any]]:
        """`embedding_type`: separate vectors per option, one fused vector per span, or both."""
        result = list(items) if "separate_embedding" in req.types else []
        if "fused_embedding" in req.types:
            spans: dict[tuple[Any, Any, Any], list[np.ndarray]] = {}
            for item in items:
                key = (item["embedding_scope"], item["start_sec"], item["end_sec"])
                spans.setdefault(key, []).append(item["embedding"])
            for (scope, start, end), vectors in spans.items():
                result.append(
                    {
                        "embedding": space.combine(vectors),
                        "embedding_option": "fused",
                        "embedding_scope": scope,
                        "start_sec": start,
                        "end_sec": end,
                    }
                )
        return result

    def _sync_media(self, req: TlRequest) -> list[bytes]:
        """The media of a sync embed, each within the documented limits of what it is used as."""
        media = [self._media(s) for s in req.sources]
        for source, blob in zip(req.sources, media, strict=True):
            kind = source.media_type if req.input_type == "multi_input" else req.input_type
            if kind == "text_image":
                kind = "image"
            if req.version == "3.5" and len(blob) > MULTI_INPUT_SOURCE_MAX_BYTES:
                raise too_large(source.path, len(blob), MULTI_INPUT_SOURCE_MAX_BYTES)
            if kind == "image":
                check_image(blob, source.path)
            elif kind in ("audio", "video") and req.version != "2.7":
                self._check_sync_clip(blob, source.path, kind, req.version)
        return media

    @staticmethod
    def _check_sync_clip(blob: bytes, path: str, kind: str, version: str) -> None:
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

    @staticmethod
    def _task_duration(req: TlRequest, blob: bytes) -> float:
        """The length of a task's media, refused over the 4-hour task limit; media that cannot be decoded
        is taken (0 s) and fails the task later, as the platform fails it."""
        source = req.sources[0]
        if req.input_type == "image":
            if len(blob) > IMAGE_TASK_MAX_BYTES:
                raise too_large(source.path, len(blob), IMAGE_TASK_MAX_BYTES)
            return 0.0
        with contextlib.suppress(MediaError):
            declared = container_duration(blob)
            if declared is not None:  # refused before the costly decode
                check_duration(declared, source.path, TASK_MAX_MEDIA_SEC, "embed task")
        try:
            duration = decode_cached(blob).duration
        except MediaError:
            return 0.0
        check_duration(duration, source.path, TASK_MAX_MEDIA_SEC, "embed task")
        return duration

    # --- handlers -------------------------------------------------------------------------------------------

    def _embed(self, request: Request) -> Response:
        req = parse_v2(self._body(request), task=False)
        media = self._sync_media(req)
        try:
            data = self._compute(req, media)
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
        return self._json(answer)

    def _create_task(self, request: Request) -> Response:
        body = self._body(request)
        req = parse_v2(body, task=True)
        with self._lock:
            if self.processing() >= self.max_concurrent_tasks:
                raise ApiFault(
                    429,
                    "too_many_requests",
                    f"{self.max_concurrent_tasks} embed tasks are already processing",
                )
        # The media is fetched when the task is created; what cannot be decoded fails the task later.
        media = self._media(req.sources[0])
        duration = self._task_duration(req, media)
        now = datetime.now(UTC)
        task = Task(
            task_id=uuid.uuid4().hex[:24],
            body=body,
            request=req,
            created_at=now,
            updated_at=now,
            duration=duration,
            media=[media],
        )
        with self._lock:
            task.inject_failure = self.failure_rate > 0 and self._rng.random() < self.failure_rate
            self._tasks[task.task_id] = task
            self._created += 1
            self._save(task, created=self._created)
            self._schedule(task)
        return self._json({"_id": task.task_id, "status": "processing"}, 201)

    def _list_tasks(self, request: Request) -> Response:
        args = request.args
        status = args.get("status")
        if status is not None and status not in ("processing", "ready", "failed"):
            raise invalid(f"status {status!r} is not one of processing, ready, failed")
        after = _parse_time(args["started_at"], "started_at") if args.get("started_at") else None
        before = _parse_time(args["ended_at"], "ended_at") if args.get("ended_at") else None
        with self._lock:
            chosen = [
                t
                for t in self._tasks.values()
                if (status is None or t.status == status)
                and (after is None or t.created_at >= after)
                and (before is None or t.created_at <= before)
            ]
            chosen.sort(key=lambda t: t.created_at, reverse=True)
            return self._page(args, [t.listed() for t in chosen])

    def _page(self, args: Mapping[str, str], items: list[dict[str, Any]]) -> Response:
        """One page of a listing (newest first) with its `page_info`; page_limit is at most 50."""
        page = self._int_arg(args.get("page", "1"), "page", 1, 10**9)
        limit = self._int_arg(args.get("page_limit", "10"), "page_limit", 1, MAX_PAGE_LIMIT)
        page_info = {
            "page": page,
            "limit_per_page": limit,
            "total_page": max(1, -(-len(items) // limit)),
            "total_results": len(items),
        }
        return self._json({"data": items[(page - 1) * limit : page * limit], "page_info": page_info})

    @staticmethod
    def _int_arg(text: str, name: str, low: int, high: int) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise invalid(f"{name} must be a whole number from {low} to {high}, not {text!r}")
        return int(text)

    def _retrieve_task(self, request: Request, task_id: str) -> Response:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise not_found(task_id, "embed tasks")
            return self._json(task.retrieved())

    def _legacy_embed(self, request: Request) -> Response:
        """Text, an image and an audio file in one call: one `*_embedding` part for each given."""
        if request.mimetype != "multipart/form-data":
            raise invalid("the legacy embed endpoint takes multipart/form-data")
        files = {name: f.read() for name, f in request.files.items()}
        answer: dict[str, Any] = {}
        for req in parse_v1(request.form.to_dict(), files):
            media = [self._media(s) for s in req.sources]
            if req.input_type == "image":
                check_image(media[0], req.sources[0].path)
            try:
                items = self._compute(req, media)
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
        return self._json(answer)

    # --- assets ---------------------------------------------------------------------------------------------

    def _create_asset(self, request: Request) -> Response:
        """`POST /assets`: the file is fetched (URL) or read (direct) and checked now; with latency the
        asset stays `processing` that long, as the platform's asynchronous validation does."""
        if request.mimetype != "multipart/form-data":
            raise invalid("creating an asset takes multipart/form-data")
        files = {name: (f.filename, f.read()) for name, f in request.files.items()}
        upload = parse_upload(request.form.to_dict(), files)
        data = upload.file if upload.file is not None else self._fetch(upload.url or "", "url")
        asset = Asset(
            asset_id=uuid.uuid4().hex[:24],
            method=upload.method,
            filename=filename_of(upload),
            created_at=datetime.now(UTC),
            url=upload.url,
            user_metadata=upload.user_metadata,
        )
        try:
            asset.facts = read_upload(data, asset.filename, upload.method)
        except ValueError as exc:
            asset.error = f"The file could not be processed: {exc}"
        answer = asset.public(rfc3339)  # the documented answer: the asset in the processing status
        with self._lock:
            self._assets[asset.asset_id] = asset
            self._asset_data[asset.asset_id] = data
            self._save_asset(asset, data)
        self._later(self._finish_asset, asset.asset_id)
        return self._json(answer, 201)

    def _finish_asset(self, asset_id: str) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
            asset = self._assets.get(asset_id)
            if asset is None or asset.status != "processing":
                return
            asset.status = "failed" if asset.error is not None else "ready"
            asset.size = len(self._asset_data.get(asset_id, b""))
            self._save_asset(asset)

    def _save_asset(self, asset: Asset, data: bytes | None = None) -> None:
        if self._asset_store is not None and self._asset_dir is not None:
            if data is not None:
                self._asset_dir.mkdir(parents=True, exist_ok=True)
                (self._asset_dir / asset.asset_id).write_bytes(data)
            self._asset_store.save(asset.asset_id, "", asset.document())

    def _known_asset(self, asset_id: str) -> Asset:
        asset = self._assets.get(asset_id)
        if asset is None:
            raise not_found(asset_id, "assets")
        return asset

    def _retrieve_asset(self, request: Request, asset_id: str) -> Response:
        with self._lock:
            return self._json(self._known_asset(asset_id).detail(rfc3339))

    def _delete_asset(self, request: Request, asset_id: str) -> Response:
        force = request.args.get("force")
        if force is not None and force.lower() not in ("true", "false"):
            raise invalid(f"force must be true or false, not {force!r}")
        with self._lock:
            self._known_asset(asset_id)  # nothing is indexed here, so no reference blocks the deletion
            del self._assets[asset_id]
            self._asset_data.pop(asset_id, None)
            if self._asset_store is not None and self._asset_dir is not None:
                self._asset_store.delete(asset_id)
                (self._asset_dir / asset_id).unlink(missing_ok=True)
        return Response(status=204)

    def _list_assets(self, request: Request) -> Response:
        args = request.args
        ids = set(_listed(args.getlist("asset_ids")))
        types = set(_listed(args.getlist("asset_types")))
        unknown = sorted(types - set(ASSET_TYPES))
        if unknown:
            raise invalid(f"asset_types {', '.join(unknown)} not one of {', '.join(ASSET_TYPES)}")
        name = (args.get("filename") or "").lower()
        with self._lock:
            chosen = [
                a
                for a in self._assets.values()
                if (not ids or a.asset_id in ids)
                and (not types or (a.facts is not None and a.facts.kind in types))
                and name in a.filename.lower()
            ]
            chosen.sort(key=lambda a: a.created_at, reverse=True)
            return self._page(args, [a.detail(rfc3339) for a in chosen])

    # --- task processing ------------------------------------------------------------------------------------

    def _save(self, task: Task, created: int | None = None) -> None:
        if self._store is not None:
            self._store.save(task.task_id, "", task.document(), created)

    def _schedule(self, task: Task) -> None:
        self._later(self._process if self.complete_on_create else self._submit, task.task_id)

    def _later(self, work: Callable[[str], None], key: str) -> None:
        """Run `work(key)` after the configured latency (at once, in this thread, without one)."""
        if self.latency_sec <= 0:
            work(key)
            return
        timer = threading.Timer(float(self.latency_sec), work, args=(key,))
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _submit(self, task_id: str) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
            pool = self._pool
        if pool is None or self._stopping.is_set():
            return
        with contextlib.suppress(RuntimeError):
            pool.submit(self._process, task_id)

    def _process(self, task_id: str) -> None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or self._stopping.is_set():
                return
            req, inject, fetched = task.request, task.inject_failure, task.media
        data: list[dict[str, Any]] | None = None
        error: str | None = None
        if inject:
            error = INJECTED_FAILURE_MESSAGE
        else:
            try:
                data = self._compute(req, fetched or [self._media(s) for s in req.sources])
            except ApiFault as fault:
                error = fault.message
            except MediaError as exc:
                error = f"The media could not be processed: {exc}"
            except Exception as exc:
                log.exception("twelvelabs emulator: processing %s failed", task_id)
                error = f"Internal processing error: {type(exc).__name__}: {exc}"
        with self._idle:
            if self._tasks.get(task_id) is not task:
                return  # forgotten while it ran
            task.status = "failed" if error is not None else "ready"
            task.data, task.error = data, error
            task.updated_at = datetime.now(UTC)
            self._save(task)
            self._idle.notify_all()
