"""S3 events drive the inventory end to end: the bucket notifies an SQS queue on the S3 emulator, the media
change sensor turns messages into embed_new_media runs of exactly the changed keys, and those runs delete
the messages only once their changes are committed. Every case ends with no object version billed twice.
"""

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import boto3
import dagster as dg
import pytest

from assets_defs.inventory.media_inventory import read_inventory
from emulators.sample_media import Scene, make_image
from emulators.stack import notify_queue
from harness.runner import materialization_metadata, media_change_requests, run_job
from resources.storage.lake import Lake
from resources.tables.inventory_table import InventoryTable
from resources.tables.submission_ledger import SubmissionLedger
from tests.pipeline.conftest import World, build_world
from tests.s3_key_matrix import hostile_keys

MODEL = "marengo-3.0"
PNG = make_image(Scene(0.0, 0.0, "circle", "red", "black", 0.0), "png")


class EventWorld:
    """The sample-media world with the media bucket's events going to a queue, and its first inventory."""

    def __init__(self, world: World, queue_url: str) -> None:
        self.world, self.queue_url = world, queue_url
        self.lake = cast(Lake, world.lake)
        self.s3 = world.stack.s3.client()
        self.sqs = boto3.session.Session().client("sqs", region_name=world.stack.region)
        self.launched: list[str] = []
        self.runs: list[dg.ExecuteInProcessResult] = []

    def tick(self) -> list[dg.RunRequest]:
        """One media change sensor evaluation, as the daemon runs it: the requests it makes."""
        return media_change_requests(self.world.instance)

    def launch(self, request: dg.RunRequest) -> dict[str, Any]:
        """Run a request as the daemon would (once per run key); the inventory's metadata."""
        assert request.run_key and request.run_key not in self.launched, "a run key launched twice"
        self.launched.append(request.run_key)
        config = request.run_config if isinstance(request.run_config, dict) else {}
        result = run_job(self.world.instance, "embed_new_media", request.partition_key, run_config=config)
        self.runs.append(result)
        return materialization_metadata(result, ["media", "inventory"])

    def tick_and_run(self) -> list[dict[str, Any]]:
        return [self.launch(r) for r in self.tick()]

    def messages_left(self) -> int:
        """Messages in the queue, visible or taken by a receive and not deleted."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(v) for v in attributes.values())

    def row(self, key: str) -> dict[str, Any] | None:
        """The inventory's row of an object, tombstones and all."""
        rows = InventoryTable(self.lake).read(uris=[f"s3://media/{key}"], without=()).to_pylist()
        return rows[0] if rows else None

    def billed(self) -> Counter[tuple[str, str]]:
        """Provider jobs per (media URI, ETag) the ledger recorded them for (one model serves here)."""
        submissions = SubmissionLedger(self.lake, None).submissions()
        provider = {j.client_request_token for j in self.world.stack.bedrock.invocations.values()}
        assert provider == set(submissions["client_token"]), "provider jobs and the ledger disagree"
        unique = submissions.drop_duplicates("client_token")
        return Counter(zip(unique["media_uri"], unique["etag"], strict=True))

    def assert_nothing_billed_twice(self) -> None:
        twice = {version: n for version, n in self.billed().items() if n > 1}
        assert not twice, f"object versions billed more than once: {twice}"


@pytest.fixture
def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EventWorld]:
    with build_world(tmp_path, monkeypatch, {"MEDIAEMBED_SERVING_VERSION": MODEL}) as world:
        # The first inventory lists (no table yet); the bucket's events go to the queue from then on.
        run_job(world.instance, "embed_new_media", MODEL)
        url = notify_queue(world.stack.s3, world.stack.region, ["media"])
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", world.stack.s3_endpoint)
        monkeypatch.setenv("MEDIAEMBED_MEDIA_QUEUE_URL", url)
        world_with_events = EventWorld(world, url)
        world_with_events.tick()  # the s3:TestEvent the notification set-up sends: deleted, no run
        assert world_with_events.messages_left() == 0
        yield world_with_events


def test_hostile_keys_arrive_by_event_probed_once_and_their_messages_deleted_after_the_commit(
    events: EventWorld,
) -> None:
    keys = list(hostile_keys(".png").values())[:12]
    for key in keys:
        events.s3.put_object(Bucket="media", Key=key, Body=PNG)
    [metadata] = events.tick_and_run()
    assert metadata["mode"] == "events"
    assert (metadata["probed_this_run"], metadata["objects_listed"]) == (len(keys), "not listed")
    for key in keys:
        row = events.row(key)
        assert row is not None and row["key"] == key, f"{key!r} not in the inventory as itself"
        etag = events.s3.head_object(Bucket="media", Key=key)["ETag"].strip('"')
        assert (row["etag"], row["status"], row["modality"]) == (etag, "ok", "image"), key
    assert events.messages_left() == 0
    billed = events.billed()
    assert {uri for uri, _ in billed} >= {f"s3://media/{k}" for k in keys}, "a new object was not submitted"
    events.assert_nothing_billed_twice()


def test_a_duplicate_event_is_a_no_op(events: EventWorld) -> None:
    events.s3.put_object(Bucket="media", Key="dup.png", Body=PNG)
    [message] = events.sqs.receive_message(QueueUrl=events.queue_url, WaitTimeSeconds=1)["Messages"]
    body = message["Body"]
    events.sqs.change_message_visibility(  # back in the queue, and a copy beside it: at-least-once delivery
        QueueUrl=events.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    events.sqs.send_message(QueueUrl=events.queue_url, MessageBody=body)
    [first] = events.tick_and_run()  # both copies in one run: one change
    assert (first["probed_this_run"], first["unchanged_events"]) == (1, 0)
    events.sqs.send_message(QueueUrl=events.queue_url, MessageBody=body)  # and once more, later
    [again] = events.tick_and_run()
    assert (again["probed_this_run"], again["rows_written"], again["unchanged_events"]) == (0, 0, 1)
    assert events.messages_left() == 0
    events.assert_nothing_billed_twice()


def test_a_delete_event_tombstones_the_object(events: EventWorld) -> None:
    events.s3.delete_object(Bucket="media", Key="videos/shapes_a.mp4")
    [metadata] = events.tick_and_run()
    assert metadata["objects_removed"] == 1
    row = events.row("videos/shapes_a.mp4")
    assert row is not None and row["status"] == "removed"
    assert "s3://media/videos/shapes_a.mp4" not in set(read_inventory(events.lake)["media_uri"])
    events.assert_nothing_billed_twice()


def test_an_older_event_arriving_after_a_newer_one_changes_nothing(events: EventWorld) -> None:
    events.s3.put_object(Bucket="media", Key="late.png", Body=PNG)
    events.s3.put_object(Bucket="media", Key="late.png", Body=PNG + b"\0")
    taken = events.sqs.receive_message(QueueUrl=events.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    older, newer = sorted(
        (m["Body"] for m in taken["Messages"]),
        key=lambda b: json.loads(b)["Records"][0]["s3"]["object"]["sequencer"],
    )
    for message in taken["Messages"]:
        events.sqs.delete_message(QueueUrl=events.queue_url, ReceiptHandle=message["ReceiptHandle"])
    latest = events.s3.head_object(Bucket="media", Key="late.png")["ETag"].strip('"')
    events.sqs.send_message(QueueUrl=events.queue_url, MessageBody=newer)
    events.tick_and_run()
    events.sqs.send_message(QueueUrl=events.queue_url, MessageBody=older)
    [late] = events.tick_and_run()
    assert (late["probed_this_run"], late["rows_written"], late["unchanged_events"]) == (0, 0, 1)
    row = events.row("late.png")
    assert row is not None and row["etag"] == latest
    assert [etag for uri, etag in events.billed() if uri == "s3://media/late.png"] == [latest]
    events.assert_nothing_billed_twice()


def test_a_missed_event_is_caught_by_the_reconciliation(events: EventWorld) -> None:
    events.s3.put_object(Bucket="media", Key="missed.png", Body=PNG)
    events.sqs.purge_queue(QueueUrl=events.queue_url)  # the event never reaches the pipeline
    assert events.tick_and_run() == []
    assert events.row("missed.png") is None
    result = run_job(
        events.world.instance,
        "embed_new_media",
        MODEL,
        run_config={"ops": {"media__inventory": {"config": {"reconcile": True}}}},
    )
    metadata = materialization_metadata(result, ["media", "inventory"])
    assert (metadata["mode"], metadata["probed_this_run"]) == ("listing", 1)
    row = events.row("missed.png")
    assert row is not None and row["status"] == "ok"
    events.assert_nothing_billed_twice()


def test_a_run_killed_before_its_commit_leaves_the_message_to_come_back(
    events: EventWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    events.s3.put_object(Bucket="media", Key="redelivered.png", Body=PNG)
    [request] = events.tick()

    def killed(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the run's process died before the inventory commit")

    with monkeypatch.context() as patch:
        patch.setattr(InventoryTable, "merge", killed)
        with pytest.raises(Exception, match=r"failed|died"):
            events.launch(request)
    assert events.row("redelivered.png") is None
    assert events.messages_left() == 1, "the message was deleted before its change was committed"
    assert events.billed().get(("s3://media/redelivered.png", "")) is None
    # Its visibility timeout passes (made to pass now): the message is delivered again, with a new
    # receipt, so a new run (a new run key) commits the change and deletes it.
    assert isinstance(request.run_config, dict)
    [receipt] = request.run_config["ops"]["media__inventory"]["config"]["receipts"]
    events.sqs.change_message_visibility(
        QueueUrl=events.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
    )
    [metadata] = events.tick_and_run()
    assert metadata["probed_this_run"] == 1
    row = events.row("redelivered.png")
    assert row is not None and row["status"] == "ok"
    assert events.messages_left() == 0
    events.assert_nothing_billed_twice()
