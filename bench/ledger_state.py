"""Sensor tick and planning time against ledger history (issue 10, bench c).

Run: .venv/bin/python bench/ledger_state.py [--sizes 10000 100000 1000000] [--open 10000]

For each size, a ledger of that many event rows (submissions and outcomes of ended jobs, plus `--open`
jobs still running) is written straight to Parquet with the real schemas, as ingest runs would have left
it (one file per 5,000 events). Timed, best of 3:
- before: deriving the state from every event, as every tick and every plan did before the closed state
  (`derive_jobs` over the whole history, reading included);
- compaction: the one ingest-run compaction that archives the ended jobs and writes their closed rows;
- tick: the sensor's ledger work after it, `in_progress()` and the token -> invocation map it asks the
  provider about (the provider calls are network, and scale with the open jobs);
- plan: `jobs(model)` plus `plan_submissions` over an inventory of every object in the ledger.
The last line is machine-readable: `tick_1m_sec=X plan_1m_sec=Y` (targets: under 1 s and 5 s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from assets_defs.media_inventory import INVENTORY_SCHEMA
from assets_defs.submission_plan import plan_submissions
from resources.embedding_jobs import EmbeddingJob, EmbeddingOptions
from resources.lake import Lake
from resources.marengo_models import MARENGO_3_0
from resources.s3_storage import S3Storage
from resources.submission_ledger import (
    OUTCOME_SCHEMA,
    SUBMISSION_SCHEMA,
    SubmissionLedger,
    derive_jobs,
    open_jobs,
)

MODEL = MARENGO_3_0
EVENTS_PER_FILE = 5_000


def write_history(lake: Lake, rows: int, open_jobs_count: int) -> pd.DataFrame:
    """`rows` events: ended jobs (a submission and an outcome each) and open ones; returns the inventory."""
    jobs = (rows - open_jobs_count) // 2 + open_jobs_count
    now = datetime.now(UTC)
    options = EmbeddingOptions()
    uris = [f"s3://media/library/{i:07d}.mp4" for i in range(jobs)]
    keyed = [EmbeddingJob(u, "etag", "video", MODEL, options) for u in uris]
    subs = pa.table(
        {
            "job_key": [j.job_key for j in keyed],
            "client_token": [j.client_token for j in keyed],
            "attempt": pa.array([1] * jobs, pa.int32()),
            "media_uri": uris,
            "etag": ["etag"] * jobs,
            "modality": ["video"] * jobs,
            "media_seconds": [30.0] * jobs,
            "model_key": [MODEL.key] * jobs,
            "options": [options.canonical()] * jobs,
            "provider": ["bedrock"] * jobs,
            "invocation_id": [f"arn:aws:bedrock:us-east-1:1:async-invoke/{i:012d}" for i in range(jobs)],
            "output_uri": ["s3://lake/async"] * jobs,
            "submitted_at": pa.array([now - timedelta(days=1)] * jobs, pa.timestamp("us", tz="UTC")),
            "run_id": ["run"] * jobs,
        },
        schema=SUBMISSION_SCHEMA,
    )
    ended = jobs - open_jobs_count
    outs = pa.table(
        {
            "job_key": subs.column("job_key").slice(0, ended),
            "client_token": subs.column("client_token").slice(0, ended),
            "model_key": [MODEL.key] * ended,
            "media_uri": subs.column("media_uri").slice(0, ended),
            "etag": ["etag"] * ended,
            "invocation_id": subs.column("invocation_id").slice(0, ended),
            "status": ["completed"] * ended,
            "reason": pa.nulls(ended, pa.string()),
            "segments": [3] * ended,
            "media_seconds": [30.0] * ended,
            "table_path": [f"tables/marengo_embeddings/{MODEL.key}"] * ended,
            "recorded_at": pa.array([now] * ended, pa.timestamp("us", tz="UTC")),
            "run_id": ["ingest"] * ended,
        },
        schema=OUTCOME_SCHEMA,
    )
    for kind, table in (("submissions", subs), ("outcomes", outs)):
        for n, start in enumerate(range(0, table.num_rows, EVENTS_PER_FILE)):
            lake.write_table(table.slice(start, EVENTS_PER_FILE), f"ledger/{kind}/{n:06d}.parquet")
    return pa.table(
        {
            "media_uri": uris,
            "key": [u[len("s3://media/") :] for u in uris],
            "etag": ["etag"] * jobs,
            "size_bytes": [10_000_000] * jobs,
            "last_modified": pa.array([now] * jobs, pa.timestamp("us", tz="UTC")),
            "content_type": ["video/mp4"] * jobs,
            "modality": ["video"] * jobs,
            "duration_sec": [30.0] * jobs,
            "status": ["ok"] * jobs,
            "reason": pa.nulls(jobs, pa.string()),
        }
    ).to_pandas()


def best_of(work: Callable[[], Any], times: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(times):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(size: int, open_count: int) -> tuple[float, float]:
    """(tick seconds, plan seconds) for a ledger of `size` events; prints the line of figures."""
    with tempfile.TemporaryDirectory(prefix="ledger-state-") as tmp:
        lake = Lake(root=str(Path(tmp) / "lake"), storage=S3Storage(region_name="us-east-1"))
        inventory = write_history(lake, size, open_count)
        ledger = SubmissionLedger(lake, "bedrock")
        before, _ = best_of(lambda: derive_jobs(ledger.submissions(), ledger.outcomes()), times=1)
        start = time.perf_counter()
        ledger.compact(min_files=1)  # what the ingest runs have done by now
        compaction = time.perf_counter() - start
        tick, pending = best_of(lambda: open_jobs(ledger.in_progress()))
        assert len(pending) == open_count, len(pending)
        planning, result = best_of(
            lambda: plan_submissions(inventory, ledger.jobs(MODEL.key), MODEL, EmbeddingOptions(), 2)
        )
        assert result.already_handled == len(inventory)
        print(
            f"{size:>9,} events, {open_count:,} open, {len(inventory):,} objects: "
            f"before (every event) {before:6.2f} s | compaction {compaction:6.2f} s | "
            f"tick {tick:6.3f} s | plan {planning:6.2f} s"
        )
        return tick, planning


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--open", type=int, default=10_000)
    args = parser.parse_args()
    assert set(INVENTORY_SCHEMA.names) >= {"media_uri", "etag", "status"}
    figures = {size: measure(size, args.open) for size in args.sizes}
    largest = max(figures)
    print(f"tick_1m_sec={figures[largest][0]:.3f} plan_1m_sec={figures[largest][1]:.2f}")


if __name__ == "__main__":
    main()
