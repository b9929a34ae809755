"""The full-text index over Pegasus descriptions and chapters, kept in step with their Delta tables."""

import dagster as dg
import pandas as pd
import pyarrow as pa

from assets_defs import keys
from assets_defs.metadata import column_schema, preview
from assets_defs.pegasus.descriptions import pegasus_chapters, pegasus_descriptions
from resources.index.description_index import DescriptionIndex
from resources.search.description_search import (
    CHAPTER,
    TEXT_SCHEMA,
    TRUNCATED,
    object_digests,
    plan_text_sync,
    text_rows,
)
from resources.storage.lake import Lake
from resources.tables.description_tables import chapter_table, description_table

NAMES_IN_METADATA = 50


@dg.asset(
    key=keys.SEARCH_DESCRIPTION_INDEX,
    deps=[pegasus_descriptions, pegasus_chapters],
    group_name="search",
    kinds={"lancedb"},
    pool="lancedb_writer",
    check_specs=[
        dg.AssetCheckSpec(
            "matches_description_tables",
            asset=keys.SEARCH_DESCRIPTION_INDEX,
            description="The index holds exactly the rows the description and chapter tables give, "
            "object by object.",
        ),
    ],
)
def search_descriptions(
    context: dg.AssetExecutionContext, lake: Lake, description_index: DescriptionIndex
) -> dg.MaterializeResult:
    """Word search over every description and chapter (LanceDB native full-text search): a chapter is
    found with its start and end seconds, a whole-object description (summary, keywords) without.

    Derived from the tables each run: objects whose rows changed are rewritten, objects no longer
    described removed, under the table's writer lock; the FTS index takes in the new rows once per run.
    """
    rows = text_rows(description_table(lake).read().to_pylist(), chapter_table(lake).read().to_pylist())
    result = description_index.sync(
        pa.Table.from_pylist(rows, schema=TEXT_SCHEMA),
        holder=f"run {context.run.run_id}",
        on_wait=context.log.info,
    )
    state = result.state
    wanted = object_digests(rows)
    differ, extra = plan_text_sync(wanted, object_digests(description_index.indexed_rows().to_pylist()))
    frame = pd.DataFrame(rows, columns=TEXT_SCHEMA.names)
    truncated = frame[frame["finish_reason"] == TRUNCATED]
    uris = dict(zip(frame["media_id"], frame["media_uri"], strict=True))
    context.log.info(
        f"{state.table}: {state.rows} rows of {state.objects} objects at version {state.version}, "
        f"{len(result.updated)} objects written, {len(result.removed)} removed"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": state.rows,
            "dagster/column_schema": column_schema(TEXT_SCHEMA),
            "table": state.table,
            "uri": dg.MetadataValue.path(description_index.uri),
            "table_version": state.version,
            "objects": state.objects,
            "objects_updated": len(result.updated),
            "objects_removed": len(result.removed),
            "chapters": int((frame["kind"] == CHAPTER).sum()),
            "descriptions": int((frame["kind"] != CHAPTER).sum()),
            "length_truncated_rows": len(truncated),
            "fts_index": "native FTS on text" if state.fts_index else "none",
            "unindexed_rows": state.unindexed_rows,
            "updated_preview": preview(
                pd.DataFrame({"media_uri": [uris[m] for m in result.updated[:NAMES_IN_METADATA]]})
            ),
            "preview": preview(frame[["media_uri", "kind", "start_sec", "end_sec", "text"]]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="matches_description_tables",
                passed=state.rows == len(rows) and not differ and not extra,
                metadata={
                    "index_rows": state.rows,
                    "table_rows": len(rows),
                    "objects_differing": len(differ),
                    "objects_not_described": len(extra),
                },
            )
        ],
    )
