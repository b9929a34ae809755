"""The raw media inventory: every object under the media prefix, what it is, or why it cannot be used."""

from collections.abc import Collection
from dataclasses import asdict

import dagster as dg
import pandas as pd
from pydantic import Field

from assets_defs import keys
from assets_defs.inventory.inventory_update import InventoryChange, InventoryUpdate
from assets_defs.metadata import column_schema, preview
from resources.media.event_queue import MediaEventQueue
from resources.media.events import ObjectChange
from resources.media.source import MediaSource
from resources.storage.lake import Lake
from resources.tables.inventory_table import INVENTORY_SCHEMA, NOT_MEDIA, PENDING, InventoryTable

# The metadata entry counting objects gone since the previous inventory (the sensor reads it).
OBJECTS_REMOVED = "objects_removed"
# The probe batches a listing left pending (the probe sensor requests one run per batch).
PENDING_BATCHES = "pending_batches"


def read_inventory(
    lake: Lake, columns: list[str] | None = None, uris: Collection[str] | None = None
) -> pd.DataFrame:
    """The objects known as media or as a problem: no tombstones, nothing still waiting to be probed (of
    only `uris`, when given)."""
    wanted = None if uris is None else list(uris)
    return InventoryTable(lake).read(columns, uris=wanted, without=NOT_MEDIA).to_pandas()


def probed_durations(inventory: pd.DataFrame) -> dict[str, float | None]:
    """Media URI -> the probed duration in seconds (None: an image, or not known)."""
    return {
        uri: None if pd.isna(sec) else float(sec)
        for uri, sec in zip(inventory["media_uri"], inventory["duration_sec"], strict=True)
    }


class ChangedObject(dg.Config):
    """One S3 event's change to one object (resources/media/events.py ObjectChange)."""

    bucket: str
    key: str
    change: str = Field(description="created or removed")
    etag: str | None = None
    size_bytes: int | None = None
    sequencer: str = Field(description="the event's sequencer, padded (later events compare greater)")
    event_time: str = ""

    @classmethod
    def of(cls, change: ObjectChange) -> dict[str, object]:
        """The run config of one change."""
        return asdict(change)

    def to_change(self) -> ObjectChange:
        return ObjectChange(
            self.bucket, self.key, self.change, self.etag, self.size_bytes, self.sequencer, self.event_time
        )


class InventoryConfig(dg.Config):
    changes: list[ChangedObject] = Field(
        default=[],
        description="Apply these S3 event changes only (the media change sensor's runs): no listing.",
    )
    receipts: list[str] = Field(
        default=[],
        description="SQS receipt handles of the messages the changes came in, deleted once they commit.",
    )
    probe_batch: str = Field(default="", description="Probe the objects a listing left in this batch.")
    reconcile: bool = Field(
        default=False,
        description="List the whole prefix even though S3 events feed the inventory (the daily "
        "reconciliation, which catches missed events). Without a queue every run lists.",
    )


@dg.asset(
    key=keys.MEDIA_INVENTORY,
    group_name="media",
    kinds={"s3", "deltalake"},
    check_specs=[
        dg.AssetCheckSpec(
            "all_media_readable",
            asset=keys.MEDIA_INVENTORY,
            description="Warns about objects that are unsupported or cannot be decoded.",
        )
    ],
)
def media_inventory(
    context: dg.AssetExecutionContext,
    config: InventoryConfig,
    media: MediaSource,
    media_events: MediaEventQueue,
    lake: Lake,
) -> dg.MaterializeResult:
    """Every object under the media prefix with its modality and duration, in a Delta table.

    S3 events (MEDIAEMBED_MEDIA_QUEUE_URL) bring the changed keys; without them, or to reconcile, the run
    lists the prefix. Objects already probed at the same ETag are not read again; unsupported or
    unreadable objects stay in the inventory with a reason, so nothing disappears silently.
    """
    table = InventoryTable(lake)
    batch = media.probe_batch_objects()
    update = InventoryUpdate(media, table, context.run.run_id, probe_in_run=batch, batch_objects=batch)
    if config.probe_batch:
        change = update.probe_batch(config.probe_batch)
    elif config.changes:
        change = update.apply([c.to_change() for c in config.changes])
    elif config.reconcile or not media_events.configured or table.version() is None:
        change = update.reconcile()
    else:
        change = InventoryChange("nothing to do", INVENTORY_SCHEMA.empty_table(), None, 0, 0, 0)
    if config.receipts:  # after the commit: a run killed before it leaves the messages to come back
        for reason in media_events.delete(config.receipts):
            context.log.warning(f"an SQS message was not deleted ({reason}); it comes back and is a no-op")
    return _report(context, change, table, lake)


def _report(
    context: dg.AssetExecutionContext, change: InventoryChange, table: InventoryTable, lake: Lake
) -> dg.MaterializeResult:
    frame = table.read(["media_uri", "status", "reason", "modality", "duration_sec"]).to_pandas()
    pending = frame["status"] == PENDING
    usable = frame[frame["status"] == "ok"]
    problems = frame[(frame["status"] != "ok") & ~pending]
    written = change.written.select(["media_uri", "status", "reason", "modality", "duration_sec"]).to_pandas()
    context.log.info(
        f"{change.mode}: {len(written)} rows written, {change.probed} probed, {change.removed} removed, "
        f"{len(change.pending_batches)} probe batches; {len(frame)} objects, {len(problems)} unusable"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": column_schema(INVENTORY_SCHEMA),
            "mode": change.mode,
            "rows_written": len(written),
            "probed_this_run": change.probed,
            OBJECTS_REMOVED: change.removed,
            "unchanged_events": change.unchanged_events,
            "events_outside_prefix": change.outside_prefix,
            "objects_listed": change.listed if change.listed is not None else "not listed",
            "objects_pending": int(pending.sum()),
            PENDING_BATCHES: dg.MetadataValue.json(list(change.pending_batches)),
            "table_version": change.version if change.version is not None else table.version() or 0,
            "usable_objects": len(usable),
            "unusable_objects": len(problems),
            "by_modality": dg.MetadataValue.json(usable["modality"].value_counts().to_dict()),
            "media_seconds": float(usable["duration_sec"].fillna(0).sum()),
            "location": dg.MetadataValue.path(table.uri),
            "unusable_preview": preview(problems[["media_uri", "status", "reason"]]),
            "written_preview": preview(written[["media_uri", "status", "modality", "duration_sec"]]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="all_media_readable",
                passed=problems.empty,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"unusable": len(problems), "objects": preview(problems[["media_uri", "reason"]])},
            )
        ],
    )
