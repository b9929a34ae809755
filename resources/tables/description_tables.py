"""The Pegasus description and chapter tables: Delta Lake tables in the lake, the system of record.

Written like the embedding table (resources/tables/embedding_table.py): a run replaces the rows of the objects
it touched in one commit per table, so a killed run leaves the previous version and history keeps the
old descriptions.
"""

from __future__ import annotations

import re

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from resources.storage.lake import Lake
from resources.tables.delta_upkeep import WRITER

DESCRIPTIONS_PATH = "tables/pegasus_descriptions"
CHAPTERS_PATH = "tables/pegasus_chapters"

DESCRIPTION_SCHEMA = pa.schema(
    [
        pa.field("media_uri", pa.string(), nullable=False),
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("etag", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("prompt_hash", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("parsed_json", pa.string()),
        pa.field("finish_reason", pa.string()),
        pa.field("input_tokens", pa.int64()),
        pa.field("output_tokens", pa.int64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
CHAPTER_SCHEMA = pa.schema(
    [
        pa.field("media_uri", pa.string(), nullable=False),
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("etag", pa.string(), nullable=False),
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("model_id", pa.string(), nullable=False),
        pa.field("chapter_index", pa.int32(), nullable=False),
        pa.field("start_sec", pa.float64(), nullable=False),
        pa.field("end_sec", pa.float64(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("summary", pa.string()),
    ]
)


class LakeTable:
    """One Delta table of the lake with a fixed schema, replaced per object."""

    def __init__(self, lake: Lake, relative: str, schema: pa.Schema) -> None:
        self._lake = lake
        self.relative = relative
        self.uri = lake.table_uri(relative)
        self.schema = schema
        self._options = lake.delta_storage_options()

    def open(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, storage_options=self._options)
        except TableNotFoundError:
            return None

    def read(self) -> pa.Table:
        """The current rows, read with pyarrow's own filesystems (see EmbeddingTable.read for why)."""
        table = self.open()
        if table is None:
            return self.schema.empty_table()
        uris = table.file_uris()
        if not uris:
            return self.schema.empty_table()
        dataset = self._lake.fragments_dataset(self._lake.parquet_fragments(uris), self.schema)
        return dataset.to_table()

    def version(self) -> int | None:
        table = self.open()
        return None if table is None else table.version()

    def replace(self, rows: pa.Table, media_ids: list[str]) -> int | None:
        """Replace every row of `media_ids` with `rows` in one commit; the new version (None: no change)."""
        if not media_ids:
            return None
        if self.open() is None:
            DeltaTable.create(self.uri, schema=self.schema, mode="ignore", storage_options=self._options)
        write_deltalake(
            self.uri,
            rows.select(self.schema.names).cast(self.schema),
            mode="overwrite",
            predicate=_in_list("media_id", sorted(set(media_ids))),
            storage_options=self._options,
            writer_properties=WRITER,
        )
        return self.version()


def _in_list(column: str, values: list[str]) -> str:
    """A SQL `IN` predicate over hex media ids (so quoting cannot be broken)."""
    bad = [v for v in values if not re.fullmatch(r"[0-9a-f]+", v)]
    if bad:
        raise ValueError(f"not a media id (a hex digest): {bad[0]!r}")
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def description_table(lake: Lake) -> LakeTable:
    return LakeTable(lake, DESCRIPTIONS_PATH, DESCRIPTION_SCHEMA)


def chapter_table(lake: Lake) -> LakeTable:
    return LakeTable(lake, CHAPTERS_PATH, CHAPTER_SCHEMA)
