"""The LanceDB search index over segment embeddings: one table per model version.

Vectors of different Marengo versions live in different spaces (and sizes), so each version has its own
table; which one serves queries is the caller's choice. Writes go through LanceDB's merge_insert so a
re-ingested media object replaces its segments in one atomic table version, and every write holds the
table's writer lock (resources/index/writer_lock.py), so two runs never commit to one table at once.

A table made before the `embedding_type` column gains it on the next write, with every existing row
"separate" (a SQL default: Lance writes the one new column, leaving the rows and their indexes as they are).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import dagster as dg
import lancedb
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import BTree, IvfSq
from pydantic import Field, PrivateAttr

from resources.index.missing_table import is_missing_table
from resources.index.writer_lock import WriterLock, describe_holder, holding, table_writer_lock
from resources.providers.embedding_jobs import LEGACY_EMBEDDING_TYPE
from resources.providers.marengo_models import MarengoModel
from resources.search.segment_search import (
    DEFAULT_NPROBES,
    DEFAULT_REFINE_FACTOR,
    IndexNotFound,
    SearchHit,
    search_segments,
    table_name,
)
from resources.storage.location import Location, location
from resources.storage.s3_storage import S3Storage
from resources.storage.sql import sql_list
from resources.tables.segment_schema import segment_schema

# Row ids per delete statement when surplus copies are dropped: keeps each predicate a modest string.
ROW_IDS_PER_DELETE = 20_000
# Media ids per filtered read of a scoped audit.
IDS_PER_READ = 5_000
# merge_insert joins on segment_id, and every per-object delete and audit filters on media_id.
SCALAR_INDEX_COLUMNS = ("segment_id", "media_id")
# Rows from which search uses the IVF_SQ index. LanceDB's exact scan takes ~8 ms at 5,000 rows and passes
# 20 ms near 10,000 on 2 cores, while the index answers in ~3 ms, as exactly (every partition probed), and
# builds in a tenth of a second (bench/index_threshold.py; figures in docs/architecture.md, Index).
DEFAULT_ANN_MIN_ROWS = 5_000
VECTOR_INDEX_TYPE = "IvfSq"
# Field metadata of `vector`: the row count the IVF centroids were trained on, to know when to re-train.
TRAINED_ROWS_KEY = "mediaembed:ann_trained_rows"

VectorIndexAction = Literal["build", "fold", "none"]


def ann_partitions(rows: int) -> int:
    """IVF partitions for `rows` vectors: about 1,000 rows a partition up to 1 M rows, sqrt(rows) beyond.

    With ~1,000 rows a partition, the default 20 probes read at least 2% of the rows: every partition
    below 20,000 rows (exact but for the 8-bit quantization, which the refine step re-ranks away), and at
    1 M rows recall@10 of 1.000 at ~4.5 ms (bench/index_ann.py). sqrt(rows) (LanceDB's default) trains
    poorly on small tables (recall 0.71 at 5,000 rows, bench/index_threshold.py), but beyond 1 M rows it
    keeps the k-means cost, which grows with rows x partitions, near-linear in the rows.
    """
    return max(1, min(rows // 1_000, round(math.sqrt(rows))))


def vector_index_action(
    rows: int,
    index_type: str | None,
    trained_rows: int | None,
    segments: int,
    *,
    min_rows: int,
    growth: float,
    max_segments: int,
) -> tuple[VectorIndexAction, str]:
    """What the vector index needs after a write, and why: build (train it anew), fold (add the new rows
    to the trained partitions with optimize()), or none.

    Re-trained when the table has grown or shrunk `growth` times since the centroids were trained (the
    partitions no longer fit the data), when it was built by an older release (another type, or no
    record of its training size), or when folds have left `max_segments` index segments (each is searched
    on its own, about half a millisecond more per query).
    """
    if index_type is None:
        if rows >= min_rows:
            return "build", f"{rows} rows reached ann_min_rows {min_rows}"
        return "none", f"{rows} rows, exact search below ann_min_rows {min_rows}"
    if index_type != VECTOR_INDEX_TYPE or trained_rows is None:
        return "build", f"the {index_type} index predates this release's {VECTOR_INDEX_TYPE}"
    if rows >= growth * trained_rows or rows * growth <= trained_rows:
        return "build", f"{rows} rows, trained on {trained_rows}: more than {growth:g}x apart"
    if segments >= max_segments:
        return "build", f"{segments} index segments from folds (at most {max_segments})"
    return "fold", f"trained on {trained_rows} rows; new rows are added to its partitions"


@dataclass(frozen=True)
class IndexState:
    table: str
    version: int
    rows: int
    vector_index: str | None
    unindexed_rows: int  # rows the vector index does not cover yet (all of them without one)
    scalar_unindexed_rows: int = 0  # rows some scalar index does not cover (all of them without one)
    index_segments: int = 0  # segments of the vector index: 1 after a build, one more per fold


@dataclass(frozen=True)
class IndexedObject:
    """What the index holds for one media object: enough to tell whether it is exactly right."""

    media_uri: str
    rows: int
    segment_ids: int  # distinct
    invocation_ids: frozenset[str]
    model_keys: frozenset[str]

    @property
    def duplicate_rows(self) -> int:
        return self.rows - self.segment_ids


def _trained_rows(table: Any) -> int | None:
    value = (table.schema.field("vector").metadata or {}).get(TRAINED_ROWS_KEY.encode())
    return int(value) if value else None


def _add_missing_columns(table: Any, lock: WriterLock) -> None:
    """Give a table made before the `embedding_type` column that column, "separate" in every existing row
    (all of them were then), so merge_insert of rows carrying it can run."""
    if "embedding_type" not in table.schema.names:
        lock.ensure_held()
        table.add_columns({"embedding_type": f"'{LEGACY_EMBEDDING_TYPE}'"})


def _surplus_row_ids(rows: pa.Table) -> list[int]:
    """Row ids of every copy of a segment_id beyond its first (rows: segment_id and _rowid)."""
    if rows.num_rows == 0:
        return []
    keep = rows.group_by("segment_id").aggregate([("_rowid", "min")]).column("_rowid_min")
    return sorted(rows.filter(pc.invert(pc.is_in(rows.column("_rowid"), keep))).column("_rowid").to_pylist())


class SegmentIndex(dg.ConfigurableResource):
    uri: str = Field(description="Local directory or s3://bucket/prefix of the LanceDB database.")
    storage: S3Storage
    ann_min_rows: int = Field(
        default=DEFAULT_ANN_MIN_ROWS,
        description="Build the IVF_SQ index from this many rows; below it exact search takes under ~20 ms.",
    )
    ann_rebuild_growth: float = Field(
        default=4.0,
        gt=1,
        description="Re-train the IVF centroids once the table has grown (or shrunk) this many times since "
        "they were trained; in between, optimize() adds new rows to the trained partitions.",
    )
    ann_max_index_segments: int = Field(
        default=16,
        ge=2,
        description="Re-train once optimize() has left this many index segments (each costs every query "
        "about half a millisecond).",
    )
    nprobes: int = Field(
        default=DEFAULT_NPROBES, description="IVF partitions probed per query once an ANN index exists."
    )
    refine_factor: int = Field(
        default=DEFAULT_REFINE_FACTOR, description="Re-rank this many times k candidates exactly."
    )
    writer_wait_sec: float = Field(
        default=900.0,
        description="How long a writer waits for another writer of the same table before giving up.",
    )
    writer_lease_sec: float = Field(
        default=60.0,
        description="On s3://, how long a writer's lease outlives its last renewal (a killed writer "
        "blocks the table at most this long).",
    )
    _db: Any = PrivateAttr(default=None)
    _held: threading.local = PrivateAttr(default_factory=threading.local)
    _location: Location | None = PrivateAttr(default=None)

    @property
    def location(self) -> Location:
        """The index's place, parsed once: its LanceDB URI and options, and where its writer locks live."""
        if self._location is None:
            self._location = location(self.uri, self.storage)
        return self._location

    def connect(self) -> Any:
        if self._db is None:
            uri, storage_options = self.location.lance_database()
            self._db = lancedb.connect(uri, storage_options=storage_options)
        return self._db

    @staticmethod
    def table_name(model: MarengoModel) -> str:
        return table_name(model)

    def open_table(self, model: MarengoModel) -> Any | None:
        try:
            return self.connect().open_table(self.table_name(model))
        except ValueError as error:
            if not is_missing_table(error):
                raise
            return None

    @contextmanager
    def writer(
        self,
        model: MarengoModel,
        holder: str | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> Iterator[WriterLock]:
        """Hold the model's table for writing; nested calls in the same thread reuse the held lock.

        Hold it across a read-decide-write cycle (as the index asset does), so what was read is still
        true when the write commits.
        """
        name = self.table_name(model)
        lock = partial(table_writer_lock, self.location, name, describe_holder(holder), self.writer_lease_sec)
        with holding(self._held, name, lock, self.writer_wait_sec, on_wait) as held:
            yield held

    def replace_media(
        self, model: MarengoModel, segments: pa.Table, media_ids: list[str], *, maintain: bool = True
    ) -> IndexState:
        """Make the index hold exactly `segments` for `media_ids`; other media are untouched.

        Copies of one segment_id left by an unlocked concurrent writer are dropped first: merge_insert
        would update every copy and keep them all. With `maintain=False` the indexes are brought up to
        date later, by one `maintain_indexes` after several writes (what a run does).
        """
        with self.writer(model) as lock:
            table = self.open_table(model)
            if table is None:
                lock.ensure_held()
                # Indexes come with the first rows (_maintain_indexes): made on an empty table, they
                # would index nothing until an optimize().
                table = self.connect().create_table(
                    self.table_name(model), schema=segment_schema(model.dimension)
                )
            _add_missing_columns(table, lock)
            if media_ids:
                where = f"media_id IN ({sql_list(media_ids)})"
                self._delete_surplus_rows(table, lock, where)
                last_row = {sid: i for i, sid in enumerate(segments.column("segment_id").to_pylist())}
                # merge_insert needs unique keys per batch; typed indices, so that no rows is a valid take too
                segments = segments.take(pa.array(sorted(last_row.values()), type=pa.int64()))
                lock.ensure_held()
                (
                    table.merge_insert("segment_id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .when_not_matched_by_source_delete(where)
                    .execute(segments.select(segment_schema(model.dimension).names))
                )
            if maintain:
                self._maintain_indexes(table, lock)
        return self.state(model)

    def _scan(self, table: Any, columns: list[str], where: str | None = None) -> pa.Table:
        """Selected columns (and _rowid) of every row, or of the rows matching `where`; no vectors read."""
        query = table.search()
        if where:
            query = query.where(where)
        return query.select(columns).with_row_id(True).limit(None).to_arrow()

    def _delete_surplus_rows(self, table: Any, lock: WriterLock, where: str | None = None) -> int:
        surplus = _surplus_row_ids(self._scan(table, ["segment_id"], where))
        for start in range(0, len(surplus), ROW_IDS_PER_DELETE):
            chunk = surplus[start : start + ROW_IDS_PER_DELETE]
            lock.ensure_held()
            table.delete(f"_rowid IN ({', '.join(str(r) for r in chunk)})")
        return len(surplus)

    def remove_duplicate_rows(self, model: MarengoModel, media_ids: list[str] | None = None) -> int:
        """Keep one row per segment_id (of `media_ids`, or of the whole table); returns rows removed."""
        if media_ids is not None and not media_ids:
            return 0
        with self.writer(model) as lock:
            table = self.open_table(model)
            if table is None:
                return 0
            where = f"media_id IN ({sql_list(media_ids)})" if media_ids else None
            return self._delete_surplus_rows(table, lock, where)

    def audit(self, model: MarengoModel, media_ids: list[str] | None = None) -> dict[str, IndexedObject]:
        """media_id -> what the index holds for it: rows, distinct segment ids, invocations, models; of only
        `media_ids` when given (read through the media_id scalar index, not a scan of the table)."""
        table = self.open_table(model)
        if table is None or table.count_rows() == 0 or media_ids == []:
            return {}
        columns = ["segment_id", "media_id", "media_uri", "invocation_id", "model_key"]
        if media_ids is None:
            rows = self._scan(table, columns)
        else:
            rows = pa.concat_tables(
                self._scan(
                    table, columns, f"media_id IN ({sql_list(media_ids[start : start + IDS_PER_READ])})"
                )
                for start in range(0, len(media_ids), IDS_PER_READ)
            )
        per_media = rows.group_by("media_id").aggregate(
            [
                ("segment_id", "count"),
                ("segment_id", "count_distinct"),
                ("invocation_id", "distinct"),
                ("model_key", "distinct"),
                ("media_uri", "min"),
            ]
        )
        return {
            r["media_id"]: IndexedObject(
                media_uri=r["media_uri_min"],
                rows=r["segment_id_count"],
                segment_ids=r["segment_id_count_distinct"],
                invocation_ids=frozenset(r["invocation_id_distinct"]),
                model_keys=frozenset(r["model_key_distinct"]),
            )
            for r in per_media.to_pylist()
        }

    def duplicate_segment_ids(self, model: MarengoModel) -> int:
        """Rows beyond the first of each segment_id in the whole table: 0 when the index is sound."""
        table = self.open_table(model)
        if table is None:
            return 0
        ids = table.search().select(["segment_id"]).limit(None).to_arrow().column("segment_id")
        return len(ids) - pc.count_distinct(ids).as_py()

    def scan(self, model: MarengoModel, columns: list[str]) -> pa.Table | None:
        """Selected columns of every row (no vectors unless asked for), or None without a table."""
        table = self.open_table(model)
        if table is None:
            return None
        return table.search().select(columns).limit(None).to_arrow()

    def vector_dimension(self, model: MarengoModel) -> int | None:
        """The vector size the model's table was made with, or None without a table."""
        table = self.open_table(model)
        if table is None:
            return None
        kind = table.schema.field("vector").type
        return int(kind.list_size) if pa.types.is_fixed_size_list(kind) else None

    def indexed_media(self, model: MarengoModel) -> dict[str, set[str]]:
        """media_id -> the invocation ids its indexed segments came from (one, once consistent)."""
        return {mid: set(obj.invocation_ids) for mid, obj in self.audit(model).items()}

    def remove_media(self, model: MarengoModel, media_ids: list[str], *, maintain: bool = True) -> IndexState:
        if media_ids:
            with self.writer(model) as lock:
                table = self.open_table(model)
                if table is not None:
                    lock.ensure_held()
                    table.delete(f"media_id IN ({sql_list(media_ids)})")
                    if maintain:
                        self._maintain_indexes(table, lock)
        return self.state(model)

    def maintain_indexes(self, model: MarengoModel) -> tuple[VectorIndexAction, str]:
        """Bring every index up to date after writes made with `maintain=False`; returns what was done
        to the vector index and why."""
        with self.writer(model) as lock:
            table = self.open_table(model)
            if table is None:
                return "none", "no table yet"
            return self._maintain_indexes(table, lock)

    def _maintain_indexes(self, table: Any, lock: WriterLock) -> tuple[VectorIndexAction, str]:
        """Scalar indexes once there are rows, kept current; the IVF_SQ index from `ann_min_rows`,
        re-trained when `vector_index_action` says so, otherwise new rows folded into it.

        optimize() folds the rows written since the last call into every index (and is no new version
        when nothing changed); rows not yet folded are still searched, by a flat scan of just those.
        """
        rows = table.count_rows()
        if rows == 0:
            return "none", "no rows"
        indices = {tuple(ix.columns): ix for ix in table.list_indices()}
        vector = indices.get(("vector",))
        action, reason = vector_index_action(
            rows,
            vector.index_type if vector else None,
            _trained_rows(table),
            (table.index_stats(vector.name).num_indices or 1) if vector else 0,
            min_rows=self.ann_min_rows,
            growth=self.ann_rebuild_growth,
            max_segments=self.ann_max_index_segments,
        )
        if action == "build":
            lock.ensure_held()
            table.create_index(
                "vector",
                config=IvfSq(distance_type="cosine", num_partitions=ann_partitions(rows)),
                replace=True,
            )
            lock.ensure_held()
            table.update_field_metadata({"path": "vector", "metadata": {TRAINED_ROWS_KEY: str(rows)}})
        lock.ensure_held()
        table.optimize()
        for column in SCALAR_INDEX_COLUMNS:
            if (column,) not in indices:
                lock.ensure_held()
                table.create_index(column, config=BTree())
        return action, reason

    def state(self, model: MarengoModel) -> IndexState:
        table = self.open_table(model)
        if table is None:
            return IndexState(self.table_name(model), 0, 0, None, 0)
        rows = table.count_rows()
        indices = {tuple(ix.columns): ix for ix in table.list_indices()}
        vector = indices.get(("vector",))
        stats = table.index_stats(vector.name) if vector else None
        scalar = [indices.get((column,)) for column in SCALAR_INDEX_COLUMNS]
        return IndexState(
            table=self.table_name(model),
            version=table.version,
            rows=rows,
            vector_index=vector.index_type if vector else None,
            unindexed_rows=stats.num_unindexed_rows if stats else rows,
            scalar_unindexed_rows=max(
                table.index_stats(ix.name).num_unindexed_rows if ix else rows for ix in scalar
            ),
            index_segments=(stats.num_indices or 1) if stats else 0,
        )

    def search(self, model: MarengoModel, vector: list[float], k: int = 10) -> list[SearchHit]:
        """Raises IndexNotFound (a LookupError) when nothing is indexed for `model`; never creates the
        database directory as a side effect."""
        if self.location.known_absent():
            raise IndexNotFound(f"no search index at {self.location.lance_database()[0]} yet")
        table = self.open_table(model)
        if table is None:
            raise IndexNotFound(f"the search index at {self.uri} holds no {model.key} segments yet")
        return search_segments(table, vector, k, nprobes=self.nprobes, refine_factor=self.refine_factor)
