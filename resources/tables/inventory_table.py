"""The media inventory: a Delta Lake table of every object under the media prefix, updated by merge.

One row per object URI. A run merges only the rows it changed (objects probed, removed, or listed to be
probed by another run), so its cost follows the change, not the library: nothing reads the whole table
into Python, and nothing rewrites it. Readers name the columns they need and, where they can, the rows
(`media_uri IN`, pushed down to the files' statistics).

Rows that are not objects one can embed today keep their place, so the history of an object is in one row:
- `removed`: gone from the bucket (a tombstone). It keeps the sequencer of the event that removed it, so a
  late ObjectCreated event of an older version is recognised as stale. Readers leave tombstones out.
- `pending`: listed by a reconciliation but not yet probed; `probe_batch` names the run that will probe it
  (the probe sensor requests one run per batch, so a first inventory of a large prefix fans out over
  Dagster's run workers). Readers of media leave these out too.

A lake from before this table holds `inventory.parquet` in the same folder: the first open folds it into
version 0 and deletes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from resources.storage.lake import Lake, return_freed_memory
from resources.storage.sql import sql_list, sql_string
from resources.tables.delta_upkeep import WRITER, commit_with_retries, maintain

INVENTORY_DIR = "tables/media_inventory"
LEGACY_INVENTORY = f"{INVENTORY_DIR}/inventory.parquet"
# What a probe knows of an object (the columns of the single Parquet file of the layout before this table).
OBJECT_SCHEMA = pa.schema(
    [
        ("media_uri", pa.string()),
        ("media_id", pa.string()),
        ("key", pa.string()),
        ("etag", pa.string()),
        ("size_bytes", pa.int64()),
        ("last_modified", pa.timestamp("us", tz="UTC")),
        ("content_type", pa.string()),
        ("modality", pa.string()),
        ("duration_sec", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("probed_at", pa.timestamp("us", tz="UTC")),
    ]
)
INVENTORY_SCHEMA = pa.schema(
    [
        *OBJECT_SCHEMA,
        # The latest S3 event applied to the row (events.sequence_position), null when a listing wrote it.
        ("event_sequencer", pa.string()),
        # Listed, waiting for the probe run of this batch; null once probed.
        ("probe_batch", pa.string()),
    ]
)
# As the files hold it: delta-rs merges (DataFusion) write strings as string_view, and pyarrow's statistics
# pruning cannot compare a string literal with string_view statistics, so every write and read uses views.
FILE_SCHEMA = pa.schema(
    [pa.field(f.name, pa.string_view()) if f.type == pa.string() else f for f in INVENTORY_SCHEMA]
)
REMOVED, PENDING = "removed", "pending"
# Statuses of rows that are not media one can embed today, nor a problem with an object.
NOT_MEDIA = (REMOVED, PENDING)
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A merge replaces the whole row, except the sequencer a listing does not know: it keeps the stored one.
# An event row replaces a row only if its sequencer is later (or the row has none): concurrent runs applying
# events of the same key out of order end in the later event's row, whichever commits last.
_UPDATES = {name: f"s.{name}" for name in INVENTORY_SCHEMA.names if name != "event_sequencer"} | {
    "event_sequencer": "COALESCE(s.event_sequencer, t.event_sequencer)"
}
_NEWER = "s.event_sequencer IS NULL OR t.event_sequencer IS NULL OR s.event_sequencer > t.event_sequencer"
# Files of about this size once the table is large: a merge rewrites only the files holding rows it updates.
TARGET_FILE_BYTES = 32 * 1024 * 1024


class InventoryTable:
    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self.uri = lake.table_uri(INVENTORY_DIR)
        self._options = lake.delta_storage_options()

    def open(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, storage_options=self._options)
        except TableNotFoundError:
            return self._fold_legacy()

    def read(
        self,
        columns: list[str] | None = None,
        uris: list[str] | None = None,
        batch: str | None = None,
        without: tuple[str, ...] = (REMOVED,),
    ) -> pa.Table:
        """Current rows, of only `uris` when given, of only the rows waiting for probe run `batch` when
        given, and none whose status is in `without` (tombstones by default).

        The rows are filtered after the read, not pushed down: delta-rs merges write strings as
        string_view, and pyarrow's scanner can neither compare nor `isin` those against its statistics.
        Only the named columns and the filter's own are read.
        """
        names = columns or INVENTORY_SCHEMA.names
        filtered_by = [
            name
            for name, used in (("media_uri", uris is not None), ("probe_batch", batch), ("status", without))
            if used
        ]
        needed = list(dict.fromkeys([*names, *filtered_by]))
        table = self.open()
        if table is None:
            return INVENTORY_SCHEMA.empty_table().select(names)
        target = pa.schema([INVENTORY_SCHEMA.field(n) for n in needed])
        wanted = None if uris is None else pa.array(uris, pa.string())
        scanner = self._dataset(table).scanner(columns=needed)
        # Batch by batch: a batch's string views are cast and filtered before the next is read, so the
        # views of a million rows are never held beside their copies.
        rows = pa.Table.from_batches(
            [_kept(scanned.cast(target), wanted, batch, without) for scanned in scanner.to_batches()],
            schema=target,
        )
        return_freed_memory()  # the scan's buffers
        return rows.select(names)

    def pending_objects(self) -> int:
        """How many listed objects wait for their probe run (PENDING rows)."""
        status = self.read(["status"], without=()).column("status")
        return int(pc.sum(pc.equal(status, PENDING)).as_py() or 0)

    def batches(self, columns: list[str], batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Current rows (tombstones included), `columns` only, a record batch at a time."""
        table = self.open()
        if table is None:
            return
        schema = pa.schema([INVENTORY_SCHEMA.field(n) for n in columns])
        for batch in self._dataset(table).to_batches(columns=columns, batch_size=batch_rows):
            yield batch.cast(schema)

    def _dataset(self, table: DeltaTable) -> pads.Dataset:
        # pyarrow's own filesystems over the current version's files (delta-rs writes no deletion vectors),
        # as EmbeddingTable reads: faster, and free of delta-rs#2184.
        fragments = self._lake.parquet_fragments(table.file_uris())
        return self._lake.fragments_dataset(fragments, FILE_SCHEMA)

    def version(self) -> int | None:
        table = self.open()
        return None if table is None else table.version()

    def merge(
        self, rows: pa.Table, listed_at: datetime | None = None, batch: str | None = None
    ) -> int | None:
        """Upsert `rows` by media URI in one commit (see _UPDATES and _NEWER); the new version.

        Rows a listing found (`listed_at`, when the listing began) do not replace a row an event wrote
        since: the event is newer than what the listing saw. Rows of probe run `batch` replace only rows
        still waiting for that batch (an event, or a later listing that re-batched them, wins)."""
        if rows.num_rows == 0:
            return None
        rows = rows.select(INVENTORY_SCHEMA.names).cast(INVENTORY_SCHEMA).cast(FILE_SCHEMA)
        guard = f"({_NEWER})"
        if listed_at is not None:
            since = listed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            guard += f" AND (t.event_sequencer IS NULL OR t.probed_at IS NULL OR t.probed_at < '{since}')"
        if batch is not None:
            assert _BATCH_ID.fullmatch(batch), f"probe batch id {batch!r}"
            guard += f" AND t.probe_batch = '{batch}'"

        on = f"t.media_uri = s.media_uri AND {_target_keys(rows.column('media_uri').cast(pa.string()))}"

        def write() -> int:
            table = self._ensure()
            (
                table.merge(
                    rows,
                    predicate=on,
                    source_alias="s",
                    target_alias="t",
                    writer_properties=WRITER,
                )
                .when_matched_update(_UPDATES, predicate=guard)
                .when_not_matched_insert_all()
                .execute()
            )
            return table.version()

        return commit_with_retries(write)

    def replace_all(self, rows: pa.Table) -> int:
        """Overwrite the whole table (tests and benchmarks set an inventory up this way)."""
        rows = rows.select(INVENTORY_SCHEMA.names).cast(INVENTORY_SCHEMA).cast(FILE_SCHEMA)
        self._ensure()
        write_deltalake(
            self.uri, rows, mode="overwrite", storage_options=self._options, writer_properties=WRITER
        )
        return int(self.version() or 0)

    def maintain(self) -> str:
        table = self.open()
        return "no table yet" if table is None else maintain(table, TARGET_FILE_BYTES)

    def _ensure(self) -> DeltaTable:
        table = self.open()
        if table is None:
            DeltaTable.create(
                self.uri,
                schema=FILE_SCHEMA,
                mode="ignore",
                storage_options=self._options,
                name="media_inventory",
            )
            table = self.open()
        assert table is not None
        return table

    def _fold_legacy(self) -> DeltaTable | None:
        """The single Parquet file of the layout before the table, folded into version 0 (a run racing to
        do the same loses the race for version 0 and finds the table made); then the file is deleted."""
        legacy = self._lake.read_table(LEGACY_INVENTORY)
        if legacy is None:
            return None
        for field in INVENTORY_SCHEMA:  # event_sequencer and probe_batch came with the table
            if field.name not in legacy.column_names:
                legacy = legacy.append_column(field.name, pa.nulls(legacy.num_rows, field.type))
        try:
            write_deltalake(
                self.uri,
                legacy.select(INVENTORY_SCHEMA.names).cast(INVENTORY_SCHEMA).cast(FILE_SCHEMA),
                mode="error",
                name="media_inventory",
                description="folded from inventory.parquet",
                storage_options=self._options,
                writer_properties=WRITER,
            )
        except DeltaError as error:
            if "exists" not in str(error).lower():
                raise
        self._lake.delete_files([LEGACY_INVENTORY], missing_ok=True)
        return DeltaTable(self.uri, storage_options=self._options)


# A merge of at most this many rows names their keys to the target; a larger one, their range.
MERGE_KEYS_LISTED = 5_000


def _target_keys(uris: pa.ChunkedArray) -> str:
    """The merge's condition on the target alone: the source's keys (or, for a large source, their range).
    It selects no fewer rows than the join does, so it changes nothing merged; but without it delta-rs
    reads every target row to join them (a merge of 1,000 rows into a million-row inventory: 1.1 s and
    550 MB; with it, 0.16 s and 40 MB)."""
    if len(uris) <= MERGE_KEYS_LISTED:
        return f"t.media_uri IN ({sql_list(uris.to_pylist())})"
    low, high = pc.min_max(uris).values()
    return f"t.media_uri >= {sql_string(low.as_py())} AND t.media_uri <= {sql_string(high.as_py())}"


def _kept(
    rows: pa.RecordBatch, uris: pa.Array | None, batch: str | None, without: tuple[str, ...]
) -> pa.RecordBatch:
    """The rows of `uris` (when given), waiting for probe run `batch` (when given), of no status in
    `without`; the batch itself when it keeps them all."""
    keep = []
    if uris is not None:
        keep.append(pc.is_in(rows.column("media_uri"), value_set=uris))
    if batch:
        keep.append(pc.fill_null(pc.equal(rows.column("probe_batch"), batch), False))
    if without:
        keep.append(pc.fill_null(pc.invert(pc.is_in(rows.column("status"), pa.array(without))), True))
    if not keep:
        return rows
    mask = keep[0]
    for more in keep[1:]:
        mask = pc.and_(mask, more)
    return rows if pc.all(mask).as_py() else rows.filter(mask)
