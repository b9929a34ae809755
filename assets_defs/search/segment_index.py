"""The LanceDB segment index, kept in step with the Delta Lake embedding table."""

import dagster as dg
import pandas as pd
from pydantic import Field

from assets_defs import keys
from assets_defs.marengo.embeddings import marengo_embeddings
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.metadata import column_schema, last_reported_within, preview
from assets_defs.search.index_plan import DEFAULT_MAX_REMOVAL_SHARE, RemovalPolicy
from assets_defs.search.index_update import IndexReport, IndexUpdate
from assets_defs.search.serving_record import serving_so_far
from resources.index.segment_index import SegmentIndex
from resources.providers.marengo_models import marengo_model
from resources.storage.lake import Lake
from resources.tables.segment_schema import segment_schema

NAMES_IN_METADATA = 50
# A scoped run audits every object anyway when the index had no full audit for this long.
FULL_AUDIT_EVERY_SEC = 600.0
FULL_AUDIT_KEY = "full_audit"  # metadata of the runs that audited every object


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
    media_uris: list[str] | None = Field(
        default=None,
        description="Audit and update only these objects, and remove none (the invocation sensor's runs name "
        "the objects whose finished jobs they were handed, so an update costs what changed, not the "
        "library). Unset: every object, removals included.",
    )
    full_audit_every_sec: float = Field(
        default=FULL_AUDIT_EVERY_SEC,
        ge=0,
        description="A run given media_uris audits every object anyway when the version's index had no "
        "full audit in this long: what a scoped update cannot see (copies written by a crashed writer, "
        "objects gone) is still found.",
    )

    def policy(self) -> RemovalPolicy:
        return RemovalPolicy(
            self.max_removal_share, self.confirm_removals, frozenset(self.confirm_removal_uris)
        )


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
    # Scoped only while a full audit of this version is recent: the first run of an instance audits all.
    scoped = config.media_uris is not None and last_reported_within(
        context.instance,
        keys.SEARCH_MARENGO_SEGMENTS,
        context.partition_key,
        FULL_AUDIT_KEY,
        config.full_audit_every_sec,
    )
    update = IndexUpdate(
        lake=lake,
        index=segment_index,
        model=marengo_model(context.partition_key),
        policy=config.policy(),
        holder=f"run {context.run.run_id}",
        log=context.log.info,
        warn=context.log.warning,
        scope=frozenset(config.media_uris or ()) if scoped else None,
    )
    report = update.run()
    # The first index of a new instance: the UI shows what serves, before any cut-over is made.
    serving = serving_so_far(context.instance, lake)
    if serving is not None:
        context.log_event(serving)
    state, plan = report.state, report.plan
    context.log.info(
        f"{state.table}: {state.rows} rows at version {state.version}, {report.audited} audited, "
        f"{len(plan.rewrite)} objects written "
        f"({len(plan.repaired)} repaired), {len(plan.delete)} removed, {len(plan.held)} kept for confirmation"
    )
    return materialize_result(report, segment_index)


def materialize_result(report: IndexReport, segment_index: SegmentIndex) -> dg.MaterializeResult:
    """The update's outcome as the asset's metadata and its three checks."""
    state, plan = report.state, report.plan
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": state.rows,
            "dagster/column_schema": column_schema(segment_schema(report.model.dimension)),
            "table": state.table,
            "uri": dg.MetadataValue.path(segment_index.uri),
            "table_version": state.version,
            "objects_updated": len(plan.rewrite),
            "objects_repaired": len(plan.repaired),
            "objects_removed": len(plan.delete),
            "embedding_table_objects_removed": report.table_objects_removed,
            "embedding_table_version": report.table_version,
            "objects_held": len(plan.held),
            "audited": report.audited,
            **({FULL_AUDIT_KEY: True} if report.scope is None else {}),
            "objects_indexed": len(report.wanted),
            "duplicate_rows_removed": report.duplicate_rows_removed,
            "vector_index": state.vector_index
            or f"none (exact search below {segment_index.ann_min_rows} rows)",
            "unindexed_rows": state.unindexed_rows,
            "scalar_index_unindexed_rows": state.scalar_unindexed_rows,
            "vector_index_segments": state.index_segments,
            "vector_index_action": report.vector_index_action,
            "updated_preview": preview(report.written),
            "repaired_preview": preview(
                pd.DataFrame([{"media_uri": uri, "problem": p} for uri, p in report.repaired()])
            ),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="matches_embedding_table",
                passed=report.rows_compared[0] == report.rows_compared[1],
                metadata={
                    "index_rows": report.rows_compared[0],
                    "expected_rows": report.rows_compared[1],
                    "audited": report.audited,
                },
            ),
            dg.AssetCheckResult(
                check_name="no_duplicate_segment_ids",
                passed=report.duplicate_segment_ids == 0,
                metadata={"duplicate_rows": report.duplicate_segment_ids, "index_rows": state.rows},
            ),
            removals_check(report),
        ],
    )


def removals_check(report: IndexReport) -> dg.AssetCheckResult:
    plan, policy = report.plan, report.policy
    return dg.AssetCheckResult(
        check_name="removals_confirmed",
        passed=not plan.held,
        description=report.held_message() if plan.held else None,
        metadata={
            "waiting_for_confirmation": len(plan.held),
            "indexed_objects": plan.indexed_objects,
            "max_removal_share": policy.max_share,
            "would_remove": _names(report.held_uris),
        },
    )


def _names(uris: list[str]) -> dg.MetadataValue:
    shown = sorted(uris)[:NAMES_IN_METADATA]
    more = f"\n\n_and {len(uris) - len(shown)} more_" if len(uris) > len(shown) else ""
    return dg.MetadataValue.md("\n".join(f"- `{u}`" for u in shown) + more if shown else "_(none)_")
