"""Reading the segment index: open it without creating anything, rank segments by cosine.

Free of Dagster, and LanceDB is imported only when an index is opened, so `mediaembed search` starts
without loading the code location. `SegmentIndex` (the pipeline's resource) searches through these same
functions, so the command and the pipeline never rank differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from resources.index.missing_table import is_missing_table
from resources.providers.embedding_jobs import LEGACY_EMBEDDING_TYPE, EmbeddingType
from resources.providers.marengo_models import MarengoModel
from resources.storage.location import Location

# Once an ANN index exists: IVF partitions probed per query, and how many times k candidates are re-ranked
# exactly. Measured with the IVF_SQ index the pipeline trains (~1,000 rows a partition) at 1 M x 512:
# recall@10 0.999 (clustered) and 0.998 (spread 1.0) at 20/5, where 10 probes lose recall and refine 10
# buys none (bench/index_ann.py; docs/architecture.md, Index). tests/unit/test_segment_index.py checks
# recall against exact search.
DEFAULT_NPROBES = 20
DEFAULT_REFINE_FACTOR = 5

SEARCH_COLUMNS = [
    "media_uri",
    "start_sec",
    "end_sec",
    "embedding_option",
    "embedding_type",
    "embedding_scope",
    "model_key",
    "_distance",
]


@dataclass(frozen=True)
class SearchHit:
    media_uri: str
    start_sec: float | None
    end_sec: float | None
    score: float
    model: str
    embedding_option: str | None
    embedding_scope: str | None = None
    embedding_type: EmbeddingType = LEGACY_EMBEDDING_TYPE  # a table made before the column: separate


class IndexNotFound(LookupError):
    """Nothing has been indexed at this location (or for this model) yet."""


def table_name(model: MarengoModel) -> str:
    """One table per model version: their vectors live in different spaces and sizes."""
    return "segments_" + model.key.replace("-", "_").replace(".", "_")


def connect_for_reading(index: Location, read_consistency_interval: timedelta | None = None) -> Any:
    """A LanceDB connection that never creates the database: `lancedb.connect` makes a missing local
    directory, which would leave an empty index behind a search that found nothing."""
    uri, storage_options = index.lance_database()
    if index.known_absent():
        raise IndexNotFound(f"no search index at {uri} yet")
    import lancedb  # deferred: about a second of imports that only a search that reaches the index needs

    return lancedb.connect(
        uri, storage_options=storage_options, read_consistency_interval=read_consistency_interval
    )


def open_segments(db: Any, model: MarengoModel, uri: str) -> Any:
    try:
        return db.open_table(table_name(model))
    except ValueError as error:
        if not is_missing_table(error):
            raise
        raise IndexNotFound(f"the search index at {uri} holds no {model.key} segments yet") from None


def has_vector_index(table: Any) -> bool:
    return any(ix.columns == ["vector"] for ix in table.list_indices())


def search_segments(
    table: Any,
    vector: list[float],
    k: int,
    *,
    nprobes: int,
    refine_factor: int,
) -> list[SearchHit]:
    """The `k` segments nearest to `vector` by cosine, best first; score = 1 - cosine distance.

    Exact below the ANN threshold; with an ANN index, `nprobes` partitions are probed and `refine_factor`
    x k candidates re-ranked exactly. Whether an ANN index exists is looked up per query (a tenth of a
    millisecond), so a long-lived reader follows the writer building one.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    query = table.search(vector, vector_column_name="vector").distance_type("cosine").limit(k)
    if has_vector_index(table):
        query = query.nprobes(nprobes).refine_factor(refine_factor)
    # A table made before the embedding_type column lacks it until the pipeline's next write adds it;
    # its rows are all separate. Looking costs a tenth of a millisecond.
    typed = "embedding_type" in table.schema.names
    columns = SEARCH_COLUMNS if typed else [c for c in SEARCH_COLUMNS if c != "embedding_type"]
    rows = query.select(columns).to_arrow().to_pylist()
    # Equal scores (the same content twice) rank by object and time, not by the order rows were written,
    # so the same library gives the same answer whichever provider or run embedded it.
    rows.sort(key=lambda r: (round(float(r["_distance"]), 6), r["media_uri"], r["start_sec"] or 0.0))
    return [
        SearchHit(
            media_uri=r["media_uri"],
            start_sec=r["start_sec"],
            end_sec=r["end_sec"],
            score=round(1.0 - float(r["_distance"]), 6),
            model=r["model_key"],
            embedding_option=r["embedding_option"],
            embedding_scope=r["embedding_scope"],
            embedding_type=r.get("embedding_type", LEGACY_EMBEDDING_TYPE),
        )
        for r in rows
    ]
