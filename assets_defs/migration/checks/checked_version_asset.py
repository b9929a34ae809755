"""`migration/checked_version`: the asset the whole-version checks hang on, one partition per model
version."""

import dagster as dg

from assets_defs import keys
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.search.segment_index import marengo_segment_index
from resources.providers.marengo_models import MarengoModel, marengo_model
from resources.storage.lake import Lake
from resources.tables.embedding_table import EmbeddingTable

CHECKED = keys.MIGRATION_CHECKED_VERSION


@dg.asset(
    key=CHECKED,
    deps=[marengo_segment_index],
    partitions_def=marengo_model_partitions,
    group_name="migration",
    description="A version's embedding table and index, checked as a whole before search may be cut "
    "over to it. Materialized by the `cut_over_serving_version` job: its blocking checks gate "
    "search/serving_version.",
)
def checked_version(context: dg.AssetExecutionContext, lake: Lake) -> dg.MaterializeResult:
    """Where the whole-version checks hang: apart from the index, so that ingest runs and backfills, which
    end while jobs are still in flight, never fail on a version that is simply not finished yet."""
    model = marengo_model(context.partition_key)
    table = EmbeddingTable(lake, model)
    return dg.MaterializeResult(
        metadata={"embedding_table_version": table.version() if table.open() else -1, "model": model.key}
    )


def checked_model(context: dg.AssetCheckExecutionContext) -> MarengoModel:
    """The version a check run looks at: the run's partition (the checks themselves are not partitioned)."""
    return marengo_model(context.op_execution_context.partition_key)
