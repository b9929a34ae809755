"""The Dagster definition of the seven table checks: one op that reads the version once (embedding table,
inventory, ledger, index) and yields each selected check's own result. Subsettable, so that one check can
still be run alone from the UI as when each was its own op."""

from collections.abc import Iterator

import dagster as dg

from assets_defs.inventory.media_inventory import read_inventory
from assets_defs.migration.checks.checked_version_asset import CHECKED, checked_model
from assets_defs.migration.checks.table_evaluations import (
    INDEX_COLUMNS,
    TABLE_CHECKS,
    TABLE_COLUMNS,
    IndexRead,
    VersionRead,
)
from resources.index.segment_index import SegmentIndex
from resources.migration.check_settings import VersionCheckSettings
from resources.providers.marengo_models import MarengoModel, marengo_model
from resources.storage.lake import Lake
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.submission_ledger import SubmissionLedger


def read_version(
    lake: Lake, segment_index: SegmentIndex, model: MarengoModel, settings: VersionCheckSettings
) -> VersionRead:
    """Everything the table checks look at: the embedding table in one read, and the media_uri and etag of
    the serving version's rows where another version serves."""
    serving_key = lake.serving_versions().current().serving
    serving = None
    if serving_key != model.key:
        held = EmbeddingTable(lake, marengo_model(serving_key)).read_stored(columns=["media_uri", "etag"])
        serving = (serving_key, held.to_pandas().drop_duplicates())
    return VersionRead(
        model=model,
        rows=EmbeddingTable(lake, model).read_stored(columns=TABLE_COLUMNS),
        inventory=read_inventory(lake),
        jobs=SubmissionLedger(lake, None).jobs(model.key),
        index=IndexRead(
            table_name=segment_index.table_name(model),
            rows=segment_index.scan(model, INDEX_COLUMNS),
            dimension=segment_index.vector_dimension(model),
            duplicate_rows=segment_index.duplicate_segment_ids(model),
        ),
        excluded=settings.excluded(),
        exclusions_from=settings.exclusion_source(),
        serving=serving,
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset=CHECKED, blocking=True, description=check.description)
        for name, check in TABLE_CHECKS.items()
    ],
    can_subset=True,
)
def table_checks(
    context: dg.AssetCheckExecutionContext,
    lake: Lake,
    segment_index: SegmentIndex,
    version_checks: VersionCheckSettings,
) -> Iterator[dg.AssetCheckResult]:
    read = read_version(lake, segment_index, checked_model(context), version_checks)
    for name, check in TABLE_CHECKS.items():
        key = dg.AssetCheckKey(CHECKED, name)
        if key in context.selected_asset_check_keys:
            yield check.evaluate(read).check_result(key)
