"""Running accepted async invocations: held InProgress for the configured latency, embedded on the worker
pool, their results written to S3 (manifest.json, and output.json on success) before the final status is
published; and a kept job's lost output rewritten when an emulator starts over the same workdir."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from emulators.background import BackgroundWork
from emulators.bedrock_runtime.embedding import embed
from emulators.bedrock_runtime.errors import ServiceError
from emulators.bedrock_runtime.invocations import Invocation, InvocationBook
from emulators.bedrock_runtime.marengo_body import split_s3_uri
from emulators.bedrock_runtime.media_access import MediaAccess
from emulators.media_analysis import MediaError

log = logging.getLogger(__name__)

INJECTED_FAILURE_MESSAGE = "Internal processing error (injected)"


class AsyncJobs:
    """The work behind StartAsyncInvoke; `latency_sec()` is read when each job is scheduled."""

    def __init__(
        self,
        book: InvocationBook,
        media: MediaAccess,
        work: BackgroundWork,
        latency_sec: Callable[[], float],
    ) -> None:
        self._book = book
        self._media = media
        self._work = work
        self._latency_sec = latency_sec

    def schedule(self, inv: Invocation) -> None:
        """Hold the invocation InProgress for the latency (a timer, not a pool thread), then process it."""
        self._work.later(float(self._latency_sec()), self._submit, inv.arn)

    def resume(self) -> None:
        """Jobs kept from an earlier run, or abandoned by a stop, carry on."""
        with self._book.lock:
            for inv in [inv for inv in self._book.all() if inv.status == "InProgress"]:
                self.schedule(inv)

    def replace_output(self, arn: str, body: bytes) -> str:
        """Overwrite a completed invocation's output.json with `body` (corrupt output); returns its key."""
        with self._book.lock:
            inv = self._book.get(arn)
            if inv is None:
                raise KeyError(arn)
            keys = [k for k in inv.output_keys if k.endswith("/output.json")]
        if inv.status != "Completed" or not keys:
            raise ValueError(f"{arn} has no output.json (status {inv.status})")
        bucket, _ = split_s3_uri(inv.output_uri + "/x")
        self._media.s3.put_object(Bucket=bucket, Key=keys[0], Body=body)
        return keys[0]

    def _submit(self, arn: str) -> None:
        self._work.submit(self._process, arn)

    def _process(self, arn: str) -> None:
        with self._book.lock:
            inv = self._book.get(arn)
            if inv is None:  # forgotten before it ran
                return
            req, inject = inv.request, inv.inject_failure
        if self._work.stopping:
            return
        if inject:
            self._finish(arn, "Failed", INJECTED_FAILURE_MESSAGE, None)
            return
        where = (req.media.uri or "mediaSource.base64String") if req.media else "inputText"
        try:
            data = self._media.read(req.media) if req.media else None
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
        inv = self._book.get(arn)
        if inv is None:  # forgotten while it ran
            return
        try:
            keys = self._write_results(inv, status, failure, result)
        except ClientError as exc:
            status, failure, keys = "Failed", f"Unable to write output to {inv.output_uri}: {exc}", ()
        self._book.end(inv, status, failure, keys, datetime.now(UTC))

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
        s3 = self._media.s3
        if result is not None:
            body = json.dumps({"data": result})
            s3.put_object(Bucket=bucket, Key=f"{base}/output.json", Body=body, ContentType="application/json")
            keys += (f"{base}/output.json",)
        s3.put_object(
            Bucket=bucket,
            Key=f"{base}/manifest.json",
            Body=json.dumps(manifest),
            ContentType="application/json",
        )
        return (*keys, f"{base}/manifest.json")

    def restore_outputs(self) -> None:
        """Rewrite the results of kept completed jobs whose output the object store no longer has.

        Bedrock never loses a finished job's output; the local S3 starts empty on every restart, so the
        emulator recomputes it (the embeddings are deterministic). A job whose media is gone keeps no output.
        """
        completed = [inv for inv in self._book.all() if inv.status == "Completed"]
        for inv in completed:
            keys = [k for k in inv.output_keys if k.endswith("/output.json")]
            if not keys:
                continue
            bucket, _ = split_s3_uri(inv.output_uri + "/x")
            try:
                self._media.s3.head_object(Bucket=bucket, Key=keys[0])
                continue
            except ClientError:
                pass
            try:
                data = self._media.read(inv.request.media) if inv.request.media else None
                self._write_results(inv, "Completed", None, embed(inv.request, data))
            except (ServiceError, MediaError, ClientError) as exc:
                log.warning("bedrock emulator: cannot restore the output of %s: %s", inv.arn, exc)
