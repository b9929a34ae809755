"""Materialization metadata a user looks at: row counts, schemas and previews in the Dagster UI."""

import time
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa


def materialization_metadata(record: dg.EventLogRecord) -> Mapping[str, Any]:
    """The metadata of a materialization record ({} for a record without one)."""
    materialization = record.asset_materialization
    return materialization.metadata if materialization is not None else {}


def last_reported_within(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    partition: str,
    metadata_key: str,
    every_sec: float,
    look_back: int = 20,
) -> bool:
    """Whether one of the partition's last `look_back` materializations carrying `metadata_key` is younger
    than `every_sec` (a report or an audit that costs the library's size, made at most that often)."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key, asset_partitions=[partition]), limit=look_back
    ).records
    reported = [r.timestamp for r in records if metadata_key in materialization_metadata(r)]
    return bool(reported) and time.time() - max(reported) < every_sec


def column_schema(schema: pa.Schema) -> dg.MetadataValue:
    columns = [dg.TableColumn(name=f.name, type=str(f.type)) for f in schema]
    return dg.MetadataValue.table_schema(dg.TableSchema(columns=columns))


def preview(frame: pd.DataFrame, limit: int = 10) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("_(none)_")
    return dg.MetadataValue.md(frame.head(limit).to_markdown(index=False))
