"""BedrockMarengo against the emulator: submit, find finished jobs, read their output, embed text."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from emulators.bedrock_runtime import ServiceError
from emulators.s3 import free_port
from pipelines.definitions import pipeline_resources
from resources.bedrock_marengo import BedrockMarengo
from resources.embedding_jobs import EmbeddingJob, EmbeddingOptions
from resources.marengo_models import MARENGO_3_0
from resources.provider_errors import MarengoOutputError, OutputUnavailable, ProviderError
from resources.s3_storage import S3Storage, S3Uri
from tests.pipeline.conftest import World

VIDEO = "s3://media/videos/shapes_a.mp4"


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
