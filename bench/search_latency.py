"""Search latency: a cold `mediaembed search` process, and a warm `Searcher` at 100,000 segments.

Run: .venv/bin/python bench/search_latency.py [--rows 100000] [--runs 5] [--queries 50] [--no-ann]
                                               [--cold-only]

Targets (issue 8): cold CLI at most 2 s on a demo-sized index; warm Python API at most 50 ms per query at
100,000 segments. Both use the Bedrock runtime emulator for the query embedding (a loopback round trip).

- cold: wall time of whole `mediaembed search` processes (a fresh interpreter each, as a person types it)
  against a demo-sized index (19 segments); also `mediaembed search --local` (issue 25: at most 2 s for
  the line `make demo` prints), when it has to start the work folder's local searcher (the emulators and
  a `Searcher`, harness/local_search_server.py) and when that searcher runs, as after `make demo`.
  Import cost depends on whether the environment holds compiled bytecode: the script says which.
- warm: one `Searcher`, distinct queries, over a synthetic rows x 512 table of clustered unit vectors
  written through the pipeline's own `SegmentIndex` with its defaults, so with the IVF_SQ index (and the
  nprobes/refine defaults) the pipeline has at this size; with its recall@10 against exact ranking.
  `--no-ann` times LanceDB's exact scan of the same table instead, for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from harness.local_searcher import stop_local_searcher
from mediaembed.search import Searcher, SearchSettings
from resources.index.segment_index import DEFAULT_ANN_MIN_ROWS, SegmentIndex, ann_partitions
from resources.providers.bedrock.client import embed_text, runtime_client
from resources.providers.marengo_models import MARENGO_3_0
from resources.providers.model_routes import route
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import segment_schema

REGION = "us-east-1"
DEMO_ROWS = 19
COLOURS = ["red", "green", "blue", "yellow", "purple", "bright", "dark"]
THINGS = ["circle", "square", "triangle", "scene", "hum", "tone", "shape"]


def clustered_vectors(rows: int, seed: int = 7, per_cluster: int = 50) -> np.ndarray:
    """Unit vectors around rows / per_cluster centres: real segment embeddings cluster (scenes, repeats);
    uniform random 512-d vectors are a worst case no ANN index is built for."""
    rng = np.random.default_rng(seed)
    dim = MARENGO_3_0.dimension
    centres = rng.normal(size=(max(1, rows // per_cluster), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = centres[rng.integers(0, len(centres), rows)] + rng.normal(scale=0.03, size=(rows, dim))
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def segments(vectors: np.ndarray, per_object: int = 10) -> pa.Table:
    """The vectors as rows of the 3.0 table's schema, `per_object` clips per media object."""
    rows = len(vectors)
    objects = np.arange(rows) // per_object
    clip = (np.arange(rows) % per_object).astype(np.float64)
    schema = segment_schema(MARENGO_3_0.dimension)
    columns = {
        "segment_id": [f"seg-{i:08d}" for i in range(rows)],
        "media_id": [f"m{o:06d}" for o in objects],
        "media_uri": [f"s3://media/bench/{o:06d}.mp4" for o in objects],
        "etag": ["e"] * rows,
        "modality": ["video"] * rows,
        "provider": ["bench"] * rows,
        "model_key": [MARENGO_3_0.key] * rows,
        "model_id": [route("bedrock", MARENGO_3_0.key).model_id] * rows,
        "model_version": [MARENGO_3_0.version] * rows,
        "embedding_option": ["visual"] * rows,
        "embedding_type": ["separate"] * rows,
        "embedding_scope": ["clip"] * rows,
        "start_sec": clip * 6.0,
        "end_sec": clip * 6.0 + 6.0,
        "invocation_id": ["inv"] * rows,
        "ingested_at": pa.array([0] * rows, pa.timestamp("us", tz="UTC")),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), MARENGO_3_0.dimension),
    }
    return pa.table({name: columns[name] for name in schema.names}, schema=schema)


def write_index(uri: str, segments: pa.Table, ann_min_rows: int = DEFAULT_ANN_MIN_ROWS) -> SegmentIndex:
    index = SegmentIndex(uri=uri, storage=S3Storage(region_name=REGION), ann_min_rows=ann_min_rows)
    index.replace_media(MARENGO_3_0, segments, sorted(set(segments.column("media_id").to_pylist())))
    return index


def queries(n: int, seed: int = 11) -> list[str]:
    rng = np.random.default_rng(seed)
    return [f"{rng.choice(COLOURS)} {rng.choice(THINGS)} {i}" for i in range(n)]


def bytecode_state() -> str:
    import lancedb

    cached = any(Path(lancedb.__file__).parent.glob("__pycache__/*.pyc"))
    return "compiled bytecode present" if cached else "no compiled bytecode (every import compiles source)"


def cold(workdir: Path, env: dict[str, str], runs: int) -> None:
    """Whole processes: `mediaembed search`, then `search --local` when it must start the work folder's
    local searcher (stopped before each such run) and when it runs (each a fresh command process)."""
    command = str(Path(sys.executable).parent / "mediaembed")
    local = [command, "search", "--local", "--workdir", str(workdir), "red circle"]
    print(f"cold CLI ({bytecode_state()}; {runs} runs each, {DEMO_ROWS}-segment index)")
    plain = [_timed([command, "search", "red circle", "--top-k", "3"], env) for _ in range(runs)]
    first, warm_runs = [], []
    try:
        for _ in range(runs):
            stop_local_searcher(workdir)
            first.append(_timed(local, env))
            warm_runs.extend(_timed(local, env) for _ in range(2))
    finally:
        stop_local_searcher(workdir)
    for name, times in (
        ("mediaembed search", plain),
        ("search --local, starting its searcher", first),
        ("search --local, searcher running", warm_runs),
    ):
        print(
            f"  {name:38s} median {statistics.median(times):.2f} s  "
            f"min {min(times):.2f} s  max {max(times):.2f} s  ({len(times)} runs)"
        )


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:])} failed: {done.stderr.strip()}")
    return elapsed


def timed_queries(searcher: Searcher, texts: list[str], k: int) -> list[float]:
    for text in texts[:3]:  # warm-up: connection pool, table metadata, page cache
        searcher.search(text, k)
    times = []
    for text in texts:
        t0 = time.perf_counter()
        searcher.search(text, k)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def report(label: str, times: list[float]) -> None:
    p95 = statistics.quantiles(times, n=20)[-1]
    median = statistics.median(times)
    print(f"  {label:28s} median {median:6.1f} ms  p95 {p95:6.1f} ms  max {max(times):6.1f} ms")


def recall_at_10(index: SegmentIndex, vectors: np.ndarray, n: int = 50, seed: int = 5) -> float:
    """The ANN path's recall@10 against exact cosine ranking, for queries near indexed segments."""
    rng = np.random.default_rng(seed)
    picked = vectors[rng.choice(len(vectors), size=n, replace=False)]
    probes = picked + rng.normal(scale=0.03, size=picked.shape).astype(np.float32)
    found = 0
    for q in probes:
        exact = {
            f"s3://media/bench/{i // 10:06d}.mp4@{(i % 10) * 6.0}" for i in np.argsort(-(vectors @ q))[:10]
        }
        hits = index.search(MARENGO_3_0, q.tolist(), k=10)
        found += len(exact & {f"{h.media_uri}@{h.start_sec}" for h in hits})
    return found / (n * 10)


def warm(root: Path, endpoint: str, rows: int, n_queries: int, ann: bool) -> None:
    uri = str(root / "warm-index")
    vectors = clustered_vectors(rows)
    t0 = time.perf_counter()
    index = write_index(uri, segments(vectors), ann_min_rows=DEFAULT_ANN_MIN_ROWS if ann else rows + 1)
    state = index.state(MARENGO_3_0)
    kind = f"{state.vector_index} ({ann_partitions(rows)} partitions)" if state.vector_index else "exact"
    print(
        f"warm Python API ({rows:,} x {MARENGO_3_0.dimension} segments, written and indexed as the "
        f"pipeline does in {time.perf_counter() - t0:.1f} s: {kind})"
    )
    # No serving record in this lake: search asks the initial version, 3.0 (MEDIAEMBED_SERVING_VERSION).
    settings = SearchSettings(index_uri=uri, region=REGION, bedrock_endpoint=endpoint, lake_uri=f"{uri}-lake")
    texts = queries(n_queries)
    client = runtime_client(REGION, endpoint, "standard", 3)
    embed_times = []
    for text in texts:
        t0 = time.perf_counter()
        embed_text(client, route("bedrock", MARENGO_3_0.key), REGION, text)
        embed_times.append((time.perf_counter() - t0) * 1000)
    report("query embedding alone", embed_times)
    label = f"search, {state.vector_index} nprobes {settings.nprobes} refine {settings.refine_factor}"
    report(
        label if state.vector_index else "search, exact (flat)", timed_queries(Searcher(settings), texts, 10)
    )
    print(
        f"  recall@10 against exact search, queries near indexed segments: {recall_at_10(index, vectors):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="cold processes per case")
    parser.add_argument("--queries", type=int, default=50, help="warm queries per case")
    parser.add_argument("--no-ann", action="store_true", help="time the exact scan, without the ANN index")
    parser.add_argument("--cold-only", action="store_true", help="only the cold command")
    args = parser.parse_args()
    emulator = BedrockRuntimeEmulator("http://127.0.0.1:9", region=REGION).start()  # text never reads S3
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_index(str(root / "demo" / "index"), segments(clustered_vectors(DEMO_ROWS)))
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAEMBED_"))},
                "MEDIAEMBED_INDEX_URI": str(root / "demo" / "index"),
                "MEDIAEMBED_LAKE_URI": str(root / "demo" / "lake"),  # no serving record: the initial version
                "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": emulator.endpoint,
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
            }
            os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
            cold(root / "demo", env, args.runs)
            if not args.cold_only:
                warm(root, emulator.endpoint, args.rows, args.queries, ann=not args.no_ann)
    finally:
        emulator.stop()


if __name__ == "__main__":
    main()
