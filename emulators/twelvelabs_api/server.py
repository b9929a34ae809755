"""A wire-compatible TwelveLabs API (v1.3) for Marengo embeddings, on 127.0.0.1.

It answers exactly the requests the official `twelvelabs` SDK sends (`shared/reference/twelvelabs-wire.md`):
sync `POST /embed-v2`, embed tasks (`POST /embed-v2/tasks`, `GET /embed-v2/tasks[/{id}]`) and the legacy
multipart `POST /embed` for `Marengo-retrieval-2.7`. Media arrive by URL (presigned S3 URLs of the local S3
emulator, fetched over loopback only) or base64. Vectors come from the same content-derived spaces as the
Bedrock emulator, so both providers give the same answers on the same media. Faults: 429 with rate-limit
headers, 5xx, failed tasks, latency, a cap on tasks processing at once.
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
from collections.abc import Callable, Mapping
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
from emulators.media_analysis import MediaError
from emulators.twelvelabs_api.requests import (
    SYNC_MAX_MEDIA_SEC,
    ApiFault,
    Source,
    TlRequest,
    invalid,
    parse_v1,
    parse_v2,
)

log = logging.getLogger(__name__)

API_PREFIX = "/v1.3"
LOCAL_API_KEY = "tlk-local"
INJECTED_FAILURE_MESSAGE = "The embedding task failed (injected)"
MAX_PAGE_LIMIT = 50
DB_NAME = "twelvelabs-tasks.sqlite3"


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str, name: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(f"{name} {text!r} is not an RFC 3339 date-time") from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


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
    ) -> None:
        self.api_key = api_key
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
        self._store = InvocationStore(Path(workdir), DB_NAME) if workdir is not None else None
        if self._store is not None:
            documents, created = self._store.load()
            for doc in documents:
                task = Task.from_document(doc)
                self._tasks[task.task_id] = task
            self._created = len(documents) if created is None else created
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
            ],
            strict_slashes=False,
        )
        self._handlers: dict[str, Callable[..., Response]] = {
            "Embed": self._embed,
            "CreateTask": self._create_task,
            "ListTasks": self._list_tasks,
            "RetrieveTask": self._retrieve_task,
            "LegacyEmbed": self._legacy_embed,
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
        return self._handlers[name](request, **args)

    @staticmethod
    def _json(payload: Any, status: int = 200) -> Response:
        return Response(json.dumps(payload), status=status, content_type="application/json")

    def _fault(self, fault: ApiFault) -> Response:
        response = self._json({"code": fault.code, "message": fault.message}, fault.status)
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

    # --- media ----------------------------------------------------------------------------------------------

    @staticmethod
    def _download(source: Source) -> bytes:
        """The bytes of a media source. URLs are fetched over loopback only (the local S3's presigned
        URLs); anything else is refused as the real API refuses what it cannot download."""
        if source.data is not None:
            return source.data
        if source.asset_id is not None:
            raise invalid(f"asset {source.asset_id} does not exist")
        url = source.url or ""
        host = urlsplit(url).hostname or ""
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise invalid(f"cannot download media from {urlsplit(url).netloc or url}: not reachable")
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise invalid(f"cannot download media from the URL: HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise invalid(f"cannot download media from the URL: {exc}") from exc

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
            vectors = [image_vector(space, blob) for blob in media]
            if req.text is not None:
                vectors.insert(0, space.embed_text(req.text))
            items = [{"embedding": space.combine(vectors)}]
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
        media = [self._download(s) for s in req.sources]
        if req.input_type in ("audio", "video"):
            try:
                duration = decode_cached(media[0]).duration
            except MediaError as exc:
                raise invalid(f"{req.input_type}.media_source: cannot decode the media: {exc}") from exc
            if duration > SYNC_MAX_MEDIA_SEC:
                raise invalid(
                    f"{req.input_type}: {duration:.0f} s exceeds the sync limit of "
                    f"{SYNC_MAX_MEDIA_SEC:.0f} s; create an embed task instead"
                )
        return media

    # --- handlers -------------------------------------------------------------------------------------------

    def _embed(self, request: Request) -> Response:
        req = parse_v2(self._body(request), task=False)
        media = self._sync_media(req)
        try:
            data = self._compute(req, media)
        except MediaError as exc:
            raise invalid(f"cannot process the media: {exc}") from exc
        return self._json({"data": data})

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
        media = self._download(req.sources[0])
        duration = 0.0
        with contextlib.suppress(MediaError):
            duration = decode_cached(media).duration
        now = datetime.now(UTC)
        task = Task(
            task_id=uuid.uuid4().hex[:24],
            body=body,
            request=req,
            created_at=now,
            updated_at=now,
            duration=duration,
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
        page = self._int_arg(args.get("page", "1"), "page", 1, 10**9)
        limit = self._int_arg(args.get("page_limit", "10"), "page_limit", 1, MAX_PAGE_LIMIT)
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
            listed = [t.listed() for t in chosen[(page - 1) * limit : page * limit]]
        total_pages = max(1, -(-len(chosen) // limit))
        page_info = {
            "page": page,
            "limit_per_page": limit,
            "total_page": total_pages,
            "total_results": len(chosen),
        }
        return self._json({"data": listed, "page_info": page_info})

    @staticmethod
    def _int_arg(text: str, name: str, low: int, high: int) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise invalid(f"{name} must be a whole number from {low} to {high}, not {text!r}")
        return int(text)

    def _retrieve_task(self, request: Request, task_id: str) -> Response:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise ApiFault(404, "resource_not_found", f"embed task {task_id} does not exist")
            return self._json(task.retrieved())

    def _legacy_embed(self, request: Request) -> Response:
        if request.mimetype != "multipart/form-data":
            raise invalid("the legacy embed endpoint takes multipart/form-data")
        files = {name: f.read() for name, f in request.files.items()}
        req = parse_v1(request.form.to_dict(), files)
        kind = f"{req.input_type}_embedding"
        media = [self._download(s) for s in req.sources]
        try:
            items = self._compute(req, media)
        except MediaError as exc:
            raise invalid(f"cannot process the media: {exc}") from exc
        segments = []
        for item in items:
            segment: dict[str, Any] = {"float": item["embedding"]}
            if "start_sec" in item:
                segment["start_offset_sec"], segment["end_offset_sec"] = item["start_sec"], item["end_sec"]
            segments.append(segment)
        return self._json({"model_name": req.model_name, kind: {"segments": segments}})

    # --- task processing ------------------------------------------------------------------------------------

    def _save(self, task: Task, created: int | None = None) -> None:
        if self._store is not None:
            self._store.save(task.task_id, "", task.document(), created)

    def _schedule(self, task: Task) -> None:
        if self.latency_sec <= 0:
            self._submit(task.task_id)
            return
        timer = threading.Timer(float(self.latency_sec), self._submit, args=(task.task_id,))
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
            req, inject = task.request, task.inject_failure
        data: list[dict[str, Any]] | None = None
        error: str | None = None
        if inject:
            error = INJECTED_FAILURE_MESSAGE
        else:
            try:
                data = self._compute(req, [self._download(s) for s in req.sources])
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
