"""Marengo served by the TwelveLabs API, through the official `twelvelabs` SDK: embed v2 tasks for media
(create, then poll `processing` / `ready` / `failed`), sync embed v2 for queries.

Marengo 3.0 has no image tasks: an image is embedded by the sync call at submission, and its result kept
under `output_s3_uri` (as Bedrock keeps async results), so it is ingested like any finished job.

The API has no idempotency token. Submission runs record an intent in the ledger before each create
(`needs_intent`), and reconcile intents without a recorded task through `find_submissions`, which looks
for a task on the same object created since the intent. Media reach the API by presigned S3 URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from botocore.exceptions import ClientError
from pydantic import Field, PrivateAttr
from twelvelabs.core.api_error import ApiError

from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    InvocationState,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.errors import (
    ListingIncomplete,
    MarengoOutputError,
    OutputUnavailable,
    PermanentError,
    RetryableError,
    SetupError,
)
from resources.providers.marengo_models import MarengoModel
from resources.providers.model_routes import ProviderName
from resources.providers.outputs import read_output_json
from resources.providers.twelvelabs.bodies import (
    TASK_RETENTION_DAYS,
    image_request,
    parse_embedding_data,
    plain_item,
    task_request,
)
from resources.providers.twelvelabs.client import (
    READ_RETRIES,
    api_client,
    api_message,
    embed_text,
    provider_error,
)
from resources.storage.s3_objects import media_link
from resources.storage.s3_storage import S3Storage, S3Uri

STATES: dict[str, InvocationState] = {"processing": "in_progress", "ready": "completed", "failed": "failed"}
# Tasks listed per page, and open tasks looked up one by one per call when no listing showed them.
PAGE_LIMIT = 50
SWEEP_LIMIT = 100
# Listings start this long before our earliest submit time (the API's clock may lag ours).
CLOCK_SKEW = timedelta(minutes=5)
DEFAULT_QUOTA = 30
# Invocation ids of sync embeddings (no task id exists): the prefix plus the client token.
SYNC_PREFIX = "sync-"
RETRY: dict[str, Any] = {"max_retries": READ_RETRIES}


class TwelveLabsMarengo(MarengoProvider):
    """Marengo on the TwelveLabs API. The key comes from TWELVELABS_API_KEY (via `dg.EnvVar`) and is never
    logged or written to metadata."""

    api_key: str = Field(description="TwelveLabs API key (set it with dg.EnvVar('TWELVELABS_API_KEY')).")
    base_url: str | None = Field(
        default=None, description="API base URL override; unset: TWELVELABS_BASE_URL, else the public API."
    )
    url_expiry_sec: int = Field(
        default=6 * 3600, description="How long the presigned media URLs handed to the API stay valid."
    )
    timeout_sec: float = Field(default=60.0, description="Per-request timeout of the SDK client.")
    output_s3_uri: str = Field(
        description="s3:// prefix where the results of sync embeddings (images on 3.0) are kept for ingest."
    )
    storage: S3Storage
    _client: Any = PrivateAttr(default=None)

    @property
    def provider_name(self) -> ProviderName:
        return "twelvelabs"

    @property
    def needs_intent(self) -> bool:
        return True

    def default_quota(self, model: MarengoModel) -> int:
        return DEFAULT_QUOTA

    def client(self) -> Any:
        if self._client is None:
            self._client = api_client(self.api_key, self.base_url, self.timeout_sec)
        return self._client

    def media_url(self, media_uri: str) -> str:
        """A presigned GET URL for an `s3://` object (URLs given as https pass through)."""
        return media_link(self.storage.get_client, media_uri, self.url_expiry_sec)

    def preflight(self) -> None:
        try:
            self.client().embed.v_2.tasks.list(page_limit=1, request_options=RETRY)
        except ApiError as error:
            raise provider_error(error, "the API key check") from error
        except httpx.HTTPError as error:
            raise SetupError(
                f"cannot reach the TwelveLabs API ({type(error).__name__}): check TWELVELABS_BASE_URL "
                "and the network"
            ) from error

    def submit(self, job: EmbeddingJob) -> Submission:
        if _embedded_sync(job):
            return self._submit_sync(job)
        route = self.route(job.model)
        try:
            request = task_request(route, job.modality, self.media_url(job.media_uri), job.options)
        except ValueError as error:
            raise PermanentError(str(error)) from error
        submitted_at = datetime.now(UTC)
        try:
            created = self.client().embed.v_2.tasks.create(**request, request_options={"max_retries": 0})
        except ApiError as error:
            raise provider_error(error, f"a task for {job.media_uri}") from error
        except httpx.HTTPError as error:  # the task may exist: the intent's reconciliation finds it
            raise RetryableError(
                f"TwelveLabs task create for {job.media_uri}: {type(error).__name__}"
            ) from error
        return Submission(job=job, invocation_id=created.id, output_uri=None, submitted_at=submitted_at)

    def _sync_output(self, job: EmbeddingJob) -> S3Uri:
        return S3Uri.parse(self.output_s3_uri).join(job.model.key, "sync", f"{job.client_token}.json")

    def _submit_sync(self, job: EmbeddingJob) -> Submission:
        """Embed now and keep the answer where ingest reads it; the job is finished as soon as it exists."""
        route = self.route(job.model)
        try:
            request = image_request(route, self.media_url(job.media_uri))
        except ValueError as error:
            raise PermanentError(str(error)) from error
        submitted_at = datetime.now(UTC)
        try:
            response = self.client().embed.v_2.create(**request, request_options={"max_retries": 0})
        except ApiError as error:
            raise provider_error(error, f"the embedding of {job.media_uri}") from error
        except httpx.HTTPError as error:
            raise RetryableError(f"TwelveLabs embed for {job.media_uri}: {type(error).__name__}") from error
        output = self._sync_output(job)
        body = json.dumps({"data": [plain_item(item) for item in (response.data or [])]})
        self.storage.get_client().put_object(Bucket=output.bucket, Key=output.key, Body=body.encode())
        return self._sync_submission(job, submitted_at)

    def _sync_submission(self, job: EmbeddingJob, submitted_at: datetime) -> Submission:
        """A sync embedding's job: its id names the token, its output is where the answer is kept."""
        return Submission(job, f"{SYNC_PREFIX}{job.client_token}", str(self._sync_output(job)), submitted_at)

    def find_submissions(
        self, intents: list[tuple[EmbeddingJob, datetime]], claimed: set[str]
    ) -> list[Submission]:
        """Tasks that killed runs created after recording their intents: for each intent, the oldest task
        on the same object and model created since it that no ledger row claims. One listing for all."""
        found: dict[str, Submission] = {}
        for job, _ in intents:  # a sync result is found where it is kept
            if _embedded_sync(job) and self._exists(self._sync_output(job)):
                found[job.client_token] = self._sync_submission(job, datetime.now(UTC))
        intents = [(job, at) for job, at in intents if not _embedded_sync(job)]
        if not intents:
            return list(found.values())
        wanted = {
            (_object_path(self.media_url(job.media_uri)), self.route(job.model).model_id): (job, at)
            for job, at in intents
        }
        since = min(at for _, at in intents) - CLOCK_SKEW
        model_names = {model for _, model in wanted}
        for task in reversed(list(self._list(since, None))):  # oldest first: the first create wins
            if task.id in claimed or (task.model_name and task.model_name not in model_names):
                continue
            # A listed task does not say its media; the task itself does (`metadata.input_url`). Only
            # tasks no ledger row claims, created since the oldest open intent, are looked at.
            url = _input_url(self.client().embed.v_2.tasks.retrieve(task.id, request_options=RETRY))
            match = wanted.get((_object_path(url), str(task.model_name))) if url else None
            if match is None:
                continue
            job, intended_at = match
            created = _as_datetime(task.created_at) or intended_at
            if job.client_token not in found and created >= intended_at - CLOCK_SKEW:
                found[job.client_token] = Submission(job, task.id, None, created)
        return list(found.values())

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        """Raises ListingIncomplete, with what it read, when the API keeps refusing a call (429, 5xx)."""
        if not open_jobs:
            return []
        token_of = {task_id: token for token, task_id in open_jobs.items() if not _is_sync(task_id)}
        seen: dict[str, InvocationStatus] = {i: _sync_done(i, t) for t, i in open_jobs.items() if _is_sync(i)}

        def done() -> list[InvocationStatus]:
            return [s for s in seen.values() if s.state != "in_progress"]

        try:
            for task in self._list(submitted_after - CLOCK_SKEW, None):
                if task.id in token_of:
                    seen[task.id] = _status(task, token_of[task.id])
        except ApiError as error:
            if not _busy(error):
                raise
            raise ListingIncomplete(f"list tasks: {error.status_code} after retries", done()) from error
        unseen = [i for i in token_of if i not in seen]
        for task_id in unseen[:SWEEP_LIMIT]:
            status = self._look_up(task_id, token_of[task_id])
            if status is None:  # throttled: the rest waits for the next sweep, none is counted unreadable
                raise ListingIncomplete("retrieve task: throttled after retries", done())
            seen[task_id] = status
        return done()

    def newly_finished(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        if not open_jobs:
            return []
        token_of = {task_id: token for token, task_id in open_jobs.items() if not _is_sync(task_id)}
        done = [_sync_done(i, t) for t, i in open_jobs.items() if _is_sync(i)]
        try:
            for status in ("ready", "failed"):
                done += [
                    _status(task, token_of[task.id])
                    for task in self._list(submitted_after - CLOCK_SKEW, status)
                    if task.id in token_of
                ]
        except ApiError as error:
            if not _busy(error):
                raise
            raise ListingIncomplete(f"list tasks: {error.status_code} after retries", done) from error
        return done

    def _list(self, started_at: datetime, status: str | None) -> Any:
        """Tasks created since `started_at`, newest first, every page (the SDK's pager fetches them)."""
        kwargs: dict[str, Any] = {
            "started_at": started_at.astimezone(UTC).isoformat(),
            "page_limit": PAGE_LIMIT,
        }
        if status:
            kwargs["status"] = status
        return self.client().embed.v_2.tasks.list(**kwargs, request_options=RETRY)

    def _look_up(self, task_id: str, token: str) -> InvocationStatus | None:
        """The task's status; None when the API is too busy to say (nothing learnt, nothing counted)."""
        try:
            task = self.client().embed.v_2.tasks.retrieve(task_id, request_options=RETRY)
        except ApiError as error:
            if _busy(error):
                return None
            state: InvocationState = "lost" if error.status_code == 404 else "unknown"
            message = f"retrieve task: {error.status_code} {api_message(error)}"
            return InvocationStatus(task_id, token, state, None, None, message, None)
        except httpx.HTTPError as error:
            return InvocationStatus(task_id, token, "unknown", None, None, f"retrieve task: {error}", None)
        return _status(task, token)

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        if _is_sync(invocation.invocation_id):
            return self._fetch_sync(job)
        try:
            task = self.client().embed.v_2.tasks.retrieve(invocation.invocation_id, request_options=RETRY)
        except ApiError as error:
            if error.status_code == 404:
                raise MarengoOutputError(
                    f"task {invocation.invocation_id} is gone (404) although it was ready; the API keeps "
                    f"embeddings for {TASK_RETENTION_DAYS} days"
                ) from error
            raise OutputUnavailable(
                f"cannot read task {invocation.invocation_id}: {error.status_code} {api_message(error)}"
            ) from error
        except httpx.HTTPError as error:
            raise OutputUnavailable(f"cannot read task {invocation.invocation_id}: {error}") from error
        if task.status != "ready":
            raise OutputUnavailable(f"task {invocation.invocation_id} is {task.status}, not ready")
        data = [plain_item(item) for item in (task.data or [])]
        return parse_embedding_data(data, job.model, job.modality)

    def _fetch_sync(self, job: EmbeddingJob) -> list[SegmentEmbedding]:
        payload = read_output_json(self.storage, self._sync_output(job), "it was written")
        data = payload.get("data") if isinstance(payload, dict) else None
        return parse_embedding_data(data, job.model, job.modality)

    def _exists(self, location: S3Uri) -> bool:
        try:
            self.storage.get_client().head_object(Bucket=location.bucket, Key=location.key)
        except ClientError:
            return False
        return True

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        return embed_text(self.client(), self.route(model), text)


def _status(task: Any, token: str) -> InvocationStatus:
    state = STATES.get(str(task.status), "unknown")
    error = getattr(task, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    if state == "unknown":
        message = f"unexpected task status {task.status!r}"
    return InvocationStatus(
        invocation_id=task.id,
        client_token=token,
        state=state,
        submitted_at=_as_datetime(task.created_at),
        ended_at=_as_datetime(task.updated_at) if state in ("completed", "failed") else None,
        failure_message=message,
        output_uri=None,
    )


def _busy(error: ApiError) -> bool:
    """Throttled or unavailable, still so after the SDK's own retries: ask again later."""
    return error.status_code is not None and (error.status_code == 429 or error.status_code >= 500)


def _embedded_sync(job: EmbeddingJob) -> bool:
    """Images on 3.0 have no embed task; they take the sync call."""
    return job.modality == "image" and job.model.version != "3.5"


def _is_sync(invocation_id: str) -> bool:
    return invocation_id.startswith(SYNC_PREFIX)


def _sync_done(invocation_id: str, token: str) -> InvocationStatus:
    return InvocationStatus(invocation_id, token, "completed", None, None, None, None)


def _input_url(task: Any) -> str | None:
    """The media URL a retrieved task was created with (`metadata.input_url`)."""
    metadata = getattr(task, "metadata", None)
    url = getattr(metadata, "input_url", None) if metadata is not None else None
    return str(url) if url else None


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _object_path(url: str) -> str:
    """Host and path of a URL, without its query (presigned signatures differ per call)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"
