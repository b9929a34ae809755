"""An event-fed inventory of a large library: what a quiet tick and run cost, how soon new media is
searchable, and a full reconciliation, at --objects rows (issue 24 (a) and (d)).

Run: .venv/bin/python bench/inventory_scale.py --objects 1000000 --new 1000

The emulators run in a process of their own (`python -m emulators`, which notifies the queue of the media
bucket's events, as on AWS), so only the pipeline's memory is counted. The library is --real tiny PNGs in
the S3 emulator, inventoried, submitted and ingested through the real definitions, plus synthetic
inventory rows with the real schema (status ok, images under `synthetic/`) and, for each, a completed job
in the ledger's closed state, so that planning sees a library of --objects that is all handled. Each
phase runs in a fresh process (its peak RSS is its own):
1. set-up: the real objects through the pipeline (their listing fanned out to probe runs of 500 objects,
   each timed: a run is what one run worker does), then the synthetic rows and jobs;
2. quiet: a media change sensor tick on an empty queue (its long poll waits `wait_sec`), an invocation
   sensor tick, the embed schedule's tick (which launches no run: nothing changed since the last plan),
   and, as a person might launch it anyway, an embed_new_media run (`forced_run_sec`);
3. new media: --new PNGs uploaded; their events drained by the media change sensor into one run, the
   provider's latency, the invocation sensor's tick and its ingest, until every one is in the index; the
   ticks are driven back to back (a daemon adds up to one sensor interval before each);
4. reconciliation: a listing of every key (the real objects from S3, the synthetic ones as listing pages
   of the same shape, since the emulator cannot hold a million objects quickly) against the table.

The last two lines are machine-readable:
`reconcile_objects=N reconcile_sec=X reconcile_peak_rss_mb=Z`
`nochange_run_sec=X new_searchable_sec=Y sensor_interval_sec=I provider_latency_sec=L peak_rss_mb=Z`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "marengo-3.0"
PAGE = 1_000  # keys per listing page, as ListObjectsV2 returns them
PROBE_BATCH = 500  # objects per probe run in the set-up's fan-out (the pipeline's default is 2,000)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_emulators(workdir: Path, latency_sec: float) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """`python -m emulators` with the media bucket's events going to its queue; its export lines."""
    command = [
        sys.executable,
        "-m",
        "emulators",
        "--s3-port",
        "0",
        "--bedrock-port",
        "0",
        "--twelvelabs-port",
        "0",
        "--latency",
        str(latency_sec),
        "--max-concurrent",
        "100000",
        "--workdir",
        str(workdir),
    ]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    env: dict[str, str] = {}
    while "DAGSTER_HOME" not in env:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("bench: the emulators stopped before printing their settings")
        name, _, value = line.strip().removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    return proc, env


def in_process(phase: Callable[..., dict[str, Any]], env: dict[str, str], *args: Any) -> dict[str, Any]:
    """Run `phase(*args)` in a fresh process with `env`; its result, with its own peak RSS (and, with
    BENCH_PROFILE_DIR set, its cProfile statistics in that folder, one file per phase)."""
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(1, initializer=_set_env, initargs=(env,))
    try:
        return pool.apply(_measured, (phase, *args))
    finally:
        pool.close()
        pool.join()


def _set_env(env: dict[str, str]) -> None:
    os.environ.update(env)


def _measured(phase: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    folder = os.environ.get("BENCH_PROFILE_DIR")
    if not folder:
        return {**phase(*args), "peak_rss_mb": peak_rss_mb()}
    import cProfile

    with cProfile.Profile() as profile:
        result = phase(*args)
    profile.dump_stats(str(Path(folder) / f"{phase.__name__}.prof"))
    return {**result, "peak_rss_mb": peak_rss_mb()}


def _instance() -> Any:
    import dagster as dg

    from harness.local_env import prepare_dagster_home

    prepare_dagster_home({"DAGSTER_HOME": os.environ["DAGSTER_HOME"]})
    return dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])


def _pngs(prefix: str, count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    from emulators.sample_media import Scene, make_image

    shapes, colors = ("circle", "square", "triangle"), ("red", "green", "blue", "yellow", "cyan")
    for i in range(count):  # a few distinct images: ETags repeat across keys, as copies in a library do
        scene = Scene(0.0, 1.0, shapes[(i + seed) % 3], colors[(i + seed) // 3 % 5], "black", 0.0)
        yield f"{prefix}{i:06d}.png", make_image(scene, "png")


def _put(prefix: str, count: int, seed: int) -> None:
    import boto3

    s3 = boto3.session.Session().client("s3")
    for key, body in _pngs(prefix, count, seed):
        s3.put_object(Bucket="media", Key=key, Body=body, ContentType="image/png")


def _drain_jobs(instance: Any) -> int:
    """Invocation sensor ticks (and the ingest runs they request) until the ledger holds no open job, as
    `SensorDriver.drain` ticks them; the ingest runs it took."""
    import dagster as dg

    from harness.runner import SensorDriver
    from pipelines.definitions import pipeline_resources

    driver = SensorDriver(instance, log_level="WARNING")
    with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
        driver.drain(built.lake, timeout_sec=3600, interval_sec=0.2)
    return len(driver.ingest_results)


def synthetic_rows(count: int) -> Any:
    """`count` inventory rows with the real schema: probed images under synthetic/, all usable."""
    import numpy as np
    import pyarrow as pa

    from resources.tables.inventory_table import INVENTORY_SCHEMA
    from resources.tables.segment_schema import media_id

    keys = [f"synthetic/{i:07d}.png" for i in range(count)]
    uris = [f"s3://media/{k}" for k in keys]
    now = datetime.now(UTC)
    return pa.table(
        {
            "media_uri": uris,
            "media_id": [media_id(u) for u in uris],
            "key": keys,
            "etag": [synthetic_etag(i) for i in range(count)],
            "size_bytes": np.full(count, 2_000, dtype=np.int64),
            "last_modified": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
            "content_type": ["image/png"] * count,
            "modality": ["image"] * count,
            "duration_sec": pa.nulls(count, pa.float64()),
            "width": np.full(count, 64, dtype=np.int32),
            "height": np.full(count, 64, dtype=np.int32),
            "status": ["ok"] * count,
            "reason": pa.nulls(count, pa.string()),
            "probed_at": pa.array([now] * count, pa.timestamp("us", tz="UTC")),
            "event_sequencer": pa.nulls(count, pa.string()),
            "probe_batch": pa.nulls(count, pa.string()),
        },
        schema=INVENTORY_SCHEMA,
    )


def synthetic_etag(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()


def closed_jobs(rows: Any) -> Any:
    """An ended Marengo 3.0 job per row, as the ledger's closed state holds them: `no_content` (completed,
    no segments), so planning counts them settled and the index expects nothing of them (the synthetic
    objects have no segments; the index holds the real objects' alone)."""
    import pyarrow as pa

    from assets_defs.marengo.invocations import InvocationConfig
    from assets_defs.marengo.submission_plan import job_keys
    from resources.providers.marengo_models import marengo_model
    from resources.tables.submission_ledger import CLOSED_SCHEMA

    frame = rows.select(["media_uri", "etag", "modality"]).to_pandas()
    keys = job_keys(frame, marengo_model(MODEL), InvocationConfig().options()).to_pylist()
    n, now = len(keys), datetime.now(UTC)
    columns: dict[str, Any] = {
        "job_key": keys,
        "client_token": [f"me-{k}-a1" for k in keys],
        "attempt": [1] * n,
        "media_uri": frame["media_uri"],
        "etag": frame["etag"],
        "modality": frame["modality"],
        "model_key": [MODEL] * n,
        "provider": ["bedrock"] * n,
        "invocation_id": [f"synthetic-{i}" for i in range(n)],
        "submitted_at": [now] * n,
        "run_id": ["bench-synthetic"] * n,
        "status": ["no_content"] * n,
        "segments": [0.0] * n,
        "recorded_at": [now] * n,
        "unreadable_reads": [0] * n,
    }
    return pa.table(
        {f.name: columns[f.name] if f.name in columns else pa.nulls(n, f.type) for f in CLOSED_SCHEMA},
        schema=CLOSED_SCHEMA,
    )


def fan_out_probes(instance: Any, real: int) -> dict[str, Any]:
    """The first listing of the real objects as a large one is made: every object written pending in
    batches (PROBE_BATCH each), then one probe_media run per batch, as the probe sensor requests them.
    Probe throughput per run worker: each run is what one worker does."""
    import dagster as dg

    from assets_defs.inventory.inventory_update import InventoryUpdate
    from harness.runner import materialization_metadata, run_job
    from pipelines.definitions import pipeline_resources
    from pipelines.jobs import inventory_config
    from resources.tables.inventory_table import InventoryTable

    with dg.build_resources({n: pipeline_resources[n] for n in ("media", "lake")}) as built:
        update = InventoryUpdate(
            built.media, InventoryTable(built.lake), "benchlist", probe_in_run=0, batch_objects=PROBE_BATCH
        )
        listing = update.reconcile()
    rates = []
    for batch in listing.pending_batches:
        t0 = time.perf_counter()
        run = run_job(
            instance, "probe_media", None, run_config=inventory_config(probe_batch=batch), log_level="WARNING"
        )
        probed = materialization_metadata(run, ["media", "inventory"])["probed_this_run"]
        rates.append(probed / (time.perf_counter() - t0))
    assert sum(1 for _ in listing.pending_batches) == -(-real // PROBE_BATCH)
    return {"probe_batches": len(rates), "probe_objects_per_sec_per_worker": sum(rates) / len(rates)}


# --- the phases (each in its own process) ----------------------------------------------------------------


def set_up(objects: int, real: int) -> dict[str, Any]:
    import boto3
    import dagster as dg
    import pyarrow as pa

    from harness.runner import materialization_metadata, run_job
    from pipelines.definitions import pipeline_resources
    from resources.tables.inventory_table import InventoryTable
    from resources.tables.submission_ledger import FOLDED_KEY

    t0 = time.perf_counter()
    _put("real/", real, seed=0)
    sqs = boto3.session.Session().client("sqs")
    sqs.purge_queue(QueueUrl=os.environ["MEDIAEMBED_MEDIA_QUEUE_URL"])  # the first listing covers these
    instance = _instance()
    probe = fan_out_probes(instance, real)
    first = run_job(instance, "embed_new_media", MODEL, log_level="WARNING")  # nothing to list: submits
    submitted = materialization_metadata(first, ["marengo", "invocations"])["submitted"]
    _drain_jobs(instance)
    t1 = time.perf_counter()
    with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
        table = InventoryTable(built.lake)
        real_rows = table.read(without=()).select(synthetic_rows(0).schema.names)
        synthetic = synthetic_rows(objects - real_rows.num_rows)
        table.replace_all(pa.concat_tables([real_rows, synthetic]))
        jobs = closed_jobs(synthetic).replace_schema_metadata({FOLDED_KEY: b"[]"})
        built.lake.write_table(jobs, "ledger/closed/00000000T000000000000-synthetic.parquet")
    return {
        "real_objects": real,
        "real_submitted": submitted,
        "real_sec": t1 - t0,
        **probe,
        "synthetic_rows": synthetic.num_rows,
        "synthetic_sec": time.perf_counter() - t1,
    }


def quiet() -> dict[str, Any]:
    import dagster as dg

    from harness.runner import SensorDriver, materialization_metadata, media_change_requests, run_job
    from pipelines.definitions import pipeline_resources
    from pipelines.schedules import embed_new_media_schedule

    instance = _instance()
    t0 = time.perf_counter()
    requested = media_change_requests(instance)
    t1 = time.perf_counter()
    assert not requested, requested
    launched = SensorDriver(instance).tick()
    t2 = time.perf_counter()
    schedule_resources = {n: pipeline_resources[n] for n in ("lake", "media_events")}
    with dg.build_schedule_context(instance=instance, resources=schedule_resources) as context:
        scheduled = embed_new_media_schedule(context)
    t3 = time.perf_counter()
    assert isinstance(scheduled, dg.SkipReason), f"a run with nothing changed: {scheduled}"
    run = run_job(instance, "embed_new_media", MODEL, log_level="WARNING")  # launched by hand all the same
    t4 = time.perf_counter()
    inventory = materialization_metadata(run, ["media", "inventory"])
    submitted = materialization_metadata(run, ["marengo", "invocations"])
    assert inventory["mode"] == "nothing to do" and submitted["submitted"] == 0, (inventory, submitted)
    return {
        "media_tick_sec": t1 - t0,  # mostly the long poll's wait on the empty queue
        "invocation_tick_sec": t2 - t1,
        "invocation_tick_runs": launched,
        "schedule_tick_sec": t3 - t2,  # a SkipReason: no run
        "nochange_run_sec": t3 - t2,  # what a quiet schedule tick costs: the tick, and no run
        "forced_run_sec": t4 - t3,  # an embed_new_media run a person launches anyway: it plans it all
        "library": inventory["dagster/row_count"],
        "already_handled": submitted.get("already_handled"),
    }


def new_media(new: int) -> dict[str, Any]:
    import dagster as dg

    from harness.runner import materialization_metadata, media_change_requests, run_job
    from pipelines.definitions import pipeline_resources
    from resources.providers.marengo_models import marengo_model

    instance = _instance()
    _put("new/", new, seed=10_000_000)
    t0 = time.perf_counter()
    probed = media_ticks = 0
    while probed < new:  # S3 delivers events within moments; a tick takes what has arrived
        media_ticks += 1
        for request in media_change_requests(instance):
            assert isinstance(request.run_config, dict)
            run = run_job(
                instance,
                "embed_new_media",
                request.partition_key,
                run_config=request.run_config,
                log_level="WARNING",
            )
            probed += materialization_metadata(run, ["media", "inventory"])["probed_this_run"]
    t1 = time.perf_counter()
    ingest_runs = _drain_jobs(instance)
    with dg.build_resources({"segment_index": pipeline_resources["segment_index"]}) as built:
        indexed = built.segment_index.scan(marengo_model(MODEL), ["media_uri"])
    uris = set(indexed.column("media_uri").to_pylist()) if indexed is not None else set()
    searchable = sum(1 for u in uris if u.startswith("s3://media/new/"))
    t2 = time.perf_counter()
    assert searchable == new, f"{searchable} of {new} new objects in the index"
    return {
        "new_searchable_sec": t2 - t0,
        "events_to_submitted_sec": t1 - t0,
        "media_ticks": media_ticks,
        "ingest_runs": ingest_runs,
    }


def reconcile(objects: int, real_keys: int) -> dict[str, Any]:
    import dagster as dg

    from assets_defs.inventory.inventory_update import InventoryUpdate
    from pipelines.definitions import pipeline_resources
    from resources.media.source import MediaObject
    from resources.tables.inventory_table import InventoryTable

    with dg.build_resources({n: pipeline_resources[n] for n in ("media", "lake")}) as built:
        media, synthetic = built.media, objects - real_keys
        now = datetime.now(UTC)

        def pages() -> Iterator[list[MediaObject]]:
            yield from media.list_pages()  # the real objects, from S3
            for start in range(0, synthetic, PAGE):
                yield [
                    MediaObject(
                        f"s3://media/synthetic/{i:07d}.png",
                        f"synthetic/{i:07d}.png",
                        synthetic_etag(i),
                        2_000,
                        now,
                    )
                    for i in range(start, min(start + PAGE, synthetic))
                ]

        class Listing:  # the media source, its listing extended by the synthetic pages
            def __getattr__(self, name: str) -> Any:
                return getattr(media, name)

            def list_pages(self) -> Iterator[list[MediaObject]]:
                return pages()

        t0 = time.perf_counter()
        update = InventoryUpdate(Listing(), InventoryTable(built.lake), "bench-reconcile")  # type: ignore[arg-type]
        change = update.reconcile()
        sec = time.perf_counter() - t0
    return {
        "reconcile_objects": change.listed,
        "reconcile_sec": sec,
        "reconcile_written": change.written.num_rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1_000_000, help="inventory rows in all")
    parser.add_argument("--new", type=int, default=1_000, help="objects uploaded after the set-up")
    parser.add_argument("--real", type=int, default=2_000, help="real objects in the S3 emulator")
    parser.add_argument("--latency", type=float, default=2.0, help="the provider's seconds per job")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        emulators, env = start_emulators(Path(workdir) / "stack", args.latency)
        env |= {"MEDIAEMBED_QUOTAS": f"{MODEL}=100000", "MEDIAEMBED_SERVING_VERSION": MODEL}
        try:
            figures: dict[str, Any] = {}
            for name, phase, phase_args in (
                ("set_up", set_up, (args.objects, args.real)),
                ("quiet", quiet, ()),
                ("new_media", new_media, (args.new,)),
                ("reconcile", reconcile, (args.objects + args.new, args.real + args.new)),
            ):
                figures[name] = in_process(phase, env, *phase_args)
                print(f"{name}: {json.dumps(figures[name])}", flush=True)
        finally:
            emulators.terminate()
            emulators.wait(timeout=30)
    from pipelines.settings import sensor_interval_sec

    interval = sensor_interval_sec()
    rec, quiet_, new = figures["reconcile"], figures["quiet"], figures["new_media"]
    pipeline_rss = max(quiet_["peak_rss_mb"], new["peak_rss_mb"])
    print(
        f"reconcile_objects={rec['reconcile_objects']} reconcile_sec={rec['reconcile_sec']:.2f} "
        f"reconcile_peak_rss_mb={rec['peak_rss_mb']:.0f}"
    )
    print(
        f"nochange_run_sec={quiet_['nochange_run_sec']:.2f} "
        f"new_searchable_sec={new['new_searchable_sec']:.1f} "
        f"sensor_interval_sec={interval} provider_latency_sec={args.latency} peak_rss_mb={pipeline_rss:.0f}"
    )


if __name__ == "__main__":
    main()
