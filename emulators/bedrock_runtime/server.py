"""A wire-compatible Bedrock runtime (rest-json, as botocore models it) for Marengo and Pegasus 1.2.

It implements InvokeModel (Marengo and Pegasus), StartAsyncInvoke, GetAsyncInvoke and ListAsyncInvokes with
Bedrock's status codes and error wire format. Like AWS it verifies every request's SigV4 signature against
its account's access keys and serves one region (the one a request must be signed for); it refuses S3
buckets outside that region (GetBucketLocation, as Bedrock's same-region rule) and a `bucketOwner` of
another account, holds media to the models' documented size and length limits, runs accepted invocations on
a worker pool against the S3 emulator, and exposes fault injection (latency, in-flight quota, throttling,
failures) plus test hooks that never require sleeping.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import json
import logging
import random
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.embedding import decode_cached, embed
from emulators.bedrock_runtime.errors import ServiceError
from emulators.bedrock_runtime.limits import (
    GB,
    MARENGO_LIMITS,
    MAX_INVOKE_BODY_BYTES,
    MB,
    MarengoLimits,
    body_too_large,
)
from emulators.bedrock_runtime.marengo_body import EmbedRequest, MediaRef, parse_body, split_s3_uri
from emulators.bedrock_runtime.models import (
    ACCOUNT_ID,
    ResolvedModel,
    base_model_id,
    pegasus_base,
    resolve_model,
    resolve_pegasus,
)
from emulators.bedrock_runtime.pegasus_body import (
    MAX_BASE64_BYTES,
    MAX_S3_BYTES,
    MAX_VIDEO_SEC,
    PegasusRequest,
    parse_pegasus_body,
)
from emulators.bedrock_runtime.pegasus_describe import (
    describe_json,
    describe_scenes,
    describe_text,
    estimate_tokens,
    truncate,
)
from emulators.bedrock_runtime.shapes import check_input
from emulators.bedrock_runtime.signing import verify
from emulators.bedrock_runtime.state import InvocationStore
from emulators.media_analysis import (
    MediaError,
    MediaKind,
    container_duration,
    probe_media,
)

log = logging.getLogger(__name__)

INJECTED_FAILURE_MESSAGE = "Internal processing error (injected)"
INJECTED_MODEL_ERROR_MESSAGE = "The model failed to process the request (injected)."
# What a per-object Pegasus fault does to a call: end it early ("length"), or answer with an error.
PegasusFault = Literal["length", "throttling", "model_error", "timeout", "internal"]
PEGASUS_FAULTS: tuple[str, ...] = get_args(PegasusFault)
ANY_MEDIA = "*"  # the per-object fault key matching every media source (base64 included)
# What StartAsyncInvoke does with media it cannot decode: refuse it (ValidationException), or accept the job
# and let it end Failed with a failureMessage. Nothing documents which Bedrock does; a client must cope with
# both.
UndecodableMedia = Literal["refuse", "fail"]
UNDECODABLE_MEDIA: tuple[str, ...] = get_args(UndecodableMedia)
# Every local client signs with this key pair unless told otherwise.
LOCAL_ACCESS_KEY_ID = "test"
LOCAL_SECRET_ACCESS_KEY = "test"
# GetBucketLocation's legacy answers: no constraint is us-east-1, and "EU" is eu-west-1.
LEGACY_LOCATIONS = {"": "us-east-1", "EU": "eu-west-1"}
STATUSES = ("InProgress", "Completed", "Failed")
_SESSION = boto3.session.Session()
_SESSION_LOCK = threading.Lock()


def iso(ts: datetime) -> str:
    """Bedrock's timestamp wire format: ISO-8601 UTC with microseconds, e.g. 2026-11-23T10:00:00.123000Z."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, name: str) -> datetime:
    """Query-string timestamps: botocore sends ISO-8601; epoch seconds are accepted too."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        ts = datetime.fromisoformat(text)
    except ValueError as exc:
        raise errors.validation(
            f"Value '{text}' at '{name}' failed to satisfy constraint: Member must be a timestamp"
        ) from exc
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass
class Invocation:
    """One async invocation; mutable inside the emulator, handed to tests only as copies."""

    arn: str
    model: ResolvedModel
    client_request_token: str
    fingerprint: str
    request: EmbedRequest
    output_data_config: dict[str, Any]
    submit_time: datetime
    status: str = "InProgress"
    failure_message: str | None = None
    last_modified_time: datetime | None = None
    end_time: datetime | None = None
    inject_failure: bool = False
    output_keys: tuple[str, ...] = field(default_factory=tuple)

    @property
    def invocation_id(self) -> str:
        return self.arn[-12:]

    @property
    def output_uri(self) -> str:
        return str(self.output_data_config["s3OutputDataConfig"]["s3Uri"]).rstrip("/")

    def document(self) -> dict[str, Any]:
        """Everything needed to rebuild the invocation after a restart (the request is in the fingerprint)."""
        return {
            "arn": self.arn,
            "model_id": self.model.requested,
            "client_request_token": self.client_request_token,
            "fingerprint": self.fingerprint,
            "output_data_config": self.output_data_config,
            "submit_time": iso(self.submit_time),
            "status": self.status,
            "failure_message": self.failure_message,
            "last_modified_time": iso(self.last_modified_time) if self.last_modified_time else None,
            "end_time": iso(self.end_time) if self.end_time else None,
            "inject_failure": self.inject_failure,
            "output_keys": list(self.output_keys),
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any], region: str) -> Invocation:
        model = resolve_model(doc["model_id"], sync=False, region=region)
        model_input = json.loads(doc["fingerprint"])["modelInput"]

        def when(name: str) -> datetime | None:
            return datetime.fromisoformat(doc[name]) if doc.get(name) else None

        return cls(
            arn=doc["arn"],
            model=model,
            client_request_token=doc["client_request_token"],
            fingerprint=doc["fingerprint"],
            request=parse_body(model.version, model_input, sync=False),
            output_data_config=doc["output_data_config"],
            submit_time=datetime.fromisoformat(doc["submit_time"]),
            status=doc["status"],
            failure_message=doc.get("failure_message"),
            last_modified_time=when("last_modified_time"),
            end_time=when("end_time"),
            inject_failure=bool(doc.get("inject_failure")),
            output_keys=tuple(doc.get("output_keys") or ()),
        )

    def summary(self, region: str) -> dict[str, Any]:
        """The GetAsyncInvoke / AsyncInvokeSummary members, in wire form."""
        out: dict[str, Any] = {
            "invocationArn": self.arn,
            "modelArn": self.model.arn(region),
            "clientRequestToken": self.client_request_token,
            "status": self.status,
            "submitTime": iso(self.submit_time),
            "lastModifiedTime": iso(self.last_modified_time or self.submit_time),
            "outputDataConfig": self.output_data_config,
        }
        if self.failure_message is not None:
            out["failureMessage"] = self.failure_message
        if self.end_time is not None:
            out["endTime"] = iso(self.end_time)
        return out


@dataclass(frozen=True)
class PegasusCall:
    """One Pegasus InvokeModel whose body was valid: what was asked about which media, and how it ended."""

    model_id: str
    media_uri: str | None  # None: base64String
    prompt: str
    json_schema: dict[str, Any] | None
    outcome: str  # "stop" | "length" | the error code it was answered with


class BedrockRuntimeEmulator:
    """Bedrock runtime on 127.0.0.1; faults are constructor kwargs and plain attributes tests may flip.

    With a `workdir`, invocations are kept on disk: an emulator started over the same folder knows every
    earlier job and finishes those still in progress. Without one it starts empty, like a new account.
    The account (`account_id`, one key pair) is what requests must be signed with and what `bucketOwner`
    must name; `undecodable_media` picks how StartAsyncInvoke treats media it cannot decode.
    """

    def __init__(
        self,
        s3_endpoint: str,
        region: str = "us-east-1",
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        latency_sec: float = 0.0,
        max_concurrent_invocations: int = 50,
        throttle_rate: float = 0.0,
        failure_rate: float = 0.0,
        seed: int | None = None,
        workers: int = 4,
        workdir: Path | str | None = None,
        pegasus_length_rate: float = 0.0,
        pegasus_failure_rate: float = 0.0,
        pegasus_faults: Mapping[str, PegasusFault] | None = None,
        account_id: str = ACCOUNT_ID,
        access_key_id: str = LOCAL_ACCESS_KEY_ID,
        secret_access_key: str = LOCAL_SECRET_ACCESS_KEY,
        undecodable_media: UndecodableMedia = "refuse",
    ) -> None:
        if undecodable_media not in UNDECODABLE_MEDIA:
            raise ValueError(
                f"undecodable_media={undecodable_media!r}: use one of {', '.join(UNDECODABLE_MEDIA)}"
            )
        self.s3_endpoint = s3_endpoint
        self.region = region
        self.account_id = account_id
        # Access key id -> secret: the keys of the account; a test may add one.
        self.credentials: dict[str, str] = {access_key_id: secret_access_key}
        self.undecodable_media: UndecodableMedia = undecodable_media
        # Marengo's documented limits per version, and InvokeModel's body limit; plain attributes so a test
        # can lower one instead of sending gigabytes.
        self.marengo_limits: dict[str, MarengoLimits] = dict(MARENGO_LIMITS)
        self.max_invoke_body_bytes = MAX_INVOKE_BODY_BYTES
        self.host = host
        self._requested_port = port
        self.latency_sec = latency_sec
        self.max_concurrent_invocations = max_concurrent_invocations
        self.throttle_rate = throttle_rate
        self.failure_rate = failure_rate
        self.seed = seed
        self._rng = random.Random(seed)
        # Operation name -> the error every call of it answers with (e.g. GetAsyncInvoke -> AccessDenied).
        self.operation_errors: dict[str, ServiceError] = {}
        # Pegasus: the share of answers cut short with finishReason "length", the share answered with
        # ModelErrorException, and faults per media URI or ANY_MEDIA (see inject_pegasus_fault).
        self.pegasus_length_rate = pegasus_length_rate
        self.pegasus_failure_rate = pegasus_failure_rate
        self._pegasus_faults: dict[str, tuple[PegasusFault, int | None]] = {}
        # Pegasus's documented limits; plain attributes so a test can lower one instead of sending gigabytes.
        self.pegasus_max_base64_bytes = MAX_BASE64_BYTES
        self.pegasus_max_s3_bytes = MAX_S3_BYTES
        self.pegasus_max_video_sec = MAX_VIDEO_SEC
        # The Pegasus guide always sends s3Location.bucketOwner; False accepts it missing (as for Marengo).
        self.pegasus_require_bucket_owner = True
        self._workers = workers
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        for uri, kind in (pegasus_faults or {}).items():
            self.inject_pegasus_fault(uri, kind)
        self._invocations: dict[str, Invocation] = {}
        self._by_token: dict[str, Invocation] = {}
        self._created = 0
        # Traffic seen, for benchmarks: requests per operation (errors included), and invocation summaries
        # returned by ListAsyncInvokes and GetAsyncInvoke (status records).
        self._calls: dict[str, int] = {}
        self._model_calls: dict[tuple[str, str], int] = {}
        self._pegasus_calls: list[PegasusCall] = []
        self._status_records = 0
        self._timers: set[threading.Timer] = set()
        self._stopping = threading.Event()
        self._store = InvocationStore(Path(workdir)) if workdir is not None else None
        self._restored = False
        if self._store is not None:
            documents, created = self._store.load()
            for doc in documents:
                inv = Invocation.from_document(doc, region)
                self._invocations[inv.arn] = inv
                self._by_token[inv.client_request_token] = inv
            self._created = len(documents) if created is None else created
        self._pool: ThreadPoolExecutor | None = None
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        with _SESSION_LOCK:  # sessions are costly to build and client creation is not thread-safe
            self._s3: Any = _SESSION.client(
                "s3",
                endpoint_url=s3_endpoint,
                region_name=region,
                aws_access_key_id="test",
                aws_secret_access_key="test",
                config=Config(
                    s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"}
                ),
            )
        self._url_map = Map(
            [
                Rule("/model/<path:model_id>/invoke", methods=["POST"], endpoint="InvokeModel"),
                Rule("/async-invoke", methods=["POST"], endpoint="StartAsyncInvoke"),
                Rule("/async-invoke", methods=["GET"], endpoint="ListAsyncInvokes"),
                Rule("/async-invoke/<path:invocation_arn>", methods=["GET"], endpoint="GetAsyncInvoke"),
            ],
            strict_slashes=False,
            merge_slashes=False,
        )
        self._handlers: dict[str, Callable[..., Response]] = {
            "InvokeModel": self._invoke_model,
            "StartAsyncInvoke": self._start_async_invoke,
            "GetAsyncInvoke": self._get_async_invoke,
            "ListAsyncInvokes": self._list_async_invokes,
        }

    # --- lifecycle ----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("BedrockRuntimeEmulator is not started")
        return int(self._server.server_port)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> BedrockRuntimeEmulator:
        """Bind (port 0 = any free port) and serve in a background thread."""
        if self._server is not None:
            return self
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        if self._store is not None and not self._restored:  # before serving: no reader finds a gap
            self._restore_outputs()
            self._restored = True
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="bedrock-emu-worker")
        self._server = make_server(self.host, self._requested_port, self._wsgi, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="bedrock-emu", daemon=True
        )
        self._thread.start()
        with self._lock:  # jobs kept from an earlier run, or abandoned by stop(), carry on
            pending = [inv for inv in self._invocations.values() if inv.status == "InProgress"]
            for inv in pending:
                self._schedule(inv)
        return self

    def stop(self) -> None:
        """Stop serving, cancel pending latency timers and abandon queued work (it stays InProgress)."""
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

    def __enter__(self) -> BedrockRuntimeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test hooks -----------------------------------------------------------------------------------------

    @property
    def created_invocations(self) -> int:
        """New invocations accepted (idempotent replays not counted)."""
        with self._lock:
            return self._created

    @property
    def invocations(self) -> Mapping[str, Invocation]:
        """A read-only snapshot ARN -> Invocation (copies: mutating them changes nothing)."""
        with self._lock:
            return MappingProxyType({arn: copy.deepcopy(inv) for arn, inv in self._invocations.items()})

    def forget(self, arn: str) -> None:
        """Lose an invocation, as a provider that lost its state would: unknown ARN, unknown token."""
        with self._idle:
            inv = self._invocations.pop(arn)
            self._by_token.pop(inv.client_request_token, None)
            if self._store is not None:
                self._store.delete(arn)
            self._idle.notify_all()

    def replace_output(self, arn: str, body: bytes) -> str:
        """Overwrite a completed invocation's output.json with `body` (corrupt output); returns its key."""
        with self._lock:
            inv = self._invocations[arn]
            keys = [k for k in inv.output_keys if k.endswith("/output.json")]
        if inv.status != "Completed" or not keys:
            raise ValueError(f"{arn} has no output.json (status {inv.status})")
        bucket, _ = split_s3_uri(inv.output_uri + "/x")
        self._s3.put_object(Bucket=bucket, Key=keys[0], Body=body)
        return keys[0]

    @property
    def calls(self) -> Mapping[str, int]:
        """Requests answered per operation since start (errors included), e.g. {"ListAsyncInvokes": 3}."""
        with self._lock:
            return MappingProxyType(dict(self._calls))

    @property
    def model_calls(self) -> Mapping[tuple[str, str], int]:
        """Requests per (operation, base model id) since start, errors included, e.g.
        {("InvokeModel", "twelvelabs.pegasus-1-2-v1:0"): 4}; profiles and ARNs count as their base model."""
        with self._lock:
            return MappingProxyType(dict(self._model_calls))

    @property
    def pegasus_calls(self) -> tuple[PegasusCall, ...]:
        """Every Pegasus InvokeModel whose body passed validation, in arrival order, and how each ended
        (calls refused before, e.g. by throttle_rate or a bad body, are counted in model_calls only)."""
        with self._lock:
            return tuple(self._pegasus_calls)

    def reset_calls(self) -> None:
        """Forget the traffic counted so far (calls, model_calls, pegasus_calls, status_records)."""
        with self._lock:
            self._calls.clear()
            self._model_calls.clear()
            self._pegasus_calls.clear()
            self._status_records = 0

    def inject_pegasus_fault(self, media_uri: str, kind: PegasusFault, times: int | None = None) -> None:
        """Make Pegasus calls on `media_uri` (ANY_MEDIA: every call) end with `kind`: "length" (message cut
        short), "throttling" (ThrottlingException), "model_error" (ModelErrorException), "timeout"
        (ModelTimeoutException) or "internal" (InternalServerException); for the next `times` calls on it, or
        every call when None."""
        if kind not in PEGASUS_FAULTS:
            raise ValueError(f"unknown Pegasus fault {kind!r}: use one of {', '.join(PEGASUS_FAULTS)}")
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for every call), got {times}")
        with self._lock:
            self._pegasus_faults[media_uri] = (kind, times)

    @property
    def pegasus_faults(self) -> Mapping[str, tuple[PegasusFault, int | None]]:
        """Media URI -> (fault, calls left or None for every call) still to be applied."""
        with self._lock:
            return MappingProxyType(dict(self._pegasus_faults))

    def clear_pegasus_faults(self) -> None:
        with self._lock:
            self._pegasus_faults.clear()

    @property
    def status_records(self) -> int:
        """Invocation summaries returned so far by ListAsyncInvokes pages and GetAsyncInvoke answers."""
        with self._lock:
            return self._status_records

    def in_progress(self) -> int:
        with self._lock:
            return sum(1 for inv in self._invocations.values() if inv.status == "InProgress")

    def wait_until_idle(self, timeout: float = 30.0) -> None:
        """Block until no invocation is InProgress; TimeoutError past `timeout` seconds."""
        with self._idle:
            if not self._idle.wait_for(lambda: self.in_progress() == 0, timeout=timeout):
                raise TimeoutError(f"{self.in_progress()} invocation(s) still InProgress after {timeout:g}s")

    # --- HTTP plumbing --------------------------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except ServiceError as exc:
            response = self._error(exc)
        except Exception as exc:  # never leak a stack trace as HTML: answer like AWS would
            log.exception("bedrock emulator: unhandled error")
            response = self._error(errors.internal(f"{type(exc).__name__}: {exc}"))
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        adapter = self._url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
        except NotFound as exc:
            raise ServiceError("UnknownOperationException", 404, f"No operation for {request.path}") from exc
        except MethodNotAllowed as exc:
            raise ServiceError(
                "UnknownOperationException", 405, f"{request.method} not allowed here"
            ) from exc
        model_key = self._model_of(str(endpoint), request, args)
        with self._lock:
            self._calls[str(endpoint)] = self._calls.get(str(endpoint), 0) + 1
            if model_key is not None:
                self._model_calls[model_key] = self._model_calls.get(model_key, 0) + 1
        authorization = request.headers.get("Authorization")
        if not authorization:
            raise errors.access_denied("Missing Authentication Token: requests must be signed (SigV4).")
        verify(
            authorization=authorization,
            method=request.method,
            raw_uri=self._raw_uri(request),
            headers=request.headers,
            body=request.get_data(cache=True),
            secrets=self.credentials,
            region=self.region,
            now=datetime.now(UTC),
        )
        with self._lock:
            throttled = self.throttle_rate > 0 and self._rng.random() < self.throttle_rate
        if throttled:
            raise errors.throttling()
        injected = self.operation_errors.get(str(endpoint))
        if injected is not None:
            raise injected
        return self._handlers[str(endpoint)](request, **args)

    def _model_of(self, endpoint: str, request: Request, args: Mapping[str, Any]) -> tuple[str, str] | None:
        """(operation, base model id) of a model call, read leniently: a malformed request counts too."""
        if endpoint == "InvokeModel":
            return endpoint, base_model_id(str(args.get("model_id", "")))
        if endpoint == "StartAsyncInvoke":
            try:
                model = json.loads(request.get_data(cache=True) or b"{}").get("modelId")
            except (ValueError, AttributeError):
                model = None
            return endpoint, base_model_id(str(model)) if isinstance(model, str) else "?"
        return None

    @staticmethod
    def _raw_uri(request: Request) -> str:
        """The path and query string as the client sent them (still percent-encoded): what it signed."""
        raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
        if raw:
            return str(raw)
        query = request.environ.get("QUERY_STRING", "")
        return urllib.parse.quote(request.path) + (f"?{query}" if query else "")

    @staticmethod
    def _json(payload: Any, status: int = 200) -> Response:
        return Response(json.dumps(payload), status=status, content_type="application/json")

    def _error(self, exc: ServiceError) -> Response:
        response = self._json({"message": exc.message}, exc.status)
        response.headers["x-amzn-ErrorType"] = f"{exc.code}:"
        return response

    @staticmethod
    def _body_json(request: Request) -> Any:
        raw = request.get_data(cache=True)
        try:
            return json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise errors.malformed(f"#: request body is not valid JSON ({exc.__class__.__name__})") from exc

    # --- media access ---------------------------------------------------------------------------------------

    def _read_media(self, ref: MediaRef, check_size: Callable[[int], None] | None = None) -> bytes:
        """Bytes of an inline or S3 media source; a missing object is a ValidationException naming the URI.
        `check_size(size)` may refuse the media by its size before an S3 object's body is read."""
        if ref.data is not None:
            if check_size is not None:
                check_size(len(ref.data))
            return ref.data
        bucket, key = ref.bucket_key
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "Unknown")
            raise errors.validation(
                f"The provided S3 object {ref.uri} does not exist or is not accessible ({code})."
            ) from exc
        with contextlib.closing(response["Body"]) as body:
            if check_size is not None:
                check_size(int(response["ContentLength"]))
            return bytes(body.read())

    def _bucket_region(self, bucket: str) -> str | None:
        """The region S3 says `bucket` is in, or None when S3 cannot say (the read that follows then
        reports the missing or inaccessible bucket in its own words)."""
        try:
            constraint = self._s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or ""
        except (ClientError, BotoCoreError):
            return None
        return LEGACY_LOCATIONS.get(constraint, constraint)

    def _check_region(self, bucket: str, role: str) -> None:
        """Bedrock's same-region rule: an input or output bucket outside the model's region is refused."""
        region = self._bucket_region(bucket)
        if region is not None and region != self.region:
            raise errors.validation(
                f"The {role} S3 bucket {bucket} is in {region}, but the model runs in {self.region}: "
                "S3 input and output buckets must be in the same region as the model."
            )

    def _check_owner(self, bucket: str, owner: str | None, role: str) -> None:
        """`bucketOwner` is the account the caller expects to own the bucket (S3's expected-bucket-owner
        check): every bucket here belongs to this emulator's account, so naming another one is refused."""
        if owner is not None and owner != self.account_id:
            raise errors.access_denied(
                f"Access denied to the {role} S3 bucket {bucket}: it is not owned by account {owner}, "
                "the bucketOwner of the request."
            )

    def _check_media_access(self, ref: MediaRef | None) -> None:
        """An S3 media source's bucket: owned by the account the request names, in the model's region."""
        if ref is not None and ref.uri is not None:
            bucket = ref.bucket_key[0]
            self._check_owner(bucket, ref.owner, "input")
            self._check_region(bucket, "input")

    def _admit_media(
        self, model: ResolvedModel, req: EmbedRequest, *, refuse_undecodable: bool
    ) -> bytes | None:
        """Hold the media to the model's documented limits, then read it; media that cannot be decoded is
        refused here (a ValidationException naming it) unless `refuse_undecodable` is False: the job is
        then accepted and fails when it runs."""
        ref = req.media
        if ref is None:
            return None
        limits = self.marengo_limits[model.version]
        kind: MediaKind = "image" if req.input_type in ("image", "text_image") else req.input_type  # type: ignore[assignment]
        where = ref.uri or "mediaSource.base64String"
        marengo = f"Marengo {model.version}"

        def check_size(size: int) -> None:
            if kind == "image" and size > limits.image_bytes:
                raise errors.validation(
                    f"The image at {where} is {size} bytes; {marengo} takes images of at most "
                    f"{limits.image_bytes} bytes ({_in_units(limits.image_bytes)})."
                )
            if kind != "image" and ref.data is not None and size > limits.base64_bytes:
                raise errors.validation(
                    f"The {kind} in {where} is {size} bytes decoded; {marengo} takes base64 media of at "
                    f"most {limits.base64_bytes} bytes ({_in_units(limits.base64_bytes)}): send it by "
                    "s3Location."
                )
            if kind != "image" and ref.data is None and size > limits.s3_media_bytes:
                raise errors.validation(
                    f"The {kind} at {where} is {size} bytes; {marengo} reads {kind} files of at most "
                    f"{limits.s3_media_bytes} bytes ({_in_units(limits.s3_media_bytes)}) from S3."
                )

        data = self._read_media(ref, check_size)
        seconds: float | None = None
        if refuse_undecodable:
            try:
                seconds = probe_media(data, kind).declared_sec
            except MediaError as exc:
                raise errors.validation(f"Unable to read media at {where}: {exc}") from exc
        elif kind != "image":
            with contextlib.suppress(MediaError):  # unreadable: the job is accepted and fails when it runs
                seconds = container_duration(data)
        if kind != "image" and seconds is not None and seconds > limits.media_sec:
            raise errors.validation(
                f"The {kind} at {where} is {seconds:.0f} s long; {marengo} takes {kind} of at most "
                f"{limits.media_sec:.0f} s ({limits.media_sec / 3600:g} h): send a shorter {kind}."
            )
        return data

    # --- operations -----------------------------------------------------------------------------------------

    def _invoke_model(self, request: Request, model_id: str) -> Response:
        check_input("InvokeModel", {"modelId": model_id})
        size = len(request.get_data(cache=True))
        if size > self.max_invoke_body_bytes:
            raise errors.validation(body_too_large(size, self.max_invoke_body_bytes))
        if pegasus_base(model_id) is not None:
            return self._invoke_pegasus(request, model_id)
        model = resolve_model(model_id, sync=True, region=self.region)
        req = parse_body(model.version, self._body_json(request), sync=True)
        self._check_media_access(req.media)
        data = self._admit_media(model, req, refuse_undecodable=True)
        try:
            result = embed(req, data)
        except MediaError as exc:
            raise errors.validation(f"Unable to read media: {exc}") from exc
        return self._json({"data": result})

    # --- Pegasus 1.2 ----------------------------------------------------------------------------------------

    def _invoke_pegasus(self, request: Request, model_id: str) -> Response:
        """Validate, apply injected faults, read and check the media, describe it; record how it ended."""
        resolve_pegasus(model_id, region=self.region)
        req = parse_pegasus_body(
            self._body_json(request),
            max_base64_bytes=self.pegasus_max_base64_bytes,
            require_bucket_owner=self.pegasus_require_bucket_owner,
        )
        try:
            message, finish = self._pegasus_answer(req)
        except ServiceError as exc:
            self._record_pegasus(model_id, req, exc.code)
            raise
        self._record_pegasus(model_id, req, finish)
        return self._json({"message": message, "finishReason": finish})

    def _record_pegasus(self, model_id: str, req: PegasusRequest, outcome: str) -> None:
        call = PegasusCall(model_id, req.media.uri, req.prompt, req.json_schema, outcome)
        with self._lock:
            self._pegasus_calls.append(call)

    def _take_pegasus_fault(self, uri: str | None) -> PegasusFault | None:
        """The per-object fault for this call, if any (a fault with a count is used up by it)."""
        with self._lock:
            key = uri if uri is not None and uri in self._pegasus_faults else ANY_MEDIA
            found = self._pegasus_faults.get(key)
            if found is None:
                return None
            kind, times = found
            if times is not None:
                if times <= 1:
                    del self._pegasus_faults[key]
                else:
                    self._pegasus_faults[key] = (kind, times - 1)
            return kind

    def _pegasus_answer(self, req: PegasusRequest) -> tuple[str, str]:
        fault = self._take_pegasus_fault(req.media.uri)
        if fault == "throttling":
            raise errors.throttling()
        if fault == "timeout":
            raise errors.model_timeout("The model took too long to process the request (injected).")
        if fault == "internal":
            raise errors.internal()
        with self._lock:
            failed = self.pegasus_failure_rate > 0 and self._rng.random() < self.pegasus_failure_rate
            cut = self.pegasus_length_rate > 0 and self._rng.random() < self.pegasus_length_rate
        if fault == "model_error" or failed:
            raise errors.model_error(INJECTED_MODEL_ERROR_MESSAGE)
        data = self._read_pegasus_media(req)
        where = req.media.uri or "mediaSource.base64String"
        try:
            probed = probe_media(data, "video")
            if probed.still_image:
                raise errors.validation(
                    f"The media at {where} is a still image ({probed.format_name}), not a video: Pegasus 1.2 "
                    "analyzes video files only."
                )
            declared = probed.declared_sec
            if declared is not None and declared > self.pegasus_max_video_sec:
                raise self._too_long(where, declared)
            media = decode_cached(data)
        except MediaError as exc:
            raise errors.validation(f"Unable to read the video at {where}: {exc}") from exc
        if media.duration > self.pegasus_max_video_sec:
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
            f"{self.pegasus_max_video_sec:.0f} s (1 hour): send a shorter video."
        )

    def _read_pegasus_media(self, req: PegasusRequest) -> bytes:
        """Inline bytes, or the S3 object after the same-region rule and the 2 GB limit (its Content-Length,
        checked before the body is read)."""
        ref = req.media
        if ref.uri is None:
            return self._read_media(ref)
        self._check_media_access(ref)

        def check_size(size: int) -> None:
            if size > self.pegasus_max_s3_bytes:
                raise errors.validation(
                    f"The S3 object {ref.uri} is {size} bytes; Pegasus 1.2 reads at most "
                    f"{self.pegasus_max_s3_bytes} bytes (2 GB) from S3: send a smaller video."
                )

        return self._read_media(ref, check_size)

    def _start_async_invoke(self, request: Request) -> Response:
        body = self._body_json(request)
        if not isinstance(body, dict):
            raise errors.validation("Request body must be a JSON object.")
        check_input("StartAsyncInvoke", body)
        model = resolve_model(body["modelId"], sync=False, region=self.region)
        token = str(body.get("clientRequestToken") or uuid.uuid4())
        fingerprint = json.dumps(
            {k: body.get(k) for k in ("modelId", "modelInput", "outputDataConfig", "tags")}, sort_keys=True
        )
        with self._lock:
            replay = self._replay(token, fingerprint)
        if replay is not None:
            return self._json({"invocationArn": replay})
        req = parse_body(model.version, body["modelInput"], sync=False)
        output = body["outputDataConfig"].get("s3OutputDataConfig")
        if not output:
            raise errors.validation("outputDataConfig.s3OutputDataConfig is required.")
        bucket, _ = split_s3_uri(output["s3Uri"].rstrip("/") + "/x")  # botocore checked the pattern
        self._check_owner(bucket, output.get("bucketOwner"), "output")
        try:
            self._s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            raise errors.validation(
                f"The output S3 bucket {bucket} does not exist or is not accessible."
            ) from exc
        self._check_region(bucket, "output")
        self._check_media_access(req.media)
        self._admit_media(model, req, refuse_undecodable=self.undecodable_media == "refuse")
        with self._lock:
            replay = self._replay(token, fingerprint)  # a concurrent duplicate may have won the race
            if replay is not None:
                return self._json({"invocationArn": replay})
            in_flight = sum(
                1
                for inv in self._invocations.values()
                if inv.status == "InProgress" and inv.model.base_id == model.base_id
            )
            if in_flight >= self.max_concurrent_invocations:
                raise errors.quota_exceeded(
                    f"Your account has reached the limit of {self.max_concurrent_invocations} concurrent "
                    f"asynchronous invocations for {model.base_id}. Retry after some invocations complete."
                )
            now = datetime.now(UTC)
            arn = f"arn:aws:bedrock:{self.region}:{self.account_id}:async-invoke/{uuid.uuid4().hex[:12]}"
            inv = Invocation(
                arn=arn,
                model=model,
                client_request_token=token,
                fingerprint=fingerprint,
                request=req,
                output_data_config=body["outputDataConfig"],
                submit_time=now,
                last_modified_time=now,
                inject_failure=self.failure_rate > 0 and self._rng.random() < self.failure_rate,
            )
            self._invocations[arn] = inv
            self._by_token[token] = inv
            self._created += 1
            if self._store is not None:  # durable before the ARN is handed out
                self._store.save(arn, token, inv.document(), created=self._created)
            self._schedule(inv)
        return self._json({"invocationArn": arn})

    def _replay(self, token: str, fingerprint: str) -> str | None:
        existing = self._by_token.get(token)
        if existing is None:
            return None
        if existing.fingerprint != fingerprint:
            raise errors.conflict(
                f"The clientRequestToken {token} was already used with different request parameters."
            )
        return existing.arn

    def _get_async_invoke(self, request: Request, invocation_arn: str) -> Response:
        check_input("GetAsyncInvoke", {"invocationArn": invocation_arn})
        with self._lock:
            inv = self._invocations.get(invocation_arn)
            if inv is None:
                raise errors.validation(f"The invocation {invocation_arn} was not found.")
            self._status_records += 1
            return self._json(inv.summary(self.region))

    def _list_async_invokes(self, request: Request) -> Response:
        args = request.args
        strings = {k: args[k] for k in ("statusEquals", "nextToken", "sortBy", "sortOrder") if k in args}
        params: dict[str, Any] = dict(strings)
        if "maxResults" in args:
            try:
                params["maxResults"] = int(args["maxResults"])
            except ValueError as exc:
                raise errors.validation(
                    "Value at 'maxResults' failed to satisfy constraint: Member must be an integer"
                ) from exc
        check_input("ListAsyncInvokes", params)
        after = parse_time(args["submitTimeAfter"], "submitTimeAfter") if "submitTimeAfter" in args else None
        before = (
            parse_time(args["submitTimeBefore"], "submitTimeBefore") if "submitTimeBefore" in args else None
        )
        descending = params.get("sortOrder", "Descending") == "Descending"
        limit = params.get("maxResults", 1000)
        with self._lock:
            items = [
                inv
                for inv in self._invocations.values()
                if ("statusEquals" not in params or inv.status == params["statusEquals"])
                and (after is None or inv.submit_time > after)
                and (before is None or inv.submit_time < before)
            ]
            items.sort(key=lambda inv: (inv.submit_time, inv.arn), reverse=descending)
            if "nextToken" in params:
                cursor = self._decode_token(params["nextToken"])
                items = [
                    inv
                    for inv in items
                    if (
                        (iso(inv.submit_time), inv.arn) < cursor
                        if descending
                        else (iso(inv.submit_time), inv.arn) > cursor
                    )
                ]
            page = items[:limit]
            self._status_records += len(page)
            payload: dict[str, Any] = {"asyncInvokeSummaries": [inv.summary(self.region) for inv in page]}
            if len(items) > limit:
                last = page[-1]
                payload["nextToken"] = self._encode_token((iso(last.submit_time), last.arn))
        return self._json(payload)

    @staticmethod
    def _encode_token(cursor: tuple[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(list(cursor)).encode()).decode()

    @staticmethod
    def _decode_token(token: str) -> tuple[str, str]:
        try:
            submit, arn = json.loads(base64.urlsafe_b64decode(token.encode()))
            return str(submit), str(arn)
        except (ValueError, TypeError, binascii.Error) as exc:
            raise errors.validation("The provided nextToken is invalid.") from exc

    # --- async processing -----------------------------------------------------------------------------------

    def _schedule(self, inv: Invocation) -> None:
        """Hold the invocation InProgress for latency_sec (a timer, not a pool thread), then process it."""
        latency = float(self.latency_sec)
        if latency <= 0:
            self._submit(inv.arn)
            return
        timer = threading.Timer(latency, self._submit, args=(inv.arn,))
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _submit(self, arn: str) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t.is_alive() and t is not threading.current_thread()}
            pool = self._pool
        if pool is None or self._stopping.is_set():
            return
        with contextlib.suppress(RuntimeError):  # pool shut down between the check and submit
            pool.submit(self._process, arn)

    def _process(self, arn: str) -> None:
        with self._lock:
            inv = self._invocations.get(arn)
            if inv is None:  # forgotten before it ran
                return
            req, inject = inv.request, inv.inject_failure
        if self._stopping.is_set():
            return
        if inject:
            self._finish(arn, "Failed", INJECTED_FAILURE_MESSAGE, None)
            return
        where = (req.media.uri or "mediaSource.base64String") if req.media else "inputText"
        try:
            data = self._read_media(req.media) if req.media else None
            result = embed(req, data)
        except ServiceError as exc:
            self._finish(arn, "Failed", exc.message, None)
        except MediaError as exc:
            self._finish(arn, "Failed", f"Unable to process media at {where}: {exc}", None)
        except Exception as exc:
            log.exception("bedrock emulator: processing %s failed", arn)
            self._finish(arn, "Failed", f"Internal processing error: {type(exc).__name__}: {exc}", None)
        else:
            self._finish(arn, "Completed", None, result)

    def _finish(
        self, arn: str, status: str, failure: str | None, result: list[dict[str, Any]] | None
    ) -> None:
        """Write manifest.json (+ output.json on success) to S3 first, then publish the final status."""
        with self._lock:
            found = self._invocations.get(arn)
            if found is None:  # forgotten while it ran
                return
            inv = found
        try:
            keys = self._write_results(inv, status, failure, result)
        except ClientError as exc:
            status, failure, keys = "Failed", f"Unable to write output to {inv.output_uri}: {exc}", ()
        now = datetime.now(UTC)
        with self._idle:
            if self._invocations.get(arn) is not inv:
                return  # forgotten while it ran
            inv.status, inv.failure_message = status, failure
            inv.last_modified_time = inv.end_time = now
            inv.output_keys = keys
            if self._store is not None:
                self._store.save(arn, inv.client_request_token, inv.document())
            self._idle.notify_all()

    def _write_results(
        self, inv: Invocation, status: str, failure: str | None, result: list[dict[str, Any]] | None
    ) -> tuple[str, ...]:
        """manifest.json (+ output.json) under `<s3Uri>/<invocation id>/`; returns the keys written."""
        bucket, placeholder = split_s3_uri(inv.output_uri + "/x")  # the prefix kept as sent
        base = f"{placeholder[:-1]}{inv.invocation_id}"
        manifest: dict[str, Any] = {
            "invocationArn": inv.arn,
            "requestId": str(uuid.uuid4()),
            "modelId": inv.model.requested,
            "status": status,
            "outputFiles": ["output.json"] if result is not None else [],
        }
        if failure is not None:
            manifest["failureMessage"] = failure
        keys: tuple[str, ...] = ()
        if result is not None:
            body = json.dumps({"data": result})
            self._s3.put_object(
                Bucket=bucket, Key=f"{base}/output.json", Body=body, ContentType="application/json"
            )
            keys += (f"{base}/output.json",)
        self._s3.put_object(
            Bucket=bucket,
            Key=f"{base}/manifest.json",
            Body=json.dumps(manifest),
            ContentType="application/json",
        )
        return (*keys, f"{base}/manifest.json")

    def _restore_outputs(self) -> None:
        """Rewrite the results of kept completed jobs whose output the object store no longer has.

        Bedrock never loses a finished job's output; the local S3 starts empty on every restart, so the
        emulator recomputes it (the embeddings are deterministic). A job whose media is gone keeps no output.
        """
        with self._lock:
            completed = [inv for inv in self._invocations.values() if inv.status == "Completed"]
        for inv in completed:
            keys = [k for k in inv.output_keys if k.endswith("/output.json")]
            if not keys:
                continue
            bucket, _ = split_s3_uri(inv.output_uri + "/x")
            try:
                self._s3.head_object(Bucket=bucket, Key=keys[0])
                continue
            except ClientError:
                pass
            try:
                data = self._read_media(inv.request.media) if inv.request.media else None
                self._write_results(inv, "Completed", None, embed(inv.request, data))
            except (ServiceError, MediaError, ClientError) as exc:
                log.warning("bedrock emulator: cannot restore the output of %s: %s", inv.arn, exc)


def _in_units(size: int) -> str:
    """A documented limit as the model pages write it: 5 MB, 36 MB, 2 GB."""
    return f"{size / GB:g} GB" if size >= GB else f"{size / MB:g} MB"
