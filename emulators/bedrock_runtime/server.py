"""A wire-compatible Bedrock runtime (rest-json, as botocore models it) for Marengo and Pegasus 1.2.

It implements InvokeModel (Marengo and Pegasus), StartAsyncInvoke, GetAsyncInvoke and ListAsyncInvokes with
Bedrock's status codes and error wire format. Like AWS it verifies every request's SigV4 signature against
its account's access keys and serves one region (the one a request must be signed for); it refuses S3
buckets outside that region (GetBucketLocation, as Bedrock's same-region rule) and a `bucketOwner` of
another account, holds media to the models' documented size and length limits, runs accepted invocations on
a worker pool against the S3 emulator, and exposes fault injection (latency, in-flight quota, throttling,
failures) plus test hooks that never require sleeping.

With `iam_identities` (access key -> Identity) it also checks each caller's requests against an IAM
policy, as AWS would (authorization.py); without, every caller with a key of the account may do anything.

This module is the composition: the settings and faults (plain attributes), the state, and the request
path every operation shares (route, count, authenticate, throttle, injected errors). The operations are
in invoke_model.py, pegasus.py and async_invoke.py (async_jobs.py runs the accepted invocations).
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from werkzeug.wrappers import Request, Response

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.async_invoke import UNDECODABLE_MEDIA, AsyncInvokeApi, UndecodableMedia
from emulators.bedrock_runtime.async_jobs import INJECTED_FAILURE_MESSAGE, AsyncJobs
from emulators.bedrock_runtime.authorization import CALLER_KEY, IamCheck, Identity, not_authorized
from emulators.bedrock_runtime.errors import ServiceError
from emulators.bedrock_runtime.invocations import Invocation, InvocationBook
from emulators.bedrock_runtime.invoke_model import InvokeModelApi
from emulators.bedrock_runtime.limits import MARENGO_LIMITS, MAX_INVOKE_BODY_BYTES, MarengoLimits
from emulators.bedrock_runtime.media_access import MediaAccess, s3_client
from emulators.bedrock_runtime.models import ACCOUNT_ID, base_model_id
from emulators.bedrock_runtime.pegasus import (
    ANY_MEDIA,
    INJECTED_MODEL_ERROR_MESSAGE,
    PegasusApi,
    PegasusCall,
    PegasusFault,
)
from emulators.bedrock_runtime.pegasus_body import MAX_BASE64_BYTES, MAX_S3_BYTES, MAX_VIDEO_SEC
from emulators.bedrock_runtime.signing import verify
from emulators.bedrock_runtime.wire import error_response
from emulators.http_base import HttpEmulator, Router, raw_uri

__all__ = [
    "ANY_MEDIA",
    "INJECTED_FAILURE_MESSAGE",
    "INJECTED_MODEL_ERROR_MESSAGE",
    "LOCAL_ACCESS_KEY_ID",
    "LOCAL_SECRET_ACCESS_KEY",
    "BedrockRuntimeEmulator",
    "Invocation",
    "PegasusCall",
    "PegasusFault",
    "UndecodableMedia",
]

# Every local client signs with this key pair unless told otherwise.
LOCAL_ACCESS_KEY_ID = "test"
LOCAL_SECRET_ACCESS_KEY = "test"


class BedrockRuntimeEmulator(HttpEmulator[ServiceError]):
    """Bedrock runtime on 127.0.0.1; faults are constructor kwargs and plain attributes tests may flip.

    With a `workdir`, invocations are kept on disk: an emulator started over the same folder knows every
    earlier job and finishes those still in progress. Without one it starts empty, like a new account.
    The account (`account_id`, one key pair) is what requests must be signed with and what `bucketOwner`
    must name; `undecodable_media` picks how StartAsyncInvoke treats media it cannot decode.
    `s3_credentials` is the key pair the emulator reads media and writes results to S3 with (an S3 that
    checks IAM knows only its own users' keys); `iam_identities` turns the IAM mode on for those callers.
    """

    refusal_type = ServiceError

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
        s3_credentials: tuple[str, str] = (LOCAL_ACCESS_KEY_ID, LOCAL_SECRET_ACCESS_KEY),
        iam_identities: Mapping[str, Identity] | None = None,
    ) -> None:
        if undecodable_media not in UNDECODABLE_MEDIA:
            raise ValueError(
                f"undecodable_media={undecodable_media!r}: use one of {', '.join(UNDECODABLE_MEDIA)}"
            )
        super().__init__(name="bedrock", host=host, port=port, workers=workers)
        self.s3_endpoint = s3_endpoint
        self.region = region
        self.account_id = account_id
        # Access key id -> secret: the keys of the account; a test may add one.
        self.credentials: dict[str, str] = {access_key_id: secret_access_key}
        # Access key id -> the IAM identity its requests are checked against; keys not here are unchecked.
        self.iam_identities: dict[str, Identity] = dict(iam_identities or {})
        self._iam_checks: list[IamCheck] = []
        self.undecodable_media: UndecodableMedia = undecodable_media
        # Marengo's documented limits per version, and InvokeModel's body limit; plain attributes so a test
        # can lower one instead of sending gigabytes.
        self.marengo_limits: dict[str, MarengoLimits] = dict(MARENGO_LIMITS)
        self.max_invoke_body_bytes = MAX_INVOKE_BODY_BYTES
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
        # Pegasus's documented limits; plain attributes so a test can lower one instead of sending gigabytes.
        self.pegasus_max_base64_bytes = MAX_BASE64_BYTES
        self.pegasus_max_s3_bytes = MAX_S3_BYTES
        self.pegasus_max_video_sec = MAX_VIDEO_SEC
        # The Pegasus guide always sends s3Location.bucketOwner; False accepts it missing (as for Marengo).
        self.pegasus_require_bucket_owner = True
        self._lock = threading.RLock()
        # Traffic seen, for benchmarks: requests per operation (errors included) and per (operation, model).
        self._calls: dict[str, int] = {}
        self._model_calls: dict[tuple[str, str], int] = {}
        self._restored = False
        media = MediaAccess(
            s3_client(s3_endpoint, region, s3_credentials), region=region, account_id=account_id
        )
        self._book = InvocationBook(self._lock, region, workdir)
        self._jobs = AsyncJobs(self._book, media, self._work, lambda: self.latency_sec)
        self._pegasus = PegasusApi(self, media, rng=self._rng, lock=self._lock)
        self._async = AsyncInvokeApi(self, self._book, media, self._jobs, rng=self._rng)
        for uri, kind in (pegasus_faults or {}).items():
            self.inject_pegasus_fault(uri, kind)
        self._router = Router(
            [*InvokeModelApi(self, media, self._pegasus).routes(), *self._async.routes()],
            unknown_path=lambda r: ServiceError(
                "UnknownOperationException", 404, f"No operation for {r.path}"
            ),
            wrong_method=lambda r: ServiceError(
                "UnknownOperationException", 405, f"{r.method} not allowed here"
            ),
            strict_slashes=False,
            merge_slashes=False,
        )

    # --- test hooks -----------------------------------------------------------------------------------------

    @property
    def created_invocations(self) -> int:
        """New invocations accepted (idempotent replays not counted)."""
        return self._book.created

    @property
    def invocations(self) -> Mapping[str, Invocation]:
        """A read-only snapshot ARN -> Invocation (copies: mutating them changes nothing)."""
        return self._book.snapshot()

    def forget(self, arn: str) -> None:
        """Lose an invocation, as a provider that lost its state would: unknown ARN, unknown token."""
        self._book.forget(arn)

    def replace_output(self, arn: str, body: bytes) -> str:
        """Overwrite a completed invocation's output.json with `body` (corrupt output); returns its key."""
        return self._jobs.replace_output(arn, body)

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
        return self._pegasus.calls

    @property
    def iam_checks(self) -> tuple[IamCheck, ...]:
        """Every action asked of a caller's policy in the IAM mode, in order, with the answer."""
        with self._lock:
            return tuple(self._iam_checks)

    def reset_calls(self) -> None:
        """Forget the traffic counted so far (calls, model_calls, pegasus_calls, status_records,
        iam_checks)."""
        with self._lock:
            self._calls.clear()
            self._iam_checks.clear()
            self._model_calls.clear()
            self._pegasus.reset_calls()
            self._async.reset_status_records()

    def inject_pegasus_fault(self, media_uri: str, kind: PegasusFault, times: int | None = None) -> None:
        """Make Pegasus calls on `media_uri` (ANY_MEDIA: every call) end with `kind`: "length" (message cut
        short), "throttling" (ThrottlingException), "model_error" (ModelErrorException), "timeout"
        (ModelTimeoutException) or "internal" (InternalServerException); for the next `times` calls on it, or
        every call when None."""
        self._pegasus.inject_fault(media_uri, kind, times)

    @property
    def pegasus_faults(self) -> Mapping[str, tuple[PegasusFault, int | None]]:
        """Media URI -> (fault, calls left or None for every call) still to be applied."""
        return self._pegasus.faults

    def clear_pegasus_faults(self) -> None:
        self._pegasus.clear_faults()

    @property
    def status_records(self) -> int:
        """Invocation summaries returned so far by ListAsyncInvokes pages and GetAsyncInvoke answers."""
        return self._async.status_records

    def in_progress(self) -> int:
        return self._book.in_progress()

    def wait_until_idle(self, timeout: float = 30.0) -> None:
        """Block until no invocation is InProgress; TimeoutError past `timeout` seconds."""
        self._book.wait_until_idle(timeout)

    # --- serving ------------------------------------------------------------------------------------------

    def _before_serving(self) -> None:
        if self._book.kept and not self._restored:  # before serving: no reader finds a gap
            self._jobs.restore_outputs()
            self._restored = True

    def _after_serving(self) -> None:
        self._jobs.resume()

    def _answer(self, request: Request) -> Response:
        route, args = self._router.match(request)
        operation = route.operation
        model_key = self._model_of(operation, request, args)
        with self._lock:
            self._calls[operation] = self._calls.get(operation, 0) + 1
            if model_key is not None:
                self._model_calls[model_key] = self._model_calls.get(model_key, 0) + 1
        authorization = request.headers.get("Authorization")
        if not authorization:
            raise errors.access_denied("Missing Authentication Token: requests must be signed (SigV4).")
        request.environ[CALLER_KEY] = verify(
            authorization=authorization,
            method=request.method,
            raw_uri=raw_uri(request),
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
        injected = self.operation_errors.get(operation)
        if injected is not None:
            raise injected
        return route.handler(request, **args)

    def authorize(self, request: Request, checks: Sequence[tuple[str, str]]) -> None:
        """In the IAM mode, refuse the request unless its caller's policy allows every (action, resource)
        of `checks`, asked in order; a caller without an identity is not checked."""
        key = str(request.environ.get(CALLER_KEY, ""))
        identity = self.iam_identities.get(key)
        if identity is None:
            return
        for action, resource in checks:
            decision = identity.policy.evaluate(action, resource)
            with self._lock:
                self._iam_checks.append(IamCheck(key, action, resource, decision.allowed))
            if not decision.allowed:
                raise not_authorized(identity.arn, action, resource, decision.explicit_deny)

    @staticmethod
    def _model_of(operation: str, request: Request, args: Mapping[str, Any]) -> tuple[str, str] | None:
        """(operation, base model id) of a model call, read leniently: a malformed request counts too."""
        if operation == "InvokeModel":
            return operation, base_model_id(str(args.get("model_id", "")))
        if operation == "StartAsyncInvoke":
            try:
                model = json.loads(request.get_data(cache=True) or b"{}").get("modelId")
            except (ValueError, AttributeError):
                model = None
            return operation, base_model_id(str(model)) if isinstance(model, str) else "?"
        return None

    def _refusal(self, refusal: ServiceError) -> Response:
        return error_response(refusal)

    def _internal_error(self, exc: Exception) -> ServiceError:
        return errors.internal(f"{type(exc).__name__}: {exc}")

    def _stamp(self, response: Response) -> None:
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
