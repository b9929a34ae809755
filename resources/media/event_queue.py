"""The SQS queue the media bucket's event notifications go to (docs/deployment.md, "S3 events").

boto3's SQS client, so `AWS_ENDPOINT_URL_SQS` points it at the local emulator the way
`AWS_ENDPOINT_URL_S3` does for S3. Messages are received with long polling and deleted only by the run
that committed their changes (`delete`): a run killed before its commit leaves them to come back after
the queue's visibility timeout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
import dagster as dg
from botocore.config import Config
from pydantic import Field, PrivateAttr

# SQS limits: at most 10 messages a receive or a delete batch, and a long poll of at most 20 s.
SQS_BATCH = 10


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str


class MediaEventQueue(dg.ConfigurableResource):
    """Where the bucket's ObjectCreated and ObjectRemoved events arrive; unset, the inventory lists."""

    queue_url: str | None = Field(
        default=None,
        description="The SQS queue URL the media bucket notifies. Unset: "
        "every inventory run lists the prefix.",
    )
    region_name: str | None = Field(default=None, description="The queue's region (AWS_REGION).")
    wait_sec: int = Field(
        default=1,
        ge=0,
        le=20,
        description="Long-poll wait of a receive: how long a tick waits on an empty queue.",
    )
    _client: Any = PrivateAttr(default=None)

    @property
    def configured(self) -> bool:
        """Whether events feed the inventory (an empty setting reads as unset, as every optional one)."""
        return bool(self.queue_url)

    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.session.Session(region_name=self.region_name).client(
                "sqs", config=Config(retries={"mode": "standard", "max_attempts": 5})
            )
        return self._client

    def receive(self, limit: int) -> list[QueueMessage]:
        """Up to `limit` messages: receives of 10 until the queue answers with none or the limit is met.
        Each waits up to `wait_sec` for a message (long polling), so an empty queue costs one wait."""
        assert self.queue_url, "receive needs a queue URL"
        messages: list[QueueMessage] = []
        while len(messages) < limit:
            answer = self.client().receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(SQS_BATCH, limit - len(messages)),
                WaitTimeSeconds=self.wait_sec,
            )
            got = answer.get("Messages", [])
            if not got:
                break
            messages += [QueueMessage(m["MessageId"], m["ReceiptHandle"], m["Body"]) for m in got]
        return messages

    def delete(self, receipt_handles: list[str]) -> list[str]:
        """Delete messages by receipt handle, 10 a call; returns the reasons of those SQS did not delete
        (a handle past its visibility timeout: the message comes back, and re-applying it is a no-op)."""
        assert self.queue_url, "delete needs a queue URL"
        failed: list[str] = []
        for start in range(0, len(receipt_handles), SQS_BATCH):
            batch = receipt_handles[start : start + SQS_BATCH]
            answer = self.client().delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)],
            )
            failed += [f"{f.get('Code')}: {f.get('Message', '')}" for f in answer.get("Failed", [])]
        return failed
