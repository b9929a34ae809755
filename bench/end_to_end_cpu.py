"""10,000 objects end to end on the instant emulator, against a plain-Python loop (issue 10, bench b).

Run: .venv/bin/python bench/end_to_end_cpu.py [--objects 10000] [--lake local|s3]

The emulators (S3 and Bedrock runtime, latency 0, no quota) run in a child process, so this process's CPU
time (`time.process_time`, every thread, native threads included) is the pipeline's or the plain loop's
alone. `--objects` copies of the usable sample media (videos, audio, images) are uploaded under two
prefixes, one per side, before anything is measured.

- pipeline: the real definitions, as the daemon drives them: one `embed_new_media` run (inventory and
  submission), then sensor ticks and the runs they request (ingest and index) until nothing is open.
- plain loop: list the prefix with the paginator, read and probe every object with PyAV, start one async
  invocation per object with boto3, poll `ListAsyncInvokes` until none is in progress, then the plain
  ingest and index of `bench/ingest_cpu.py` (fetch and parse every output, one Parquet file per object,
  one Parquet of all segments, one LanceDB write).

The last line is machine-readable: `cpu_ratio=X wall_sec=Y dagster_runs=Z`. Target: CPU ratio at most 2x.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import av
import boto3
import dagster as dg

from emulators.sample_media import generate_sample_media
from harness.local_env import local_settings
from harness.runner import SensorDriver, materialization_metadata, run_job
from pipelines.definitions import pipeline_resources
from resources.providers.marengo_models import MARENGO_3_0, marengo_model
from resources.providers.model_routes import route

THREADS = 8
MODEL = marengo_model(MARENGO_3_0.key)
_spec = importlib.util.spec_from_file_location("ingest_cpu", Path(__file__).with_name("ingest_cpu.py"))
assert _spec is not None and _spec.loader is not None
ingest_cpu = importlib.util.module_from_spec(_spec)
sys.modules["ingest_cpu"] = ingest_cpu
_spec.loader.exec_module(ingest_cpu)


def upload(s3: Any, prefix: str, objects: int) -> None:
    usable = [s for s in generate_sample_media() if s.modality is not None]

    def put(i: int) -> None:
        sample = usable[i % len(usable)]
        key = f"{prefix}/{i:06d}/{sample.key}"
        s3.put_object(Bucket="media", Key=key, Body=sample.data, ContentType=sample.content_type)

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(put, range(objects)))


def plain_model_input(modality: str, uri: str) -> dict[str, Any]:
    """Marengo 3.0's documented async body, written out by hand as a plain script would."""
    params: dict[str, Any] = {"mediaSource": {"s3Location": {"uri": uri}}}
    if modality in ("video", "audio"):
        params["segmentation"] = {"method": "dynamic", "dynamic": {"minDurationSec": 4}}
    return {"inputType": modality, modality: params}


def plain_loop(env: dict[str, str], target: Any, prefix: str) -> int:
    """The whole job as one script: list, probe, submit, wait, ingest, index. Returns segments written."""
    session = boto3.session.Session(region_name=env["AWS_REGION"])
    s3 = session.client("s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"])
    bedrock = session.client("bedrock-runtime", endpoint_url=env["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"])
    listed = [
        item
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="media", Prefix=f"{prefix}/")
        for item in page.get("Contents", [])
    ]
    kinds = {".mp4": "video", ".wav": "audio", ".flac": "audio", ".png": "image", ".jpg": "image"}

    def submit(item: dict[str, Any]) -> tuple[str, dict[str, str]]:
        key, etag = item["Key"], item["ETag"].strip('"')
        modality = kinds[Path(key).suffix]
        body = s3.get_object(Bucket="media", Key=key)["Body"].read()
        with av.open(io.BytesIO(body)) as container:  # what a script checks before paying for a job
            _ = container.duration
        uri = f"s3://media/{key}"
        token = f"plain-{etag[:16]}-{abs(hash(key)) % 10**12}"
        bedrock.start_async_invoke(
            clientRequestToken=token,
            modelId=route("bedrock", MODEL.key).model_id,
            modelInput=plain_model_input(modality, uri),
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://lake/plain-async"}},
        )
        return token, {"media_uri": uri, "etag": etag, "modality": modality}

    with ThreadPoolExecutor(THREADS) as pool:
        jobs = dict(pool.map(submit, listed))
    ingest_cpu.wait_until_finished(bedrock)
    segments = ingest_cpu.plain_ingest(env, target, jobs)
    ingest_cpu.plain_index(segments, target)
    return int(segments.num_rows)


def pipeline(instance: dg.DagsterInstance, objects: int) -> int:
    """The real definitions, driven as the daemon would; returns segments indexed."""
    overrides = {"ops": {"marengo__invocations": {"config": {"max_in_flight": objects + 10}}}}
    run_job(instance, "embed_new_media", MARENGO_3_0.key, run_config=overrides, log_level="WARNING")
    driver = SensorDriver(instance, log_level="WARNING")
    with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
        driver.drain(built.lake, timeout_sec=3600, interval_sec=1.0, max_interval_sec=5.0)
    index = [r for r in driver.results if r.job_def.name == "ingest_marengo_embeddings"]
    rows = 0
    for result in index:
        if result.asset_materializations_for_node("search__marengo_segments"):
            rows = int(materialization_metadata(result, ["search", "marengo_segments"])["dagster/row_count"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--lake", choices=["local", "s3"], default="local")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="e2e-cpu-") as tmp, ingest_cpu.emulators(Path(tmp)) as env:
        root = Path(tmp)
        settings = local_settings(root) | {"MEDIAEMBED_MEDIA_URI": "s3://media/pipeline/"}
        if args.lake == "s3":
            settings |= {
                "MEDIAEMBED_LAKE_URI": "s3://lake/warehouse",
                "MEDIAEMBED_INDEX_URI": "s3://lake/lancedb",
            }
        os.environ.update({**env, **settings})
        s3 = boto3.session.Session(region_name=env["AWS_REGION"]).client(
            "s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"]
        )
        t0 = time.perf_counter()
        upload(s3, "plain", args.objects)
        upload(s3, "pipeline", args.objects)
        print(f"set-up: 2 x {args.objects} objects uploaded in {time.perf_counter() - t0:.0f} s")

        target = ingest_cpu.PlainTarget.of(args.lake, root, env)
        plain_cpu, plain_wall, plain_rows = ingest_cpu.cpu_of(lambda: plain_loop(env, target, "plain"))
        print(f"plain loop: cpu {plain_cpu:7.2f} s  wall {plain_wall:7.2f} s  ({plain_rows} segments)")

        home = root / "dagster"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        instance = dg.DagsterInstance.from_config(str(home))
        cpu, wall, rows = ingest_cpu.cpu_of(lambda: pipeline(instance, args.objects))
        runs = instance.get_runs_count()
        ratio = cpu / plain_cpu
        print(
            f"pipeline:   cpu {cpu:7.2f} s  wall {wall:7.2f} s  ({rows} segments)  "
            f"{runs} Dagster runs  ratio {ratio:.2f}"
        )
        print(f"cpu_ratio={ratio:.2f} wall_sec={wall:.0f} dagster_runs={runs}")


if __name__ == "__main__":
    main()
