"""What one inventory run changes: the S3 events it was given, one probe batch, or a listing of the prefix.

Each way reads only the rows it needs from the inventory table and merges only the rows it changed, in one
commit per step, so a run's cost follows what changed, not the library:
- `apply(changes)`: the changed keys alone (the media change sensor's runs). A duplicate, late or
  out-of-order event is a no-op: an event older than the row's sequencer, or a put of the ETag already
  probed, changes nothing. The merge's own predicate holds the same rule between concurrent runs.
- `probe_batch(batch)`: the rows a listing left pending for this batch (fan-out over run workers).
- `reconcile()`: the full listing, streamed a page at a time against a key index of the table (URIs and
  ETags only). Objects gone from the listing become tombstones. Up to `probe_in_run` new or changed objects
  (MEDIAEMBED_PROBE_BATCH_OBJECTS) are probed in the run; past that they are written pending, in batches of
  `batch_objects`, for the probe sensor to hand to runs of their own.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from resources.media.events import CREATED, ObjectChange, latest_per_object
from resources.media.probe import MediaProbe
from resources.media.probe_batch import PROBE_BATCH_OBJECTS
from resources.media.source import MediaObject, MediaSource
from resources.storage.s3_storage import ObjectChanged
from resources.tables.inventory_table import INVENTORY_SCHEMA, NOT_MEDIA, PENDING, REMOVED, InventoryTable
from resources.tables.segment_schema import media_id

PROBE_THREADS = 8
# Pending rows are merged this many at a time while a large listing streams (bounded memory).
FLUSH_ROWS = 100_000
PENDING_RETRY = timedelta(hours=6)
GONE_FROM_LISTING = "not in the bucket's listing any more"
REMOVED_BY_EVENT = "removed from the bucket (S3 event)"


@dataclass(frozen=True)
class InventoryChange:
    """What a run did to the inventory: the rows it merged and how it came to them."""

    mode: str  # events | probe batch | listing | nothing to do
    written: pa.Table  # INVENTORY_SCHEMA rows merged by this run
    version: int | None  # the table version of its last commit, None when it committed nothing
    probed: int
    removed: int
    unchanged_events: int  # duplicate, late or out-of-order events, and puts of a probed ETag
    pending_batches: tuple[str, ...] = ()
    listed: int | None = None  # objects the listing found (listing runs only)
    outside_prefix: int = 0  # events of keys outside the media prefix


def _row(obj: MediaObject, content_type: str | None, probed: MediaProbe, sequencer: str | None) -> dict:
    return {
        "media_uri": obj.uri,
        "media_id": media_id(obj.uri),
        "key": obj.key,
        "etag": obj.etag,
        "size_bytes": obj.size_bytes,
        "last_modified": obj.last_modified,
        "content_type": content_type,
        "modality": probed.modality,
        "duration_sec": probed.duration_sec,
        "width": probed.width,
        "height": probed.height,
        "status": probed.status,
        "reason": probed.reason,
        "probed_at": datetime.now(UTC),
        "event_sequencer": sequencer,
        "probe_batch": None,
    }


def _marker(uri: str, key: str, status: str, reason: str, sequencer: str | None, batch: str | None) -> dict:
    """A row that is not a probed object: a tombstone or a listed object waiting for its probe run."""
    return {
        "media_uri": uri,
        "media_id": media_id(uri),
        "key": key,
        "status": status,
        "reason": reason,
        "probed_at": datetime.now(UTC),
        "event_sequencer": sequencer,
        "probe_batch": batch,
    }


def _event_time(change: ObjectChange) -> datetime:
    try:
        return datetime.fromisoformat(change.event_time).astimezone(UTC)
    except ValueError:
        return datetime.now(UTC)


class InventoryUpdate:
    def __init__(
        self,
        media: MediaSource,
        table: InventoryTable,
        run_id: str,
        probe_in_run: int = PROBE_BATCH_OBJECTS,
        batch_objects: int = PROBE_BATCH_OBJECTS,
        flush_rows: int = FLUSH_ROWS,
    ) -> None:
        self.media = media
        self.table = table
        self.run_id = run_id
        self.probe_in_run = probe_in_run
        self.batch_objects = batch_objects
        self.flush_rows = flush_rows

    # -- probing -------------------------------------------------------------------------------------

    def probe(self, obj: MediaObject, sequencer: str | None = None, again: bool = True) -> dict:
        """The object's row. One object's failure is its own row's reason, never the run's. An object
        replaced since it was listed (or since its event) is probed once more as it is now, or becomes a
        tombstone if it is gone."""
        try:
            content_type, probed = self.media.probe(obj)
        except ObjectChanged as error:
            current = self.media.head(obj.key) if again else None
            if current is not None:
                return self.probe(current, sequencer, again=False)
            if again:
                return _marker(obj.uri, obj.key, REMOVED, "removed while it was probed", sequencer, None)
            content_type, probed = None, MediaProbe.problem("unreadable", str(error))
        except Exception as error:  # one object's failure must not stop the inventory of the others
            content_type, probed = None, MediaProbe.problem("unreadable", f"cannot read object: {error}")
        return _row(obj, content_type, probed, sequencer)

    def _probe_all(self, work: Iterable[tuple[MediaObject, str | None]]) -> list[dict]:
        with ThreadPoolExecutor(PROBE_THREADS) as pool:
            return list(pool.map(lambda item: self.probe(*item), work))

    # -- the three ways ------------------------------------------------------------------------------

    def apply(self, changes: list[ObjectChange]) -> InventoryChange:
        ours = [c for c in changes if self.media.contains(c.bucket, c.key)]
        latest = latest_per_object(ours)
        stored = {
            row["media_uri"]: row
            for row in self.table.read(
                columns=["media_uri", "etag", "status", "event_sequencer"],
                uris=[c.uri for c in latest],
                without=(),
            ).to_pylist()
        }
        rows: list[dict] = []
        to_probe: list[tuple[MediaObject, str | None]] = []
        for change in latest:
            row = stored.get(change.uri)
            if row is not None and row["event_sequencer"] and row["event_sequencer"] >= change.sequencer:
                continue  # an event older than (or the same as) the one the row holds
            if change.change != CREATED:
                rows.append(
                    _marker(change.uri, change.key, REMOVED, REMOVED_BY_EVENT, change.sequencer, None)
                )
            elif row is not None and row["etag"] == change.etag and row["status"] not in NOT_MEDIA:
                continue  # this version is probed already: nothing to pay for or read again
            else:
                obj = MediaObject(
                    change.uri, change.key, str(change.etag), change.size_bytes or 0, _event_time(change)
                )
                to_probe.append((obj, change.sequencer))
        rows += self._probe_all(to_probe)
        written = pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA)
        return InventoryChange(
            mode="events",
            written=written,
            version=self.table.merge(written),
            probed=len(to_probe),
            removed=_count(written, REMOVED),
            unchanged_events=len(latest) - len(rows),
            outside_prefix=len(changes) - len(ours),
        )

    def probe_batch(self, batch: str) -> InventoryChange:
        waiting = self.table.read(
            columns=["media_uri", "key", "etag", "size_bytes", "last_modified"], batch=batch, without=()
        ).to_pylist()
        objects = [
            MediaObject(r["media_uri"], r["key"], r["etag"], r["size_bytes"], r["last_modified"])
            for r in waiting
        ]
        written = pa.Table.from_pylist(self._probe_all((o, None) for o in objects), schema=INVENTORY_SCHEMA)
        return InventoryChange(
            mode=f"probe batch {batch}",
            written=written,
            version=self.table.merge(written, batch=batch),
            probed=len(objects),
            removed=_count(written, REMOVED),
            unchanged_events=0,
        )

    def reconcile(self) -> InventoryChange:
        listed_at = datetime.now(UTC)
        known = self.table.read(columns=["media_uri", "key", "etag", "status", "probed_at"], without=())
        index = pd.Index(known.column("media_uri").to_numpy(zero_copy_only=False))
        etags = known.column("etag").to_numpy(zero_copy_only=False)
        statuses = known.column("status").to_numpy(zero_copy_only=False)
        # Probed, or waiting for a probe run that may still come: both need nothing unless the ETag moved.
        # Pending rows listed longer ago than PENDING_RETRY (their run failed) are batched again.
        listed_long_ago = pd.Series(known.column("probed_at").to_pandas()).fillna(pd.Timestamp(0, tz=UTC))
        stale_pending = (statuses == PENDING) & (listed_long_ago < listed_at - PENDING_RETRY).to_numpy()
        settled = (statuses != REMOVED) & ~stale_pending
        seen = np.zeros(len(index), dtype=bool)
        to_probe: list[MediaObject] = []
        batches: list[str] = []
        fan_out = False
        version = None
        listed = 0
        for page in self.media.list_pages():
            listed += len(page)
            at = index.get_indexer([o.uri for o in page]) if len(index) else np.full(len(page), -1)
            for obj, position in zip(page, at, strict=True):
                if position >= 0:
                    seen[position] = True
                    if settled[position] and etags[position] == obj.etag:
                        continue
                to_probe.append(obj)
            fan_out = fan_out or len(to_probe) > self.probe_in_run
            if fan_out and len(to_probe) >= self.flush_rows:
                version = self._write_pending(to_probe, batches, listed_at) or version
                to_probe = []
        if fan_out:
            version = self._write_pending(to_probe, batches, listed_at) or version
            probed_rows: list[dict] = []
        else:
            probed_rows = self._probe_all((o, None) for o in to_probe)
        gone = ~seen & (statuses != REMOVED)
        tombstones = [
            _marker(uri, key, REMOVED, GONE_FROM_LISTING, None, None)
            for uri, key in zip(
                known.column("media_uri").filter(gone).to_pylist(),
                known.column("key").filter(gone).to_pylist(),
                strict=True,
            )
        ]
        written = pa.Table.from_pylist([*probed_rows, *tombstones], schema=INVENTORY_SCHEMA)
        version = self.table.merge(written, listed_at=listed_at) or version
        return InventoryChange(
            mode="listing",
            written=written,
            version=version,
            probed=len(probed_rows),
            removed=_count(written, REMOVED),
            unchanged_events=0,
            pending_batches=tuple(batches),
            listed=listed,
        )

    def _write_pending(
        self, objects: list[MediaObject], batches: list[str], listed_at: datetime
    ) -> int | None:
        """Listed objects written pending, `batch_objects` to a batch named after this run."""
        rows = []
        for start in range(0, len(objects), self.batch_objects):
            batch = f"{self.run_id[:8]}-{len(batches):05d}"
            batches.append(batch)
            reason = f"listed; waiting for probe run {batch}"
            for obj in objects[start : start + self.batch_objects]:
                row = _marker(obj.uri, obj.key, PENDING, reason, None, batch)
                rows.append(
                    row | {"etag": obj.etag, "size_bytes": obj.size_bytes, "last_modified": obj.last_modified}
                )
        return self.table.merge(pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA), listed_at=listed_at)


def _count(rows: pa.Table, status: str) -> int:
    return int(np.sum(rows.column("status").to_numpy(zero_copy_only=False) == status)) if rows.num_rows else 0
