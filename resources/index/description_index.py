"""The LanceDB full-text index over Pegasus descriptions and chapters, beside the segment tables.

One table (`pegasus_text`, rows from resources/search/description_search.py `text_rows`) in the same database
as the segment index (MEDIAEMBED_INDEX_URI). Kept like the segment index: an object whose rows changed is
rewritten by one merge_insert (its old rows deleted in the same table version), an object no longer described
leaves, and every write holds the table's writer lock (resources/index/writer_lock.py). The native FTS index
is made with the table, so a reader never meets a table it cannot search; rows written since are searched by
LanceDB's flat fallback until the run's one optimize() folds them in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import dagster as dg
import lancedb
import pyarrow as pa
from lancedb.index import FTS, BTree
from pydantic import Field, PrivateAttr

from resources.index.missing_table import is_missing_table
from resources.index.writer_lock import WriterLock, describe_holder, holding, table_writer_lock
from resources.search.description_search import (
    TEXT_SCHEMA,
    TEXT_TABLE,
    DescriptionSearch,
    object_digests,
    plan_text_sync,
)
from resources.storage.location import Location, location
from resources.storage.s3_storage import S3Storage
from resources.storage.sql import sql_list

OBJECTS_PER_WRITE = 500
SCALAR_INDEX_COLUMNS = ("row_id", "media_id")  # merge_insert joins on row_id; deletes filter on media_id


@dataclass(frozen=True)
class TextIndexState:
    table: str
    version: int
    rows: int
    objects: int
    fts_index: bool
    unindexed_rows: int  # rows the FTS index does not cover yet (searched by a flat scan)


@dataclass(frozen=True)
class TextSync:
    """What one sync did: objects rewritten and removed, and the table after it."""

    updated: list[str]
    removed: list[str]
    state: TextIndexState


class DescriptionIndex(dg.ConfigurableResource):
    uri: str = Field(description="Local directory or s3://bucket/prefix of the LanceDB database.")
    storage: S3Storage
    writer_wait_sec: float = Field(
        default=900.0, description="How long a writer waits for another writer of the table."
    )
    writer_lease_sec: float = Field(
        default=60.0, description="On s3://, how long a writer's lease outlives its last renewal."
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

    def open_table(self) -> Any | None:
        try:
            return self.connect().open_table(TEXT_TABLE)
        except ValueError as error:
            if not is_missing_table(error):
                raise
            return None

    def searcher(self) -> DescriptionSearch:
        """Full-text search over this index (what `mediaembed search --mode text` runs)."""
        return DescriptionSearch(self.connect())

    @contextmanager
    def writer(
        self, holder: str | None = None, on_wait: Callable[[str], None] | None = None
    ) -> Iterator[WriterLock]:
        """Hold the table for writing across a read-decide-write cycle; nested calls reuse the lock."""
        lock = partial(
            table_writer_lock, self.location, TEXT_TABLE, describe_holder(holder), self.writer_lease_sec
        )
        with holding(self._held, TEXT_TABLE, lock, self.writer_wait_sec, on_wait) as held:
            yield held

    def indexed_rows(self) -> pa.Table:
        """Every row of the index (text rows are small: no vectors here)."""
        table = self.open_table()
        if table is None:
            return TEXT_SCHEMA.empty_table()
        return table.search().select(TEXT_SCHEMA.names).limit(None).to_arrow()

    def sync(
        self,
        rows: pa.Table,
        holder: str | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> TextSync:
        """Make the index hold exactly `rows` (TEXT_SCHEMA): objects whose rows differ are rewritten, 500
        per table version, objects without rows removed, then the indexes brought up to date once."""
        rows = rows.select(TEXT_SCHEMA.names).cast(TEXT_SCHEMA)
        wanted = rows.to_pylist()
        with self.writer(holder, on_wait) as lock:
            table = self.open_table()
            if table is None:
                lock.ensure_held()
                table = self.connect().create_table(TEXT_TABLE, schema=TEXT_SCHEMA)
                lock.ensure_held()
                table.create_index("text", config=FTS())  # before any row: never unsearchable
            changed, removed = plan_text_sync(
                object_digests(wanted), object_digests(self.indexed_rows().to_pylist())
            )
            touched = changed + removed
            for start in range(0, len(touched), OBJECTS_PER_WRITE):
                batch = touched[start : start + OBJECTS_PER_WRITE]
                ids = set(batch)
                source = pa.Table.from_pylist([r for r in wanted if r["media_id"] in ids], schema=TEXT_SCHEMA)
                lock.ensure_held()
                (
                    table.merge_insert("row_id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .when_not_matched_by_source_delete(f"media_id IN ({sql_list(batch)})")
                    .execute(source)
                )
            self._maintain_indexes(table, lock, wrote=bool(touched))
        return TextSync(changed, removed, self.state())

    def _maintain_indexes(self, table: Any, lock: WriterLock, *, wrote: bool) -> None:
        """The FTS index made anew if it went missing; new rows folded into every index by one
        optimize() when this run wrote (or an earlier one left rows unindexed); scalar indexes once there
        are rows."""
        indices = {tuple(ix.columns): ix for ix in table.list_indices()}
        if ("text",) not in indices:
            lock.ensure_held()
            table.create_index("text", config=FTS(), replace=True)
        elif wrote or table.index_stats(indices[("text",)].name).num_unindexed_rows:
            lock.ensure_held()
            table.optimize()
        if table.count_rows():
            for column in SCALAR_INDEX_COLUMNS:
                if (column,) not in indices:
                    lock.ensure_held()
                    table.create_index(column, config=BTree())

    def state(self) -> TextIndexState:
        table = self.open_table()
        if table is None:
            return TextIndexState(TEXT_TABLE, 0, 0, 0, False, 0)
        rows = table.count_rows()
        fts = next((ix for ix in table.list_indices() if tuple(ix.columns) == ("text",)), None)
        objects = table.search().select(["media_id"]).limit(None).to_arrow().column("media_id")
        return TextIndexState(
            table=TEXT_TABLE,
            version=table.version,
            rows=rows,
            objects=len(set(objects.to_pylist())),
            fts_index=fts is not None,
            unindexed_rows=table.index_stats(fts.name).num_unindexed_rows if fts else rows,
        )
