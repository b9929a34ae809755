"""One inventory run's change, against a media source in memory: listings fan out into probe batches,
stream a page at a time, tombstone what is gone; events and batches touch only their own rows."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from assets_defs.inventory.inventory_update import InventoryUpdate
from resources.media.events import CREATED, REMOVED, ObjectChange, sequence_position
from resources.media.probe import MediaProbe
from resources.media.source import MediaObject, MediaSource
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.inventory_table import InventoryTable

WHEN = datetime(2026, 12, 1, tzinfo=UTC)


class Bucket:
    """What InventoryUpdate asks of a MediaSource, over a dict of key -> ETag, listed `page` keys a call."""

    def __init__(self, objects: dict[str, str], page: int = 2) -> None:
        self.objects, self.page = objects, page
        self.probed: list[str] = []
        self.pages_listed = 0

    def _object(self, key: str) -> MediaObject:
        return MediaObject(f"s3://media/{key}", key, self.objects[key], 10, WHEN)

    def list_pages(self) -> Iterator[list[MediaObject]]:
        keys = sorted(self.objects)
        for start in range(0, len(keys), self.page):
            self.pages_listed += 1
            yield [self._object(k) for k in keys[start : start + self.page]]

    def contains(self, bucket: str, key: str) -> bool:
        return bucket == "media"

    def head(self, key: str) -> MediaObject | None:
        return self._object(key) if key in self.objects else None

    def probe(self, obj: MediaObject) -> tuple[str | None, MediaProbe]:
        self.probed.append(obj.key)
        return "image/png", MediaProbe("image", None, 1, 1, "ok", None)


@pytest.fixture
def table(tmp_path: Path) -> InventoryTable:
    return InventoryTable(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")))


def update(bucket: Bucket, table: InventoryTable, run_id: str = "run00001-x") -> InventoryUpdate:
    return InventoryUpdate(
        cast(MediaSource, bucket), table, run_id, probe_in_run=2, batch_objects=2, flush_rows=2
    )


def statuses(table: InventoryTable) -> dict[str, str]:
    rows = table.read(columns=["key", "status"], without=()).to_pylist()
    return {r["key"]: r["status"] for r in rows}


def test_a_large_listing_fans_out_into_probe_batches_that_each_probe_only_their_own(
    table: InventoryTable,
) -> None:
    bucket = Bucket({f"k{i}.png": "e1" for i in range(5)})
    listing = update(bucket, table).reconcile()
    assert (listing.probed, listing.listed, bucket.probed) == (0, 5, [])
    assert listing.pending_batches == ("run00001-00000", "run00001-00001", "run00001-00002")
    assert set(statuses(table).values()) == {"pending"}
    for batch in listing.pending_batches:
        before = len(bucket.probed)
        assert update(bucket, table).probe_batch(batch).probed == len(bucket.probed) - before <= 2
    assert sorted(bucket.probed) == sorted(bucket.objects), "every object probed exactly once"
    assert set(statuses(table).values()) == {"ok"}
    again = update(bucket, table).reconcile()
    assert (again.probed, again.written.num_rows, again.pending_batches) == (0, 0, ())


def test_a_listing_probes_a_changed_etag_and_tombstones_what_is_gone(table: InventoryTable) -> None:
    bucket = Bucket({"a.png": "e1", "b.png": "e1"})
    update(bucket, table).reconcile()
    bucket.objects = {"a.png": "e2", "c.png": "e1"}
    bucket.probed.clear()
    listing = update(bucket, table).reconcile()
    assert sorted(bucket.probed) == ["a.png", "c.png"]
    assert (listing.removed, statuses(table)) == (1, {"a.png": "ok", "b.png": "removed", "c.png": "ok"})


def change(key: str, kind: str, etag: str | None, sequencer: str) -> ObjectChange:
    return ObjectChange("media", key, kind, etag, 10, sequence_position(sequencer), "2026-12-01T00:00:00Z")


def test_events_probe_only_their_keys_and_a_put_of_a_probed_etag_is_free(table: InventoryTable) -> None:
    bucket = Bucket({"a.png": "e1", "b.png": "e1"})  # within probe_in_run: probed by the listing itself
    update(bucket, table).reconcile()
    bucket.probed.clear()
    applied = update(bucket, table).apply(
        [change("a.png", CREATED, "e1", "0A"), change("b.png", REMOVED, None, "0B")]
    )
    assert (bucket.probed, applied.unchanged_events, applied.removed) == ([], 1, 1)
    assert statuses(table) == {"a.png": "ok", "b.png": "removed"}
    # A put from before the delete, delivered after it, stays out.
    late = update(bucket, table).apply([change("b.png", CREATED, "e0", "09")])
    assert (late.written.num_rows, bucket.probed) == (0, [])
    assert statuses(table)["b.png"] == "removed"
    # A put of a new ETag is probed, the once.
    update(bucket, table).apply([change("a.png", CREATED, "e2", "0C")])
    assert bucket.probed == ["a.png"]


def test_a_listing_never_reads_the_whole_bucket_into_memory_at_once(table: InventoryTable) -> None:
    bucket = Bucket({f"k{i:02d}.png": "e1" for i in range(9)}, page=2)
    listing = update(bucket, table).reconcile()
    assert bucket.pages_listed == 5 and listing.listed == 9
    # Fanned out past probe_in_run, flushed every flush_rows: more commits than one.
    assert listing.version is not None and listing.version >= 2
