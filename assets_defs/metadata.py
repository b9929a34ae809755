"""Materialization metadata a user looks at: row counts, schemas and previews in the Dagster UI."""

import dagster as dg
import pandas as pd
import pyarrow as pa


def column_schema(schema: pa.Schema) -> dg.MetadataValue:
    columns = [dg.TableColumn(name=f.name, type=str(f.type)) for f in schema]
    return dg.MetadataValue.table_schema(dg.TableSchema(columns=columns))


def preview(frame: pd.DataFrame, limit: int = 10) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("_(none)_")
    return dg.MetadataValue.md(frame.head(limit).to_markdown(index=False))
