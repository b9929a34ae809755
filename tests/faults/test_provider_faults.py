"""Provider faults on the emulators: throttling storms, a small quota, failed invocations, a restart.

Each case runs the pipeline until it converges (every object reached an end) and checks the invariants;
the exact counts come from the emulator's own records, never from a hard-coded seed outcome.
"""

from collections import defaultdict

from emulators.sample_media import SampleObject
from tests.faults.conftest import MakeWorld
from tests.faults.world import extra_images

SAMPLES, USABLE_SAMPLES = 9, 7  # a corrupt .mp4 and a text file are skipped with a reason


def test_throttling_at_60_percent_of_all_calls(make_world: MakeWorld, samples: list[SampleObject]) -> None:
    world = make_world(throttle_rate=0.6, seed=7)
    world.put_samples(samples)
    rounds = world.converge()
    counts = world.check("throttling: 60% of all Bedrock calls")
    assert (counts.seen, counts.embedded, counts.failed, counts.skipped) == (SAMPLES, USABLE_SAMPLES, 0, 2)
    assert counts.jobs_created == USABLE_SAMPLES, "a throttled call is never billed"
    assert rounds >= 2, "throttling left objects for a later run"
    assert all("ThrottlingException" in e for e in world.errors), world.errors


def test_quota_of_3_with_20_objects(make_world: MakeWorld, samples: list[SampleObject]) -> None:
    # Jobs last 0.5 s: four submissions always land inside one job's run, so the quota refusal is certain
    # even on a loaded machine (at 0.05 s a slow run could submit between finishes and never be refused).
    world = make_world(max_concurrent_invocations=3, latency_sec=0.5)
    world.put_samples(samples)
    world.put(extra_images(13))
    deferred: list[str] = []
    original = world.submit

    def submit(**config: object) -> dict:
        meta = original(**config)
        deferred.append(meta["deferred_reason"])
        return meta

    world.submit = submit  # type: ignore[method-assign]
    world.converge()
    counts = world.check("quota: 3 in flight, 20 objects")
    assert (counts.seen, counts.embedded, counts.failed, counts.skipped) == (22, 20, 0, 2)
    assert counts.jobs_created == 20
    assert any("ServiceQuotaExceededException" in reason for reason in deferred), deferred
    assert world.errors == []
    # The emulator's own records: never more than 3 jobs running at once.
    events = sorted(
        [(j.submit_time, 1) for j in world.provider_jobs()]
        + [(j.end_time, -1) for j in world.provider_jobs()],
        key=lambda e: (e[0], e[1]),
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak <= 3


def test_30_percent_of_invocations_fail(make_world: MakeWorld, samples: list[SampleObject]) -> None:
    world = make_world(failure_rate=0.3, seed=11)
    world.put_samples(samples)
    world.put(extra_images(7))
    world.converge()
    counts = world.check("failed invocations: 30%")
    # Expected from the provider's own records: an object is embedded when one of its jobs completed, and
    # failed (with the provider's message) when both of its attempts failed.
    outcomes: dict[str, list[str]] = defaultdict(list)
    for job in world.provider_jobs():
        assert job.request.media is not None
        outcomes[str(job.request.media.uri)].append(job.status)
    failed_twice = sum(1 for statuses in outcomes.values() if statuses == ["Failed", "Failed"])
    failed_jobs = sum(statuses.count("Failed") for statuses in outcomes.values())
    assert failed_jobs > 0 and len(outcomes) == 14
    assert (counts.embedded, counts.failed, counts.skipped) == (14 - failed_twice, failed_twice, 2)
    assert counts.jobs_created == 14 + failed_jobs - failed_twice, "one retry per failure, never more"
    jobs = world.jobs()
    failed = jobs[jobs["status"] == "failed"]
    assert len(failed) == failed_jobs and failed["reason"].str.contains("(injected)", regex=False).all()
    assert world.errors == []


def test_emulator_restart_over_its_kept_state(make_world: MakeWorld, samples: list[SampleObject]) -> None:
    world = make_world(kept_state=True, latency_sec=60)  # jobs stay running until the restart
    world.put_samples(samples)
    assert world.submit()["submitted"] == USABLE_SAMPLES
    assert world.bedrock.in_progress() == USABLE_SAMPLES
    world.restart_bedrock()  # carries on the running jobs from its workdir
    assert world.converge() == 1, "nothing was left to submit again"
    counts = world.check("emulator restart (kept workdir)")
    assert (counts.seen, counts.embedded, counts.skipped, counts.jobs_created) == (
        SAMPLES,
        USABLE_SAMPLES,
        2,
        USABLE_SAMPLES,
    )
    assert world.bedrock.created_invocations == USABLE_SAMPLES
    assert set(world.jobs()["status"]) == {"completed"}
    assert world.errors == []


def test_a_provider_that_forgets_its_completed_jobs_is_never_paid_twice(
    make_world: MakeWorld, samples: list[SampleObject]
) -> None:
    world = make_world()  # no kept state: a restart forgets every job
    world.put_samples(samples)
    world.put(extra_images(15))
    usable = USABLE_SAMPLES + 15
    assert world.submit()["submitted"] == usable
    world.bedrock.wait_until_idle()
    assert {job.status for job in world.provider_jobs()} == {"Completed"}
    world.restart_bedrock()  # its output.json files stay where the submissions said they would be
    assert world.bedrock.invocations == {}
    world.converge()
    counts = world.check(f"provider restarted without state after {usable} completed")
    assert (counts.seen, counts.embedded, counts.skipped) == (SAMPLES + 15, usable, 2)
    assert counts.jobs_created == usable, "every paid output was kept: no job bought again"
    assert world.bedrock.created_invocations == 0
    jobs = world.jobs()
    assert set(jobs["status"]) == {"completed"}
    assert jobs["reason"].str.contains("its output was complete and is kept", regex=False).all()
    assert world.errors == []


def test_throttling_at_90_percent_converges_and_bills_nothing_twice(
    make_world: MakeWorld, samples: list[SampleObject]
) -> None:
    world = make_world(throttle_rate=0.9, seed=3)
    world.put_samples(samples)
    world.put(extra_images(20))
    usable = USABLE_SAMPLES + 20
    # Nine in ten calls refused even after botocore's retries (at a millisecond scale here): a submission
    # run, a tick or an ingest run each gets a little through, and none of them fails for it.
    world.converge(max_rounds=200, drain_steps=60)
    counts = world.check("throttling: 90% of all Bedrock calls")
    assert (counts.seen, counts.embedded, counts.failed, counts.skipped) == (SAMPLES + 20, usable, 0, 2)
    assert counts.jobs_created == usable, "a throttled call is never billed, nor a job bought twice"
    assert world.errors == [], "no run or tick failed for a throttled listing"
