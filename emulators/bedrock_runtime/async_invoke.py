"""The async invoke operations: StartAsyncInvoke (idempotent by client token, held to the in-flight quota),
GetAsyncInvoke and ListAsyncInvokes (filters, sort, opaque page tokens)."""

from __future__ import annotations

import base64
import binascii
import json
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

from werkzeug.wrappers import Request, Response

from emulators.bedrock_runtime import errors
from emulators.bedrock_runtime.async_jobs import AsyncJobs
from emulators.bedrock_runtime.authorization import async_model_resources, s3_object_arn
from emulators.bedrock_runtime.invocations import Invocation, InvocationBook, iso
from emulators.bedrock_runtime.limits import MarengoLimits
from emulators.bedrock_runtime.marengo_body import parse_body, split_s3_uri
from emulators.bedrock_runtime.marengo_media import admit_media
from emulators.bedrock_runtime.media_access import MediaAccess
from emulators.bedrock_runtime.models import resolve_model
from emulators.bedrock_runtime.shapes import check_input
from emulators.bedrock_runtime.wire import body_json
from emulators.http_base import Route, json_response

# What StartAsyncInvoke does with media it cannot decode: refuse it (ValidationException), or accept the job
# and let it end Failed with a failureMessage. Nothing documents which Bedrock does; a client must cope with
# both.
UndecodableMedia = Literal["refuse", "fail"]
UNDECODABLE_MEDIA: tuple[str, ...] = get_args(UndecodableMedia)


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


def encode_token(cursor: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(cursor)).encode()).decode()


def decode_token(token: str) -> tuple[str, str]:
    try:
        submit, arn = json.loads(base64.urlsafe_b64decode(token.encode()))
        return str(submit), str(arn)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise errors.validation("The provided nextToken is invalid.") from exc


class AsyncSettings(Protocol):
    """What the async operations read from the emulator at every call (plain attributes a test may change)."""

    region: str
    account_id: str
    undecodable_media: UndecodableMedia
    max_concurrent_invocations: int
    failure_rate: float
    marengo_limits: dict[str, MarengoLimits]

    def authorize(self, request: Request, checks: Sequence[tuple[str, str]]) -> None: ...


class AsyncInvokeApi:
    """The three operations over the book of invocations; `rng` is the emulator's (shared, seeded)."""

    def __init__(
        self,
        settings: AsyncSettings,
        book: InvocationBook,
        media: MediaAccess,
        jobs: AsyncJobs,
        *,
        rng: random.Random,
    ) -> None:
        self._settings = settings
        self._book = book
        self._media = media
        self._jobs = jobs
        self._rng = rng
        self._status_records = 0

    def routes(self) -> list[Route]:
        return [
            Route("/async-invoke", "POST", "StartAsyncInvoke", self.start),
            Route("/async-invoke", "GET", "ListAsyncInvokes", self.list),
            Route("/async-invoke/<path:invocation_arn>", "GET", "GetAsyncInvoke", self.get),
        ]

    @property
    def status_records(self) -> int:
        """Invocation summaries returned so far by ListAsyncInvokes pages and GetAsyncInvoke answers."""
        with self._book.lock:
            return self._status_records

    def reset_status_records(self) -> None:
        with self._book.lock:
            self._status_records = 0

    def start(self, request: Request) -> Response:
        settings, book = self._settings, self._book
        body = body_json(request)
        if not isinstance(body, dict):
            raise errors.validation("Request body must be a JSON object.")
        check_input("StartAsyncInvoke", body)
        # The invocation's id is chosen first: its ARN is one of the resources the caller must be allowed.
        account = f"{settings.region}:{settings.account_id}"
        arn = f"arn:aws:bedrock:{account}:async-invoke/{uuid.uuid4().hex[:12]}"
        model_arn = async_model_resources(body["modelId"], settings.region)
        settings.authorize(
            request,
            [
                (action, resource)
                for resource in (model_arn, arn)
                for action in ("bedrock:StartAsyncInvoke", "bedrock:InvokeModel")
            ],
        )
        model = resolve_model(body["modelId"], sync=False, region=settings.region)
        req = parse_body(model.version, body["modelInput"], sync=False)
        output = body["outputDataConfig"].get("s3OutputDataConfig")
        if not output:
            raise errors.validation("outputDataConfig.s3OutputDataConfig is required.")
        bucket, placeholder = split_s3_uri(output["s3Uri"].rstrip("/") + "/x")  # botocore checked it
        # Bedrock reads the media and writes the results as the caller (async_jobs.py writes these keys);
        # asked of every request, a replay of an earlier one included.
        reads = [req.media.bucket_key] if req.media is not None and req.media.uri is not None else []
        results = f"{placeholder[:-1]}{arn[-12:]}"
        writes = [(bucket, f"{results}/{name}") for name in ("output.json", "manifest.json")]
        settings.authorize(
            request,
            [("s3:GetObject", s3_object_arn(*where)) for where in reads]
            + [("s3:PutObject", s3_object_arn(*where)) for where in writes],
        )
        token = str(body.get("clientRequestToken") or uuid.uuid4())
        fingerprint = json.dumps(
            {k: body.get(k) for k in ("modelId", "modelInput", "outputDataConfig", "tags")}, sort_keys=True
        )
        replay = book.replay(token, fingerprint)
        if replay is not None:
            return json_response({"invocationArn": replay})
        self._media.check_owner(bucket, output.get("bucketOwner"), "output")
        if not self._media.bucket_exists(bucket):
            raise errors.validation(f"The output S3 bucket {bucket} does not exist or is not accessible.")
        self._media.check_region(bucket, "output")
        self._media.check_access(req.media)
        admit_media(
            self._media,
            settings.marengo_limits[model.version],
            model.version,
            req,
            refuse_undecodable=settings.undecodable_media == "refuse",
        )
        with book.lock:
            replay = book.replay(token, fingerprint)  # a concurrent duplicate may have won the race
            if replay is not None:
                return json_response({"invocationArn": replay})
            if book.in_flight(model.base_id) >= settings.max_concurrent_invocations:
                raise errors.quota_exceeded(
                    f"Your account has reached the limit of {settings.max_concurrent_invocations} concurrent "
                    f"asynchronous invocations for {model.base_id}. Retry after some invocations complete."
                )
            now = datetime.now(UTC)
            inv = Invocation(
                arn=arn,
                model=model,
                client_request_token=token,
                fingerprint=fingerprint,
                request=req,
                output_data_config=body["outputDataConfig"],
                submit_time=now,
                last_modified_time=now,
                inject_failure=settings.failure_rate > 0 and self._rng.random() < settings.failure_rate,
            )
            book.add(inv)
            self._jobs.schedule(inv)
        return json_response({"invocationArn": arn})

    def get(self, request: Request, invocation_arn: str) -> Response:
        check_input("GetAsyncInvoke", {"invocationArn": invocation_arn})
        self._settings.authorize(request, [("bedrock:GetAsyncInvoke", invocation_arn)])
        with self._book.lock:
            inv = self._book.get(invocation_arn)
            if inv is None:
                raise errors.validation(f"The invocation {invocation_arn} was not found.")
            self._status_records += 1
            return json_response(inv.summary(self._settings.region))

    def list(self, request: Request) -> Response:
        self._settings.authorize(request, [("bedrock:ListAsyncInvokes", "*")])
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
        with self._book.lock:
            items = [
                inv
                for inv in self._book.all()
                if ("statusEquals" not in params or inv.status == params["statusEquals"])
                and (after is None or inv.submit_time > after)
                and (before is None or inv.submit_time < before)
            ]
            items.sort(key=lambda inv: (inv.submit_time, inv.arn), reverse=descending)
            if "nextToken" in params:
                cursor = decode_token(params["nextToken"])
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
            region = self._settings.region
            payload: dict[str, Any] = {"asyncInvokeSummaries": [inv.summary(region) for inv in page]}
            if len(items) > limit:
                last = page[-1]
                payload["nextToken"] = encode_token((iso(last.submit_time), last.arn))
        return json_response(payload)
