"""What the self-repairing index costs: audit, lock, repairing duplicated rows, unlocked vs locked writers.

Run: .venv/bin/python bench/index_repair.py --objects 1000 --segments 10
Builds a local index of objects x segments 512-d rows, then times: the per-object audit every index run
does; taking and releasing the writer lock; two writers at once without the lock (the duplicates the issue
found) and with it; and the repair of a fully duplicated index by rewriting every object.
"""

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from resources.index.segment_index import SegmentIndex
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.providers.marengo_models import MARENGO_3_0
from resources.providers.model_routes import route
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import media_id, segments_table


def dataset(objects: int, segments: int) -> tuple[pa.Table, list[str]]:
    rng = np.random.default_rng(1)
    tables, ids = [], []
    for i in range(objects):
        uri = f"s3://bench/{i:06d}.mp4"
        job = EmbeddingJob(uri, "e", "video", MARENGO_3_0, EmbeddingOptions())
        vectors = rng.normal(size=(segments, MARENGO_3_0.dimension)).astype(np.float32)
        rows = [
            SegmentEmbedding("visual", "clip", float(s), float(s + 1), v.tolist())
            for s, v in enumerate(vectors)
        ]
        tables.append(
            segments_table(
                job,
                rows,
                route=route("bedrock", job.model.key),
                invocation_id=f"inv-{i}",
                ingested_at=datetime.now(UTC),
            )
        )
        ids.append(media_id(uri))
    return pa.concat_tables(tables), ids


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


class Unlocked(SegmentIndex):
    """The writer as it was before the lock, for comparison."""

    def writer(self, model, holder=None, on_wait=None):  # type: ignore[no-untyped-def,override]
        class Free:
            def ensure_held(self) -> None:
                pass

        return nullcontext(Free())


def two_writers(kind: type[SegmentIndex], uri: str, table: pa.Table, ids: list[str]) -> float:
    kind(uri=uri, storage=S3Storage(region_name="us-east-1")).replace_media(
        MARENGO_3_0, table.slice(0, 0), []
    )
    start = threading.Barrier(2)

    def write() -> None:
        index = kind(uri=uri, storage=S3Storage(region_name="us-east-1"))
        start.wait()
        index.replace_media(MARENGO_3_0, table, ids)

    threads = [threading.Thread(target=write) for _ in range(2)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - began


def take_and_release(index: SegmentIndex) -> None:
    with index.writer(MARENGO_3_0):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--segments", type=int, default=10)
    args = parser.parse_args()
    table, ids = dataset(args.objects, args.segments)
    rows = table.num_rows
    with tempfile.TemporaryDirectory() as workdir:
        for kind in (Unlocked, SegmentIndex):
            uri = str(Path(workdir) / kind.__name__)
            seconds = two_writers(kind, uri, table, ids)
            index = SegmentIndex(uri=uri, storage=S3Storage(region_name="us-east-1"))
            held, duplicates = index.state(MARENGO_3_0).rows, index.duplicate_segment_ids(MARENGO_3_0)
            print(
                f"two writers at once, {kind.__name__:12s}: {seconds:6.2f} s, rows={held} "
                f"for {rows} segment ids, duplicates={duplicates}"
            )

        index = SegmentIndex(uri=str(Path(workdir) / "Unlocked"), storage=S3Storage(region_name="us-east-1"))
        audit, seconds = timed(lambda: index.audit(MARENGO_3_0))
        print(f"audit of {rows * 2} rows ({len(audit)} objects, all duplicated): {seconds:6.2f} s")
        state, seconds = timed(lambda: index.replace_media(MARENGO_3_0, table, ids))
        print(f"repair by rewriting all {len(ids)} objects: {seconds:6.2f} s -> rows={state.rows}")
        _, seconds = timed(lambda: index.audit(MARENGO_3_0))
        print(f"audit of a sound index of {state.rows} rows: {seconds:6.2f} s")
        _, seconds = timed(lambda: index.duplicate_segment_ids(MARENGO_3_0))
        print(f"duplicate check over {state.rows} rows: {seconds:6.2f} s")
        lock_times = []
        for _ in range(21):
            _, seconds = timed(lambda: take_and_release(index))
            lock_times.append(seconds)
        print(f"local writer lock, take and release: median {sorted(lock_times)[10] * 1000:.2f} ms")


if __name__ == "__main__":
    main()
