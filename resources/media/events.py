"""S3 event notifications, as the bucket sends them to an SQS queue, read into typed object changes.

Pure functions over the documented message bodies (no boto3, no Dagster), so they are tested against the
JSON S3 and EventBridge document:
- an S3 event notification: `{"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {...},
  "object": {"key", "size", "eTag", "sequencer"}}}]}`, the key URL-encoded the way HTML forms are (a space
  is `+`, `/` is kept or `%2F`), so it is decoded with `unquote_plus`;
- the `s3:TestEvent` S3 sends when the notification is configured (no records: nothing to apply);
- an EventBridge event forwarded to SQS (`"detail-type": "Object Created"`), whose key is not encoded.

`sequencer` orders the events of one key: "the event with the greater sequencer hexadecimal value
occurred later"; values differ in length, so the shorter is right-padded with zeros before a lexicographic
comparison. `sequence_position` stores them padded, so the inventory compares them as plain strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

# Wide enough for any sequencer S3 sends (16 to 18 hex digits today).
SEQUENCE_WIDTH = 32
CREATED, REMOVED = "created", "removed"
EVENTBRIDGE_TYPES = {"Object Created": CREATED, "Object Deleted": REMOVED}


class MalformedEvent(ValueError):
    """A queue message that is not an S3 event notification this pipeline can read."""


@dataclass(frozen=True)
class ObjectChange:
    """One object created (put, copied, completed upload) or removed, as one event reported it."""

    bucket: str
    key: str
    change: str  # CREATED or REMOVED
    etag: str | None  # removals carry none
    size_bytes: int | None
    sequencer: str  # padded: compares as a string (sequence_position)
    event_time: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def sequence_position(sequencer: str) -> str:
    """A sequencer right-padded with zeros to a fixed width, upper case: later events compare greater."""
    value = sequencer.strip().upper()
    if not value or len(value) > SEQUENCE_WIDTH or any(c not in "0123456789ABCDEF" for c in value):
        raise MalformedEvent(f"sequencer {sequencer!r}: not up to {SEQUENCE_WIDTH} hexadecimal digits")
    return value.ljust(SEQUENCE_WIDTH, "0")


def parse_message(body: str) -> list[ObjectChange]:
    """The object changes one queue message reports (none for a test event); MalformedEvent names what
    is wrong with a message that is neither an S3 notification nor an EventBridge S3 event."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as error:
        raise MalformedEvent(f"not JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(message, dict):
        raise MalformedEvent("not a JSON object")
    if message.get("Event") == "s3:TestEvent":
        return []
    if "Records" in message:
        records = message["Records"]
        if not isinstance(records, list):
            raise MalformedEvent("Records is not a list")
        return [change for record in records if (change := _record_change(record)) is not None]
    if message.get("source") == "aws.s3" and "detail-type" in message:
        change = _eventbridge_change(message)
        return [] if change is None else [change]
    raise MalformedEvent("neither an S3 event notification (Records) nor an EventBridge S3 event")


def _record_change(record: Any) -> ObjectChange | None:
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        raise MalformedEvent("a record that is not from aws:s3")
    name = str(record.get("eventName", ""))
    if name.startswith("ObjectCreated:"):
        change = CREATED
    elif name.startswith("ObjectRemoved:"):
        change = REMOVED
    else:
        return None  # restores, tagging, lifecycle transitions: the object's bytes did not change
    try:
        s3 = record["s3"]
        obj = s3["object"]
        return _change(
            s3["bucket"]["name"],
            unquote_plus(obj["key"]),
            change,
            obj.get("eTag"),
            obj.get("size"),
            obj["sequencer"],
            str(record.get("eventTime", "")),
        )
    except (KeyError, TypeError) as error:
        raise MalformedEvent(f"{name} record lacks {error}") from None


def _eventbridge_change(message: dict[str, Any]) -> ObjectChange | None:
    change = EVENTBRIDGE_TYPES.get(str(message["detail-type"]))
    if change is None:
        return None
    try:
        detail = message["detail"]
        obj = detail["object"]
        return _change(
            detail["bucket"]["name"],
            obj["key"],
            change,
            obj.get("etag"),
            obj.get("size"),
            obj["sequencer"],
            str(message.get("time", "")),
        )
    except (KeyError, TypeError) as error:
        raise MalformedEvent(f"EventBridge {message['detail-type']} event lacks {error}") from None


def _change(
    bucket: str, key: str, change: str, etag: Any, size: Any, sequencer: Any, event_time: str
) -> ObjectChange:
    if not isinstance(key, str) or not key:
        raise MalformedEvent("an event with no object key")
    if change == CREATED and not etag:
        raise MalformedEvent(f"ObjectCreated event for {key!r} has no eTag")
    return ObjectChange(
        bucket=str(bucket),
        key=key,
        change=change,
        etag=str(etag).strip('"') if change == CREATED else None,
        size_bytes=int(size) if change == CREATED and size is not None else None,
        sequencer=sequence_position(str(sequencer)),
        event_time=event_time,
    )


def latest_per_object(changes: list[ObjectChange]) -> list[ObjectChange]:
    """The last change of each object by sequencer: a duplicate or an older event of the same key is
    dropped, in whatever order they came (keys in first-seen order)."""
    latest: dict[str, ObjectChange] = {}
    for change in changes:
        held = latest.get(change.uri)
        if held is None or change.sequencer > held.sequencer:
            latest[change.uri] = change
    return list(latest.values())
