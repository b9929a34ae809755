"""BedrockMarengo against the emulator: submit, find finished jobs, read their output, embed text."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from pipelines.definitions import pipeline_resources
from resources.bedrock_marengo import BedrockMarengo
from resources.bedrock_marengo_bodies import MarengoOutputError, OutputUnavailable
from resources.embedding_jobs import EmbeddingJob, EmbeddingOptions, SubmissionRefused
from resources.marengo_models import MARENGO_3_0
from resources.s3_storage import S3Uri
from tests.pipeline.conftest import World

VIDEO = "s3://media/videos/shapes_a.mp4"


@pytest.fixture
def provider(world: World) -> Iterator[BedrockMarengo]:
    with dg.build_resources({"marengo": pipeline_resources["marengo"]}) as built:
        yield built.marengo


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


def test_unreadable_output_is_not_a_failed_job(provider: BedrockMarengo, world: World) -> None:
    submission = provider.submit(job())
    world.stack.bedrock.wait_until_idle(timeout=60)
    [status] = provider.finished_invocations(
        {submission.job.client_token: submission.invocation_id}, datetime.now(UTC)
    )
    assert len(provider.fetch_segments(status, submission.job)) == 6  # 3 scenes x visual + audio

    output = S3Uri.parse(submission.output_uri or "").join("output.json")
    s3 = world.stack.s3.client()
    s3.put_object(Bucket=output.bucket, Key=output.key, Body=b'{"data": [{"embedding": [1.0, 2.0]}]}')
    with pytest.raises(MarengoOutputError, match="2-d vector"):
        provider.fetch_segments(status, submission.job)
    s3.delete_object(Bucket=output.bucket, Key=output.key)
    with pytest.raises(OutputUnavailable, match="NoSuchKey"):
        provider.fetch_segments(status, submission.job)


def test_refusals_say_whether_to_wait_or_give_up(provider: BedrockMarengo, world: World) -> None:
    with pytest.raises(SubmissionRefused) as missing:
        provider.submit(job("s3://media/videos/not-there.mp4"))
    assert missing.value.permanent and "ValidationException" in missing.value.reason
    world.stack.bedrock.max_concurrent_invocations = 0
    with pytest.raises(SubmissionRefused) as busy:
        provider.submit(job())
    assert not busy.value.permanent and "ServiceQuotaExceededException" in busy.value.reason


def test_query_vectors_are_in_the_model_space(provider: BedrockMarengo) -> None:
    vector = provider.embed_text("yellow triangle", MARENGO_3_0)
    assert len(vector) == MARENGO_3_0.dimension
