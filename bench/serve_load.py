"""`mediaembed serve` under load: p50 and p99 of distinct text searches at 1, 20 and 100 at once, and what
one idle TCP connection adds to a search, against a server backed by the Bedrock runtime emulator.

Run: .venv/bin/python bench/serve_load.py [--endpoint api|page] [--rounds 3] [--single 40]

The server is `mediaembed serve` in its own process (as a person starts it), over a demo-sized index (19
segments) written through the pipeline's own `SegmentIndex`. Every query is distinct ("red circle 17"), so no
cache can answer one. A level of N concurrency sends N requests at once, each on its own connection, `rounds`
times; the p50 and p99 are over all of them. The idle case opens one connection that sends nothing, then times
searches one at a time while it stays open.

Targets (issue 25), from the same run: at 20 concurrent, p99 at most 12x the p50 of one at a time (on 2 cores,
10x is perfect parallelism; serial serving gives about 68x); the idle connection adds under 100 ms.
The last line is JSON: {"bench": "serve_load", ...}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from search_latency import DEMO_ROWS, clustered_vectors, queries, segments, write_index

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.http_base import free_port
from mediaembed.web.server import default_workers

REGION = "us-east-1"
START_SEC = 60
REQUEST_SEC = 120
TOP_K = 5


def run_emulator(port: int, stop: Any) -> None:
    """The Bedrock runtime emulator in a process of its own, as the real endpoint is off this process: its
    work does not share an interpreter lock with the client's threads."""
    emulator = BedrockRuntimeEmulator("http://127.0.0.1:9", region=REGION, port=port).start()
    stop.wait()
    emulator.stop()


def wait_listening(port: int, what: str) -> None:
    deadline = time.monotonic() + START_SEC
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on port {port} within {START_SEC} s")


def start_server(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    command = str(Path(sys.executable).parent / "mediaembed")
    process = subprocess.Popen(
        [command, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + START_SEC
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mediaembed serve exited with status {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"mediaembed serve did not listen on port {port} within {START_SEC} s")


def one_search(port: int, path: str, text: str) -> float:
    """Milliseconds for one search on a fresh connection (raises on anything but 200)."""
    t0 = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_SEC)
    try:
        connection.request("GET", f"{path}?{urlencode({'q': text, 'top_k': TOP_K})}")
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status} for {text!r}")
    finally:
        connection.close()
    return (time.perf_counter() - t0) * 1000


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def concurrent(port: int, path: str, texts: list[str], level: int, rounds: int) -> tuple[list[float], int]:
    """`rounds` bursts of `level` searches released together; the times and how many failed."""
    times: list[float] = []
    failures = 0
    lock = threading.Lock()
    it = iter(texts)
    for _ in range(rounds):
        batch = [next(it) for _ in range(level)]
        barrier = threading.Barrier(level)

        def run(text: str, barrier: threading.Barrier = barrier) -> None:
            nonlocal failures
            barrier.wait()
            try:
                ms = one_search(port, path, text)
            except (OSError, RuntimeError, http.client.HTTPException):
                with lock:
                    failures += 1
                return
            with lock:
                times.append(ms)

        threads = [threading.Thread(target=run, args=(text,)) for text in batch]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(REQUEST_SEC * 2)
    return times, failures


def idle_delay(port: int, path: str, texts: list[str]) -> list[float]:
    """For each text: open one connection that sends nothing, then time a search (the first one after it is
    where a server that serves one connection at a time waits), then close the silent connection."""
    times = []
    for text in texts:
        with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_SEC):
            time.sleep(0.2)  # the server has accepted it before the search starts
            times.append(one_search(port, path, text))
    return times


def summary(times: list[float]) -> dict[str, float]:
    if not times:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "n": 0}
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(percentile(times, 99), 1),
        "n": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=("api", "page"), default="api", help="/api/search or /")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per concurrency level")
    parser.add_argument("--single", type=int, default=40, help="searches one at a time")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="mediaembed serve --workers (its default)"
    )
    parser.add_argument("--idle", type=int, default=5, help="searches behind a silent connection")
    args = parser.parse_args()
    path = "/api/search" if args.endpoint == "api" else "/"
    context = multiprocessing.get_context("spawn")
    stop_emulator = context.Event()
    bedrock_port = free_port()
    emulator = context.Process(target=run_emulator, args=(bedrock_port, stop_emulator), daemon=True)
    emulator.start()  # text never reads S3
    wait_listening(bedrock_port, "the Bedrock runtime emulator")
    texts = iter(queries(args.single + 20 * args.rounds + 100 * args.rounds + args.idle + 10))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_index(str(root / "index"), segments(clustered_vectors(DEMO_ROWS)))
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MEDIAEMBED_"))},
                "MEDIAEMBED_INDEX_URI": str(root / "index"),
                "MEDIAEMBED_LAKE_URI": str(root / "lake"),  # no serving record: the initial version
                "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": f"http://127.0.0.1:{bedrock_port}",
                "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",  # presigning never connects
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
            }
            port = free_port()
            server = start_server(env, port, args.workers)
            try:
                for text in [next(texts) for _ in range(10)]:  # warm-up: clients, table, page cache
                    one_search(port, path, text)
                single = [one_search(port, path, next(texts)) for _ in range(args.single)]
                results: dict[str, object] = {"single": summary(single)}
                print(f"  single: {results['single']}", file=sys.stderr, flush=True)
                for level in (20, 100):
                    times, failed = concurrent(
                        port, path, [next(texts) for _ in range(level * args.rounds)], level, args.rounds
                    )
                    results[f"c{level}"] = {**summary(times), "failed": failed}
                    print(f"  c{level}: {results[f'c{level}']}", file=sys.stderr, flush=True)
                if server.poll() is not None:
                    raise SystemExit(f"mediaembed serve exited with status {server.returncode} under load")
                idle = idle_delay(port, path, [next(texts) for _ in range(args.idle)])
            finally:
                server.terminate()
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:  # a server stuck on a connection: the figures stand
                    server.kill()
                    server.wait(30)
    finally:
        stop_emulator.set()
        emulator.join(30)
    single_p50 = statistics.median(single)
    idle_added = statistics.median(idle) - single_p50
    c20 = results["c20"]
    assert isinstance(c20, dict)
    ratio = c20["p99_ms"] / single_p50
    print(f"endpoint {path}, {args.workers} worker(s), {DEMO_ROWS}-segment index, top_k {TOP_K}")
    for name, value in results.items():
        assert isinstance(value, dict)
        failed = f"  failed {value['failed']}" if value.get("failed") else ""
        figures = f"p50 {value['p50_ms']:8.1f} ms  p99 {value['p99_ms']:8.1f} ms  n {value['n']}"
        print(f"  {name:7s} {figures}{failed}")
    print(f"  idle connection adds {idle_added:.1f} ms to a search (median of {len(idle)})")
    print(
        f"  targets: c20 p99 / single p50 = {ratio:.1f}x (<= 12x: {'met' if ratio <= 12 else 'missed'}); "
        f"idle adds < 100 ms: {'met' if idle_added < 100 else 'missed'}"
    )
    print(
        json.dumps(
            {
                "bench": "serve_load",
                "endpoint": path,
                "workers": args.workers,
                **results,
                "idle_added_ms": round(idle_added, 1),
                "c20_p99_over_single_p50": round(ratio, 2),
                "targets_met": ratio <= 12 and idle_added < 100,
            }
        )
    )


if __name__ == "__main__":
    main()
