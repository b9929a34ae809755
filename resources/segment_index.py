"""The LanceDB search index over segment embeddings: one table per model version.

Vectors of different Marengo versions live in different spaces (and sizes), so each version has its own
table; which one serves queries is the caller's choice. Writes go through LanceDB's merge_insert so a
re-ingested media object replaces its segments in one atomic table version, and every write holds the
table's writer lock (resources/index_writer_lock.py), so two runs never commit to one table at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import lancedb
import pyarrow as pa
import pyarrow.compute as pc
from lancedb.index import BTree, IvfHnswSq
from pydantic import Field, PrivateAttr

from resources.index_writer_lock import LocalWriterLock, S3WriterLease, WriterLock, describe_holder
from resources.marengo_models import MarengoModel
from resources.s3_storage import S3Storage, S3Uri
from resources.segment_schema import segment_schema
from resources.segment_search import (
    DEFAULT_NPROBES,
    DEFAULT_REFINE_FACTOR,
    IndexNotFound,
    SearchHit,
    local_index_path,
    search_segments,
    table_name,
)

# Row ids per delete statement when surplus copies are dropped: keeps each predicate a modest string.
ROW_IDS_PER_DELETE = 20_000


@dataclass(frozen=True)
class IndexState:
    table: str
    version: int
    rows: int
    vector_index: str | None
    unindexed_rows: int


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


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


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
        default=100_000,
        description="Build an ANN index from this many rows; below it exact search is fast and exact.",
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

    def connect(self) -> Any:
        if self._db is None:
            if self.uri.startswith("s3://"):
                self._db = lancedb.connect(self.uri, storage_options=self.storage.lance_storage_options())
            else:
                self._db = lancedb.connect(str(Path(self.uri).expanduser().resolve()))
        return self._db

    @staticmethod
    def table_name(model: MarengoModel) -> str:
        return table_name(model)

    def open_table(self, model: MarengoModel) -> Any | None:
        try:
            return self.connect().open_table(self.table_name(model))
        except ValueError:  # LanceDB's "Table ... was not found"
            return None

    def _writer_lock(self, table: str, holder: str) -> WriterLock:
        if self.uri.startswith("s3://"):
            lease = S3Uri.parse(self.uri).join("_locks", f"{table}.lease")
            client = self.storage.get_client()
            return S3WriterLease(client, lease.bucket, lease.key, table, holder, self.writer_lease_sec)
        path = Path(self.uri).expanduser().resolve() / "_locks" / f"{table}.lock"
        return LocalWriterLock(path, table, holder)

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
        held: dict[str, WriterLock] = self._held.__dict__.setdefault("locks", {})
        if name in held:
            yield held[name]
            return
        lock = self._writer_lock(name, describe_holder(holder))
        lock.acquire(self.writer_wait_sec, on_wait)
        held[name] = lock
        try:
            yield lock
        finally:
            del held[name]
            lock.release()

    def replace_media(self, model: MarengoModel, segments: pa.Table, media_ids: list[str]) -> IndexState:
        """Make the index hold exactly `segments` for `media_ids`; other media are untouched.

        Copies of one segment_id left by an unlocked concurrent writer are dropped first: merge_insert
        would update every copy and keep them all.
        """
        with self.writer(model) as lock:
            table = self.open_table(model)
            if table is None:
                lock.ensure_held()
                table = self.connect().create_table(
                    self.table_name(model), schema=segment_schema(model.dimension)
                )
                table.create_index("segment_id", config=BTree())
                table.create_index("media_id", config=BTree())
            if media_ids:
                where = f"media_id IN ({_sql_list(media_ids)})"
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
            where = f"media_id IN ({_sql_list(media_ids)})" if media_ids else None
            return self._delete_surplus_rows(table, lock, where)

    def audit(self, model: MarengoModel) -> dict[str, IndexedObject]:
        """media_id -> what the index holds for it: rows, distinct segment ids, invocations, models."""
        table = self.open_table(model)
        if table is None or table.count_rows() == 0:
            return {}
        rows = self._scan(table, ["segment_id", "media_id", "media_uri", "invocation_id", "model_key"])
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

    def indexed_media(self, model: MarengoModel) -> dict[str, set[str]]:
        """media_id -> the invocation ids its indexed segments came from (one, once consistent)."""
        return {mid: set(obj.invocation_ids) for mid, obj in self.audit(model).items()}

    def remove_media(self, model: MarengoModel, media_ids: list[str]) -> IndexState:
        if media_ids:
            with self.writer(model) as lock:
                table = self.open_table(model)
                if table is not None:
                    lock.ensure_held()
                    table.delete(f"media_id IN ({_sql_list(media_ids)})")
                    self._maintain_indexes(table, lock)
        return self.state(model)

    def _maintain_indexes(self, table: Any, lock: WriterLock) -> None:
        """ANN index once the table is big enough; afterwards fold new rows into it."""
        rows = table.count_rows()
        has_vector_index = any(ix.columns == ["vector"] for ix in table.list_indices())
        lock.ensure_held()
        if not has_vector_index and rows >= self.ann_min_rows:
            table.create_index(
                "vector",
                config=IvfHnswSq(distance_type="cosine", num_partitions=max(1, rows // 1_048_576)),
            )
        elif has_vector_index:
            table.optimize()

    def state(self, model: MarengoModel) -> IndexState:
        table = self.open_table(model)
        if table is None:
            return IndexState(self.table_name(model), 0, 0, None, 0)
        vector = next((ix for ix in table.list_indices() if ix.columns == ["vector"]), None)
        unindexed = table.index_stats(vector.name).num_unindexed_rows if vector else table.count_rows()
        return IndexState(
            table=self.table_name(model),
            version=table.version,
            rows=table.count_rows(),
            vector_index=vector.index_type if vector else None,
            unindexed_rows=unindexed,
        )

    def search(self, model: MarengoModel, vector: list[float], k: int = 10) -> list[SearchHit]:
        """Raises IndexNotFound (a LookupError) when nothing is indexed for `model`; never creates the
        database directory as a side effect."""
        path = local_index_path(self.uri)
        if path is not None and not path.is_dir():
            raise IndexNotFound(f"no search index at {path} yet")
        table = self.open_table(model)
        if table is None:
            raise IndexNotFound(f"the search index at {self.uri} holds no {model.key} segments yet")
        return search_segments(table, vector, k, nprobes=self.nprobes, refine_factor=self.refine_factor)
