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

This module is the composition: the settings and faults (plain attributes), the state, and the request
path every operation shares (route, count, API key, injected faults). The operations are in
sync_embed.py, embed_tasks.py and assets_api.py.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from werkzeug.wrappers import Request, Response

from emulators.http_base import HttpEmulator, Router
from emulators.presigned import LOCAL_S3_CREDENTIALS
from emulators.twelvelabs_api.assets import Asset
from emulators.twelvelabs_api.assets_api import AssetLibrary
from emulators.twelvelabs_api.embed_tasks import INJECTED_FAILURE_MESSAGE, EmbedTasksApi
from emulators.twelvelabs_api.errors import ApiFault
from emulators.twelvelabs_api.sources import SourceMedia
from emulators.twelvelabs_api.sync_embed import SyncEmbedApi
from emulators.twelvelabs_api.task import Task
from emulators.twelvelabs_api.wire import fault_response

__all__ = ["API_PREFIX", "INJECTED_FAILURE_MESSAGE", "LOCAL_API_KEY", "Task", "TwelveLabsEmulator"]

API_PREFIX = "/v1.3"
LOCAL_API_KEY = "tlk-local"
# The answers whose error body is `{"error": {"code", "message"}}`: SDK 1.3.6 parses the 413 of a sync embed
# as `ErrorResponse` (embed/v_2/raw_client.py), and a flat body there would not even raise its typed error.
ENVELOPED_ERRORS = {("Embed", 413)}


class TwelveLabsEmulator(HttpEmulator[ApiFault]):
    """The TwelveLabs API on 127.0.0.1; faults are constructor kwargs and plain attributes tests may flip.

    With a `workdir`, tasks are kept on disk (SQLite), so a restart forgets none and finishes those still
    processing; without one it starts empty, like a new account.
    """

    refusal_type = ApiFault

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
        super().__init__(name="twelvelabs", host=host, port=port, workers=workers)
        self.api_key = api_key
        # Process each task inside its create call, so the first retrieve finds it finished: for code that
        # polls with a sleep between retrieves (seed 004's loop), which then never sleeps.
        self.complete_on_create = complete_on_create
        # Access key -> secret key: the S3 credentials presigned media URLs must be signed with.
        self.s3_credentials = dict(s3_credentials)
        # The time URL expiry is judged at (tests move it to expire a URL without waiting).
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.latency_sec = latency_sec
        self.max_concurrent_tasks = max_concurrent_tasks
        self.throttle_rate = throttle_rate
        self.server_error_rate = server_error_rate
        self.failure_rate = failure_rate
        self.retry_after_sec = retry_after_sec
        self._rng = random.Random(seed)
        # Operation name -> the fault every call of it answers with (e.g. "RetrieveTask" -> a 500).
        self.operation_errors: dict[str, ApiFault] = {}
        self._lock = threading.RLock()
        self._calls: dict[str, int] = {}
        self._assets = AssetLibrary(self, self._work, self._lock, workdir)
        sources = SourceMedia(self, self._assets)
        self._tasks = EmbedTasksApi(
            self, sources, self._work, lock=self._lock, rng=self._rng, workdir=workdir
        )
        routes = [*SyncEmbedApi(sources).routes(), *self._tasks.routes(), *self._assets.routes()]
        self._router = Router(
            [dataclasses.replace(route, path=API_PREFIX + route.path) for route in routes],
            unknown_path=lambda r: ApiFault(404, "not_found", f"no endpoint at {r.path}"),
            wrong_method=lambda r: ApiFault(405, "method_not_allowed", f"{r.method} not allowed on {r.path}"),
            strict_slashes=False,
        )

    @property
    def base_url(self) -> str:
        """What the SDK takes as `base_url` (or TWELVELABS_BASE_URL)."""
        return f"{self.endpoint}{API_PREFIX}"

    # --- test hooks -----------------------------------------------------------------------------------------

    @property
    def created_tasks(self) -> int:
        """Embed tasks created: each one is billed."""
        return self._tasks.created

    @property
    def tasks(self) -> Mapping[str, Task]:
        return self._tasks.snapshot()

    @property
    def calls(self) -> Mapping[str, int]:
        """Requests answered per operation (errors included), e.g. {"ListTasks": 3}."""
        with self._lock:
            return MappingProxyType(dict(self._calls))

    @property
    def assets(self) -> Mapping[str, Asset]:
        return self._assets.snapshot()

    def forget(self, task_id: str) -> None:
        """Lose a task, as an expired one is: its id answers 404."""
        self._tasks.forget(task_id)

    def processing(self) -> int:
        return self._tasks.processing()

    def wait_until_idle(self, timeout: float = 30.0) -> None:
        self._tasks.wait_until_idle(timeout)

    # --- serving ------------------------------------------------------------------------------------------

    def _after_serving(self) -> None:
        self._tasks.resume()
        self._assets.resume()

    def _answer(self, request: Request) -> Response:
        route, args = self._router.match(request)
        name = route.operation
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
            return route.handler(request, **args)
        except ApiFault as fault:
            if (name, fault.status) in ENVELOPED_ERRORS:
                return fault_response(fault, self.retry_after_sec, enveloped=True)
            raise

    def _refusal(self, refusal: ApiFault) -> Response:
        return fault_response(refusal, self.retry_after_sec)

    def _internal_error(self, exc: Exception) -> ApiFault:
        return ApiFault(500, "internal_error", f"{type(exc).__name__}: {exc}")
