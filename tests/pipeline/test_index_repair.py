"""The index repairs itself, has one writer at a time without pools, and never shrinks by mistake."""

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import lancedb
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from assets_defs.search.segment_index import marengo_segment_index
from emulators.s3 import S3Emulator
from harness.runner import materialization_metadata, run_job
from resources.index.segment_index import IndexedObject, SegmentIndex
from resources.index.writer_lock import S3WriterLease, WriterLeaseLost, WriterLockTimeout
from resources.providers.marengo_models import MARENGO_3_0
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import media_id, segment_schema
from tests.pipeline.conftest import USABLE, World, ingest_when_idle, submit
from tests.unit.test_segment_index import object_segments, unit

INDEX_OP = "search__marengo_segments"
FIELD = {name: i for i, name in enumerate(segment_schema(MARENGO_3_0.dimension).names)}


# ---- the writer lease on s3:// (one moto server for the module) -------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Emulator]:
    emulator = S3Emulator(region="us-east-1").start()
    emulator.client().create_bucket(Bucket="lake")
    yield emulator
    emulator.stop()


def lease(s3: S3Emulator, key: str, holder: str, ttl_sec: float = 0.3) -> S3WriterLease:
    return S3WriterLease(s3.client(), "lake", key, "segments_t", holder, ttl_sec)


def test_a_dead_writers_lease_expires_and_a_live_ones_blocks(s3: S3Emulator) -> None:
    key = f"lancedb-{uuid.uuid4().hex}/_locks/segments_t.lease"
    dead = {"holder": "run killed-mid-write", "owner": "x", "ttl_sec": 0.2, "n": 1}
    s3.client().put_object(Bucket="lake", Key=key, Body=json.dumps(dead).encode())  # never renewed again
    waits: list[str] = []
    first = lease(s3, key, "run a", ttl_sec=2.0)  # renewed every 0.67 s; stale only after 2 s unchanged
    first.acquire(10, on_wait=waits.append)
    assert waits == ["index table segments_t is being written by run killed-mid-write; waiting"]

    with pytest.raises(WriterLockTimeout, match=r"written by run a after 0\.8 s"):
        lease(s3, key, "run b").acquire(0.8)  # shorter than run a's lease: never stale
    first.ensure_held()
    first.release()
    assert "Contents" not in s3.client().list_objects_v2(Bucket="lake", Prefix=key)
    second = lease(s3, key, "run c")
    second.acquire(0.01)  # released: free at once
    second.release()


def test_a_writer_whose_lease_was_taken_over_stops_before_writing(s3: S3Emulator) -> None:
    key = f"lancedb-{uuid.uuid4().hex}/_locks/segments_t.lease"
    holder = lease(s3, key, "run a")
    holder.acquire(1)
    s3.client().put_object(Bucket="lake", Key=key, Body=b'{"holder": "run b", "ttl_sec": 60}')
    deadline = time.monotonic() + 5
    with pytest.raises(WriterLeaseLost, match="stopped before writing"):
        while time.monotonic() < deadline:  # the next renewal (every 0.1 s) finds the lease changed
            holder.ensure_held()
            time.sleep(0.02)
    holder.release()
    assert (
        s3.client().get_object(Bucket="lake", Key=key)["Body"].read() == b'{"holder": "run b", "ttl_sec": 60}'
    )


def test_two_writers_of_an_s3_index_write_each_segment_once(
    s3: S3Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AWS_ENDPOINT_URL_S3": s3.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }.items():
        monkeypatch.setenv(name, value)
    uri = f"s3://lake/lancedb-{uuid.uuid4().hex}"
    uris = [f"s3://m/{i}.mp4" for i in range(100)]
    segments = pa.concat_tables([object_segments(u, "e", unit(10)) for u in uris])
    ids = [media_id(u) for u in uris]
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write() -> None:
        writer = SegmentIndex(uri=uri, storage=S3Storage(region_name="us-east-1"))
        start.wait()
        try:
            writer.replace_media(MARENGO_3_0, segments, ids)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    index = SegmentIndex(uri=uri, storage=S3Storage(region_name="us-east-1"))
    assert errors == []
    assert (index.state(MARENGO_3_0).rows, index.duplicate_segment_ids(MARENGO_3_0)) == (1000, 0)
    assert index.connect().list_tables().tables == [index.table_name(MARENGO_3_0)], "the lease is not a table"


# ---- the index asset on the emulators ------------------------------------------------------------------


def table_uri() -> str:
    return os.environ["MEDIAEMBED_INDEX_URI"]


def index_table(world: World) -> Any:
    return lancedb.connect(table_uri()).open_table("segments_marengo_3_0")


def index_meta(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return materialization_metadata(result, ["search", "marengo_segments"])


def checks(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def ingest(world: World, instance: dg.DagsterInstance | None = None, **config: object) -> Any:
    run_config = {"ops": {INDEX_OP: {"config": config}}} if config else None
    return run_job(instance or world.instance, "ingest_marengo_embeddings", MARENGO_3_0.key, run_config)


def rows_of(table: pa.Table, uri: str) -> pa.Table:
    return table.filter(pc.equal(table.column("media_uri"), uri))


def test_injected_duplicates_and_stray_rows_are_repaired_by_the_next_run(world: World) -> None:
    submit(world)
    rows = index_meta(ingest_when_idle(world).results[0])["dagster/row_count"]
    table = index_table(world)
    everything = table.to_arrow()
    audio, image, video, other = (
        "s3://media/audio/hum_220hz.wav",
        "s3://media/images/green_triangle.png",
        "s3://media/videos/shapes_a.mp4",
        "s3://media/images/purple_circle.jpg",
    )
    table.add(everything)  # a second unlocked writer: every row twice
    stray = rows_of(everything, image)
    stray = stray.set_column(
        FIELD["segment_id"], "segment_id", pa.array([f"old-{i}" for i in range(stray.num_rows)])
    )
    table.add(
        stray.set_column(FIELD["invocation_id"], "invocation_id", pa.array(["arn:old"] * stray.num_rows))
    )
    foreign = rows_of(everything, video).slice(0, 1)
    foreign = foreign.set_column(FIELD["segment_id"], "segment_id", pa.array(["foreign-0"]))
    table.add(foreign.set_column(FIELD["model_key"], "model_key", pa.array(["marengo-2.7"])))
    assert (
        SegmentIndex(uri=table_uri(), storage=S3Storage(region_name="us-east-1")).duplicate_segment_ids(
            MARENGO_3_0
        )
        == rows
    )

    repair = ingest(world)
    meta = index_meta(repair)
    assert (meta["objects_repaired"], meta["objects_updated"], meta["dagster/row_count"]) == (
        USABLE,
        USABLE,
        rows,
    )
    assert meta["duplicate_rows_removed"] == rows
    assert all(c.passed for c in checks(repair).values()), checks(repair)
    held = index_table(world).search().select(["media_uri", "invocation_id", "model_key"]).limit(None)
    held = held.to_arrow()
    assert "arn:old" not in held.column("invocation_id").to_pylist()
    assert set(held.column("model_key").to_pylist()) == {"marengo-3.0"}
    assert rows_of(held, audio).num_rows == rows_of(everything, audio).num_rows

    # Exactly the affected objects are rewritten: two copies of one object, nothing else.
    table = index_table(world)
    table.add(rows_of(everything, other))
    meta = index_meta(ingest(world))
    assert (meta["objects_repaired"], meta["objects_updated"], meta["duplicate_rows_removed"]) == (
        1,
        1,
        rows_of(everything, other).num_rows,
    )
    assert index_meta(ingest(world))["objects_updated"] == 0, "a sound index is left alone"


def test_a_scoped_update_audits_only_its_objects_until_copies_or_a_due_full_audit_widen_it(
    world: World,
) -> None:
    """The sensor's runs name the objects they were handed: their update reads and rewrites only those, and
    a problem elsewhere waits for a full audit, which a copy of any segment (the blocking check's concern)
    or `full_audit_every_sec` brings about at once."""
    submit(world)
    ingest_when_idle(world)
    everything = index_table(world).to_arrow()
    handed, elsewhere, copied = (
        "s3://media/images/green_triangle.png",
        "s3://media/videos/shapes_a.mp4",
        "s3://media/audio/hum_220hz.wav",
    )
    stray = rows_of(everything, elsewhere).slice(0, 1)  # a row of an older invocation: no copy of a segment
    stray = stray.set_column(FIELD["segment_id"], "segment_id", pa.array(["old-0"]))
    index_table(world).add(stray.set_column(FIELD["invocation_id"], "invocation_id", pa.array(["arn:old"])))

    scoped = ingest(world, media_uris=[handed], full_audit_every_sec=3600)
    meta = index_meta(scoped)
    assert meta["audited"] == "1 objects handed to this run" and "full_audit" not in meta
    assert (meta["objects_repaired"], meta["objects_updated"], meta["objects_removed"]) == (0, 0, 0)
    assert all(c.passed for c in checks(scoped).values()), checks(scoped)
    assert (
        checks(scoped)["matches_embedding_table"].metadata["index_rows"].value
        == rows_of(everything, handed).num_rows
    ), "the scope's rows against the scope's embedding"
    assert "arn:old" in index_table(world).to_arrow().column("invocation_id").to_pylist(), "left for later"

    index_table(world).add(rows_of(everything, copied))  # copies of one object's segments
    widened = index_meta(ingest(world, media_uris=[handed], full_audit_every_sec=3600))
    assert widened["audited"] == "every object" and widened["full_audit"] is True
    assert widened["objects_repaired"] == 2, "the copies and the older invocation's row, both repaired"
    assert "arn:old" not in index_table(world).to_arrow().column("invocation_id").to_pylist()

    index_table(world).add(stray.set_column(FIELD["invocation_id"], "invocation_id", pa.array(["arn:old"])))
    due = index_meta(ingest(world, media_uris=[handed], full_audit_every_sec=0))
    assert (due["audited"], due["objects_repaired"]) == ("every object", 1), "a full audit was due"


def test_two_ingest_runs_at_once_without_pools_index_each_segment_once(world: World, tmp_path: Path) -> None:
    submit(world)
    rows = index_meta(ingest_when_idle(world).results[0])["dagster/row_count"]
    lancedb.connect(table_uri()).drop_table("segments_marengo_3_0")  # both runs must rebuild everything
    start = threading.Barrier(2)
    results: list[dg.ExecuteInProcessResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        instance = dg.DagsterInstance.ephemeral()  # no pool limits anywhere
        start.wait()
        try:
            results.append(ingest(world, instance))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(index_meta(r)["objects_updated"] for r in results) == [0, USABLE], "one wrote, one saw it"
    index = SegmentIndex(uri=table_uri(), storage=S3Storage(region_name="us-east-1"))
    assert (index.state(MARENGO_3_0).rows, index.duplicate_segment_ids(MARENGO_3_0)) == (rows, 0)


def test_a_shrunk_listing_keeps_the_index_until_removals_are_confirmed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit(world)
    ingest_when_idle(world)
    rows = index_meta(ingest(world))["dagster/row_count"]
    monkeypatch.setenv("MEDIAEMBED_MEDIA_URI", "s3://media/images/purple")  # a prefix with 1 of the 7
    assert submit(world)["already_handled"] == 1

    held = ingest(world)
    meta = index_meta(held)
    assert (meta["objects_removed"], meta["objects_held"], meta["dagster/row_count"]) == (0, USABLE - 1, rows)
    check = checks(held)["removals_confirmed"]
    assert not check.passed
    assert check.description.startswith("6 of 7 indexed objects (86%) are no longer listed")
    named = check.metadata["would_remove"].value
    assert "s3://media/videos/shapes_a.mp4" in named and "purple_circle" not in named
    assert named.count("- `s3://media/") == 6

    confirmed = ingest(world, confirm_removals=True)
    meta = index_meta(confirmed)
    purple_rows = index_table(world).count_rows("media_uri = 's3://media/images/purple_circle.jpg'")
    assert (meta["objects_removed"], meta["objects_held"], meta["dagster/row_count"]) == (6, 0, purple_rows)
    assert all(c.passed for c in checks(confirmed).values())


class BlindIndex(SegmentIndex):
    """An index whose audit misses duplicates: the blocking check must still see them."""

    def audit(self, model, media_ids=None):  # type: ignore[no-untyped-def]
        return {
            mid: IndexedObject(o.media_uri, o.segment_ids, o.segment_ids, o.invocation_ids, o.model_keys)
            for mid, o in super().audit(model, media_ids).items()
        }


def test_duplicates_the_repair_missed_fail_the_run_on_the_blocking_check(world: World) -> None:
    submit(world)
    ingest_when_idle(world)
    index_table(world).add(index_table(world).to_arrow().slice(0, 3))
    result = dg.materialize(
        [marengo_segment_index],
        partition_key=MARENGO_3_0.key,
        resources={
            "lake": world.lake,
            "segment_index": BlindIndex(uri=table_uri(), storage=S3Storage(region_name="us-east-1")),
        },
        instance=world.instance,
        raise_on_error=False,
    )
    assert not result.success, "a blocking check that fails fails the run"
    check = checks(result)["no_duplicate_segment_ids"]
    assert not check.passed and check.metadata["duplicate_rows"].value == 3
