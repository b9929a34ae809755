"""The Marengo embedding table of one model version: a Delta Lake table in the lake, the system of record.

Delta Lake (delta-rs) gives what per-object Parquet files had to fake: an ingest run replaces the rows of
all its objects in one atomic commit (a killed run leaves the previous version), deleted objects leave the
current table while its history keeps them (`load_as_version`), small files are compacted and old ones
vacuumed by the library. On S3 it commits with conditional writes, so no lock table is needed. Any
Delta reader (pyarrow through `deltalake`, DuckDB's `delta_scan`, Spark) reads it.

A table written before the `embedding_type` column gains it, nullable, with the first write that carries
it (schema evolution, in that write's own commit); its older files hold no such column, and their rows,
all separate vectors, read as "separate". Nothing already written is rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from resources.providers.embedding_jobs import LEGACY_EMBEDDING_TYPE
from resources.providers.marengo_models import MarengoModel
from resources.storage.lake import Lake
from resources.tables.delta_upkeep import WRITER, commit_with_retries, maintain
from resources.tables.segment_schema import segment_schema

# What the lake held before the table format: one `<media id>.parquet` per object in the table's folder.
LEGACY_FILE = re.compile(r"^[0-9a-f]{24}\.parquet$")


@dataclass(frozen=True)
class Commit:
    version: int
    rows_written: int
    objects_replaced: int


def _in_list(column: str, values: list[str]) -> str:
    """A SQL `IN` predicate over hex ids (media ids are hex digests, so quoting cannot be broken)."""
    bad = [v for v in values if not re.fullmatch(r"[0-9a-f]+", v)]
    if bad:
        raise ValueError(f"not a media id (a hex digest): {bad[0]!r}")
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class EmbeddingTable:
    def __init__(self, lake: Lake, model: MarengoModel) -> None:
        self._lake = lake
        self.model = model
        self.relative = f"tables/marengo_embeddings/{model.key}"
        self.uri = lake.table_uri(self.relative)
        self._options = lake.delta_storage_options()
        self.schema = segment_schema(model.dimension)
        # As the files hold it: Delta has no fixed-size list, so a vector is a list of float32; and
        # embedding_type is null in files written before the column existed. Tables are created and written
        # with this schema, so the column is nullable in every table, made now or evolved.
        vector = self.schema.get_field_index("vector")
        kind = self.schema.get_field_index("embedding_type")
        self.file_schema = self.schema.set(
            vector, pa.field("vector", pa.list_(pa.field("element", pa.float32())), nullable=False)
        ).set(kind, pa.field("embedding_type", pa.string()))
        # The latest version this instance loaded, and the stamp of its commit file (see `open`).
        self._held: tuple[DeltaTable, tuple[int, int] | None] | None = None
        # Data files never change once written (a new version writes new files), so their footers are
        # read once per instance: a fragment with complete metadata per file of the current version.
        self._fragments: dict[str, pads.ParquetFileFragment] = {}

    # --- reading -----------------------------------------------------------------------------------------

    def open(self, version: int | None = None) -> DeltaTable | None:
        """The table at `version`, or at the latest one.

        Loading replays the log (milliseconds), so the latest version is held and checked the way Delta
        readers check: commits are numbered files, so version N is still the latest while the file of N+1
        does not exist and N's own is the one loaded (same size and time; else the table was made again
        under the same URI). Otherwise it is loaded afresh.
        """
        if version is not None:
            return self._load(version)
        if self._held is not None:
            held, stamp = self._held
            mine, next_one = self._lake.file_stamps(
                [self._commit_file(held.version()), self._commit_file(held.version() + 1)]
            )
            if mine == stamp and stamp is not None and next_one is None:
                return held
        table = self._load(None)
        self._held = None
        if table is not None:
            self._held = (table, self._lake.file_stamps([self._commit_file(table.version())])[0])
        return table

    def _load(self, version: int | None) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, version=version, storage_options=self._options)
        except TableNotFoundError:
            return None

    def _commit_file(self, version: int) -> str:
        return f"{self.uri}/_delta_log/{version:020d}.json"

    def _dataset(self, table: DeltaTable) -> pads.Dataset:
        """The current version's files as one dataset, each file's footer read once."""
        uris = table.file_uris()
        missing = [u for u in uris if u not in self._fragments]
        if missing:
            self._fragments.update(zip(missing, self._lake.parquet_fragments(missing), strict=True))
        current = set(uris)
        for gone in [u for u in self._fragments if u not in current]:
            del self._fragments[gone]
        return self._lake.fragments_dataset([self._fragments[u] for u in uris], self.file_schema)

    def read(self, media_ids: list[str] | None = None, columns: list[str] | None = None) -> pa.Table:
        """Current rows, of only `media_ids` when given (pushed down to the files' statistics).

        The current version's files are read with pyarrow's own filesystems: delta-rs writes no deletion
        vectors, so they are exactly the rows. `DeltaTable.to_pyarrow_dataset()` would read through a
        Python filesystem handler whose scanner threads can abort the interpreter at exit
        (delta-rs#2184); this way is also faster.
        """
        table = self.open()
        if table is None:
            empty = self.schema.empty_table()
            return empty.select(columns) if columns else empty
        where = None if media_ids is None else pc.field("media_id").isin(media_ids)
        rows = self._dataset(table).to_table(columns=columns, filter=where)
        return self._as_segments(rows)

    def read_stored(self, columns: list[str] | None = None) -> pa.Table:
        """Current rows as the files hold them: vectors as variable-length lists, not cast to the model's
        dimension, so a check sees a vector of the wrong length instead of failing to read it."""
        table = self.open()
        if table is None:
            return (
                self.file_schema.empty_table()
                if columns is None
                else self.file_schema.empty_table().select(columns)
            )
        return self._dataset(table).to_table(columns=columns)

    def stored_batches(self, columns: list[str], batch_rows: int = 8192) -> Iterator[pa.RecordBatch]:
        """The current rows as the files hold them (see `read_stored`), a batch at a time: a pass over a
        large table in bounded memory."""
        table = self.open()
        if table is not None:
            yield from self._dataset(table).to_batches(columns=columns, batch_size=batch_rows)

    def _as_segments(self, rows: pa.Table) -> pa.Table:
        """Rows as the files hold them, in `schema`: vectors regain their dimension (Delta has no
        fixed-size list type), and a row from before the embedding_type column reads as separate."""
        if "embedding_type" in rows.column_names:
            i = rows.column_names.index("embedding_type")
            kind = pc.fill_null(rows.column(i), LEGACY_EMBEDDING_TYPE)
            rows = rows.set_column(i, "embedding_type", kind)
        return rows.cast(pa.schema([self.schema.field(name) for name in rows.column_names]))

    def media_ids(self) -> set[str]:
        ids = self.read(columns=["media_id"]).column("media_id")
        return set(pc.unique(ids).to_pylist())

    def media_uris(self) -> dict[str, str]:
        """media id -> media URI of every object with current rows."""
        rows = self.read(columns=["media_id", "media_uri"]).group_by(["media_id", "media_uri"]).aggregate([])
        return dict(
            zip(rows.column("media_id").to_pylist(), rows.column("media_uri").to_pylist(), strict=True)
        )

    # --- writing -----------------------------------------------------------------------------------------

    def ensure(self) -> DeltaTable:
        """The table, created on first use; a lake of per-object files is migrated into it once."""
        table = self.open()
        if table is not None:
            return table
        legacy = self.legacy_files()
        if legacy:
            self._migrate(legacy)
        else:
            DeltaTable.create(
                self.uri,
                schema=self.file_schema,
                mode="ignore",
                storage_options=self._options,
                name=self.model.key,
            )
        table = self.open()
        assert table is not None
        return table

    def replace(self, rows: pa.Table, media_ids: list[str]) -> Commit | None:
        """Replace every row of `media_ids` with `rows` (theirs, possibly none) in one commit."""
        if not media_ids:
            return None
        self.ensure()
        rows = rows.select(self.schema.names).cast(self.schema).cast(self.file_schema)
        predicate = _in_list("media_id", sorted(set(media_ids)))
        version = self._commit(lambda: self._write(rows, predicate))
        return Commit(version, rows.num_rows, len(set(media_ids)))

    def delete(self, media_ids: list[str]) -> int | None:
        """Take objects out of the current version in one commit (history keeps them); the new version."""
        table = self.open()
        if table is None or not media_ids:
            return None
        predicate = _in_list("media_id", sorted(set(media_ids)))
        return self._commit(lambda: self._delete(predicate))

    def maintain(self) -> str:
        """Compact small files once there are many (a small table: into one file after every commit), then
        vacuum what no version of the last week needs."""
        table = self.open()
        if table is None:
            return "no table yet"
        return maintain(table)

    def version(self) -> int | None:
        table = self.open()
        return None if table is None else table.version()

    def row_count(self) -> int:
        """The current version's rows, from the files' footers (no row is read); 0 before the table exists."""
        table = self.open()
        return 0 if table is None else self._dataset(table).count_rows()

    def _write(self, rows: pa.Table, predicate: str) -> int:
        """One commit replacing the rows `predicate` selects. `schema_mode="merge"` adds a column the
        table lacks (embedding_type, to a table written before it) in this same commit; the rows were cast
        to `file_schema`, so nothing but this table's own columns can be added."""
        write_deltalake(
            self.uri,
            rows,
            mode="overwrite",
            predicate=predicate,
            schema_mode="merge",
            storage_options=self._options,
            writer_properties=WRITER,
        )
        table = self.open()
        assert table is not None
        return table.version()

    def _delete(self, predicate: str) -> int:
        table = self.open()
        assert table is not None
        table.delete(predicate)
        return table.version()

    def _commit(self, write: Any) -> int:
        return commit_with_retries(write)

    # --- the one-time migration --------------------------------------------------------------------------

    def legacy_files(self) -> list[str]:
        """The per-object Parquet files of the layout before the table format, if any are left."""
        prefix = len(self.relative) + 1
        return [f for f in self._lake.list_files(self.relative) if LEGACY_FILE.match(f[prefix:]) is not None]

    def _migrate(self, legacy: list[str]) -> None:
        """Fold the per-object files into version 0 of the table in one commit, then delete them.

        Another run migrating at the same moment loses the race for version 0 and finds the table made;
        a kill before the commit leaves the files to migrate next time, a kill after it leaves files the
        table does not reference, which its vacuum deletes.
        """
        rows = self._lake.read_tables(legacy)
        assert rows is not None
        if "embedding_type" not in rows.column_names:  # the per-object files predate it: all separate
            rows = rows.append_column("embedding_type", pa.repeat(LEGACY_EMBEDDING_TYPE, rows.num_rows))
        rows = rows.select(self.schema.names).cast(self.schema).cast(self.file_schema)
        try:
            write_deltalake(
                self.uri,
                rows,
                mode="error",
                name=self.model.key,
                writer_properties=WRITER,
                description="migrated from one Parquet file per object",
                storage_options=self._options,
            )
        except DeltaError as error:
            if "exists" not in str(error).lower():
                raise
        self._lake.delete_files(legacy, missing_ok=True)
