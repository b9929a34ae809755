"""Materialization metadata a user looks at: row counts, schemas and previews in the Dagster UI."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa


def materialization_metadata(record: dg.EventLogRecord) -> Mapping[str, Any]:
    """The metadata of a materialization record ({} for a record without one)."""
    materialization = record.asset_materialization
    return materialization.metadata if materialization is not None else {}


def column_schema(schema: pa.Schema) -> dg.MetadataValue:
    columns = [dg.TableColumn(name=f.name, type=str(f.type)) for f in schema]
    return dg.MetadataValue.table_schema(dg.TableSchema(columns=columns))


def preview(frame: pd.DataFrame, limit: int = 10) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("_(none)_")
    return dg.MetadataValue.md(frame.head(limit).to_markdown(index=False))
