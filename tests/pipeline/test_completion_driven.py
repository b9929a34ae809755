"""Completion-driven submission on the emulators: slots that free at Bedrock are filled by the next sensor
tick, and the sensor's findings reach the ingest run, which lists nothing itself."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from harness.runner import SensorDriver, materialization_metadata, run_job
from pipelines.jobs import holding_config
from resources.providers.marengo_models import MARENGO_3_0
from resources.tables.submission_ledger import SubmissionLedger
from tests.pipeline.conftest import USABLE, World, build_world, submit

QUOTA = 2


@pytest.fixture
def quota_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Bedrock runs two Marengo 3.0 jobs at a time, and the pipeline is configured with that quota."""
    with build_world(tmp_path, monkeypatch, {"MEDIAEMBED_QUOTAS": f"{MARENGO_3_0.key}={QUOTA}"}) as world:
        world.stack.bedrock.max_concurrent_invocations = QUOTA
        yield world


def test_a_submission_run_starts_within_one_sensor_interval_of_a_slot_freeing(quota_world: World) -> None:
    world, bedrock = quota_world, quota_world.stack.bedrock
    first = submit(world, hold_quota_sec=0)  # without holding: it stops at the quota
    assert (first["submitted"], first["deferred"], first["quota"]) == (QUOTA, USABLE - QUOTA, QUOTA)
    assert first["deferred_reason"] == f"{QUOTA} invocations in flight (the bedrock quota)"

    driver = SensorDriver(world.instance)
    submitted, waves = QUOTA, 0
    while submitted < USABLE:
        bedrock.wait_until_idle(timeout=60)  # the jobs in flight end: their slots are free at Bedrock
        records_before, runs_before = bedrock.status_records, len(driver.results)
        listings_before = bedrock.calls.get("ListAsyncInvokes", 0)
        driver.tick()  # the very next tick
        new = driver.results[runs_before:]
        [ingest] = [r for r in new if r.job_def.name == "ingest_marengo_embeddings"]
        [submission] = [r for r in new if r.job_def.name == "submit_marengo_invocations"]
        assert submission.dagster_run.tags["dagster/run_key"].startswith(f"submit-{MARENGO_3_0.key}-")
        meta = materialization_metadata(submission, ["marengo", "invocations"])
        expected = min(QUOTA, USABLE - submitted)
        assert (meta["submitted"], meta["in_flight_before"]) == (expected, 0)
        assert meta["deferred"] == USABLE - submitted - expected
        # Only the sensor listed: finished jobs (and, on its first tick, running ones: none); the ingest run
        # took its findings, the submission run its slots. The window starts at the oldest open job, so
        # besides the finished jobs it can only show the previous wave (submitted within half a second).
        ingested = materialization_metadata(ingest, ["marengo", "embeddings"])
        assert (ingested["finished_from_findings"], ingested["finished_from_own_listing"]) == (QUOTA, 0)
        assert bedrock.calls.get("ListAsyncInvokes", 0) - listings_before == (3 if waves == 0 else 2)
        assert QUOTA <= bedrock.status_records - records_before <= 2 * QUOTA
        submitted += expected
        waves += 1
    assert waves == 3  # 2 by hand, then 2 + 2 + 1 by the sensor

    bedrock.wait_until_idle(timeout=60)
    driver.tick()
    assert [r.job_def.name for r in driver.results[-1:]] == ["ingest_marengo_embeddings"], "nothing waits"
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    assert (jobs["status"] == "completed").sum() == USABLE
    assert bedrock.created_invocations == USABLE
    assert bedrock.calls["StartAsyncInvoke"] == USABLE, "the quota is known: no request was refused"


def test_a_holding_run_keeps_the_quota_full_and_its_findings_reach_ingest(quota_world: World) -> None:
    world, bedrock = quota_world, quota_world.stack.bedrock
    bedrock.latency_sec = 0.1
    run_config = holding_config(60.0)
    run_config["ops"]["marengo__invocations"]["config"]["slot_poll_sec"] = 0.02  # type: ignore[index]
    result = run_job(world.instance, "embed_new_media", MARENGO_3_0.key, run_config)
    meta = materialization_metadata(result, ["marengo", "invocations"])
    assert (meta["submitted"], meta["deferred"], meta["deferred_reason"]) == (USABLE, 0, "")
    assert meta["jobs_seen_finishing"] >= USABLE - QUOTA and meta["slot_polls"] > 0
    assert bedrock.calls["StartAsyncInvoke"] == USABLE, "never more than the quota in flight"

    driver = SensorDriver(world.instance)
    driver.drain(world.lake, timeout_sec=60, interval_sec=0.05)
    ingests = [materialization_metadata(r, ["marengo", "embeddings"]) for r in driver.ingest_results]
    assert sum(m["finished_from_findings"] for m in ingests) == USABLE
    assert sum(m["finished_from_own_listing"] for m in ingests) == 0
    assert driver.submission_results == [], "nothing waited"
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    assert (jobs["status"] == "completed").sum() == USABLE
    runs = world.instance.get_runs(dg.RunsFilter(job_name="submit_marengo_invocations"))
    assert runs == []
