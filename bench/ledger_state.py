"""Sensor tick and planning time against ledger history (issue 10, bench c).

Run: .venv/bin/python bench/ledger_state.py [--sizes 10000 100000 1000000] [--open 10000]

For each size, a ledger of that many event rows (submissions and outcomes of ended jobs, plus `--open`
jobs still running) is written straight to Parquet with the real schemas, as ingest runs would have left
it (one file per 5,000 events), then folded by the compaction an ingest run does. Timed, best of 3:
- tick: one evaluation of the real `marengo_invocation_sensor` (ephemeral Dagster instance, a typed
  provider fake that answers at once that nothing finished: an idle tick, all of whose time is ours);
- plan: what the invocations asset does before submitting, `jobs(model)` and `plan_submissions` over an
  inventory of every object in the ledger;
- rebuild (where the code has it): `jobs(model)` when the closed state is gone and is rebuilt from the
  archive, the one-off cost of a lost or stale closed state.
The same script measures the code before the closed state (run it with PYTHONPATH at a checkout of it).
The last line is machine-readable: `tick_1m_sec=X plan_1m_sec=Y` (targets: under 1 s and 5 s).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa

from assets_defs.inventory.media_inventory import INVENTORY_SCHEMA
from assets_defs.marengo.submission_plan import plan_submissions
from pipelines.sensors import marengo_invocation_sensor
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.marengo_models import MARENGO_3_0, MarengoModel
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import ProviderName
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.submission_ledger import OUTCOME_SCHEMA, SUBMISSION_SCHEMA, SubmissionLedger

MODEL = MARENGO_3_0
EVENTS_PER_FILE = 5_000


class InstantProvider(MarengoProvider):
    """Answers every status question at once with "nothing finished", so a tick's time is the pipeline's."""

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock"

    def submit(self, job: EmbeddingJob) -> Submission:
        raise NotImplementedError("the bench submits nothing")

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        assert len(open_jobs) > 0
        return []

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        raise NotImplementedError("the bench fetches nothing")

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        raise NotImplementedError("the bench embeds nothing")


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


def sensor_tick(instance: dg.DagsterInstance, lake: Lake, cursor: str | None) -> str | None:
    """One evaluation of the real sensor; returns its cursor for the next tick."""
    resources = {"marengo": MarengoProviders(bedrock=InstantProvider()), "lake": lake}
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        result = marengo_invocation_sensor(context)
    assert isinstance(result, dg.SensorResult), result
    return result.cursor


def measure(size: int, open_count: int) -> tuple[float, float]:
    """(tick seconds, plan seconds) for a ledger of `size` events; prints the line of figures."""
    with (
        tempfile.TemporaryDirectory(prefix="ledger-state-") as tmp,
        dg.DagsterInstance.ephemeral() as instance,
    ):
        lake = Lake(root=str(Path(tmp) / "lake"), storage=S3Storage(region_name="us-east-1"))
        inventory = write_history(lake, size, open_count)
        ledger = SubmissionLedger(lake, "bedrock")
        start = time.perf_counter()
        ledger.compact(min_files=1)  # what the ingest runs have done by now
        compaction = time.perf_counter() - start
        assert len(ledger.in_progress()) == open_count
        cursor = sensor_tick(instance, lake, None)  # the first tick is the thorough one; then idle ticks
        tick, _ = best_of(lambda: sensor_tick(instance, lake, cursor))
        planning, result = best_of(
            lambda: plan_submissions(inventory, ledger.jobs(MODEL.key), MODEL, EmbeddingOptions(), 2)
        )
        assert result.already_handled == len(inventory) and not result.due
        rebuild = float("nan")
        if hasattr(ledger, "closed_jobs"):  # the code under test keeps a rebuildable closed state
            shutil.rmtree(Path(tmp) / "lake" / "ledger" / "closed", ignore_errors=True)
            rebuild, rebuilt = best_of(lambda: ledger.jobs(MODEL.key), times=1)
            assert len(rebuilt) == len(inventory)
        print(
            f"{size:>9,} events, {open_count:,} open, {len(inventory):,} objects: "
            f"compaction {compaction:5.2f} s | tick {tick:6.3f} s | plan {planning:5.2f} s | "
            f"rebuild after losing the closed state {rebuild:5.2f} s",
            flush=True,
        )
        return tick, planning


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--open", type=int, default=10_000)
    args = parser.parse_args()
    logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensor's one info line per tick
    assert set(INVENTORY_SCHEMA.names) >= {"media_uri", "etag", "status"}
    figures = {size: measure(size, args.open) for size in args.sizes}
    largest = max(figures)
    print(f"tick_1m_sec={figures[largest][0]:.3f} plan_1m_sec={figures[largest][1]:.2f}")


if __name__ == "__main__":
    main()
