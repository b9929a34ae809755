"""The LanceDB search index over segment embeddings: one table per model version.

Vectors of different Marengo versions live in different spaces (and sizes), so each version has its own
table; which one serves queries is the caller's choice. Writes go through LanceDB's merge_insert so a
re-ingested media object replaces its segments in one atomic table version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import lancedb
import pyarrow as pa
from lancedb.index import BTree, IvfHnswSq
from pydantic import Field, PrivateAttr

from resources.marengo_models import MarengoModel
from resources.s3_storage import S3Storage
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


@dataclass(frozen=True)
class IndexState:
    table: str
    version: int
    rows: int
    vector_index: str | None
    unindexed_rows: int


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


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
    _db: Any = PrivateAttr(default=None)

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

    def replace_media(self, model: MarengoModel, segments: pa.Table, media_ids: list[str]) -> IndexState:
        """Make the index hold exactly `segments` for `media_ids`; other media are untouched."""
        table = self.open_table(model)
        if table is None:
            table = self.connect().create_table(
                self.table_name(model), schema=segment_schema(model.dimension)
            )
            table.create_index("segment_id", config=BTree())
            table.create_index("media_id", config=BTree())
        if media_ids:
            last_row = {sid: i for i, sid in enumerate(segments.column("segment_id").to_pylist())}
            # merge_insert needs unique keys per batch; typed indices, so that no rows is a valid take too
            segments = segments.take(pa.array(sorted(last_row.values()), type=pa.int64()))
            (
                table.merge_insert("segment_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .when_not_matched_by_source_delete(f"media_id IN ({_sql_list(media_ids)})")
                .execute(segments.select(segment_schema(model.dimension).names))
            )
        self._maintain_indexes(table)
        return self.state(model)

    def indexed_media(self, model: MarengoModel) -> dict[str, set[str]]:
        """media_id -> the invocation ids its indexed segments came from (one, once consistent)."""
        table = self.open_table(model)
        if table is None or table.count_rows() == 0:
            return {}
        pairs = table.search().select(["media_id", "invocation_id"]).limit(None).to_arrow()
        indexed: dict[str, set[str]] = {}
        for row in pairs.group_by(["media_id", "invocation_id"]).aggregate([]).to_pylist():
            indexed.setdefault(row["media_id"], set()).add(row["invocation_id"])
        return indexed

    def remove_media(self, model: MarengoModel, media_ids: list[str]) -> IndexState:
        table = self.open_table(model)
        if table is not None and media_ids:
            table.delete(f"media_id IN ({_sql_list(media_ids)})")
            self._maintain_indexes(table)
        return self.state(model)

    def _maintain_indexes(self, table: Any) -> None:
        """ANN index once the table is big enough; afterwards fold new rows into it."""
        rows = table.count_rows()
        has_vector_index = any(ix.columns == ["vector"] for ix in table.list_indices())
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
