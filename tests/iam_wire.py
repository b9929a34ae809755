"""Every S3 request a run makes, recorded on the wire, and the IAM action each one is authorized as.

A WSGI wrapper in front of the S3 emulator (its `intercept` hook) keeps who signed each request (the access
key of its SigV4 credential, in the header or a presigned URL), what it asked and what S3 answered.
`iam_requests` names what AWS checks for it, per the S3 user guide's "actions for S3 API operations":
ListObjects(V2) and HeadBucket are s3:ListBucket (with the `s3:prefix` a listing sends), GetObject and
HeadObject s3:GetObject, every part of a multipart upload s3:PutObject, a copy s3:GetObject on its source
and s3:PutObject on its target. SQS requests (its JSON protocol: the operation in `X-Amz-Target`, the
queue URL in the body) are sqs:<operation> on the queue's ARN, a batch call its single action (the SQS
developer guide: DeleteMessageBatch needs sqs:DeleteMessage). A request it does not know is None, so a
test fails on it instead of passing it by.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

from emulators.http_base import WsgiApp

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/")
SQS_TARGET = "AmazonSQS."
# The SQS operations the pipeline makes, and the IAM action each is authorized as.
_SQS_ACTIONS = {
    "ReceiveMessage": "sqs:ReceiveMessage",
    "DeleteMessage": "sqs:DeleteMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
}
# Sub-resources that make a bucket or object request another operation than the plain one.
_BUCKET_GET = {"location": "s3:GetBucketLocation", "versions": "s3:ListBucketVersions"}


@dataclass(frozen=True)
class WireCall:
    access_key: str | None
    service: str | None
    method: str
    bucket: str
    key: str | None
    query: dict[str, list[str]]
    copy_source: str | None
    status: int
    region: str | None = None
    sqs_operation: str | None = None  # X-Amz-Target's operation, for SQS
    queue_url: str | None = None  # the body's QueueUrl, for SQS

    def __str__(self) -> str:
        if self.sqs_operation is not None:
            return f"sqs {self.sqs_operation} {self.queue_url} -> {self.status}"
        where = f"{self.bucket}/{self.key}" if self.key is not None else self.bucket
        query = "&".join(sorted(self.query))
        return f"{self.method} {where}{'?' + query if query else ''} -> {self.status}"


IamRequest = tuple[str, str, dict[str, str]]  # (action, resource, context keys)


def iam_requests(call: WireCall) -> list[IamRequest] | None:
    """What IAM is asked for this S3 request; None for one this mapping does not know."""
    bucket_arn = f"arn:aws:s3:::{call.bucket}"
    q = call.query
    if call.service == "sqs":
        action = _SQS_ACTIONS.get(call.sqs_operation or "")
        if action is None or not call.queue_url or not call.region:
            return None
        account, name = call.queue_url.rstrip("/").split("/")[-2:]
        return [(action, f"arn:aws:sqs:{call.region}:{account}:{name}", {})]
    if call.service not in (None, "s3"):
        return None
    if not call.bucket:
        return [("s3:ListAllMyBuckets", "*", {})] if call.method == "GET" else None
    if call.key is None:
        if call.method == "HEAD" and not q:
            return [("s3:ListBucket", bucket_arn, {})]
        if call.method != "GET":
            return None
        named = [action for sub, action in _BUCKET_GET.items() if sub in q]
        if named:
            return [(named[0], bucket_arn, {})] if len(named) == 1 else None
        listing = {"prefix", "delimiter", "max-keys", "list-type", "continuation-token", "start-after"}
        if set(q) - listing - {"encoding-type", "fetch-owner", "marker"}:
            return None
        context = {f"s3:{k}": q[k][0] for k in ("prefix", "delimiter", "max-keys") if k in q}
        return [("s3:ListBucket", bucket_arn, context)]
    object_arn = f"{bucket_arn}/{call.key}"
    if call.method in ("GET", "HEAD"):
        if set(q) - {"partNumber", "response-content-type"}:
            return None
        return [("s3:GetObject", object_arn, {})]
    if call.method == "PUT":
        if set(q) - {"partNumber", "uploadId"}:
            return None
        if call.copy_source is not None:
            source = unquote(call.copy_source.lstrip("/").split("?", 1)[0])
            return [("s3:GetObject", f"arn:aws:s3:::{source}", {}), ("s3:PutObject", object_arn, {})]
        return [("s3:PutObject", object_arn, {})]
    if call.method == "POST" and ("uploads" in q or "uploadId" in q) and len(q) == 1:
        return [("s3:PutObject", object_arn, {})]
    if call.method == "DELETE":
        if set(q) == {"uploadId"}:
            return [("s3:AbortMultipartUpload", object_arn, {})]
        return [("s3:DeleteObject", object_arn, {})] if not q else None
    return None


class WireRecorder:
    """The WSGI wrapper: records every request (path-style addressing) and passes it on unchanged."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._calls: list[WireCall] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> list[WireCall]:
        with self._lock:
            return list(self._calls)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        status: list[int] = []
        queue_url = None
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith(SQS_TARGET):  # read, and handed on the same
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            queue_url = json.loads(body or b"{}").get("QueueUrl")

        def recording_start(code: str, headers: Any, *rest: Any) -> Callable[..., Any]:
            status.append(int(code.split(" ", 1)[0]))
            return start_response(code, headers, *rest)

        answer = self.app(environ, recording_start)
        self._record(environ, status[0] if status else 0, queue_url)
        return answer

    def _record(self, environ: dict[str, Any], status: int, queue_url: str | None) -> None:
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        signed = CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        presigned = (query.get("X-Amz-Credential") or [""])[0].split("/")
        key, region, service = signed.groups() if signed else (presigned[0] or None, None, None)
        if not signed and len(presigned) > 3:
            region, service = presigned[2], presigned[3]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        query = {k: v for k, v in query.items() if not k.startswith("X-Amz-")}
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        bucket, _, object_key = path.lstrip("/").partition("/")
        call = WireCall(
            access_key=key,
            service=service,
            method=environ["REQUEST_METHOD"],
            bucket=bucket,
            key=object_key or None,  # an S3 key is never empty: `/bucket/` is the bucket
            query=query,
            copy_source=environ.get("HTTP_X_AMZ_COPY_SOURCE"),
            status=status,
            region=region,
            sqs_operation=target.removeprefix(SQS_TARGET) if target.startswith(SQS_TARGET) else None,
            queue_url=queue_url,
        )
        with self._lock:
            self._calls.append(call)
