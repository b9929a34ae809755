"""A full-version backfill of 10,000 objects on the instant emulator, then a checked cut-over (issue 12).

Run: .venv/bin/python bench/migration_backfill.py [--objects 10000] [--ui]

2.7 serves search (the lake's initial version); the bench backfills marengo-3.0 as the UI's backfill of
that partition does (one `embed_new_media` run, then the sensor's ingest runs), then runs the
`cut_over_serving_version` job with its blocking whole-version checks. The emulators (S3 and Bedrock,
latency 0, no quota) run in a child process.

Measured: wall time of the backfill, the number of Dagster runs, and the time from the last invocation's
completion (the provider lists none in progress) to the checked cut-over. With `--ui`, a Dagster webserver
on this instance serves the asset page to headless chromium, and its load time is measured.

The last line is machine-readable: `backfill_sec=X dagster_runs=Y completion_to_cutover_sec=Z ui_load_sec=W`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import dagster as dg

from harness.local_env import local_settings
from harness.runner import SensorDriver, run_job
from pipelines.definitions import pipeline_resources
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
_spec = importlib.util.spec_from_file_location("ingest_cpu", Path(__file__).with_name("ingest_cpu.py"))
assert _spec is not None and _spec.loader is not None
ingest_cpu = importlib.util.module_from_spec(_spec)
sys.modules["ingest_cpu"] = ingest_cpu
_spec.loader.exec_module(ingest_cpu)


def backfill(instance: dg.DagsterInstance, objects: int, bedrock: object) -> tuple[float, float]:
    """(backfill wall seconds, seconds from the last completion to the checked cut-over)."""
    t0 = time.perf_counter()
    overrides = {"ops": {"marengo__invocations": {"config": {"max_in_flight": objects + 10}}}}
    run_job(instance, "embed_new_media", MARENGO_3_0.key, run_config=overrides, log_level="WARNING")
    ingest_cpu.wait_until_finished(bedrock)
    completed = time.perf_counter()
    driver = SensorDriver(instance, log_level="WARNING")
    with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
        driver.drain(built.lake, timeout_sec=3600, interval_sec=1.0, max_interval_sec=5.0)
    done = time.perf_counter()
    cut = run_job(instance, "cut_over_serving_version", MARENGO_3_0.key, log_level="WARNING")
    failed = [c.check_name for c in cut.get_asset_check_evaluations() if not c.passed]
    if failed:
        raise SystemExit(f"the cut-over was refused by {failed}")
    return done - t0, time.perf_counter() - completed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ui_load_sec(home: Path) -> float | None:
    """Seconds until the asset page of marengo/embeddings shows its partitions, or None without chromium."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    if not Path(CHROMIUM).exists():
        return None
    port = free_port()
    web = shutil.which("dagster-webserver", path=str(Path(sys.executable).parent))
    assert web is not None
    server = subprocess.Popen(
        [web, "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            while True:
                try:
                    page.goto(f"{base}/server_info", timeout=5000)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise SystemExit("the Dagster webserver did not start in 120 s") from None
                    time.sleep(1)
            page.goto(f"{base}/assets/marengo/embeddings?view=partitions")
            skip = page.get_by_role("button", name="Skip")
            if skip.count():
                skip.click()
            t0 = time.perf_counter()
            page.goto(f"{base}/assets/marengo/embeddings?view=partitions")
            page.get_by_text(MARENGO_3_0.key).first.wait_for(timeout=60000)
            page.wait_for_load_state("networkidle", timeout=60000)
            elapsed = time.perf_counter() - t0
            browser.close()
        return elapsed
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--ui", action="store_true", help="also time the asset page in headless chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="migration-") as tmp, ingest_cpu.emulators(Path(tmp)) as env:
        root = Path(tmp)
        settings = local_settings(root) | {"MEDIAEMBED_SERVING_VERSION": MARENGO_2_7.key}
        os.environ.update({**env, **settings})
        session = boto3.session.Session(region_name=env["AWS_REGION"])
        s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])
        bedrock = session.client("bedrock-runtime", endpoint_url=env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"])
        t0 = time.perf_counter()
        ingest_cpu.upload(s3, args.objects)
        print(f"set-up: {args.objects} objects uploaded in {time.perf_counter() - t0:.0f} s")
        os.environ["MEDIAEMBED_MEDIA_URI"] = "s3://media/bench/"
        home = root / "dagster"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        instance = dg.DagsterInstance.from_config(str(home))
        wall, to_cutover = backfill(instance, args.objects, bedrock)
        runs = instance.get_runs_count()
        print(
            f"backfill of {MARENGO_3_0.key}: {wall:.0f} s, {runs} Dagster runs, "
            f"cut-over {to_cutover:.1f} s after completion"
        )
        ui = ui_load_sec(home) if args.ui else None
        if ui is not None:
            print(f"asset page (marengo/embeddings, partitions) loaded in {ui:.2f} s")
        ui_text = f"{ui:.2f}" if ui is not None else "n/a"
        print(
            f"backfill_sec={wall:.0f} dagster_runs={runs} "
            f"completion_to_cutover_sec={to_cutover:.1f} ui_load_sec={ui_text}"
        )


if __name__ == "__main__":
    main()
