"""S3 on 127.0.0.1: moto's S3 app on the emulators' loopback server; boto3, pyarrow's S3FileSystem and
lancedb all speak to it."""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from moto.core.utils import unix_time
from moto.iam import access_control as moto_access_control
from moto.s3 import notifications as moto_notifications
from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sqs import models as moto_sqs

from emulators.http_base import LoopbackServer, W, WsgiApp, free_port

__all__ = ["S3Emulator", "free_port"]


def _with_sequencer(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """S3's event records as S3 sends them, where moto 5 differs: every ObjectCreated and ObjectRemoved
    record carries a `sequencer` (a hex string, later events of a key greater), and a removal carries no
    `eTag` or `size` (the object is gone)."""
    counter = itertools.count(1)
    lock = threading.Lock()

    def build_event(event_name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        event = build(event_name, *args, **kwargs)
        for record in event.get("Records", []):
            obj = record["s3"]["object"]
            with lock:
                obj["sequencer"] = f"{time.time_ns():016X}{next(counter):04X}"
            if record["eventName"].startswith("ObjectRemoved"):
                obj.pop("eTag", None)
                obj.pop("size", None)
        return event

    return build_event


moto_notifications._get_s3_event = _with_sequencer(moto_notifications._get_s3_event)

# SQS authorizes a batch call as its single action (the SQS developer guide's API permissions reference:
# DeleteMessageBatch needs sqs:DeleteMessage); moto 5 asks IAM for sqs:DeleteMessageBatch, which no
# policy written for AWS grants.
SQS_BATCH_ACTIONS = {
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def _authorized_as_aws_does(init: Callable[..., None]) -> Callable[..., None]:
    def authorize(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self._action = SQS_BATCH_ACTIONS.get(self._action, self._action)

    return authorize


moto_access_control.IAMRequestBase.__init__ = _authorized_as_aws_does(  # type: ignore[method-assign]
    moto_access_control.IAMRequestBase.__init__
)


def _retained(backend: Any, queue_name: str, message: Any) -> bool:
    """moto's retention check, reading the queue's one attribute: moto 5 computes every attribute of the
    queue (counting its messages) for each message it returns, so a receive from a queue of 1,000
    messages takes a second, where SQS answers in milliseconds. The same rule: kept for the retention
    period after it was sent."""
    retention = int(backend.get_queue(queue_name).message_retention_period)
    return retention + message.sent_timestamp / 1000 > unix_time()


moto_sqs.SQSBackend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign,assignment]


def _delivered_to_queue(account_id: str, event_body: Any, queue_name: str, region_name: str) -> None:
    """S3's delivery of an event to its queue, without moto 5's SendMessage path, which computes every
    attribute of the queue (counting its messages) for each event: an upload into a bucket whose queue
    holds 10,000 undrained events took ~30 ms, so uploading a library grew with the square of its size.
    The same outcome: the event is queued as a message sent now, with the queue's delay; as on AWS, a
    queue that no longer exists (or a FIFO queue, which S3 cannot notify) gets nothing."""
    backend = moto_sqs.sqs_backends[account_id][region_name]
    queue = backend.queues.get(queue_name)
    if queue is None or queue.fifo_queue:
        return
    message = moto_sqs.Message(str(uuid.uuid4()), json.dumps(event_body))
    message.mark_sent(delay_seconds=int(queue.delay_seconds or 0))  # type: ignore[attr-defined]
    queue.add_message(message)


moto_notifications._send_sqs_message = _delivered_to_queue


class S3Emulator:
    """moto's S3 server.

    moto keeps its state per process, so starting an emulator resets it: every emulator starts empty, as a
    fresh account would. Two emulators running at once in one process still see the same buckets.
    """

    def __init__(self, port: int = 0, region: str = "us-east-1", host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.region = region
        self._http: LoopbackServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Emulator:
        if self._http is None:
            # moto's own threaded server serves the same app with the same request handler (it keeps S3
            # metadata headers spelled with underscores).
            self._http = LoopbackServer(
                DomainDispatcherApplication(create_backend_app),
                name="s3-emu",
                host=self.host,
                port=self.port,
                request_handler=MotoRequestHandler,
            )
            self._http.start()
            urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"))
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()
            self._http = None

    @contextmanager
    def intercept(self, wrap: Callable[[WsgiApp], W]) -> Iterator[W]:
        """Route every request through `wrap(app)` while the block runs (see LoopbackServer.intercept)."""
        if self._http is None:
            raise RuntimeError("S3Emulator is not started")
        with self._http.intercept(wrap) as wrapper:
            yield wrapper

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this endpoint (path-style addressing, dummy credentials)."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, **config),
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def sqs_client(self) -> Any:
        """A boto3 SQS client for this endpoint: moto's server answers SQS on the same port as S3."""
        return boto3.session.Session().client(
            "sqs",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def __enter__(self) -> S3Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
