"""BedrockMarengo against the emulator: submit, find finished jobs, read their output, embed text, and
refuse buckets outside the model's region before sending anything."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from assets_defs.inventory.media_inventory import (
    INVENTORY_SCHEMA,
    media_inventory,
    read_inventory,
)
from emulators.bedrock_runtime import ServiceError
from emulators.s3 import free_port
from harness.runner import materialization_metadata, run_job
from mediaembed.ingest_summary import summarize
from pipelines.definitions import pipeline_resources
from resources.providers.bedrock.marengo import BedrockMarengo
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions
from resources.providers.errors import (
    ListingIncomplete,
    MarengoOutputError,
    OutputUnavailable,
    ProviderError,
    SetupError,
)
from resources.providers.marengo_models import MARENGO_3_0
from resources.storage.s3_storage import S3Storage, S3Uri
from resources.tables.inventory_table import InventoryTable
from resources.tables.submission_ledger import SubmissionLedger
from tests.pipeline.conftest import World

VIDEO = "s3://media/videos/shapes_a.mp4"
USABLE = 7  # three videos, two audio files, two images (and a corrupt and an unsupported object)


@pytest.fixture
def provider(world: World) -> Iterator[BedrockMarengo]:
    with dg.build_resources({"marengo": pipeline_resources["marengo"]}) as built:
        yield built.marengo.named("bedrock")


def job(uri: str = VIDEO, etag: str = "e1") -> EmbeddingJob:
    return EmbeddingJob(uri, etag, "video", MARENGO_3_0, EmbeddingOptions())


def test_replayed_token_returns_the_same_invocation(provider: BedrockMarengo, world: World) -> None:
    first = provider.submit(job())
    again = provider.submit(job())
    assert again.invocation_id == first.invocation_id
    assert world.stack.bedrock.created_invocations == 1


def test_jobs_outside_the_listing_window_are_found_by_arn(provider: BedrockMarengo, world: World) -> None:
    submission = provider.submit(job())
    world.stack.bedrock.wait_until_idle(timeout=60)
    open_jobs = {submission.job.client_token: submission.invocation_id}
    listed = provider.finished_invocations(open_jobs, submitted_after=datetime.now(UTC) - timedelta(hours=1))
    # Our ledger thinks it was submitted in an hour (a fast clock, or a replay after a crash).
    swept = provider.finished_invocations(open_jobs, submitted_after=datetime.now(UTC) + timedelta(hours=1))
    assert [s.invocation_id for s in listed] == [s.invocation_id for s in swept] == [submission.invocation_id]
    assert swept[0].state == "completed" and swept[0].output_uri == submission.output_uri


def test_output_that_is_there_but_unusable_or_gone_is_final(provider: BedrockMarengo, world: World) -> None:
    submission = provider.submit(job())
    world.stack.bedrock.wait_until_idle(timeout=60)
    [status] = provider.finished_invocations(
        {submission.job.client_token: submission.invocation_id}, datetime.now(UTC)
    )
    assert len(provider.fetch_segments(status, submission.job)) == 6  # 3 scenes x visual + audio

    output = S3Uri.parse(submission.output_uri or "").join("output.json")
    s3 = world.stack.s3.client()
    for body, reason in [
        (b'{"data": [{"embedding": [1.0, 2.0]}]}', "2-d vector"),
        (b'{"data": [{"embedding": [1.0]}]}\xff\xfe', "is not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ]:
        world.stack.bedrock.replace_output(submission.invocation_id, body)
        with pytest.raises(MarengoOutputError, match=reason):
            provider.fetch_segments(status, submission.job)
    s3.delete_object(Bucket=output.bucket, Key=output.key)
    with pytest.raises(MarengoOutputError, match="gone \\(NoSuchKey\\) although the job completed"):
        provider.fetch_segments(status, submission.job)


def test_output_that_cannot_be_read_now_is_not_final(provider: BedrockMarengo, world: World) -> None:
    submission = provider.submit(job())
    world.stack.bedrock.wait_until_idle(timeout=60)
    [status] = provider.finished_invocations(
        {submission.job.client_token: submission.invocation_id}, datetime.now(UTC)
    )
    unreachable = S3Storage(
        region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}", max_attempts=1
    )
    offline = provider.model_copy(update={"storage": unreachable})
    with pytest.raises(OutputUnavailable, match="cannot read s3://lake/"):
        offline.fetch_segments(status, submission.job)


def test_a_job_the_provider_no_longer_knows_is_lost(provider: BedrockMarengo, world: World) -> None:
    kept, forgotten = provider.submit(job()), provider.submit(job(etag="e2"))
    world.stack.bedrock.wait_until_idle(timeout=60)
    world.stack.bedrock.forget(forgotten.invocation_id)
    open_jobs = {s.job.client_token: s.invocation_id for s in (kept, forgotten)}
    states = {s.invocation_id: s.state for s in provider.finished_invocations(open_jobs, datetime.now(UTC))}
    assert states == {kept.invocation_id: "completed", forgotten.invocation_id: "lost"}


def test_a_job_that_cannot_be_looked_up_is_reported_not_skipped(
    provider: BedrockMarengo, world: World
) -> None:
    submission = provider.submit(job())
    world.stack.bedrock.wait_until_idle(timeout=60)
    denied = ServiceError("AccessDeniedException", 403, "not authorized to perform bedrock:GetAsyncInvoke")
    world.stack.bedrock.operation_errors["GetAsyncInvoke"] = denied
    # Our ledger's submit time is ahead of Bedrock's: no listing shows it, so it is looked up by ARN.
    [status] = provider.finished_invocations(
        {submission.job.client_token: submission.invocation_id}, datetime.now(UTC) + timedelta(hours=1)
    )
    assert status.state == "unknown" and status.invocation_id == submission.invocation_id
    assert status.failure_message == (
        "GetAsyncInvoke: AccessDeniedException: not authorized to perform bedrock:GetAsyncInvoke"
    )


def test_refusals_say_whether_to_wait_or_give_up(provider: BedrockMarengo, world: World) -> None:
    with pytest.raises(ProviderError) as missing:
        provider.submit(job("s3://media/videos/not-there.mp4"))
    assert missing.value.permanent and "ValidationException" in missing.value.reason
    assert missing.value.object_specific, "a missing object says nothing about the next one"
    world.stack.bedrock.max_concurrent_invocations = 0
    with pytest.raises(ProviderError) as busy:
        provider.submit(job())
    assert not busy.value.permanent and "ServiceQuotaExceededException" in busy.value.reason


def test_query_vectors_are_in_the_model_space(provider: BedrockMarengo) -> None:
    vector = provider.embed_text("yellow triangle", MARENGO_3_0)
    assert len(vector) == MARENGO_3_0.dimension


# --- the same-region rule, checked before anything is submitted ------------------------------------------

FOREIGN_REGION = "eu-west-1"


def foreign_bucket(world: World, name: str, copy_media: bool = False) -> str:
    """A bucket in another region than the stack's (moto keeps the LocationConstraint), holding copies
    of the sample media when asked, so only the region can be why its objects are not embedded."""
    s3 = world.stack.s3.client()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": FOREIGN_REGION})
    for sample in world.samples if copy_media else []:
        s3.put_object(Bucket=name, Key=sample.key, Body=sample.data, ContentType=sample.content_type)
    return name


def inventory_of(world: World, monkeypatch: pytest.MonkeyPatch, uri: str) -> pd.DataFrame:
    monkeypatch.setenv("MEDIAEMBED_MEDIA_URI", uri)
    resources = {name: pipeline_resources[name] for name in ("media", "media_events", "lake")}
    assert dg.materialize([media_inventory], resources=resources, instance=world.instance).success
    return read_inventory(world.lake)


def test_preflight_refuses_an_output_bucket_in_another_region(provider: BedrockMarengo, world: World) -> None:
    bucket = foreign_bucket(world, "async-eu")
    elsewhere = provider.model_copy(update={"output_s3_uri": f"s3://{bucket}/marengo"})
    with pytest.raises(SetupError) as refused:
        elsewhere.preflight()
    line = refused.value.reason
    assert "\n" not in line and f"{bucket} is in {FOREIGN_REGION}" in line and "us-east-1" in line
    assert "MEDIAEMBED_ASYNC_OUTPUT_URI" in line
    provider.preflight()  # the stack's own output bucket is in the model's region


def test_an_output_bucket_in_another_region_stops_submitting_before_any_request(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = foreign_bucket(world, "async-eu")
    monkeypatch.setenv("MEDIAEMBED_ASYNC_OUTPUT_URI", f"s3://{bucket}/marengo")
    result = run_job(world.instance, "embed_new_media", MARENGO_3_0.key)
    meta = materialization_metadata(result, ["marengo", "invocations"])
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (0, 0, USABLE)
    assert f"stopped before submitting: the async output bucket {bucket} is in" in meta["deferred_reason"]
    assert meta["stop"] == "setup_refused", "refused before any request: waits for a person, not the quota"
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "provider_accepts_requests"]
    assert not check.passed
    assert world.stack.bedrock.calls.get("StartAsyncInvoke", 0) == 0, "nothing was sent to be refused"


def test_objects_of_a_media_bucket_in_another_region_are_skipped_and_the_others_go_on(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = foreign_bucket(world, "media-eu", copy_media=True)
    foreign = inventory_of(world, monkeypatch, f"s3://{bucket}/")
    local = inventory_of(world, monkeypatch, "s3://media/")
    both = pa.Table.from_pandas(pd.concat([foreign, local]), schema=INVENTORY_SCHEMA, preserve_index=False)
    InventoryTable(world.lake).replace_all(both)

    result = run_job(world.instance, "submit_marengo_invocations", MARENGO_3_0.key)
    meta = materialization_metadata(result, ["marengo", "invocations"])
    assert (meta["submitted"], meta["skipped_for_their_bucket"], meta["deferred"]) == (USABLE, USABLE, 0)
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "provider_accepts_requests"]
    assert check.passed, "a bucket the provider cannot read stops nothing else"
    sent = [inv.request.media.uri for inv in world.stack.bedrock.invocations.values() if inv.request.media]
    assert world.stack.bedrock.created_invocations == USABLE
    assert all(uri and uri.startswith("s3://media/") for uri in sent)

    jobs = SubmissionLedger(world.lake, None).jobs(MARENGO_3_0.key)
    skipped = jobs[jobs["media_uri"].str.startswith(f"s3://{bucket}/")]
    assert len(skipped) == USABLE and set(skipped["status"]) == {"rejected"}
    reason = f"media bucket {bucket} is in {FOREIGN_REGION}, but Marengo runs in us-east-1"
    assert skipped["reason"].str.startswith(reason).all()
    summary = summarize(f"s3://{bucket}/", read_inventory(world.lake), jobs, MARENGO_3_0, set())
    assert len(summary.skipped) == USABLE + 2  # its corrupt and unsupported objects, and the 7 it cannot read
    assert sum(reason in why for _, why in summary.skipped) == USABLE


def test_a_throttled_listing_never_raises_and_a_throttled_look_up_counts_no_read(
    provider: BedrockMarengo, world: World
) -> None:
    patient = provider.model_copy(update={"max_attempts": 1})  # botocore gives up at once: no waits
    done = patient.submit(job())
    world.stack.bedrock.wait_until_idle(timeout=60)
    open_jobs = {done.job.client_token: done.invocation_id}
    throttled = ServiceError(
        "ThrottlingException", 429, "Too many requests, please wait before trying again."
    )
    world.stack.bedrock.operation_errors["ListAsyncInvokes"] = throttled
    for listing in (patient.finished_invocations, patient.newly_finished):
        with pytest.raises(ListingIncomplete, match="ThrottlingException") as cut:
            listing(open_jobs, datetime.now(UTC))
        assert cut.value.found == [] and not cut.value.permanent
    del world.stack.bedrock.operation_errors["ListAsyncInvokes"]
    world.stack.bedrock.operation_errors["GetAsyncInvoke"] = throttled
    # Our submit time ahead of Bedrock's: only a look-up by ARN finds it, and that is throttled.
    with pytest.raises(ListingIncomplete, match="GetAsyncInvoke throttled") as swept:
        patient.finished_invocations(open_jobs, datetime.now(UTC) + timedelta(hours=1))
    assert swept.value.found == [], "no `unknown` status: a throttled look-up is no failed read"
