"""Embed tasks (`POST /embed-v2/tasks`, `GET /embed-v2/tasks[/{id}]`): created with their media fetched and
held to the 4-hour task limit, processed in the background (or inside the create call), kept on disk with a
workdir (SQLite), listed newest first."""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from werkzeug.wrappers import Request, Response

from emulators.background import BackgroundWork
from emulators.bedrock_runtime.embedding import decode_cached
from emulators.bedrock_runtime.state import InvocationStore
from emulators.http_base import Route, json_response
from emulators.media_analysis import MediaError, container_duration
from emulators.twelvelabs_api.embedding_data import compute
from emulators.twelvelabs_api.errors import ApiFault, invalid, not_found
from emulators.twelvelabs_api.limits import (
    IMAGE_TASK_MAX_BYTES,
    TASK_MAX_MEDIA_SEC,
    check_duration,
    too_large,
)
from emulators.twelvelabs_api.listing import page
from emulators.twelvelabs_api.requests import TlRequest, parse_v2
from emulators.twelvelabs_api.sources import SourceMedia
from emulators.twelvelabs_api.task import Task
from emulators.twelvelabs_api.wire import json_body, parse_time

log = logging.getLogger(__name__)

INJECTED_FAILURE_MESSAGE = "The embedding task failed (injected)"
DB_NAME = "twelvelabs-tasks.sqlite3"


def task_duration(req: TlRequest, blob: bytes) -> float:
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


class TaskSettings(Protocol):
    """What the task operations read from the emulator at every call (plain attributes a test may change)."""

    latency_sec: float
    max_concurrent_tasks: int
    failure_rate: float
    complete_on_create: bool


class EmbedTasksApi:
    """The account's embed tasks, guarded by the emulator's `lock` (`idle` is notified whenever one ends or
    is forgotten); `rng` is the emulator's (shared, seeded)."""

    def __init__(
        self,
        settings: TaskSettings,
        sources: SourceMedia,
        work: BackgroundWork,
        *,
        lock: threading.RLock,
        rng: random.Random,
        workdir: Path | str | None,
    ) -> None:
        self._settings = settings
        self._sources = sources
        self._work = work
        self._lock = lock
        self._idle = threading.Condition(lock)
        self._rng = rng
        self._tasks: dict[str, Task] = {}
        self._created = 0
        self._store = InvocationStore(Path(workdir), DB_NAME) if workdir is not None else None
        if self._store is not None:
            documents, created = self._store.load()
            for doc in documents:
                task = Task.from_document(doc)
                self._tasks[task.task_id] = task
            self._created = len(documents) if created is None else created

    def routes(self) -> list[Route]:
        return [
            Route("/embed-v2/tasks", "POST", "CreateTask", self.create),
            Route("/embed-v2/tasks", "GET", "ListTasks", self.list),
            Route("/embed-v2/tasks/<task_id>", "GET", "RetrieveTask", self.retrieve),
        ]

    # --- state ----------------------------------------------------------------------------------------------

    @property
    def created(self) -> int:
        with self._lock:
            return self._created

    def snapshot(self) -> Mapping[str, Task]:
        with self._lock:
            return MappingProxyType({k: copy.deepcopy(t) for k, t in self._tasks.items()})

    def forget(self, task_id: str) -> None:
        with self._idle:
            self._tasks.pop(task_id)
            if self._store is not None:
                self._store.delete(task_id)
            self._idle.notify_all()

    def processing(self) -> int:
        with self._lock:
            return sum(1 for t in self._tasks.values() if t.status == "processing")

    def wait_until_idle(self, timeout: float) -> None:
        with self._idle:
            if not self._idle.wait_for(lambda: self.processing() == 0, timeout=timeout):
                raise TimeoutError(f"{self.processing()} task(s) still processing after {timeout:g}s")

    def resume(self) -> None:
        """Tasks still processing when an earlier emulator stopped carry on."""
        with self._lock:
            for task in [t for t in self._tasks.values() if t.status == "processing"]:
                self._schedule(task)

    # --- operations -----------------------------------------------------------------------------------------

    def create(self, request: Request) -> Response:
        settings = self._settings
        body = json_body(request)
        req = parse_v2(body, task=True)
        with self._lock:
            if self.processing() >= settings.max_concurrent_tasks:
                raise ApiFault(
                    429,
                    "too_many_requests",
                    f"{settings.max_concurrent_tasks} embed tasks are already processing",
                )
        # The media is fetched when the task is created; what cannot be decoded fails the task later.
        media = self._sources.read(req.sources[0])
        duration = task_duration(req, media)
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
            task.inject_failure = settings.failure_rate > 0 and self._rng.random() < settings.failure_rate
            self._tasks[task.task_id] = task
            self._created += 1
            self._save(task, created=self._created)
            self._schedule(task)
        return json_response({"_id": task.task_id, "status": "processing"}, 201)

    def list(self, request: Request) -> Response:
        args = request.args
        status = args.get("status")
        if status is not None and status not in ("processing", "ready", "failed"):
            raise invalid(f"status {status!r} is not one of processing, ready, failed")
        after = parse_time(args["started_at"], "started_at") if args.get("started_at") else None
        before = parse_time(args["ended_at"], "ended_at") if args.get("ended_at") else None
        with self._lock:
            chosen = [
                t
                for t in self._tasks.values()
                if (status is None or t.status == status)
                and (after is None or t.created_at >= after)
                and (before is None or t.created_at <= before)
            ]
            chosen.sort(key=lambda t: t.created_at, reverse=True)
            return page(args, [t.listed() for t in chosen])

    def retrieve(self, request: Request, task_id: str) -> Response:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise not_found(task_id, "embed tasks")
            return json_response(task.retrieved())

    # --- processing -----------------------------------------------------------------------------------------

    def _save(self, task: Task, created: int | None = None) -> None:
        if self._store is not None:
            self._store.save(task.task_id, "", task.document(), created)

    def _schedule(self, task: Task) -> None:
        work = self._process if self._settings.complete_on_create else self._submit
        self._work.later(self._settings.latency_sec, work, task.task_id)

    def _submit(self, task_id: str) -> None:
        self._work.submit(self._process, task_id)

    def _process(self, task_id: str) -> None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or self._work.stopping:
                return
            req, inject, fetched = task.request, task.inject_failure, task.media
        data: list[dict[str, Any]] | None = None
        error: str | None = None
        if inject:
            error = INJECTED_FAILURE_MESSAGE
        else:
            try:
                data = compute(req, fetched or [self._sources.read(s) for s in req.sources])
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
