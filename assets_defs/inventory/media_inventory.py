"""The raw media inventory: every object under the media prefix, what it is, or why it cannot be used."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pyarrow as pa

from assets_defs import keys
from assets_defs.metadata import column_schema, preview
from resources.media.probe import MediaProbe
from resources.media.source import MediaObject, MediaSource
from resources.storage.lake import Lake
from resources.tables.inventory_table import LEGACY_INVENTORY, OBJECT_SCHEMA
from resources.tables.segment_schema import media_id

# The single Parquet file the inventory is until this asset merges into InventoryTable (issue 24).
INVENTORY_PATH = LEGACY_INVENTORY
INVENTORY_SCHEMA = OBJECT_SCHEMA
PROBE_THREADS = 8
# The metadata entry counting objects gone since the previous inventory (the sensor reads it).
OBJECTS_REMOVED = "objects_removed"


def read_inventory(lake: Lake) -> pd.DataFrame:
    table = lake.read_table(INVENTORY_PATH)
    return (table if table is not None else INVENTORY_SCHEMA.empty_table()).to_pandas()


def probed_durations(inventory: pd.DataFrame) -> dict[str, float | None]:
    """Media URI -> the probed duration in seconds (None: an image, or not known)."""
    return {
        uri: None if pd.isna(sec) else float(sec)
        for uri, sec in zip(inventory["media_uri"], inventory["duration_sec"], strict=True)
    }


def _probe_row(media: MediaSource, obj: MediaObject) -> dict[str, object]:
    try:
        content_type, probed = media.probe(obj)
    except Exception as error:  # one object's failure must not stop the inventory of the others
        content_type, probed = None, MediaProbe.problem("unreadable", f"cannot read object: {error}")
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
    }


@dg.asset(
    key=keys.MEDIA_INVENTORY,
    group_name="media",
    kinds={"s3", "parquet"},
    check_specs=[
        dg.AssetCheckSpec(
            "all_media_readable",
            asset=keys.MEDIA_INVENTORY,
            description="Warns about objects that are unsupported or cannot be decoded.",
        )
    ],
)
def media_inventory(
    context: dg.AssetExecutionContext, media: MediaSource, lake: Lake
) -> dg.MaterializeResult:
    """Every object under the media prefix with its modality and duration.

    Objects already probed at the same ETag are not read again; unsupported or unreadable objects stay in
    the inventory with a reason, so nothing disappears silently.
    """
    previous = lake.read_table(INVENTORY_PATH) or INVENTORY_SCHEMA.empty_table()
    known = {(row["media_uri"], row["etag"]): row for row in previous.to_pylist() if row["status"] == "ok"}
    objects = list(media.list_objects())
    # Gone from the bucket since the last inventory: the invocation sensor has them dropped from search.
    removed = len(set(previous.column("media_uri").to_pylist()) - {o.uri for o in objects})
    fresh = [o for o in objects if (o.uri, o.etag) not in known]
    with ThreadPoolExecutor(PROBE_THREADS) as pool:
        probed = {row["media_uri"]: row for row in pool.map(lambda o: _probe_row(media, o), fresh)}
    rows = [known.get((o.uri, o.etag)) or probed[o.uri] for o in objects]
    table = pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA)
    lake.write_table(table, INVENTORY_PATH)

    frame = table.to_pandas()
    usable = frame[frame["status"] == "ok"]
    problems = frame[frame["status"] != "ok"]
    context.log.info(f"{len(frame)} objects, {len(fresh)} probed, {len(problems)} unusable")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": column_schema(INVENTORY_SCHEMA),
            "probed_this_run": len(fresh),
            OBJECTS_REMOVED: removed,
            "usable_objects": len(usable),
            "unusable_objects": len(problems),
            "by_modality": dg.MetadataValue.json(usable["modality"].value_counts().to_dict()),
            "media_seconds": float(usable["duration_sec"].fillna(0).sum()),
            "location": dg.MetadataValue.path(lake.uri(INVENTORY_PATH)),
            "unusable_preview": preview(problems[["media_uri", "status", "reason"]]),
            "preview": preview(usable[["media_uri", "modality", "duration_sec", "size_bytes"]]),
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
