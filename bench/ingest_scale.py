"""`mediaembed ingest` of a prefix at several sizes on the instant emulator: wall time, peak RSS (issue 24 b).

Run: .venv/bin/python bench/ingest_scale.py [--objects 2000 10000 50000]

For each size, in a fresh work folder: `python -m emulators` (latency 0, no quota) in a process of its own;
N tiny PNGs uploaded under `s3://media/` (distinct keys, a few distinct images, so ETags repeat as copies in a
library do); then `mediaembed ingest s3://media/` runs as a person runs it, and is timed: it submits its runs
to the instance's queue, starts a daemon, and follows them until everything is in the index. The sensor and
its interval are the deployed defaults.

Peak RSS is that of the largest single process the command started (the command, its daemon, the code
server, each run worker): `getrusage(RUSAGE_CHILDREN)` of a fresh process that ran only the command, exact
and not sampled. Targets: RSS flat within 20% across sizes, wall time linear.

The last line is machine-readable:
`ingest_scale objects=N1,N2 wall_sec=W1,W2 peak_rss_mb=R1,R2 rss_spread=X sec_per_1000=S1,S2`
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from inventory_scale import _pngs, start_emulators

ROOT = Path(__file__).resolve().parents[1]
MODEL = "marengo-3.0"
COMMAND_SEC = 4 * 3600  # every wait is bounded


def upload(count: int) -> float:
    """`count` PNGs under s3://media/ with 8 clients at once; the seconds it took."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    s3 = boto3.session.Session().client("s3")
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda item: s3.put_object(
                    Bucket="media", Key=item[0], Body=item[1], ContentType="image/png"
                ),
                _pngs("library/", count, seed=0),
            )
        )
    return time.perf_counter() - started


def ingest(env: dict[str, str]) -> dict[str, Any]:
    """In a fresh process: `mediaembed ingest s3://media/` until it ends; its wall time, exit status, last
    lines and the peak RSS of the largest process it started."""
    command = [str(Path(sys.executable).with_name("mediaembed")), "ingest", "s3://media/"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=COMMAND_SEC)
    wall = time.perf_counter() - started
    return {
        "wall_sec": wall,
        "exit": done.returncode,
        "summary": done.stdout.strip().splitlines()[-3:],
        "errors": done.stderr.strip().splitlines()[-3:],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def one_size(objects: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        emulators, exports = start_emulators(Path(workdir) / "stack", 0.0)
        try:
            os.environ.update(exports)
            env = {**os.environ, "MEDIAEMBED_QUOTAS": f"{MODEL}=100000", "MEDIAEMBED_SERVING_VERSION": MODEL}
            upload_sec = upload(objects)
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                figures = pool.apply(ingest, (env,))
        finally:
            emulators.terminate()
            emulators.wait(timeout=30)
    return {"objects": objects, "upload_sec": round(upload_sec, 1), **figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, nargs="+", default=[2_000, 10_000, 50_000])
    args = parser.parse_args()
    results = []
    for objects in args.objects:
        result = one_size(objects)
        print(json.dumps(result), flush=True)
        if result["exit"] != 0:
            raise SystemExit(f"bench: mediaembed ingest of {objects} objects exited {result['exit']}")
        results.append(result)
    rss = [r["peak_rss_mb"] for r in results]
    walls = [r["wall_sec"] for r in results]
    per_1000 = [1000 * r["wall_sec"] / r["objects"] for r in results]
    print(
        f"ingest_scale objects={','.join(str(r['objects']) for r in results)} "
        f"wall_sec={','.join(f'{w:.1f}' for w in walls)} "
        f"peak_rss_mb={','.join(f'{m:.0f}' for m in rss)} "
        f"rss_spread={max(rss) / min(rss) - 1:.3f} "
        f"sec_per_1000={','.join(f'{s:.1f}' for s in per_1000)}"
    )


if __name__ == "__main__":
    main()
