"""S3 event notifications read into object changes, against the documented message bodies."""

import json

import pytest

from resources.media.events import (
    CREATED,
    REMOVED,
    SEQUENCE_WIDTH,
    MalformedEvent,
    ObjectChange,
    latest_per_object,
    parse_message,
    sequence_position,
)


def notification(
    name: str, key: str, sequencer: str, etag: str | None = "9dd4e461268c8034f5c8564e155c67a6"
) -> str:
    obj: dict[str, object] = {"key": key, "sequencer": sequencer}
    if etag is not None:
        obj |= {"size": 1024, "eTag": etag}
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-12-05T04:15:53.494Z",
        "eventName": name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": "media", "arn": "arn:aws:s3:::media"},
            "object": obj,
        },
    }
    return json.dumps({"Records": [record]})


def test_a_put_is_a_created_change_with_its_etag_size_and_padded_sequencer() -> None:
    [change] = parse_message(notification("ObjectCreated:Put", "clips/a.mp4", "0055AED6DCD90281E5"))
    assert change == ObjectChange(
        "media",
        "clips/a.mp4",
        CREATED,
        "9dd4e461268c8034f5c8564e155c67a6",
        1024,
        "0055AED6DCD90281E5".ljust(SEQUENCE_WIDTH, "0"),
        "2026-12-05T04:15:53.494Z",
    )
    assert change.uri == "s3://media/clips/a.mp4"


def test_keys_are_decoded_as_s3_encodes_them() -> None:
    # S3 encodes like a form: a space is "+", "+" is %2B, "/" may come as %2F, UTF-8 percent-encoded.
    [change] = parse_message(notification("ObjectCreated:Copy", "a%2Fb%23c+d%2B%C3%A9%3F.png", "01"))
    assert change.key == "a/b#c d+é?.png"


def test_a_delete_carries_no_etag() -> None:
    [change] = parse_message(notification("ObjectRemoved:Delete", "a.png", "02", etag=None))
    assert (change.change, change.etag, change.size_bytes) == (REMOVED, None, None)


def test_the_test_event_and_other_event_types_change_nothing() -> None:
    assert (
        parse_message(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "media"})) == []
    )
    assert parse_message(notification("ObjectRestore:Completed", "a.png", "03")) == []


def test_an_eventbridge_event_keeps_its_key_unencoded() -> None:
    body = {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "time": "2026-12-05T04:15:53Z",
        "detail": {
            "bucket": {"name": "media"},
            "object": {"key": "a b+c.png", "size": 5, "etag": "abc", "sequencer": "0A"},
        },
    }
    [change] = parse_message(json.dumps(body))
    assert (change.key, change.change, change.etag) == ("a b+c.png", CREATED, "abc")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"hello": 1}', "neither an S3 event notification"),
        (notification("ObjectCreated:Put", "a.png", "zz"), "hexadecimal"),
        (notification("ObjectCreated:Put", "a.png", "01", etag=None), "has no eTag"),
    ],
)
def test_a_malformed_message_is_refused_with_the_reason(body: str, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason):
        parse_message(body)


def test_sequencers_of_different_lengths_compare_after_right_padding() -> None:
    # "the greater sequencer hexadecimal value occurred later", the shorter right-padded with zeros.
    assert sequence_position("0055AED6DCD90281E6") > sequence_position("0055AED6DCD90281E5")
    assert sequence_position("0056") > sequence_position("0055AED6DCD90281E5")
    assert sequence_position("00aa") == sequence_position("00AA")


def test_the_latest_change_of_a_key_wins_whatever_the_order_and_duplicates_collapse() -> None:
    put = parse_message(notification("ObjectCreated:Put", "a.png", "0010"))[0]
    delete = parse_message(notification("ObjectRemoved:Delete", "a.png", "0020", etag=None))[0]
    other = parse_message(notification("ObjectCreated:Put", "b.png", "0001"))[0]
    assert latest_per_object([delete, put, other, put]) == [delete, other]
    assert latest_per_object([put, put]) == [put]
