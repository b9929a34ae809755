"""Every job ends, on the emulators: corrupt outputs, lost jobs, restarts, empty results, bad media first."""

import json
import struct
from typing import Any

import dagster as dg
import pytest

from emulators.bedrock_runtime import BedrockRuntimeEmulator, ServiceError
from harness.runner import SensorDriver, materialization_metadata, run_job
from resources.providers.marengo_models import MARENGO_3_0
from resources.tables.submission_ledger import SubmissionLedger
from tests.pipeline.conftest import USABLE, World, ingest_when_idle, search_json, submit

VECTOR = [0.1] * MARENGO_3_0.dimension


def item(**fields: object) -> dict[str, object]:
    return {"embedding": VECTOR, "embeddingOption": "visual", "startSec": 0.0, "endSec": 1.0, **fields}


# Outputs that parse (or nearly) but are not Marengo's: each used to leave its job open for ever.
CORRUPT_OUTPUTS: dict[str, tuple[bytes | None, str]] = {
    "invalid UTF-8": (b'{"data": []}\xff\xfe', "is not UTF-8 text"),
    "non-numeric startSec": (json.dumps({"data": [item(startSec="zero")]}).encode(), "startSec 'zero'"),
    "non-string embeddingOption": (
        json.dumps({"data": [item(embeddingOption=7)]}).encode(),
        "embeddingOption 7",
    ),
    "non-string embeddingScope": (
        json.dumps({"data": [item(embeddingScope={"clip": True})]}).encode(),
        "embeddingScope {'clip': True}",
    ),
    "null items": (b'{"data": [null, null]}', "segment 0 is null"),
    "output gone": (None, "is gone (NoSuchKey) although the job completed"),
}


def open_arns(world: World) -> dict[str, str]:
    """media URI -> invocation ARN of the jobs open in the ledger."""
    pending = SubmissionLedger(world.lake, None).in_progress(MARENGO_3_0.key)
    return dict(zip(pending["media_uri"], pending["invocation_id"], strict=True))


def restart_bedrock(world: World, **kwargs: Any) -> BedrockRuntimeEmulator:
    """Stop the Bedrock emulator and start another on the same port (the pipeline's endpoint), for the same
    account keys (it verifies the pipeline's signatures)."""
    port = world.stack.bedrock.port
    world.stack.bedrock.stop()
    world.stack.bedrock = BedrockRuntimeEmulator(
        world.stack.s3_endpoint,
        port=port,
        access_key_id=world.stack.access_key_id,
        secret_access_key=world.stack.secret_access_key,
        **kwargs,
    ).start()
    return world.stack.bedrock


def ingest_checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.get_asset_check_evaluations()}


def test_every_corrupt_output_fails_alone_and_is_retried_with_a_new_token(world: World) -> None:
    assert submit(world)["submitted"] == USABLE
    world.stack.bedrock.wait_until_idle(timeout=60)
    arns = open_arns(world)
    victims = dict(zip(sorted(arns)[: len(CORRUPT_OUTPUTS)], CORRUPT_OUTPUTS.items(), strict=True))
    s3 = world.stack.s3.client()
    for uri, (_kind, (body, _reason)) in victims.items():
        if body is None:
            key = world.stack.bedrock.replace_output(arns[uri], b"")
            s3.delete_object(Bucket="lake", Key=key)
        else:
            world.stack.bedrock.replace_output(arns[uri], body)

    driver = SensorDriver(world.instance)
    driver.tick()
    [result] = driver.results
    ingest = materialization_metadata(result, ["marengo", "embeddings"])
    assert (ingest["objects_embedded"], ingest["objects_failed"], ingest["outputs_unreadable"]) == (
        USABLE - len(victims),
        len(victims),
        0,
    )
    assert ingest_checks(result)["finished_jobs_end"], "nothing waits: every one of them ended now"
    ledger = SubmissionLedger(world.lake, None)
    assert ledger.in_progress().empty, "no job stays open"
    jobs = ledger.jobs(MARENGO_3_0.key).set_index("media_uri")
    for uri, (kind, (_body, reason)) in victims.items():
        assert jobs.loc[uri, "status"] == "failed", kind
        assert (
            jobs.loc[uri, "reason"].startswith("unusable output: ") and reason in jobs.loc[uri, "reason"]
        ), kind

    created = world.stack.bedrock.created_invocations
    retry = submit(world)
    assert retry["submitted"] == len(victims)
    assert world.stack.bedrock.created_invocations == created + len(victims)
    retried = SubmissionLedger(world.lake, None).in_progress(MARENGO_3_0.key)
    assert set(retried["attempt"]) == {2} and retried["client_token"].str.endswith("-a2").all()
    ingest_when_idle(world)
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    assert (jobs["status"] == "completed").sum() == USABLE
    assert submit(world)["submitted"] == 0


def delete_outputs(world: World) -> int:
    """Delete every object the jobs in the ledger wrote at their output locations; returns how many."""
    s3 = world.stack.s3.client()
    deleted = 0
    for output_uri in SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)["output_uri"]:
        bucket, _, prefix = output_uri.removeprefix("s3://").partition("/")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
                deleted += 1
    return deleted


def test_jobs_a_fresh_emulator_no_longer_knows_and_whose_outputs_are_gone_are_lost_and_resubmitted(
    world: World,
) -> None:
    assert submit(world, max_attempts=1)["submitted"] == USABLE
    world.stack.bedrock.wait_until_idle(timeout=60)
    assert delete_outputs(world) >= USABLE  # nothing paid for is left to keep (kept outputs: tests/faults)
    fresh = restart_bedrock(world)  # no workdir: every earlier job is unknown to it

    driver = SensorDriver(world.instance)
    driver.tick()
    [result] = driver.results
    ingest = materialization_metadata(result, ["marengo", "embeddings"])
    assert (ingest["jobs_lost"], ingest["objects_embedded"], ingest["objects_failed"]) == (USABLE, 0, 0)
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    assert set(jobs["status"]) == {"lost"}
    assert jobs["reason"].str.contains("no longer knows invocation arn:aws:bedrock:").all()
    assert jobs["reason"].str.contains("ValidationException").all()

    again = submit(world, max_attempts=1)  # lost is not a billed failure: max_attempts=1 still allows it
    assert (again["submitted"], again["resubmitted_after_lost"], again["out_of_attempts"]) == (
        USABLE,
        USABLE,
        0,
    )
    assert fresh.created_invocations == USABLE
    ingest_when_idle(world)
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    assert sorted(jobs["status"].value_counts().items()) == [("completed", USABLE), ("lost", USABLE)]
    [top] = search_json("yellow triangle", top_k=1)
    assert top["media_uri"] == "s3://media/videos/shapes_a.mp4"


def test_a_restart_over_a_kept_workdir_loses_no_job(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("bedrock-state")
    restart_bedrock(world, workdir=workdir, latency_sec=60)
    assert submit(world)["submitted"] == USABLE
    assert world.stack.bedrock.in_progress() == USABLE
    restarted = restart_bedrock(world, workdir=workdir)  # carries on with the jobs it kept

    driver = ingest_when_idle(world)
    ingest = materialization_metadata(driver.results[0], ["marengo", "embeddings"])
    assert (ingest["objects_embedded"], ingest["jobs_lost"]) == (USABLE, 0)
    assert restarted.created_invocations == USABLE, "nothing was submitted twice"
    assert SubmissionLedger(world.lake, None).in_progress().empty


def test_zero_segments_is_no_content_through_ingest_and_index(world: World) -> None:
    assert submit(world)["submitted"] == USABLE
    world.stack.bedrock.wait_until_idle(timeout=60)
    arns = open_arns(world)
    world.stack.bedrock.replace_output(arns["s3://media/videos/shapes_b.mp4"], b'{"data": []}')
    driver = SensorDriver(world.instance)
    driver.tick()
    ingest = materialization_metadata(driver.results[0], ["marengo", "embeddings"])
    index = materialization_metadata(driver.results[0], ["search", "marengo_segments"])
    assert (ingest["objects_embedded"], ingest["objects_without_content"]) == (USABLE - 1, 1)
    assert index["objects_indexed"] == USABLE - 1
    assert all(ingest_checks(driver.results[0]).values()), ingest_checks(driver.results[0])
    rows = index["dagster/row_count"]

    # The green triangle becomes a purple circle, whose new job finds nothing: its old segments go.
    purple = world.sample("images/purple_circle.jpg")
    world.stack.s3.client().put_object(Bucket="media", Key="images/green_triangle.png", Body=purple.data)
    assert submit(world)["submitted"] == 1
    world.stack.bedrock.wait_until_idle(timeout=60)
    world.stack.bedrock.replace_output(
        open_arns(world)["s3://media/images/green_triangle.png"], b'{"data": []}'
    )
    driver = SensorDriver(world.instance)
    driver.tick()
    index = materialization_metadata(driver.results[0], ["search", "marengo_segments"])
    assert (index["objects_removed"], index["dagster/row_count"]) == (1, rows - 1)
    assert all(ingest_checks(driver.results[0]).values()), ingest_checks(driver.results[0])

    later = run_job(world.instance, "ingest_marengo_embeddings", MARENGO_3_0.key)  # used to crash
    assert materialization_metadata(later, ["search", "marengo_segments"])["objects_updated"] == 0
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    assert (jobs["status"] == "no_content").sum() == 2 and submit(world)["submitted"] == 0
    assert all(
        h["media_uri"] != "s3://media/images/green_triangle.png" for h in search_json("green triangle", 3)
    )


def undecodable_frames(video: bytes) -> bytes:
    """The same MP4 with its frame data zeroed: the header (duration, size) reads fine, no frame decodes."""
    at = video.index(b"mdat")
    size = struct.unpack(">I", video[at - 4 : at])[0]
    return video[: at + 4] + bytes(size - 8) + video[at - 4 + size :]


def test_bad_objects_at_the_top_of_the_listing_never_stop_good_ones(world: World) -> None:
    broken = undecodable_frames(world.sample("videos/shapes_a.mp4").data)
    bad = [f"a0/broken_{i}.mp4" for i in range(3)]  # listed before audio/, images/, videos/
    for key in bad:
        world.stack.s3.client().put_object(Bucket="media", Key=key, Body=broken)
    result = run_job(world.instance, "embed_new_media", MARENGO_3_0.key)
    meta = materialization_metadata(result, ["marengo", "invocations"])
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (USABLE, 3, 0)
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "provider_accepts_requests"]
    assert check.passed
    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key).set_index("media_uri")
    for key in bad:
        uri = f"s3://media/{key}"
        assert jobs.loc[uri, "status"] == "rejected"
        assert jobs.loc[uri, "reason"].startswith(f"ValidationException: Unable to read media at {uri}")


def test_access_denied_is_a_set_up_refusal_that_stops_submitting(world: World) -> None:
    denied = ServiceError(
        "AccessDeniedException", 403, "You don't have access to the model with the specified model ID."
    )
    world.stack.bedrock.operation_errors["StartAsyncInvoke"] = denied
    result = run_job(world.instance, "embed_new_media", MARENGO_3_0.key)
    meta = materialization_metadata(result, ["marengo", "invocations"])
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (0, 3, USABLE - 3)
    assert meta["deferred_reason"].startswith("stopped: every request refused with the same reason: Access")
    assert meta["stop"] == "setup_refused", "the sensor waits for a person"
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "provider_accepts_requests"]
    assert not check.passed


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        ({"AKIDSOMEONEELSE": "whatever"}, "UnrecognizedClientException"),  # the key is not the account's
        ({"test": "rotated-secret"}, "InvalidSignatureException"),  # the secret was rotated
    ],
    ids=["unknown key", "wrong secret"],
)
def test_credentials_aws_refuses_are_a_set_up_refusal_not_a_retry_storm(
    world: World, credentials: dict[str, str], code: str
) -> None:
    """Real AWS answers these 403s before any operation (they are not in the bedrock-runtime model; botocore
    maps them by `x-amzn-ErrorType` and retries none): the run stops submitting after the same refusal a few
    times, with one line naming it, and fails its check."""
    world.stack.bedrock.credentials = credentials
    result = run_job(world.instance, "embed_new_media", MARENGO_3_0.key)
    meta = materialization_metadata(result, ["marengo", "invocations"])
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (0, 3, USABLE - 3)
    reason = meta["deferred_reason"]
    assert reason.startswith(f"stopped: every request refused with the same reason: {code}: ")
    assert meta["stop"] == "setup_refused"
    assert "\n" not in reason
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "provider_accepts_requests"]
    assert not check.passed
    assert world.stack.bedrock.calls.get("StartAsyncInvoke") == 3, "one request per object tried, no retries"
    assert world.stack.bedrock.created_invocations == 0
