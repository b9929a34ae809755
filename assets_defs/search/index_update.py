"""One update of a Marengo version's LanceDB segment index from its embedding table. Plain code: the asset
`search/marengo_segments` builds an `IndexUpdate`, runs it, and turns its `IndexReport` into a
materialization and its checks.

Under the table's writer lock (one writer at a time, whatever the pools), the index is audited object by
object against the latest embedding of each listed object. Objects that are new, re-embedded or wrongly held
(duplicate rows, rows of another invocation or model, a different segment count) are rewritten from the
embedding table, `MEDIA_PER_WRITE` per LanceDB version; objects no longer listed are dropped unless the
`RemovalPolicy` holds them for confirmation.

An update of a `scope` (the objects whose finished jobs a sensor's ingest run was handed) audits, reads and
rewrites those objects only, so its cost follows what changed, not the library; it removes nothing (a
removal is judged against the whole index, by the full audit the sensor requests for removals and that runs
at least every `full_audit_every_sec`).
"""

from collections.abc import Callable, Collection
from dataclasses import dataclass

import pandas as pd

from assets_defs.inventory.media_inventory import read_inventory
from assets_defs.search.index_plan import (
    ExpectedObject,
    IndexPlan,
    RemovalPolicy,
    held_message,
    plan_index_update,
)
from resources.index.segment_index import IndexedObject, IndexState, SegmentIndex
from resources.media.thumbnails import ThumbnailStore
from resources.providers.marengo_models import MarengoModel
from resources.storage.lake import Lake
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_schema import media_id
from resources.tables.submission_ledger import DONE_STATUSES, SubmissionLedger

MEDIA_PER_WRITE = 500


def current_embeddings(
    lake: Lake, model: MarengoModel, inventory: pd.DataFrame, uris: Collection[str] | None = None
) -> pd.DataFrame:
    """The latest completed embedding of each object still in the bucket (of only `uris`, when given):
    what the index should hold.

    An object whose ETag changed keeps its previous embedding until the new one lands, so it stays
    searchable; an object gone from the inventory goes from the index.
    """
    columns = ["media_uri", "status", "recorded_at", "invocation_id", "segments"]
    jobs = SubmissionLedger(lake, None).jobs(model.key, uris, columns=columns)
    done = jobs[jobs["status"].isin(DONE_STATUSES) & jobs["media_uri"].isin(inventory["media_uri"])]
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


@dataclass(frozen=True)
class IndexReport:
    """What one update decided and left: the plan, the index after it, and the embedding table's part."""

    model: MarengoModel
    plan: IndexPlan
    policy: RemovalPolicy
    wanted: dict[str, ExpectedObject]
    indexed: dict[str, IndexedObject]
    written: pd.DataFrame  # media_uri, segments, invocation_id of every object rewritten
    expected_rows: int
    duplicate_rows_removed: int
    table_objects_removed: int
    table_version: int | None
    state: IndexState
    duplicate_segment_ids: int
    vector_index_action: str
    scope: int | None = None  # objects a scoped update audited; None: the whole index
    scope_rows: int = 0  # rows the index holds for them after it

    @property
    def audited(self) -> str:
        return "every object" if self.scope is None else f"{self.scope} objects handed to this run"

    @property
    def rows_compared(self) -> tuple[int, int]:
        """(rows indexed, rows expected), of the whole index or of the scope."""
        return (self.state.rows if self.scope is None else self.scope_rows, self.expected_rows)

    @property
    def held_uris(self) -> list[str]:
        return [self.indexed[mid].media_uri for mid in self.plan.held]

    def held_message(self) -> str:
        return held_message(self.plan, self.held_uris, self.policy)

    def repaired(self) -> list[tuple[str, str]]:
        """(media URI, problem) of every object rewritten because the index held it wrongly."""
        return [(self.wanted[mid].media_uri, problem) for mid, problem in sorted(self.plan.repaired.items())]


@dataclass
class IndexUpdate:
    """Bring `model`'s index in step with its embedding table, as `holder` (who waits on the writer lock)."""

    lake: Lake
    index: SegmentIndex
    model: MarengoModel
    policy: RemovalPolicy
    holder: str
    log: Callable[[str], None]
    warn: Callable[[str], None]
    scope: frozenset[str] | None = None  # media URIs: audit only these, remove nothing

    def run(self) -> IndexReport:
        uris = None if self.scope is None else sorted(self.scope)
        inventory, expected = self._expected(uris)
        with self.index.writer(self.model, holder=self.holder, on_wait=self.log):
            if uris is not None and self.index.duplicate_segment_ids(self.model):
                self.log("the index holds copies of segments: auditing every object, not only those handed")
                uris = None
                inventory, expected = self._expected(None)
            wanted, listed_ids = expected_objects(expected), set(inventory["media_id"])
            # A scope's objects no longer listed are left to the full audit: removals are judged against the
            # whole index, never a scope's share of it.
            scope_ids = None if uris is None else sorted({media_id(u) for u in uris} & listed_ids)
            indexed = self.index.audit(self.model, scope_ids)
            plan = plan_index_update(wanted, indexed, self.model.key, self.policy, listed_ids)
            if plan.held:
                held = [indexed[mid].media_uri for mid in plan.held]
                self.warn(held_message(plan, held, self.policy))
            for mid, problem in sorted(plan.repaired.items()):
                self.warn(f"repairing {wanted[mid].media_uri} in the index: {problem}")
            deduplicated = self.index.remove_duplicate_rows(self.model, plan.deduplicate)
            self.index.remove_media(self.model, plan.delete, maintain=False)
            table = EmbeddingTable(self.lake, self.model)
            table.ensure()
            stale = (
                []
                if uris is not None
                else self._follow_removals(table, set(inventory["media_uri"]), wanted, plan)
            )
            for problem in ThumbnailStore(self.lake.location).remove(self.model.key, stale):  # posters too
                self.warn(problem)
            rewrite = expected.set_index(expected["media_uri"].map(media_id)).loc[plan.rewrite]
            for start in range(0, len(rewrite), MEDIA_PER_WRITE):
                batch = rewrite.iloc[start : start + MEDIA_PER_WRITE]
                segments = table.read(list(batch.index))
                self.index.replace_media(self.model, segments, list(batch.index), maintain=False)
            # Once per run, after every write: each optimize() leaves one more index segment to search.
            vector_action, vector_reason = self.index.maintain_indexes(self.model)
            state = self.index.state(self.model)
            duplicates = self.index.duplicate_segment_ids(self.model)
            scope_rows = (
                0
                if scope_ids is None
                else sum(o.rows for o in self.index.audit(self.model, scope_ids).values())
            )
        return IndexReport(
            model=self.model,
            plan=plan,
            policy=self.policy,
            wanted=wanted,
            indexed=indexed,
            written=rewrite.reset_index(drop=True)[["media_uri", "segments", "invocation_id"]],
            expected_rows=int(expected["segments"].fillna(0).sum()),
            duplicate_rows_removed=deduplicated + sum(indexed[mid].duplicate_rows for mid in plan.repaired),
            table_objects_removed=len(stale),
            table_version=table.version(),
            state=state,
            duplicate_segment_ids=duplicates,
            vector_index_action=f"{vector_action}: {vector_reason}",
            scope=None if scope_ids is None else len(scope_ids),
            scope_rows=scope_rows,
        )

    def _expected(self, uris: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The inventory (media_uri, media_id) and the current embeddings of every object, or of `uris`."""
        inventory = read_inventory(self.lake, ["media_uri", "media_id"], uris)
        return inventory, current_embeddings(self.lake, self.model, inventory, uris)

    @staticmethod
    def _follow_removals(
        table: EmbeddingTable, listed: set[str], wanted: dict[str, ExpectedObject], plan: IndexPlan
    ) -> list[str]:
        """The embedding table follows the index's decision: objects gone from the bucket leave its current
        version (history keeps them), unless held for confirmation. Only gone ones: an ingest run may be
        committing listed objects right now, before the ledger says so."""
        stale = sorted(
            mid
            for mid, uri in table.media_uris().items()
            if uri not in listed and mid not in wanted and mid not in plan.held
        )
        table.delete(stale)
        return stale
