"""Reading the embedding table back, against the same rows in one Parquet file (issue 10, bench e).

Run: .venv/bin/python bench/table_read.py [--objects 5000] [--segments 3] [--runs 50]

The rows (`--objects` x `--segments`, 512-d float32 vectors, the real segment schema) are written three
ways on a local disk:
- one Parquet file: the yardstick;
- the Delta Lake table, as ingest writes it: one commit per ingest run (`--runs` of them), then the
  compaction the ingest runs do once there are `COMPACT_FROM_FILES` data files;
- the layout before the table format: one Parquet file per object.

Each is read in full and as two columns (media_uri, start_sec) with pyarrow (the Delta table through
`EmbeddingTable.read`, as the index step reads it: the current version's files, by a reader that holds the
table and checks for a newer version on every read), and aggregated with DuckDB
(over the files of the current version, which is what DuckDB's `delta_scan` reads; its `delta`
extension itself would be downloaded at run time). Best of 5 reads each. The last line is machine-readable:
`pyarrow_ratio=X pyarrow_2col_ratio=Y duckdb_ratio=Z` (Delta against one file; target at most 1.5).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from resources.providers.marengo_models import MARENGO_3_0
from resources.providers.model_routes import route
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_schema import media_id, segment_schema

MODEL = MARENGO_3_0
COLUMNS = ["media_uri", "start_sec"]
QUERY = "SELECT media_uri, count(*) AS n, max(end_sec) AS last FROM rows GROUP BY media_uri"


def make_rows(objects: int, segments: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = objects * segments
    uris = [f"s3://media/library/{i:06d}/clip.mp4" for i in range(objects)]
    ids = [media_id(u) for u in uris]
    vectors = rng.standard_normal((n, MODEL.dimension), dtype=np.float32)
    starts = np.tile(np.arange(segments, dtype=np.float64) * 6.0, objects)
    columns: dict[str, Any] = {
        "segment_id": [f"{i:032x}" for i in range(n)],
        "media_id": np.repeat(ids, segments).tolist(),
        "media_uri": np.repeat(uris, segments).tolist(),
        "etag": ["0" * 32] * n,
        "modality": ["video"] * n,
        "provider": ["bedrock"] * n,
        "model_key": [MODEL.key] * n,
        "model_id": [route("bedrock", MODEL.key).model_id] * n,
        "model_version": [MODEL.version] * n,
        "embedding_option": ["visual"] * n,
        "embedding_type": ["separate"] * n,
        "embedding_scope": ["clip"] * n,
        "start_sec": starts,
        "end_sec": starts + 6.0,
        "invocation_id": ["arn:aws:bedrock:us-east-1:123456789012:async-invoke/x"] * n,
        "ingested_at": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), MODEL.dimension),
    }
    schema = segment_schema(MODEL.dimension)
    return pa.table({name: columns[name] for name in schema.names}).cast(schema)


def best_of(read: Callable[[], Any], times: int = 5) -> float:
    best = float("inf")
    for _ in range(times):
        start = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument("--segments", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50, help="ingest runs (Delta commits) writing them")
    args = parser.parse_args()
    rows = make_rows(args.objects, args.segments)
    with tempfile.TemporaryDirectory(prefix="table-read-") as tmp:
        root = Path(tmp)
        single = root / "one.parquet"
        pq.write_table(rows, single)

        lake = Lake(root=str(root / "lake"), storage=S3Storage(region_name="us-east-1"))
        table = EmbeddingTable(lake, MODEL)
        per_run = -(-args.objects // args.runs) * args.segments
        start = time.perf_counter()
        for offset in range(0, rows.num_rows, per_run):
            batch = rows.slice(offset, per_run)
            table.replace(batch, sorted(set(batch.column("media_id").to_pylist())))
            table.maintain()
        write_sec = time.perf_counter() - start
        delta = table.open()
        assert delta is not None
        files = len(delta.file_uris())

        legacy = root / "legacy"
        legacy.mkdir()
        for offset in range(0, rows.num_rows, args.segments):
            one = rows.slice(offset, args.segments)
            pq.write_table(one, legacy / f"{one.column('media_id')[0].as_py()}.parquet")

        def duckdb_over_files() -> pa.Table:
            """DuckDB over the current version's files, as its `delta_scan` does (delta-rs writes no
            deletion vectors, so the files are the rows)."""
            opened = table.open()
            assert opened is not None
            return duckdb.sql(QUERY.replace("rows", f"read_parquet({opened.file_uris()!r})")).arrow()

        readers: dict[str, dict[str, Callable[[], Any]]] = {
            "one Parquet file": {
                "pyarrow": lambda: pq.read_table(single),
                "pyarrow 2 cols": lambda: pq.read_table(single, columns=COLUMNS),
                "duckdb": lambda: duckdb.sql(QUERY.replace("rows", f"read_parquet('{single}')")).arrow(),
            },
            "Delta Lake table": {
                "pyarrow": lambda: table.read(),
                "cold pyarrow 2 cols": lambda: EmbeddingTable(lake, MODEL).read(columns=COLUMNS),
                "pyarrow 2 cols": lambda: table.read(columns=COLUMNS),
                "duckdb": lambda: duckdb_over_files(),
            },
            "one file per object (before)": {
                "pyarrow": lambda: pads.dataset(legacy, format="parquet").to_table(),
                "pyarrow 2 cols": lambda: pads.dataset(legacy, format="parquet").to_table(columns=COLUMNS),
                "duckdb": lambda: duckdb.sql(
                    QUERY.replace("rows", f"read_parquet('{legacy}/*.parquet')")
                ).arrow(),
            },
        }
        print(
            f"{rows.num_rows} rows ({args.objects} objects x {args.segments} segments, 512-d); Delta table "
            f"written in {args.runs} commits + compaction: {write_sec:.1f} s, {files} data files, "
            f"version {delta.version()}"
        )
        timings: dict[str, dict[str, float]] = {}
        for layout, ways in readers.items():
            timings[layout] = {}
            for way, read in ways.items():
                timings[layout][way] = best_of(read)
            print(f"{layout:30s} " + "  ".join(f"{w} {t * 1000:8.1f} ms" for w, t in timings[layout].items()))
        base, delta_t, before = (
            timings["one Parquet file"],
            timings["Delta Lake table"],
            timings["one file per object (before)"],
        )
        print(
            f"a reader's first read (the log loaded, the footers read): "
            f"{delta_t['cold pyarrow 2 cols'] * 1000:.1f} ms for 2 columns"
        )
        for way in base:
            print(
                f"{way:15s} Delta / one file {delta_t[way] / base[way]:5.2f}x   "
                f"before / one file {before[way] / base[way]:6.2f}x"
            )
        print(
            f"pyarrow_ratio={delta_t['pyarrow'] / base['pyarrow']:.2f} "
            f"pyarrow_2col_ratio={delta_t['pyarrow 2 cols'] / base['pyarrow 2 cols']:.2f} "
            f"duckdb_ratio={delta_t['duckdb'] / base['duckdb']:.2f}"
        )


if __name__ == "__main__":
    main()
