"""Vector index at scale: build time, size, recall@10 and p50/p99 latency against numpy brute force.

Synthetic clustered data (unit vectors around `--clusters` centres) with held-out queries drawn from the same
clusters, so recall is measured the way search is used: exact cosine top-k from numpy is the truth.

    .venv/bin/python bench/index_ann.py --rows 1000000 --config ivf_sq:1000 --nprobes 20,40 --refine 5,10

Each `--config` is `kind:partitions` (kind: ivf_sq, ivf_pq, ivf_hnsw_sq, ivf_rq) or `exact` (no index);
partitions `auto` is what the pipeline trains for this many rows (`ann_partitions`).
The last line per config/probe setting is machine-readable: `config=... recall=... p50_ms=... speedup=...`.
The speedup divides numpy's p50 by the index's, numpy being timed between the index's queries (every fourth
query), so both see the same load when the machine is shared.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import IvfHnswSq, IvfPq, IvfRq, IvfSq

from resources.index.segment_index import ann_partitions


def clustered(rows: int, dim: int, clusters: int, seed: int, spread: float) -> Iterator[np.ndarray]:
    """Unit vectors around random centres, in batches (1 M x 512 float32 is 2 GB)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    batch = 100_000
    for start in range(0, rows, batch):
        n = min(batch, rows - start)
        which = rng.integers(0, clusters, n)
        points = centres[which] + spread * rng.standard_normal((n, dim)).astype(np.float32) / np.sqrt(dim)
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        yield points.astype(np.float32)


def index_config(kind: str, partitions: int, dim: int) -> Any:
    if kind == "ivf_sq":
        return IvfSq(distance_type="cosine", num_partitions=partitions)
    if kind == "ivf_pq":
        return IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=dim // 8)
    if kind == "ivf_hnsw_sq":
        return IvfHnswSq(distance_type="cosine", num_partitions=partitions)
    if kind == "ivf_rq":
        return IvfRq(distance_type="cosine", num_partitions=partitions)
    raise ValueError(f"unknown index kind {kind!r}")


def numpy_top_k(base: np.ndarray, q: np.ndarray, k: int) -> float:
    """Milliseconds of an exact cosine top-k by numpy (dot products of unit vectors, then a partial sort)."""
    start = time.perf_counter()
    scores = base @ q
    top = np.argpartition(-scores, k)[:k]
    top[np.argsort(-scores[top])]
    return (time.perf_counter() - start) * 1000


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--spread", type=float, default=0.6, help="noise norm around each centre")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--config", action="append", default=None, help="kind:partitions, repeatable")
    parser.add_argument("--nprobes", default="20,40")
    parser.add_argument("--refine", default="5,10")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the table and index in this folder; a later run with the same folder and data "
        "arguments only times the queries again (e.g. the build at nice 19, the queries when the machine "
        "is quieter)",
    )
    args = parser.parse_args()
    configs = args.config or ["ivf_sq:1000"]

    keep = args.keep is not None
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="index-bench-"))
    try:
        t0 = time.perf_counter()
        batches = clustered(args.rows + args.queries, args.dim, args.clusters, args.seed, args.spread)
        data = np.concatenate(list(batches))
        order = np.random.default_rng(args.seed + 1).permutation(len(data))
        queries, base = data[order[: args.queries]], data[order[args.queries :]]
        print(f"data: {len(base)} x {args.dim}, {args.clusters} clusters, {len(queries)} held-out queries")

        # Truth and the brute-force baseline: exact cosine (dot on unit vectors) top-k with numpy.
        truth = np.argsort(-(queries @ base.T), axis=1)[:, : args.k]
        numpy_p50 = float(np.median([numpy_top_k(base, q, args.k) for q in queries[:50]]))
        print(f"numpy brute force: p50 {numpy_p50:.1f} ms ({time.perf_counter() - t0:.0f} s to prepare)")

        db = lancedb.connect(str(workdir))
        reuse = keep and (workdir / "bench.lance").is_dir()
        if reuse:  # the same seed gives the same data: only the timing is run again
            table = db.open_table("bench")
        else:
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1)), args.dim)
            table = db.create_table(
                "bench", pa.table({"id": pa.array(np.arange(len(base))), "vector": vectors})
            )
        for spec in configs:
            kind, _, parts = spec.partition(":")
            if reuse and kind != "exact":
                build_s = float("nan")
                size_mb = directory_bytes(workdir / "bench.lance" / "_indices") / 1e6
                print(f"{spec}: index kept from an earlier run, {size_mb:.0f} MB")
            elif kind != "exact":
                if any(i.name == "vector_idx" for i in table.list_indices()):
                    table.drop_index("vector_idx")
                start = time.perf_counter()
                partitions = ann_partitions(len(base)) if parts == "auto" else int(parts)
                table.create_index("vector", config=index_config(kind, partitions, args.dim))
                build_s = time.perf_counter() - start
                size_mb = directory_bytes(workdir / "bench.lance" / "_indices") / 1e6
                print(f"{spec}: build {build_s:.0f} s, index {size_mb:.0f} MB")
            else:
                build_s, size_mb = 0.0, 0.0
            probe_grid = (
                [(0, 0)]
                if kind == "exact"
                else [(int(n), int(r)) for n in args.nprobes.split(",") for r in args.refine.split(",")]
            )
            for nprobes, refine in probe_grid:

                def ann(
                    q: np.ndarray, nprobes: int = nprobes, refine: int = refine, kind: str = kind
                ) -> np.ndarray:
                    query = table.search(q, vector_column_name="vector").distance_type("cosine").limit(args.k)
                    if kind == "exact":
                        query = query.bypass_vector_index()
                    else:
                        query = query.nprobes(nprobes)
                        if refine:
                            query = query.refine_factor(refine)
                    return query.select(["id", "_distance"]).to_arrow().column("id").to_numpy()

                for q in queries[:20]:  # warm-up: index pages and partitions into the cache
                    ann(q)
                # numpy is timed between the index's queries, so both see the same load on a shared machine
                latencies, hits, brute = [], 0, []
                for i, q in enumerate(queries):
                    start = time.perf_counter()
                    found = ann(q)
                    latencies.append((time.perf_counter() - start) * 1000)
                    hits += len(set(found.tolist()) & set(truth[i].tolist()))
                    if i % 4 == 0:
                        brute.append(numpy_top_k(base, q, args.k))
                recall = hits / (len(queries) * args.k)
                p50, p99 = np.percentile(latencies, [50, 99])
                numpy_now = float(np.median(brute))
                print(
                    f"config={spec} nprobes={nprobes} refine={refine} recall={recall:.3f} "
                    f"p50_ms={p50:.2f} p99_ms={p99:.2f} numpy_p50_ms={numpy_now:.1f} "
                    f"speedup={numpy_now / p50:.1f} build_s={build_s:.0f} index_mb={size_mb:.0f}",
                    flush=True,
                )
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
