"""The deployed topology end to end, driven as a team drives it (docs/deployment.md, "Run the deployed
topology on one machine"): Postgres storage, a code server loaded through a workspace that names it, the
daemon with the queue, the pools and run monitoring, every run its own process, the lake and the index on
S3 (moto), Bedrock and the TwelveLabs API emulated.

The daemon's scheduler fires the embedding schedule (every minute here, MEDIAEMBED_EMBED_SCHEDULE) and its
sensor hands what finished to ingest runs; a two-partition migration backfill is submitted through the
webserver's GraphQL as the UI's Partitions view does, and the daemon's backfill daemon runs it; then a
checked cut-over and a rollback by `mediaembed serving`, and Pegasus descriptions by the describe schedule.
What was billed is read from the emulators' own records.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import dagster as dg
import pytest

from emulators.sample_media import SampleObject, generate_sample_media, upload_sample_media
from emulators.stack import start_local_stack
from mediaembed.cli import main as cli
from resources.pegasus.prompts import load_prompts
from tests.deploy.billing import (
    billed,
    embedded,
    lake_and_index,
    ledger_jobs,
    open_jobs,
    record,
    sync_embeds,
    table_and_index_rows,
)
from tests.postgres import URL_VARIABLE
from tests.topology import ROOT, Topology, deployed, pipeline_settings, wait_for

SERVING, TARGET, OTHER = "marengo-3.0", "marengo-2.7", "marengo-3.5"  # 3.5 on the TwelveLabs API
CORRUPT = "s3://media/videos/corrupt.mp4"  # the sample set's broken video: no model can take it
SCHEDULES = ("embed_new_media_schedule", "describe_new_media_schedule")
SENSORS = ("marengo_invocation_sensor",)
CUT_OVER_CHECKS = {
    "covers_every_eligible_object",
    "vectors_have_model_dimension",
    "no_nan_or_zero_vectors",
    "segments_inside_media_duration",
    "rows_of_this_version_only",
    "segment_ids_unique",
    "index_rows_equal_table_rows",
    "candidate_matches_serving",
}
# Generous bounds for a loaded 2-core machine; each is a wait for a condition, never a pause.
FIRST_TICK_SEC = 180  # the next minute, and the first run's process
CONVERGE_SEC = 420
COMMAND_SEC = 300


@pytest.fixture(scope="module")
def samples() -> list[SampleObject]:
    return generate_sample_media()


def mediaembed(topology: Topology, *args: str) -> subprocess.CompletedProcess[str]:
    """A `mediaembed` command from a shell with the topology's settings, as a person runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mediaembed.cli", *args],
        cwd=ROOT,
        env=topology.env,
        capture_output=True,
        text=True,
        timeout=COMMAND_SEC,
    )


def search(text: str, top_k: int = 3) -> list[dict[str, object]]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert cli(["search", text, "--top-k", str(top_k), "--json"]) == 0, err.getvalue()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def scenes_answered_by(videos: list[SampleObject], model_key: str) -> None:
    """Every scene of every sample video is the top hit for its words, from `model_key`, at its seconds."""
    for video in videos:
        for scene in video.scenes:
            [top] = search(f"{scene.color} {scene.shape}", top_k=1)
            assert (top["model"], top["media_uri"]) == (model_key, f"s3://media/{video.key}"), top
            assert (top["start_sec"], top["end_sec"]) == (scene.start_sec, scene.end_sec), top


def test_the_deployed_topology_end_to_end(
    postgres_url: str, samples: list[SampleObject], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    usable = {f"s3://media/{s.key}" for s in samples if s.modality is not None}
    videos = [s for s in samples if s.modality == "video"]
    prompts = load_prompts(None)
    with start_local_stack(
        buckets=("media", "lake"), latency_sec=0.2, prepare_s3=lambda c: upload_sample_media(c, "media")
    ) as stack:
        settings = pipeline_settings(stack, MEDIAEMBED_MIGRATION_EXCLUDE=CORRUPT)
        for name, value in {**settings, URL_VARIABLE: postgres_url}.items():
            monkeypatch.setenv(name, value)  # this process reads the same lake, index and instance
        lake, index = lake_and_index(settings)
        home = tmp_path / "dagster"

        def converged(*model_keys: str) -> bool:
            """Every job of the versions ingested, into the table and the index (the ingest run's second
            step writes the index after the table)."""
            for m in model_keys:
                if open_jobs(lake, m) != 0 or embedded(lake, m) != usable:
                    return False
                table, indexed = table_and_index_rows(lake, index, m)
                if table != indexed:
                    return False
            return True

        with deployed(home, postgres_url, settings, tmp_path / "logs") as topology:
            timings["up"] = time.monotonic() - started

            # The daemon's scheduler fires the schedule for the serving version; the sensor ingests.
            def scheduled() -> dg.DagsterRun | None:
                runs = [r for r in topology.runs() if r.tags.get("dagster/schedule_name") == SCHEDULES[0]]
                return next((r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS), None)

            first = wait_for("a scheduled embed_new_media run succeeded", FIRST_TICK_SEC, scheduled, 1.0)
            assert first.tags["dagster/partition"] == SERVING
            wait_for(f"{SERVING} embedded and indexed", CONVERGE_SEC, lambda: converged(SERVING), 1.0)
            timings["scheduled_and_ingested"] = time.monotonic() - started

            # The migration: both other versions as one backfill from the UI; the daemon runs it.
            backfill = topology.backfill(["marengo", "invocations"], [TARGET, OTHER])
            wait_for(
                "the backfill completed",
                CONVERGE_SEC,
                lambda: topology.backfill_status(backfill) == "COMPLETED_SUCCESS",
                1.0,
            )
            wait_for(f"{TARGET} and {OTHER} embedded", CONVERGE_SEC, lambda: converged(TARGET, OTHER), 1.0)
            timings["backfilled_and_ingested"] = time.monotonic() - started
            scenes_answered_by(videos, SERVING)  # the backfill changed nothing that answers

            # The checked cut-over, then the rollback, each submitted by the command to this queue.
            done = mediaembed(topology, "serving", "cut-over", TARGET, "--by", "topology-test")
            assert done.returncode == 0, done.stderr[-3000:]
            assert TARGET in done.stdout, done.stdout
            scenes_answered_by(videos, TARGET)
            done = mediaembed(topology, "serving", "roll-back", "--by", "topology-test")
            assert done.returncode == 0, done.stderr[-3000:]
            scenes_answered_by(videos, SERVING)
            timings["cut_over_and_rolled_back"] = time.monotonic() - started
            assert not (home / "mediaembed" / "daemon.log").exists(), "the commands started no daemon"

            # Pegasus: the describe schedule's runs call once per video and prompt, then never again.
            def described() -> bool:
                calls = stack.bedrock.pegasus_calls
                return len(calls) >= len(videos) * len(prompts) and any(
                    r.job_name == "describe_media" and r.status == dg.DagsterRunStatus.SUCCESS
                    for r in topology.runs()
                )

            wait_for("the videos described", CONVERGE_SEC, described, 1.0)

            # Automation off, as a team pausing it; then nothing may be left queued or going.
            topology.set_automation(False, SCHEDULES, SENSORS)
            runs = topology.wait_quiet(CONVERGE_SEC)
            timings["quiet"] = time.monotonic() - started
            with topology.instance() as instance:
                evaluations = [
                    e.dagster_event.asset_check_evaluation_data
                    for r in runs
                    if r.job_name == "cut_over_serving_version"
                    for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
                    if e.dagster_event is not None
                ]

        # Every run ended, in success; the runs came from the schedules, the sensor, the backfill and
        # the commands.
        assert Counter(r.status for r in runs) == Counter({dg.DagsterRunStatus.SUCCESS: len(runs)}), [
            (r.job_name, r.run_id, r.status) for r in runs if r.status != dg.DagsterRunStatus.SUCCESS
        ]
        by_job = Counter(r.job_name for r in runs)
        from_backfill = [r for r in runs if r.tags.get("dagster/backfill") == backfill]
        assert sorted(r.tags["dagster/partition"] for r in from_backfill) == sorted([TARGET, OTHER])
        ingests = [r for r in runs if r.job_name == "ingest_marengo_embeddings"]
        assert {r.tags["dagster/partition"] for r in ingests} == {SERVING, TARGET, OTHER}
        assert all(r.tags.get("dagster/sensor_name") == SENSORS[0] for r in ingests)
        assert by_job["cut_over_serving_version"] == by_job["roll_back_serving_version"] == 1
        # Launched the same way: each a run of the partition of the version that is to serve.
        changes = {r.job_name: r.tags.get("dagster/partition") for r in runs if "_serving_" in r.job_name}
        assert changes == {"cut_over_serving_version": TARGET, "roll_back_serving_version": SERVING}

        # The cut-over passed every blocking check before it wrote the serving record.
        assert {e.check_name for e in evaluations} == CUT_OVER_CHECKS
        assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]

        # Nothing billed twice: one job per usable object per version, at the provider itself.
        jobs = billed(stack)
        bedrock_jobs = {key: n for key, n in jobs.items() if key[0] != OTHER}
        assert set(bedrock_jobs) == {(m, uri) for m in (SERVING, TARGET) for uri in usable}, bedrock_jobs
        assert set(jobs.values()) == {1}, {key: n for key, n in jobs.items() if n != 1}
        tasks = [key for key in jobs if key[0] == OTHER]
        assert len(tasks) + sync_embeds(stack) == len(usable), (tasks, sync_embeds(stack))
        for model_key in (SERVING, TARGET, OTHER):
            assert ledger_jobs(lake, model_key) == Counter({"completed": len(usable)}), model_key
        pegasus = Counter((c.media_uri, c.prompt) for c in stack.bedrock.pegasus_calls)
        assert set(pegasus.values()) == {1} and len(pegasus) == len(videos) * len(prompts), pegasus

        # The index holds exactly the table's rows, for every version.
        rows = {}
        for model_key in (SERVING, TARGET, OTHER):
            table, indexed = table_and_index_rows(lake, index, model_key)
            assert table and table == indexed, model_key
            rows[model_key] = len(table)

        record(
            "end-to-end",
            {
                "runs": dict(by_job),
                "runs_total": len(runs),
                "provider_jobs": {
                    m: sum(n for (k, _), n in jobs.items() if k == m) for m in (SERVING, TARGET)
                },
                "twelvelabs_tasks": len(tasks),
                "twelvelabs_sync_embeds": sync_embeds(stack),
                "pegasus_calls": sum(pegasus.values()),
                "rows": rows,
                "seconds": {k: round(v, 1) for k, v in timings.items()},
            },
        )
