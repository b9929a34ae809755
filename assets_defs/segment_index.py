"""The LanceDB segment index, kept in step with the Parquet embedding table."""

import dagster as dg
import pandas as pd

from assets_defs.marengo_embeddings import marengo_embeddings
from assets_defs.media_inventory import read_inventory
from assets_defs.metadata import column_schema, preview
from assets_defs.partitions import marengo_model_partitions
from resources.lake import Lake
from resources.marengo_models import MarengoModel, marengo_model
from resources.segment_index import SegmentIndex
from resources.segment_schema import media_id, segment_schema
from resources.submission_ledger import SubmissionLedger

MEDIA_PER_WRITE = 500


def current_embeddings(lake: Lake, model: MarengoModel, inventory: pd.DataFrame) -> pd.DataFrame:
    """The latest completed embedding of each object still in the bucket: what the index should hold.

    An object whose ETag changed keeps its previous embedding until the new one lands, so it stays
    searchable; an object gone from the inventory goes from the index.
    """
    jobs = SubmissionLedger(lake, provider="").jobs(model.key)
    done = jobs[
        jobs["status"].isin(["completed", "no_content"]) & jobs["media_uri"].isin(inventory["media_uri"])
    ]
    latest = done.sort_values("recorded_at").drop_duplicates("media_uri", keep="last")
    # A latest version with no content (no segments) takes the object's older segments out of the index.
    return latest[latest["status"] == "completed"].reset_index(drop=True)


@dg.asset(
    key=["search", "marengo_segments"],
    deps=[marengo_embeddings],
    partitions_def=marengo_model_partitions,
    group_name="search",
    kinds={"lancedb"},
    pool="lancedb_writer",
    check_specs=[
        dg.AssetCheckSpec(
            "matches_embedding_table",
            asset=["search", "marengo_segments"],
            description="The index holds exactly the segments of the latest embedding of every object.",
        )
    ],
)
def marengo_segment_index(
    context: dg.AssetExecutionContext, lake: Lake, segment_index: SegmentIndex
) -> dg.MaterializeResult:
    """Vector search over every segment of this model version, updated incrementally.

    Only objects whose latest embedding is not yet in the index are read from Parquet; each batch replaces
    those objects' segments in one LanceDB version, and objects deleted from the bucket are dropped. An ANN
    index is built once the table is large enough. The index is derived: Parquet can always rebuild it.
    """
    model = marengo_model(context.partition_key)
    inventory = read_inventory(lake)
    expected = current_embeddings(lake, model, inventory)
    expected_ids = dict(zip(expected["media_uri"].map(media_id), expected["invocation_id"], strict=True))
    indexed = segment_index.indexed_media(model)
    # An object needs (re)indexing unless the index holds exactly its latest embedding.
    stale = [indexed.get(mid) != {inv} for mid, inv in expected_ids.items()]
    todo = expected.loc[pd.Series(stale, index=expected.index, dtype=bool)]
    removed = sorted(set(indexed) - set(expected_ids))
    if inventory.empty and removed:
        # An empty bucket listing is far likelier a wrong prefix or a lost inventory than every object
        # deleted at once: keep serving, and let the check below fail.
        context.log.warning(f"the inventory lists no objects; keeping the {len(removed)} indexed objects")
        removed = []
    state = segment_index.remove_media(model, removed)
    for start in range(0, len(todo), MEDIA_PER_WRITE):
        batch = todo.iloc[start : start + MEDIA_PER_WRITE]
        segments = (
            lake.read_tables(list(batch["table_path"])) or segment_schema(model.dimension).empty_table()
        )
        state = segment_index.replace_media(model, segments, [media_id(u) for u in batch["media_uri"]])

    expected_rows = int(expected["segments"].fillna(0).sum())
    context.log.info(
        f"{state.table}: {state.rows} rows at version {state.version}, {len(todo)} objects added"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": state.rows,
            "dagster/column_schema": column_schema(segment_schema(model.dimension)),
            "table": state.table,
            "uri": dg.MetadataValue.path(segment_index.uri),
            "table_version": state.version,
            "objects_updated": len(todo),
            "objects_removed": len(removed),
            "objects_indexed": len(expected),
            "vector_index": state.vector_index
            or f"none (exact search below {segment_index.ann_min_rows} rows)",
            "unindexed_rows": state.unindexed_rows,
            "updated_preview": preview(todo[["media_uri", "segments", "invocation_id"]]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="matches_embedding_table",
                passed=state.rows == expected_rows,
                metadata={"index_rows": state.rows, "expected_rows": expected_rows},
            )
        ],
    )
