"""The LanceDB segment index, kept in step with the Delta Lake embedding table."""

import dagster as dg
import pandas as pd
from pydantic import Field

from assets_defs import keys
from assets_defs.inventory.media_inventory import read_inventory
from assets_defs.marengo.embeddings import marengo_embeddings
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.metadata import column_schema, preview
from assets_defs.search.index_plan import (
    DEFAULT_MAX_REMOVAL_SHARE,
    ExpectedObject,
    IndexPlan,
    RemovalPolicy,
    held_message,
    plan_index_update,
)
from resources.index.segment_index import SegmentIndex
from resources.providers.marengo_models import MarengoModel, marengo_model
from resources.storage.lake import Lake
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_schema import media_id, segment_schema
from resources.tables.submission_ledger import SubmissionLedger

MEDIA_PER_WRITE = 500
NAMES_IN_METADATA = 50


class SegmentIndexConfig(dg.Config):
    max_removal_share: float = Field(
        default=DEFAULT_MAX_REMOVAL_SHARE,
        ge=0,
        le=1,
        description="Objects no longer listed leave the index only while they are at most this share of "
        "the indexed objects; more wait for confirmation (a wrong prefix or a partial listing).",
    )
    confirm_removals: bool = Field(
        default=False, description="Remove every object no longer listed, however many that is."
    )
    confirm_removal_uris: list[str] = Field(
        default_factory=list, description="Remove these media URIs (as named by the check) now."
    )

    def policy(self) -> RemovalPolicy:
        return RemovalPolicy(
            self.max_removal_share, self.confirm_removals, frozenset(self.confirm_removal_uris)
        )


def current_embeddings(lake: Lake, model: MarengoModel, inventory: pd.DataFrame) -> pd.DataFrame:
    """The latest completed embedding of each object still in the bucket: what the index should hold.

    An object whose ETag changed keeps its previous embedding until the new one lands, so it stays
    searchable; an object gone from the inventory goes from the index.
    """
    jobs = SubmissionLedger(lake, None).jobs(model.key)
    done = jobs[
        jobs["status"].isin(["completed", "no_content"]) & jobs["media_uri"].isin(inventory["media_uri"])
    ]
    latest = done.sort_values("recorded_at").drop_duplicates("media_uri", keep="last")
    # A latest version with no content (no segments) takes the object's older segments out of the index.
    return latest[latest["status"] == "completed"].reset_index(drop=True)


def expected_objects(expected: pd.DataFrame) -> dict[str, ExpectedObject]:
    rows = expected[["media_uri", "invocation_id", "segments"]].to_dict("records")
    return {
        media_id(str(r["media_uri"])): ExpectedObject(
            str(r["media_uri"]),
            str(r["invocation_id"]),
            None if pd.isna(r["segments"]) else int(r["segments"]),
        )
        for r in rows
    }


def _names(uris: list[str]) -> dg.MetadataValue:
    shown = sorted(uris)[:NAMES_IN_METADATA]
    more = f"\n\n_and {len(uris) - len(shown)} more_" if len(uris) > len(shown) else ""
    return dg.MetadataValue.md("\n".join(f"- `{u}`" for u in shown) + more if shown else "_(none)_")


@dg.asset(
    key=keys.SEARCH_MARENGO_SEGMENTS,
    deps=[marengo_embeddings],
    partitions_def=marengo_model_partitions,
    group_name="search",
    kinds={"lancedb"},
    pool="lancedb_writer",
    check_specs=[
        dg.AssetCheckSpec(
            "matches_embedding_table",
            asset=keys.SEARCH_MARENGO_SEGMENTS,
            description="The index holds exactly the segments of the latest embedding of every object.",
        ),
        dg.AssetCheckSpec(
            "no_duplicate_segment_ids",
            asset=keys.SEARCH_MARENGO_SEGMENTS,
            blocking=True,
            description="0 duplicate segment ids: every segment is in the index once.",
        ),
        dg.AssetCheckSpec(
            "removals_confirmed",
            asset=keys.SEARCH_MARENGO_SEGMENTS,
            description="No object waits for confirmation to leave the index; names those that would go.",
        ),
    ],
)
def marengo_segment_index(
    context: dg.AssetExecutionContext,
    config: SegmentIndexConfig,
    lake: Lake,
    segment_index: SegmentIndex,
) -> dg.MaterializeResult:
    """Vector search over every segment of this model version, updated incrementally and self-repairing.

    Under the table's writer lock (one writer at a time, whatever the pools), the index is audited object
    by object against the latest embedding of each listed object. Objects that are new, re-embedded or
    wrongly held (duplicate rows, rows of another invocation or model, a different segment count) are
    rewritten from the embedding table, 500 per LanceDB version; objects no longer listed are dropped,
    unless they are more than `max_removal_share` of the index, which waits for confirmation (run config
    or launchpad). An ANN index is built once the table is large enough. The index is derived: the
    embedding table rebuilds it.
    """
    model = marengo_model(context.partition_key)
    inventory = read_inventory(lake)
    expected = current_embeddings(lake, model, inventory)
    wanted = expected_objects(expected)
    policy = config.policy()
    with segment_index.writer(model, holder=f"run {context.run.run_id}", on_wait=context.log.info):
        indexed = segment_index.audit(model)
        listed_ids = set(inventory["media_uri"].map(media_id))
        plan = plan_index_update(wanted, indexed, model.key, policy, listed_ids)
        held_uris = [indexed[mid].media_uri for mid in plan.held]
        if plan.held:
            context.log.warning(held_message(plan, held_uris, policy))
        for mid, problem in sorted(plan.repaired.items()):
            context.log.warning(f"repairing {wanted[mid].media_uri} in the index: {problem}")
        deduplicated = segment_index.remove_duplicate_rows(model, plan.deduplicate)
        segment_index.remove_media(model, plan.delete, maintain=False)
        # The embedding table follows the same decision: objects gone from the bucket leave its current
        # version (history keeps them), unless held for confirmation. Only gone ones: an ingest run may
        # be committing listed objects right now, before the ledger says so.
        table = EmbeddingTable(lake, model)
        table.ensure()
        listed = set(inventory["media_uri"])
        stale = sorted(
            mid
            for mid, uri in table.media_uris().items()
            if uri not in listed and mid not in wanted and mid not in plan.held
        )
        table.delete(stale)
        rewrite = expected.set_index(expected["media_uri"].map(media_id)).loc[plan.rewrite]
        for start in range(0, len(rewrite), MEDIA_PER_WRITE):
            batch = rewrite.iloc[start : start + MEDIA_PER_WRITE]
            segments = table.read(list(batch.index))
            segment_index.replace_media(model, segments, list(batch.index), maintain=False)
        # Once per run, after every write: each optimize() leaves one more index segment to search.
        vector_action, vector_reason = segment_index.maintain_indexes(model)
        state = segment_index.state(model)
        duplicates = segment_index.duplicate_segment_ids(model)

    expected_rows = int(expected["segments"].fillna(0).sum())
    context.log.info(
        f"{state.table}: {state.rows} rows at version {state.version}, {len(plan.rewrite)} objects written "
        f"({len(plan.repaired)} repaired), {len(plan.delete)} removed, {len(plan.held)} kept for confirmation"
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": state.rows,
            "dagster/column_schema": column_schema(segment_schema(model.dimension)),
            "table": state.table,
            "uri": dg.MetadataValue.path(segment_index.uri),
            "table_version": state.version,
            "objects_updated": len(plan.rewrite),
            "objects_repaired": len(plan.repaired),
            "objects_removed": len(plan.delete),
            "embedding_table_objects_removed": len(stale),
            "embedding_table_version": table.version(),
            "objects_held": len(plan.held),
            "objects_indexed": len(expected),
            "duplicate_rows_removed": deduplicated
            + sum(indexed[mid].duplicate_rows for mid in plan.repaired),
            "vector_index": state.vector_index
            or f"none (exact search below {segment_index.ann_min_rows} rows)",
            "unindexed_rows": state.unindexed_rows,
            "scalar_index_unindexed_rows": state.scalar_unindexed_rows,
            "vector_index_segments": state.index_segments,
            "vector_index_action": f"{vector_action}: {vector_reason}",
            "updated_preview": preview(
                rewrite.reset_index(drop=True)[["media_uri", "segments", "invocation_id"]]
            ),
            "repaired_preview": preview(
                pd.DataFrame(
                    [
                        {"media_uri": wanted[m].media_uri, "problem": p}
                        for m, p in sorted(plan.repaired.items())
                    ]
                )
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="matches_embedding_table",
                passed=state.rows == expected_rows,
                metadata={"index_rows": state.rows, "expected_rows": expected_rows},
            ),
            dg.AssetCheckResult(
                check_name="no_duplicate_segment_ids",
                passed=duplicates == 0,
                metadata={"duplicate_rows": duplicates, "index_rows": state.rows},
            ),
            removals_check(plan, held_uris, policy),
        ],
    )


def removals_check(plan: IndexPlan, held_uris: list[str], policy: RemovalPolicy) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="removals_confirmed",
        passed=not plan.held,
        description=held_message(plan, held_uris, policy) if plan.held else None,
        metadata={
            "waiting_for_confirmation": len(plan.held),
            "indexed_objects": plan.indexed_objects,
            "max_removal_share": policy.max_share,
            "would_remove": _names(held_uris),
        },
    )
