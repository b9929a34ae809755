"""Where an ANN index starts to pay, and how many IVF partitions to train: small tables, measured.

For each row count: numpy brute force, LanceDB's exact (flat) scan, and IVF_SQ (cosine) with each partition
rule — build time, p50 query and recall@10 at the given nprobes/refine — on the clustered data of
bench/index_ann.py with held-out queries.

    .venv/bin/python bench/index_threshold.py --rows 2000,5000,10000,20000,50000,100000 --rules sqrt,per1000

Rules: `sqrt` = round(sqrt(rows)) partitions, `per1000` = rows // 1000 (at least 1), `per4096` = rows // 4096.
One machine-readable line per row count and rule: `rows=... rule=... partitions=... build_s=... ...`.
With `--folds N`, the last index then takes N small writes, each followed by optimize() as an ingest run
does, and queries are timed as the index segments pile up.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import lancedb
import numpy as np
import pyarrow as pa
from index_ann import clustered
from lancedb.index import IvfSq

RULES = {
    "sqrt": lambda rows: max(1, round(math.sqrt(rows))),
    "per1000": lambda rows: max(1, rows // 1000),
    "per4096": lambda rows: max(1, rows // 4096),
}


def p50_ms(run: list[float]) -> float:
    return float(np.median(run)) * 1000


def measure(
    table: Any, queries: np.ndarray, truth: np.ndarray, k: int, probes: tuple[int, int] | None
) -> tuple[float, float]:
    """(p50 ms, recall@k): an exact scan with `probes` None, else the index with (nprobes, refine)."""
    times, hits = [], 0
    for i, q in enumerate(queries):
        query = table.search(q, vector_column_name="vector").distance_type("cosine").limit(k)
        query = (
            query.bypass_vector_index()
            if probes is None
            else query.nprobes(probes[0]).refine_factor(probes[1])
        )
        start = time.perf_counter()
        found = query.select(["id", "_distance"]).to_arrow().column("id").to_numpy()
        times.append(time.perf_counter() - start)
        hits += len(set(found.tolist()) & set(truth[i].tolist()))
    return p50_ms(times), hits / (len(queries) * k)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="2000,5000,10000,20000,50000,100000")
    parser.add_argument("--rules", default="sqrt,per1000")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=0.6)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--nprobes", type=int, default=20)
    parser.add_argument("--refine", type=int, default=5)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--folds",
        type=int,
        default=0,
        help="then add 200 rows and optimize() this many times, timing queries",
    )
    args = parser.parse_args()

    for rows in [int(r) for r in args.rows.split(",")]:
        batches = clustered(rows + args.queries, args.dim, args.clusters, args.seed, args.spread)
        data = np.concatenate(list(batches))
        order = np.random.default_rng(args.seed + 1).permutation(len(data))
        queries, base = data[order[: args.queries]], data[order[args.queries :]]
        truth = np.argsort(-(queries @ base.T), axis=1)[:, : args.k]
        numpy_s = []
        for q in queries:
            start = time.perf_counter()
            scores = base @ q
            top = np.argpartition(-scores, args.k)[: args.k]
            top[np.argsort(-scores[top])]
            numpy_s.append(time.perf_counter() - start)
        workdir = Path(tempfile.mkdtemp(prefix="index-threshold-"))
        try:
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1)), args.dim)
            table = lancedb.connect(str(workdir)).create_table(
                "t", pa.table({"id": pa.array(np.arange(len(base))), "vector": vectors})
            )
            exact_ms, _ = measure(table, queries, truth, args.k, None)
            print(
                f"rows={rows} numpy_p50_ms={p50_ms(numpy_s):.2f} lancedb_exact_p50_ms={exact_ms:.2f}",
                flush=True,
            )
            for rule in args.rules.split(","):
                partitions = RULES[rule](rows)
                start = time.perf_counter()
                config = IvfSq(distance_type="cosine", num_partitions=partitions)
                table.create_index("vector", config=config, replace=True)
                build_s = time.perf_counter() - start
                ann_ms, recall = measure(table, queries, truth, args.k, (args.nprobes, args.refine))
                print(
                    f"rows={rows} rule={rule} partitions={partitions} build_s={build_s:.2f} "
                    f"ann_p50_ms={ann_ms:.2f} recall={recall:.3f} nprobes={args.nprobes} "
                    f"refine={args.refine}",
                    flush=True,
                )
            if not args.folds:
                continue
            extra = np.concatenate(
                list(clustered(args.folds * 200, args.dim, args.clusters, args.seed + 2, args.spread))
            )
            for fold in range(args.folds):  # what each ingest run's optimize() leaves: one more index segment
                chunk = extra[fold * 200 : (fold + 1) * 200]
                ids = pa.array(np.arange(len(base) + fold * 200, len(base) + (fold + 1) * 200))
                table.add(
                    pa.table(
                        {
                            "id": ids,
                            "vector": pa.FixedSizeListArray.from_arrays(
                                pa.array(chunk.reshape(-1)), args.dim
                            ),
                        }
                    )
                )
                table.optimize()
                if (fold + 1) % 8 == 0 or fold + 1 == args.folds:
                    ann_ms, recall = measure(table, queries, truth, args.k, (args.nprobes, args.refine))
                    segments = table.index_stats("vector_idx").num_indices
                    print(
                        f"rows={rows} folds={fold + 1} index_segments={segments} ann_p50_ms={ann_ms:.2f}",
                        flush=True,
                    )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
