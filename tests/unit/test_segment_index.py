"""The LanceDB segment index: per-object replacement, and the ANN path measured against exact search."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from resources.index.segment_index import SegmentIndex, ann_partitions, vector_index_action
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.providers.marengo_models import MARENGO_3_0
from resources.providers.model_routes import route
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import media_id, segments_table

RNG = np.random.default_rng(7)


def object_segments(uri: str, etag: str, vectors: np.ndarray) -> pa.Table:
    job = EmbeddingJob(uri, etag, "video", MARENGO_3_0, EmbeddingOptions())
    segments = [
        SegmentEmbedding("visual", "clip", float(i), float(i + 1), v.tolist()) for i, v in enumerate(vectors)
    ]
    return segments_table(
        job,
        segments,
        route=route("bedrock", job.model.key),
        invocation_id=f"inv-{uri}-{etag}",
        ingested_at=datetime.now(UTC),
    )


def unit(n: int) -> np.ndarray:
    v = RNG.normal(size=(n, MARENGO_3_0.dimension)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def index_at(tmp_path: Path, ann_min_rows: int = 100_000) -> SegmentIndex:
    return SegmentIndex(
        uri=str(tmp_path / "idx"), storage=S3Storage(region_name="us-east-1"), ann_min_rows=ann_min_rows
    )


def test_replacing_an_object_drops_its_stale_segments_only(tmp_path: Path) -> None:
    index = index_at(tmp_path)
    a_old, b = object_segments("s3://m/a.mp4", "e1", unit(4)), object_segments("s3://m/b.mp4", "e1", unit(3))
    index.replace_media(
        MARENGO_3_0, pa.concat_tables([a_old, b]), [media_id("s3://m/a.mp4"), media_id("s3://m/b.mp4")]
    )
    a_new = object_segments("s3://m/a.mp4", "e2", unit(2))
    state = index.replace_media(MARENGO_3_0, a_new, [media_id("s3://m/a.mp4")])
    assert state.rows == 5 and state.vector_index is None
    assert index.indexed_media(MARENGO_3_0) == {
        media_id("s3://m/a.mp4"): {"inv-s3://m/a.mp4-e2"},
        media_id("s3://m/b.mp4"): {"inv-s3://m/b.mp4-e1"},
    }
    assert index.remove_media(MARENGO_3_0, [media_id("s3://m/b.mp4")]).rows == 2
    hit = index.search(MARENGO_3_0, a_new.column("vector")[1].as_py(), k=1)[0]
    assert (hit.media_uri, hit.start_sec, hit.end_sec, hit.score) == ("s3://m/a.mp4", 1.0, 2.0, 1.0)


def test_duplicate_segment_ids_in_one_batch_are_written_once(tmp_path: Path) -> None:
    index = index_at(tmp_path)
    batch = object_segments("s3://m/a.mp4", "e1", unit(3))
    state = index.replace_media(MARENGO_3_0, pa.concat_tables([batch, batch]), [media_id("s3://m/a.mp4")])
    assert state.rows == 3


def test_ann_index_is_built_past_the_threshold_and_keeps_recall(tmp_path: Path) -> None:
    index = index_at(tmp_path, ann_min_rows=1500)
    centres = unit(40)
    objects = []
    for i in range(200):  # 200 objects x 10 clips = 2000 rows clustered around 40 centres
        noise = RNG.normal(scale=0.15, size=(10, MARENGO_3_0.dimension)).astype(np.float32)
        vectors = centres[RNG.integers(0, 40, size=10)] + noise
        objects.append(
            object_segments(f"s3://m/{i}.mp4", "e", vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
        )
    table = pa.concat_tables(objects)
    state = index.replace_media(MARENGO_3_0, table, [media_id(f"s3://m/{i}.mp4") for i in range(200)])
    assert state.rows == 2000 and state.vector_index is not None and state.unindexed_rows == 0

    all_vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    queries = all_vectors[RNG.choice(len(all_vectors), size=25, replace=False)]
    recalled = 0
    for q in queries:
        exact = np.argsort(-(all_vectors @ q))[:10]
        exact_keys = {
            (table.column("media_uri")[i].as_py(), table.column("start_sec")[i].as_py()) for i in exact
        }
        ann = {(h.media_uri, h.start_sec) for h in index.search(MARENGO_3_0, q.tolist(), k=10)}
        recalled += len(ann & exact_keys)
    assert recalled / (25 * 10) >= 0.9

    more = object_segments("s3://m/late.mp4", "e", unit(5))
    after = index.replace_media(MARENGO_3_0, more, [media_id("s3://m/late.mp4")])
    assert after.rows == 2005 and after.unindexed_rows == 0, "optimize() folds new rows into the index"


def clustered_objects(n_objects: int, prefix: str, clips: int = 10) -> pa.Table:
    centres = unit(20)
    tables = []
    for i in range(n_objects):
        noise = RNG.normal(scale=0.15, size=(clips, MARENGO_3_0.dimension)).astype(np.float32)
        vectors = centres[RNG.integers(0, 20, size=clips)] + noise
        tables.append(
            object_segments(
                f"s3://m/{prefix}{i}.mp4", "e", vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            )
        )
    return pa.concat_tables(tables)


def ids_of(table: pa.Table) -> list[str]:
    return sorted(set(table.column("media_id").to_pylist()))


def test_scalar_indexes_cover_every_row_after_each_write(tmp_path: Path) -> None:
    """They once were made on the empty table and never updated: they covered 0 of 200,000 rows."""
    index = index_at(tmp_path)
    first = clustered_objects(20, "a")
    index.replace_media(MARENGO_3_0, first, ids_of(first))
    second = clustered_objects(5, "b")
    state = index.replace_media(MARENGO_3_0, second, ids_of(second))
    table = index.open_table(MARENGO_3_0)
    stats = {ix.columns[0]: table.index_stats(ix.name) for ix in table.list_indices()}
    assert {"segment_id", "media_id"} <= set(stats)
    assert all(
        stats[c].num_indexed_rows == 250 and stats[c].num_unindexed_rows == 0
        for c in ("segment_id", "media_id")
    )
    assert state.scalar_unindexed_rows == 0 and state.vector_index is None  # 250 rows: exact search


def test_rows_written_before_maintenance_are_searchable(tmp_path: Path) -> None:
    index = index_at(tmp_path, ann_min_rows=100)
    base = clustered_objects(30, "a")
    index.replace_media(MARENGO_3_0, base, ids_of(base))
    late = object_segments("s3://m/late.mp4", "e", unit(3))
    state = index.replace_media(MARENGO_3_0, late, [media_id("s3://m/late.mp4")], maintain=False)
    assert state.vector_index == "IvfSq" and state.unindexed_rows == 3
    hit = index.search(MARENGO_3_0, late.column("vector")[2].as_py(), k=1)[0]
    assert (hit.media_uri, hit.start_sec, hit.score) == ("s3://m/late.mp4", 2.0, 1.0)
    action, _ = index.maintain_indexes(MARENGO_3_0)
    after = index.state(MARENGO_3_0)
    assert action == "fold" and after.unindexed_rows == 0 and after.index_segments == 2


def test_vector_index_is_retrained_once_the_table_grows_fourfold(tmp_path: Path) -> None:
    index = index_at(tmp_path, ann_min_rows=100)
    batches = [clustered_objects(n, f"g{i}-") for i, n in enumerate([12, 10, 30])]  # 120, 220, 520 rows
    states = []
    for batch in batches:
        index.replace_media(MARENGO_3_0, batch, ids_of(batch), maintain=False)
        states.append((index.maintain_indexes(MARENGO_3_0)[0], index.state(MARENGO_3_0)))
    assert [action for action, _ in states] == ["build", "fold", "build"]
    assert [s.index_segments for _, s in states] == [1, 2, 1]
    assert all(s.unindexed_rows == 0 and s.scalar_unindexed_rows == 0 for _, s in states)
    trained = index.open_table(MARENGO_3_0).schema.field("vector").metadata
    assert trained == {b"mediaembed:ann_trained_rows": b"520"}


@pytest.mark.parametrize(
    ("rows", "index_type", "trained", "segments", "action"),
    [
        (4_999, None, None, 0, "none"),
        (5_000, None, None, 0, "build"),
        (19_999, "IvfSq", 5_000, 3, "fold"),
        (20_000, "IvfSq", 5_000, 3, "build"),  # grown 4x: the partitions no longer fit
        (1_000, "IvfSq", 5_000, 3, "build"),  # shrunk 4x or more
        (6_000, "IvfSq", 5_000, 16, "build"),  # folds left 16 segments to search
        (200_000, "IvfHnswSq", None, 1, "build"),  # made by the release before
        (6_000, "IvfSq", None, 1, "build"),
    ],
)
def test_vector_index_action(
    rows: int, index_type: str | None, trained: int | None, segments: int, action: str
) -> None:
    got, reason = vector_index_action(
        rows, index_type, trained, segments, min_rows=5_000, growth=4.0, max_segments=16
    )
    assert got == action and reason


def test_partitions_hold_a_thousand_rows_up_to_a_million_then_follow_the_square_root() -> None:
    assert [ann_partitions(r) for r in (1, 5_000, 100_000, 1_000_000, 4_000_000)] == [1, 5, 100, 1000, 2000]
