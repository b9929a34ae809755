"""Throughput against the provider's quota, at the deployed cadence, beside a plain script.

Run: nice .venv/bin/python bench/quota_throughput.py --objects 200 --quota 20 --latency 60

The real definitions run under the real daemon (`dagster-daemon run` on a temporary DAGSTER_HOME with the
deployed instance settings: queued runs, pool limits of 1), against a Bedrock emulator that runs at most
`--quota` Marengo jobs at once, each taking `--latency` seconds. Nothing is compressed: the sensor ticks
every 30 s and the schedule fires at the quarter hours, as deployed. The pipeline is started the way the
README says to start it at once: one launch of `embed_new_media` with its default config, whose
submission run holds the quota; the sensor hands finished jobs to ingest runs and starts another
submission run should one end with objects waiting.

In the same run, on a second emulator with the same quota and latency (same S3), a plain script keeps up to
`--quota` jobs in flight and polls each with GetAsyncInvoke every 10 s.

Measured: jobs per second from the launch to the last job's end at the provider, as a fraction of the
physical limit quota/latency; the same for the plain script and their ratio; listing calls, GetAsyncInvoke
calls and status records (invocation summaries returned) per completed job, counted at the emulator.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import dagster as dg
from botocore.config import Config

from emulators.bedrock_runtime import BedrockRuntimeEmulator
from emulators.sample_media import generate_sample_media
from emulators.stack import start_local_stack
from harness.local_env import local_settings
from resources.providers.bedrock.marengo_bodies import async_model_input
from resources.providers.embedding_jobs import EmbeddingOptions
from resources.providers.marengo_models import MARENGO_3_0, marengo_model
from resources.providers.model_routes import route
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.submission_ledger import SubmissionLedger

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PLAIN_POLL_SEC = 10.0
SCHEDULE_EVERY_SEC = 15 * 60
OLD_CAP = 30  # the former default max_in_flight
INSTANCE_YAML = """\
# The deployed instance settings (docs/deployment.md): queued runs, one submitter, one ingester
# and one LanceDB writer at a time.
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


@dataclass
class Outcome:
    started: float  # epoch seconds
    ends: list[float]  # provider end times of completed jobs, epoch seconds

    def seconds(self) -> float:
        return max(self.ends) - self.started

    def jobs_per_sec(self) -> float:
        return len(self.ends) / self.seconds()


def media_objects(count: int) -> list[tuple[str, bytes, str]]:
    """`count` images (key, bytes, content type), cycling over the sample pictures: cheap for the emulator
    to embed, so the provider's time is the configured latency."""
    images = [o for o in generate_sample_media() if o.modality == "image"]
    picked = [images[i % len(images)] for i in range(count)]
    names = [f"bench/{i:05d}-{o.key.rsplit('/', 1)[1]}" for i, o in enumerate(picked)]
    return [(name, o.data, o.content_type) for name, o in zip(names, picked, strict=True)]


def first_submit(bedrock: BedrockRuntimeEmulator) -> float:
    return min(inv.submit_time.timestamp() for inv in bedrock.invocations.values())


def ends_of(bedrock: BedrockRuntimeEmulator) -> list[float]:
    return [
        inv.end_time.timestamp()
        for inv in bedrock.invocations.values()
        if inv.status == "Completed" and inv.end_time is not None
    ]


def plain_script(
    bedrock: BedrockRuntimeEmulator, bucket: str, keys: list[str], quota: int, result: dict[str, Any]
) -> None:
    """Keep up to `quota` jobs in flight; poll each with GetAsyncInvoke every 10 s; submit as slots free."""
    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=bedrock.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"mode": "standard"}),
    )
    model = marengo_model(MARENGO_3_0.key)
    waiting = list(keys)
    in_flight: dict[str, float] = {}  # ARN -> when to poll it next (monotonic)
    result["started"] = time.time()
    while waiting or in_flight:
        while waiting and len(in_flight) < quota:
            key = waiting.pop(0)
            response = client.start_async_invoke(
                modelId=route("bedrock", model.key).model_id,
                modelInput=async_model_input(
                    route("bedrock", model.key), "image", f"s3://{bucket}/{key}", EmbeddingOptions()
                ),
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://lake/plain-async"}},
            )
            in_flight[response["invocationArn"]] = time.monotonic() + PLAIN_POLL_SEC
        now = time.monotonic()
        for arn, due in list(in_flight.items()):
            if due > now:
                continue
            if client.get_async_invoke(invocationArn=arn)["status"] == "InProgress":
                in_flight[arn] = due + PLAIN_POLL_SEC
            else:
                del in_flight[arn]
        if in_flight and not (waiting and len(in_flight) < quota):
            time.sleep(max(0.0, min(in_flight.values()) - time.monotonic()))
    result["done"] = time.time()


def tail(path: str, lines: int = 40) -> str:
    return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])


def launch(env: dict[str, str]) -> None:
    """What a person does to start at once: launch embed_new_media for the serving model."""
    launched = subprocess.run(
        [
            str(BIN / "dagster"),
            "job",
            "launch",
            "-w",
            "workspace.yaml",
            "-j",
            "embed_new_media",
            "--tags",
            json.dumps({"dagster/partition": MARENGO_3_0.key}),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if launched.returncode:
        raise RuntimeError(f"dagster job launch failed:\n{launched.stderr[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the daemon we started and the processes it started (its own process group)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def active_runs(home: Path) -> int:
    statuses = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return len(instance.get_runs(dg.RunsFilter(statuses=statuses)))


def runs_summary(home: Path) -> tuple[int, str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        by_job: dict[str, int] = {}
        for run in runs:
            by_job[run.job_name] = by_job.get(run.job_name, 0) + 1
        held = []
        for record in instance.fetch_materializations(dg.AssetKey(["marengo", "invocations"]), 100).records:
            meta = record.asset_materialization.metadata if record.asset_materialization else {}
            held.append(
                f"{getattr(meta.get('submitted'), 'value', '?')} submitted in "
                f"{getattr(meta.get('held_sec'), 'value', '?')} s held"
            )
    failed = sum(run.status == dg.DagsterRunStatus.FAILURE for run in runs)
    detail = ", ".join(f"{n} {job}" for job, n in sorted(by_job.items())) + f"; {failed} failed"
    return len(runs), f"{detail}; submission runs: {'; '.join(reversed(held))}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--quota", type=int, default=20, help="jobs the provider runs at once (Q)")
    parser.add_argument("--latency", type=float, default=60.0, help="seconds per job at the provider (L)")
    parser.add_argument("--keep", type=Path, help="keep the instance, lake and daemon log in this folder")
    args = parser.parse_args()
    n, quota, latency = args.objects, args.quota, args.latency
    limit = quota / latency
    deadline_sec = max(3 * n * latency / quota, 600) + 600
    objects = media_objects(n)

    with (
        tempfile.TemporaryDirectory(prefix="quota-bench-") as scratch,
        start_local_stack(latency_sec=latency, max_concurrent_invocations=quota) as stack,
    ):
        workdir = args.keep.resolve() if args.keep else Path(scratch)
        s3 = stack.s3.client()
        s3.create_bucket(Bucket="plain")
        for key, data, content_type in objects:
            s3.put_object(Bucket="media", Key=key, Body=data, ContentType=content_type)
            s3.put_object(Bucket="plain", Key=key, Body=data, ContentType=content_type)
        plain_bedrock = BedrockRuntimeEmulator(
            stack.s3_endpoint, latency_sec=latency, max_concurrent_invocations=quota
        ).start()

        settings = local_settings(workdir)
        home = Path(settings["DAGSTER_HOME"])
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.get_runs(limit=1)  # create the storage once, before two processes race to
        env = {
            **os.environ,
            **stack.env(),
            **settings,
            "MEDIAEMBED_QUOTAS": f"{MARENGO_3_0.key}={quota}",
            "PYTHONPATH": str(ROOT),
        }
        log = (workdir / "daemon.log").open("wb")
        daemon = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        plain: dict[str, Any] = {}
        try:
            started = time.time()
            launch(env)
            print(
                f"{datetime.now(UTC):%H:%M:%S} launched embed_new_media under dagster-daemon; plain script "
                f"started; {n} objects, Q={quota}, L={latency:g} s (limit {limit:.3f} jobs/s)",
                flush=True,
            )
            worker = threading.Thread(
                target=plain_script,
                args=(plain_bedrock, "plain", [k for k, _, _ in objects], quota, plain),
                daemon=True,
            )
            worker.start()
            lake = Lake(root=settings["MEDIAEMBED_LAKE_URI"], storage=S3Storage(region_name="us-east-1"))
            ingested_at = None
            while time.time() - started < deadline_sec:
                time.sleep(5)
                if daemon.poll() is not None:
                    raise RuntimeError(f"dagster-daemon exited with {daemon.returncode}:\n{tail(log.name)}")
                done = len(ends_of(stack.bedrock))
                jobs = SubmissionLedger(lake, None).jobs(MARENGO_3_0.key)
                completed = 0 if jobs.empty else int((jobs["status"] == "completed").sum())
                if completed >= n and ingested_at is None:
                    ingested_at = time.time()
                if ingested_at is not None and not worker.is_alive() and not active_runs(home):
                    break  # the last ingest run wrote the index too
                if int(time.time() - started) % 60 < 5:
                    print(
                        f"{datetime.now(UTC):%H:%M:%S} pipeline: {done} jobs ended at the provider, "
                        f"{completed} ingested; plain script: {len(ends_of(plain_bedrock))} ended",
                        flush=True,
                    )
            else:
                raise RuntimeError(f"not all ingested within {deadline_sec:.0f} s:\n{tail(log.name)}")
        finally:
            stop(daemon)
            log.close()
        calls, records = stack.bedrock.calls, stack.bedrock.status_records
        plain_calls = plain_bedrock.calls
        pipeline = Outcome(started, ends_of(stack.bedrock))
        first_job = first_submit(stack.bedrock) - started
        plain_outcome = Outcome(plain["started"], ends_of(plain_bedrock))
        plain_bedrock.stop()
        runs, detail = runs_summary(home)

    fraction = pipeline.jobs_per_sec() / limit
    plain_fraction = plain_outcome.jobs_per_sec() / limit
    ratio = pipeline.jobs_per_sec() / plain_outcome.jobs_per_sec()
    per_job = records / n
    # Before: only the 15-minute schedule submitted, at most 30 in flight and stopping at the first refusal.
    before = min(quota, OLD_CAP) / SCHEDULE_EVERY_SEC / limit
    print(
        f"pipeline: {n} jobs ended {pipeline.seconds():.0f} s after the launch "
        f"({pipeline.jobs_per_sec():.4f} jobs/s, {fraction:.3f} of the limit; the first job started "
        f"{first_job:.0f} s after the launch); all ingested after "
        f"{ingested_at - started:.0f} s; {runs} Dagster runs ({detail})"
    )
    print(
        f"pipeline status traffic per completed job: {calls.get('ListAsyncInvokes', 0) / n:.2f} "
        f"ListAsyncInvokes calls, {calls.get('GetAsyncInvoke', 0) / n:.2f} GetAsyncInvoke calls, "
        f"{per_job:.2f} status records; StartAsyncInvoke calls {calls.get('StartAsyncInvoke', 0)}"
    )
    print(
        f"plain script: {n} jobs ended {plain_outcome.seconds():.0f} s after its start "
        f"({plain_outcome.jobs_per_sec():.4f} jobs/s, {plain_fraction:.3f} of the limit); per job "
        f"{plain_calls.get('GetAsyncInvoke', 0) / n:.2f} GetAsyncInvoke calls"
    )
    print(
        f"before this change (estimate: only the 15-minute schedule submitted, at most {OLD_CAP} in flight): "
        f"{before:.3f} of the limit"
    )
    print(f"fraction_of_limit={fraction:.3f} plain_ratio={ratio:.3f} status_records_per_job={per_job:.3f}")


if __name__ == "__main__":
    main()
