"""The inventory's Delta table: merges by URI, event order kept, tombstones hidden, the old file folded in."""

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.inventory_table import (
    INVENTORY_SCHEMA,
    LEGACY_INVENTORY,
    MERGE_KEYS_LISTED,
    REMOVED,
    InventoryTable,
)
from tests.s3_key_matrix import hostile_keys


@pytest.fixture
def table(tmp_path: Path) -> InventoryTable:
    return InventoryTable(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")))


def rows(*items: tuple[str, str, str, str | None]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"media_uri": u, "etag": e, "status": s, "event_sequencer": q} for u, e, s, q in items],
        schema=INVENTORY_SCHEMA,
    )


def current(table: InventoryTable, **kw: tuple[str, ...]) -> dict[str, tuple[str, str, str | None]]:
    read = table.read(columns=["media_uri", "etag", "status", "event_sequencer"], **kw).to_pylist()
    return {r["media_uri"]: (r["etag"], r["status"], r["event_sequencer"]) for r in read}


def test_a_later_event_replaces_a_row_and_an_older_one_does_not(table: InventoryTable) -> None:
    table.merge(rows(("s3://m/a", "1", "ok", "0002"), ("s3://m/b", "1", "ok", "0002")))
    table.merge(rows(("s3://m/a", "2", "ok", "0003"), ("s3://m/b", "0", "ok", "0001")))
    assert current(table) == {"s3://m/a": ("2", "ok", "0003"), "s3://m/b": ("1", "ok", "0002")}


def test_a_listing_row_keeps_the_stored_sequencer(table: InventoryTable) -> None:
    table.merge(rows(("s3://m/a", "1", "ok", "0005")))
    table.merge(rows(("s3://m/a", "2", "ok", None)))
    assert current(table) == {"s3://m/a": ("2", "ok", "0005")}


def test_a_tombstone_is_hidden_but_keeps_a_late_put_out(table: InventoryTable) -> None:
    table.merge(rows(("s3://m/a", "1", "ok", "0001")))
    table.merge(rows(("s3://m/a", "1", REMOVED, "0009")))
    assert current(table) == {}
    table.merge(rows(("s3://m/a", "1", "ok", "0004")))  # the put before the delete, delivered late
    assert current(table, without=()) == {"s3://m/a": ("1", REMOVED, "0009")}


def test_reads_of_named_uris_and_pending_rows(table: InventoryTable) -> None:
    listed = rows(("s3://m/a", "1", "pending", None), ("s3://m/b", "1", "ok", None))
    listed = listed.set_column(
        listed.schema.get_field_index("probe_batch"), "probe_batch", pa.array(["r-1", None])
    )
    table.merge(listed)
    assert table.read(columns=["media_uri"], batch="r-1").column("media_uri").to_pylist() == ["s3://m/a"]
    assert table.read(columns=["media_uri"], uris=["s3://m/b", "s3://m/z"]).num_rows == 1
    assert sum(b.num_rows for b in table.batches(["media_uri"])) == 2


def test_the_single_file_of_the_old_layout_is_folded_into_version_0(table: InventoryTable) -> None:
    lake = table._lake
    old = pa.Table.from_pylist([{"media_uri": "s3://m/a", "etag": "1", "status": "ok"}])
    lake.write_table(
        old.cast(pa.schema([INVENTORY_SCHEMA.field(n) for n in old.column_names])), LEGACY_INVENTORY
    )
    assert table.version() == 0
    assert current(table) == {"s3://m/a": ("1", "ok", None)}
    assert lake.read_table(LEGACY_INVENTORY) is None


def test_a_listing_does_not_replace_what_an_event_wrote_after_it_began(table: InventoryTable) -> None:
    table.merge(rows(("s3://m/a", "1", "ok", None), ("s3://m/b", "1", "ok", "0001")))
    listed_at = datetime.now(UTC)
    event = rows(("s3://m/c", "2", "ok", "0003"))
    table.merge(event.set_column(13, "probed_at", pa.array([datetime.now(UTC)], pa.timestamp("us", "UTC"))))
    seen = rows(
        ("s3://m/a", "9", "ok", None), ("s3://m/b", "9", "ok", None), ("s3://m/c", "9", REMOVED, None)
    )
    seen = seen.set_column(13, "probed_at", pa.array([datetime.now(UTC)] * 3, pa.timestamp("us", "UTC")))
    table.merge(seen, listed_at=listed_at)
    # a and b were written before the listing began (b by an event with no time: before), c after it
    assert current(table) == {
        "s3://m/a": ("9", "ok", None),
        "s3://m/b": ("9", "ok", "0001"),
        "s3://m/c": ("2", "ok", "0003"),
    }


def test_a_probe_run_replaces_only_rows_still_waiting_for_its_batch(table: InventoryTable) -> None:
    listed = rows(("s3://m/a", "1", "pending", None), ("s3://m/b", "1", "pending", None))
    table.merge(listed.set_column(15, "probe_batch", pa.array(["r-1", "r-2"])))
    table.merge(rows(("s3://m/a", "1", "ok", None), ("s3://m/b", "1", "ok", None)), batch="r-1")
    assert current(table, without=()) == {"s3://m/a": ("1", "ok", None), "s3://m/b": ("1", "pending", None)}
    assert table.read(columns=["media_uri"], batch="r-1").num_rows == 0


@pytest.mark.parametrize("named", [MERGE_KEYS_LISTED, 1], ids=["keys named", "key range"])
def test_a_merge_bounded_to_its_keys_updates_and_inserts_any_s3_key_once(
    table: InventoryTable, named: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge names its keys to the target (quotes doubled) or their range; either way a key S3 allows
    is updated in place, never inserted twice, and rows outside the source are left as they are."""
    monkeypatch.setattr("resources.tables.inventory_table.MERGE_KEYS_LISTED", named)
    keys = [*hostile_keys(".png").values(), "it's a 'quote'.png", "back\\slash.png", "new\nline.png"]
    uris = [f"s3://m/{k}" for k in keys]
    table.merge(rows(*[(u, "1", "ok", "0001") for u in uris], ("s3://m/zz-other", "1", "ok", "0001")))
    table.merge(rows(*[(u, "2", "ok", "0002") for u in uris]))
    assert current(table) == {
        **{u: ("2", "ok", "0002") for u in uris},
        "s3://m/zz-other": ("1", "ok", "0001"),
    }
    assert table.read(columns=["media_uri"], without=()).num_rows == len(uris) + 1
