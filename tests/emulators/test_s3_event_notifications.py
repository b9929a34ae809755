"""The bucket's event notifications reach an SQS queue as S3 sends them, and read back exactly."""

from collections.abc import Iterator

import pytest

from emulators.s3 import S3Emulator
from emulators.stack import notify_queue
from resources.media.event_queue import MediaEventQueue
from resources.media.events import CREATED, REMOVED, latest_per_object, parse_message
from tests.s3_key_matrix import hostile_keys


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Emulator, MediaEventQueue]]:
    emulator = S3Emulator().start()
    try:
        for name, value in {
            "AWS_ENDPOINT_URL_SQS": emulator.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }.items():
            monkeypatch.setenv(name, value)
        emulator.client().create_bucket(Bucket="media")
        url = notify_queue(emulator, "us-east-1", ["media"])
        yield emulator, MediaEventQueue(queue_url=url, region_name="us-east-1")
    finally:
        emulator.stop()


def test_every_hostile_key_round_trips_through_events_and_a_delete_follows_its_put(
    queue: tuple[S3Emulator, MediaEventQueue],
) -> None:
    emulator, events = queue
    s3 = emulator.client()
    keys = list(hostile_keys(".png").values())
    for key in keys:
        s3.put_object(Bucket="media", Key=key, Body=b"png")
    s3.delete_object(Bucket="media", Key=keys[0])
    messages = events.receive(limit=100)
    changes = [c for m in messages for c in parse_message(m.body)]
    created = {c.key for c in changes if c.change == CREATED}
    assert created == set(keys)
    etag = s3.head_object(Bucket="media", Key=keys[1])["ETag"].strip('"')
    assert {c.etag for c in changes if c.change == CREATED} == {etag}
    # Out of order or not, the delete is the latest change of its key.
    latest = {c.key: c for c in latest_per_object(list(reversed(changes)))}
    assert latest[keys[0]].change == REMOVED


def test_a_message_not_deleted_comes_back_and_a_deleted_one_does_not(
    queue: tuple[S3Emulator, MediaEventQueue],
) -> None:
    emulator, events = queue
    s3 = emulator.client()
    s3.put_object(Bucket="media", Key="kept.png", Body=b"1")
    s3.put_object(Bucket="media", Key="done.png", Body=b"2")
    messages = [m for m in events.receive(limit=10) if parse_message(m.body)]
    assert len(messages) == 2
    done = next(m for m in messages if parse_message(m.body)[0].key == "done.png")
    kept = next(m for m in messages if m is not done)
    assert events.delete([done.receipt_handle]) == []
    # A run killed before its commit deletes nothing: once the visibility timeout passes (made to pass
    # now), the message is delivered again; the deleted one never is.
    events.client().change_message_visibility(
        QueueUrl=events.queue_url, ReceiptHandle=kept.receipt_handle, VisibilityTimeout=0
    )
    again = events.receive(limit=10)
    assert [parse_message(m.body)[0].key for m in again] == ["kept.png"]


def test_an_event_reaches_its_queue_without_the_queue_counting_its_messages(
    queue: tuple[S3Emulator, MediaEventQueue],
) -> None:
    """S3 delivers each event without asking the queue how many messages it holds: a count per upload
    made uploading a library cost the square of its size (the events wait undrained)."""
    from moto.sqs.models import Queue

    def counted(self: Queue) -> int:
        raise AssertionError("an event delivery counted the queue's messages")

    emulator, events = queue
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Queue, "approximate_number_of_messages", property(counted))
        emulator.client().put_object(Bucket="media", Key="new.png", Body=b"png")
    changes = [c for m in events.receive(limit=10) for c in parse_message(m.body)]
    assert [(c.key, c.change) for c in changes] == [("new.png", CREATED)]
