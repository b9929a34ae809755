"""Pipeline throughput on the local emulators: N copies of the sample media, timed per stage.

Run: .venv/bin/python bench/pipeline_throughput.py --copies 20
Measures the real definitions (inventory, submission, sensor-requested ingest, index) and search
latency; the emulator's own decode time is part of "provider wait", not of the pipeline's stages.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg

from emulators.sample_media import generate_sample_media
from emulators.stack import start_local_stack
from harness.local_env import local_settings
from harness.runner import SensorDriver, materialization_metadata, run_job
from mediaembed.search import search
from resources.providers.marengo_models import MARENGO_3_0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=20, help="copies of the 9 sample objects")
    args = parser.parse_args()
    samples = generate_sample_media()
    with (
        tempfile.TemporaryDirectory() as workdir,
        start_local_stack(max_concurrent_invocations=10_000) as stack,
    ):
        os.environ.update({**stack.env(), **local_settings(Path(workdir))})
        s3 = stack.s3.client()
        for copy in range(args.copies):
            for sample in samples:
                s3.put_object(Bucket="media", Key=f"copy{copy:04d}/{sample.key}", Body=sample.data)
        instance = dg.DagsterInstance.ephemeral()
        overrides = {"ops": {"marengo__invocations": {"config": {"max_in_flight": 10_000}}}}

        t0 = time.perf_counter()
        submit = run_job(
            instance, "embed_new_media", MARENGO_3_0.key, run_config=overrides, log_level="WARNING"
        )
        t1 = time.perf_counter()
        stack.bedrock.wait_until_idle(timeout=3600)
        t2 = time.perf_counter()
        driver = SensorDriver(instance)
        driver.tick()
        t3 = time.perf_counter()
        again = run_job(
            instance, "embed_new_media", MARENGO_3_0.key, run_config=overrides, log_level="WARNING"
        )
        t4 = time.perf_counter()

        inventory = materialization_metadata(submit, ["media", "inventory"])
        submitted = materialization_metadata(submit, ["marengo", "invocations"])["submitted"]
        ingest = materialization_metadata(driver.results[0], ["marengo", "embeddings"])
        latencies = []
        for query in ["yellow triangle", "red circle", "low hum", "cyan triangle", "blue circle"] * 4:
            q0 = time.perf_counter()
            search(query, 10, MARENGO_3_0.key, env=os.environ)
            latencies.append(time.perf_counter() - q0)

    rerun = materialization_metadata(again, ["marengo", "invocations"])["submitted"]
    segments = ingest["rows_written"]
    median_ms, max_ms = statistics.median(latencies) * 1000, max(latencies) * 1000
    print(f"objects: {inventory['dagster/row_count']} ({inventory['usable_objects']} usable)")
    print(f"inventory + submission run: {t1 - t0:.1f} s for {submitted} invocations")
    print(f"provider wait (emulator decode + embed): {t2 - t1:.1f} s")
    print(f"sensor tick + ingest run (Parquet + LanceDB): {t3 - t2:.1f} s for {segments} segments")
    print(f"re-run on unchanged media: {t4 - t3:.1f} s, submitted {rerun}")
    print(f"search (embed query + top-10): median {median_ms:.0f} ms, max {max_ms:.0f} ms")


if __name__ == "__main__":
    main()
