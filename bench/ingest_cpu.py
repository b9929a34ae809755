"""Ingest and index CPU against plain scripts doing the same provider and storage calls (issue 10, item 5).

Run: .venv/bin/python bench/ingest_cpu.py [--objects 5000] [--lake local|s3]

The emulators (S3 and Bedrock runtime, latency 0) run in a child process, so this process's CPU time
(`time.process_time`, every thread, LanceDB's and pyarrow's native threads included) is the pipeline's or
the plain script's alone. Set-up, not measured: `--objects` copies of the usable sample media are uploaded,
the real `embed_new_media` run inventories them and submits one invocation each, and the emulator
finishes them all.

- ingest: the real `marengo/embeddings` asset (one in-process Dagster run) against a plain script that
  lists the invocations with one paginated ListAsyncInvokes, fetches each `output.json` with GetObject on
  8 threads sharing one boto3 client, parses it with `json.loads`, builds the segment rows with numpy and
  pyarrow and writes one Parquet file of them all plus one outcomes file (the pipeline commits one Delta
  Lake version per run, then records the outcomes).
- index: the real `search/marengo_segments` asset (a first build of the LanceDB table, scalar indexes and
  the vector index the pipeline builds at this size) against one Parquet write of all the segments plus
  one LanceDB write of them.

The last line is machine-readable: `ingest_cpu_ratio=X index_cpu_ratio=Y s3_clients_per_ingest=Z`.
Targets: ingest at most 1.5x, index at most 2x.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.session
import dagster as dg
import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from assets_defs.search.index_update import MEDIA_PER_WRITE
from emulators.sample_media import generate_sample_media
from harness.local_env import local_settings
from harness.runner import materialization_metadata, run_job
from pipelines.definitions import pipeline_resources
from resources.providers.marengo_models import MARENGO_3_0, marengo_model
from resources.providers.model_routes import route
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.submission_ledger import SubmissionLedger

THREADS = 8
MODEL = marengo_model(MARENGO_3_0.key)


@contextmanager
def emulators(workdir: Path) -> Iterator[dict[str, str]]:
    """`python -m emulators` in a child process on free ports; yields its environment (endpoints, keys)."""
    argv = [sys.executable, "-m", "emulators", "--s3-port", "0", "--bedrock-port", "0"]
    argv += ["--max-concurrent", "1000000", "--workdir", str(workdir / "bedrock")]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        env: dict[str, str] = {}
        assert child.stdout is not None
        while "AWS_SECRET_ACCESS_KEY" not in env:
            line = child.stdout.readline()
            if not line:
                raise SystemExit("the emulators did not start")
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                env[name] = value
        yield env
    finally:
        child.terminate()
        child.wait(timeout=30)


class ClientCount:
    """How many botocore clients of each service this process builds (wraps client creation, nothing else)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._original: Callable[..., Any] = botocore.session.Session.create_client

    def __enter__(self) -> ClientCount:
        original, counts, lock = self._original, self.counts, self._lock

        def counting(session: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
            with lock:
                counts[service_name] += 1
            return original(session, service_name, *args, **kwargs)

        botocore.session.Session.create_client = counting  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        botocore.session.Session.create_client = self._original  # type: ignore[method-assign]


def cpu_of(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """(CPU seconds of this whole process, wall seconds, result) of `work()`."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = work()
    return time.process_time() - cpu0, time.perf_counter() - wall0, result


def upload(s3: Any, objects: int) -> None:
    usable = [s for s in generate_sample_media() if s.modality is not None]

    def put(i: int) -> None:
        sample = usable[i % len(usable)]
        key = f"bench/{i:06d}/{sample.key}"
        s3.put_object(Bucket="media", Key=key, Body=sample.data, ContentType=sample.content_type)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, range(objects)))


def wait_until_finished(bedrock: Any, timeout_sec: float = 3600) -> None:
    deadline = time.monotonic() + timeout_sec
    while bedrock.list_async_invokes(statusEquals="InProgress", maxResults=1).get("asyncInvokeSummaries"):
        if time.monotonic() > deadline:
            raise SystemExit("the emulator did not finish the invocations in time")
        time.sleep(1)


# --- the plain scripts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlainTarget:
    """Where the plain scripts write: the same kind of place as the pipeline's lake and index."""

    fs: pafs.FileSystem
    base: str  # folder of the Parquet files within `fs`
    index_uri: str
    index_options: dict[str, str] | None

    @classmethod
    def of(cls, kind: str, root: Path, env: dict[str, str]) -> PlainTarget:
        if kind == "local":
            (root / "plain").mkdir()
            return cls(pafs.LocalFileSystem(), str(root / "plain"), str(root / "plain-index"), None)
        endpoint = urlparse(env["AWS_ENDPOINT_URL_S3"])
        fs = pafs.S3FileSystem(
            access_key=env["AWS_ACCESS_KEY_ID"],
            secret_key=env["AWS_SECRET_ACCESS_KEY"],
            region=env["AWS_REGION"],
            endpoint_override=endpoint.netloc,
            scheme=endpoint.scheme,
        )
        options = {
            "aws_endpoint": env["AWS_ENDPOINT_URL_S3"],
            "aws_region": env["AWS_REGION"],
            "allow_http": "true",
            "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        }
        return cls(fs, "lake/plain", "s3://lake/plain-index", options)


def plain_ingest(env: dict[str, str], target: PlainTarget, jobs: dict[str, dict[str, str]]) -> pa.Table:
    """List once, fetch and parse every output, write one Parquet file of all rows and one outcomes file.

    `jobs`: client token -> media_uri, etag, modality (what a plain script keeps of its own submissions).
    Rows carry the same 16 columns as the pipeline's, so both write the same bytes.
    """
    session = boto3.session.Session(region_name=env["AWS_REGION"])
    bedrock = session.client("bedrock-runtime", endpoint_url=env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"])
    s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])
    pages = bedrock.get_paginator("list_async_invokes").paginate(
        sortBy="SubmissionTime", sortOrder="Ascending", PaginationConfig={"PageSize": 1000}
    )
    done = [s for page in pages for s in page["asyncInvokeSummaries"] if s["status"] == "Completed"]
    target.fs.create_dir(f"{target.base}/embeddings")
    dim, now = MODEL.dimension, datetime.now(UTC)

    def one(summary: dict[str, Any]) -> pa.Table:
        arn = summary["invocationArn"]
        job = jobs[summary["clientRequestToken"]]
        prefix = summary["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].rstrip("/")
        bucket, _, key = prefix[len("s3://") :].partition("/")
        body = s3.get_object(Bucket=bucket, Key=f"{key}/{arn.rsplit('/', 1)[-1]}/output.json")["Body"].read()
        data = json.loads(body)["data"]
        vectors = np.array([d["embedding"] for d in data], dtype=np.float32).reshape(-1, dim)
        n, uri = len(data), job["media_uri"]
        spans = [
            (d.get("embeddingOption"), d.get("embeddingScope"), d.get("startSec"), d.get("endSec"))
            for d in data
        ]
        table = pa.table(
            {
                "segment_id": [
                    sha256(f"{uri}|{job['etag']}|{span}".encode()).hexdigest()[:32] for span in spans
                ],
                "media_id": [sha256(uri.encode()).hexdigest()[:24]] * n,
                "media_uri": [uri] * n,
                "etag": [job["etag"]] * n,
                "modality": [job["modality"]] * n,
                "provider": ["bedrock"] * n,
                "model_key": [MODEL.key] * n,
                "model_id": [route("bedrock", MODEL.key).model_id] * n,
                "model_version": [MODEL.version] * n,
                "embedding_option": pa.array([s[0] for s in spans], pa.string()),
                "embedding_scope": [s[1] or "clip" for s in spans],
                "start_sec": pa.array([s[2] for s in spans], pa.float64()),
                "end_sec": pa.array([s[3] for s in spans], pa.float64()),
                "invocation_id": [arn] * n,
                "ingested_at": pa.array([now] * n, pa.timestamp("us", tz="UTC")),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
            }
        )
        return table

    with ThreadPoolExecutor(THREADS) as pool:
        tables = list(pool.map(one, done))
    # One table write of every object's rows, as the pipeline commits one Delta version per run.
    pq.write_table(pa.concat_tables(tables), f"{target.base}/embeddings/run.parquet", filesystem=target.fs)
    outcomes = pa.table(
        {
            "invocation_id": [s["invocationArn"] for s in done],
            "client_token": [s["clientRequestToken"] for s in done],
            "status": ["completed"] * len(done),
            "segments": [t.num_rows for t in tables],
        }
    )
    pq.write_table(outcomes, f"{target.base}/outcomes.parquet", filesystem=target.fs)
    return pa.concat_tables(tables)


def plain_index(segments: pa.Table, target: PlainTarget) -> None:
    """One Parquet write of every segment and one LanceDB write of them."""
    pq.write_table(segments, f"{target.base}/all_segments.parquet", filesystem=target.fs)
    db = lancedb.connect(target.index_uri, storage_options=target.index_options)
    db.create_table("segments", segments)


# --- the pipeline ----------------------------------------------------------------------------------------


def read_embedding_files() -> int:
    """Read the embedding table the way the index step does (500 objects a read); returns the rows read."""
    rows = 0
    with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
        table = EmbeddingTable(built.lake, MODEL)
        ids = sorted(table.media_ids())
        for start in range(0, len(ids), MEDIA_PER_WRITE):
            rows += table.read(ids[start : start + MEDIA_PER_WRITE]).num_rows
    return rows


def pipeline_step(
    instance: dg.DagsterInstance, asset: list[str], profile: Path | None
) -> dg.ExecuteInProcessResult:
    """One run of the ingest job materializing only `asset`; with `profile`, cProfile stats land there."""

    def run() -> dg.ExecuteInProcessResult:
        return run_job(
            instance,
            "ingest_marengo_embeddings",
            MARENGO_3_0.key,
            asset_selection=[dg.AssetKey(asset)],
            log_level="WARNING",
        )

    if profile is None:
        return run()
    profiler = cProfile.Profile()
    result = profiler.runcall(run)
    profiler.dump_stats(profile / f"{'_'.join(asset)}.pstats")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=5000)
    parser.add_argument(
        "--lake", choices=["local", "s3"], default="local", help="where the lake and index live"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write cProfile stats of the pipeline steps here (profiling inflates their CPU)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ingest-cpu-") as tmp, emulators(Path(tmp)) as env:
        root = Path(tmp)
        settings = local_settings(root)
        if args.lake == "s3":
            settings |= {
                "MEDIAEMBED_LAKE_URI": "s3://lake/warehouse",
                "MEDIAEMBED_INDEX_URI": "s3://lake/lancedb",
            }
        os.environ.update({**env, **settings})
        session = boto3.session.Session(region_name=env["AWS_REGION"])
        s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])
        bedrock = session.client("bedrock-runtime", endpoint_url=env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"])

        t0 = time.perf_counter()
        upload(s3, args.objects)
        instance = dg.DagsterInstance.ephemeral()
        overrides = {"ops": {"marengo__invocations": {"config": {"max_in_flight": args.objects + 10}}}}
        submit = run_job(
            instance, "embed_new_media", MARENGO_3_0.key, run_config=overrides, log_level="WARNING"
        )
        submitted = materialization_metadata(submit, ["marengo", "invocations"])["submitted"]
        wait_until_finished(bedrock)
        print(
            f"set-up: {args.objects} objects, {submitted} invocations finished "
            f"in {time.perf_counter() - t0:.0f} s"
        )

        with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
            ledger = SubmissionLedger(built.lake, "bedrock").submissions()
        jobs = {
            str(r["client_token"]): {k: str(r[k]) for k in ("media_uri", "etag", "modality")}
            for r in ledger.to_dict("records")
        }
        target = PlainTarget.of(args.lake, root, env)
        plain_cpu, plain_wall, segments = cpu_of(lambda: plain_ingest(env, target, jobs))
        print(
            f"plain ingest:    cpu {plain_cpu:6.2f} s  wall {plain_wall:6.2f} s  "
            f"({segments.num_rows} segments)"
        )
        with ClientCount() as clients:
            cpu, wall, result = cpu_of(
                lambda: pipeline_step(instance, ["marengo", "embeddings"], args.profile)
            )
        rows = materialization_metadata(result, ["marengo", "embeddings"])["rows_written"]
        ingest_ratio = cpu / plain_cpu
        print(
            f"pipeline ingest: cpu {cpu:6.2f} s  wall {wall:6.2f} s  ({rows} segments)  "
            f"ratio {ingest_ratio:.2f}  clients built: {dict(clients.counts)}"
        )

        plain_cpu, plain_wall, _ = cpu_of(lambda: plain_index(segments, target))
        print(
            f"plain index:     cpu {plain_cpu:6.2f} s  wall {plain_wall:6.2f} s  "
            "(1 Parquet + 1 LanceDB write)"
        )
        cpu, wall, result = cpu_of(
            lambda: pipeline_step(instance, ["search", "marengo_segments"], args.profile)
        )
        meta = materialization_metadata(result, ["search", "marengo_segments"])
        index_ratio = cpu / plain_cpu
        read_cpu, _, _ = cpu_of(read_embedding_files)
        print(
            f"pipeline index:  cpu {cpu:6.2f} s  wall {wall:6.2f} s  ({meta['dagster/row_count']} rows, "
            f"vector index {meta['vector_index']}, {meta['unindexed_rows']} unindexed)  "
            f"ratio {index_ratio:.2f}"
        )
        print(
            f"  of which reading the embedding table (as the index step does, "
            f"{MEDIA_PER_WRITE} a read): cpu {read_cpu:.2f} s; without it the ratio is "
            f"{(cpu - read_cpu) / plain_cpu:.2f}"
        )
        print(
            f"ingest_cpu_ratio={ingest_ratio:.2f} index_cpu_ratio={index_ratio:.2f} "
            f"s3_clients_per_ingest={clients.counts['s3']}"
        )


if __name__ == "__main__":
    main()
