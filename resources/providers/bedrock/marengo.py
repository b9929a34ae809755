"""Marengo served by Amazon Bedrock: StartAsyncInvoke for media, InvokeModel for queries."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, PrivateAttr

from resources.providers.base import MarengoProvider
from resources.providers.bedrock.client import embed_text, runtime_client
from resources.providers.bedrock.marengo_bodies import async_model_input, parse_output
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    InvocationState,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.errors import (
    ListingIncomplete,
    MarengoOutputError,
    PermanentError,
    ProviderError,
    RetryableError,
    SetupError,
)
from resources.providers.marengo_models import MarengoModel
from resources.providers.model_routes import ProviderName
from resources.providers.outputs import read_output_json
from resources.storage.s3_objects import bucket_region
from resources.storage.s3_storage import S3Storage, S3Uri

# Errors the SDK never retries and a retry of ours cannot fix now: the request or the set-up is wrong.
# ConflictException (a token reused with a different request) is neither: it raises and fails the run.
PERMANENT_ERRORS = {
    "ValidationException",
    "ResourceNotFoundException",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",  # a wrong secret (or clock, or region scope): every request alike
}
# A ValidationException is about the object (unreadable media, a missing key) unless, with the object's URI
# masked, it speaks of the set-up: then every object would be refused alike.
SETUP_HINTS = (
    "region",
    "output",
    "access denied",
    "accessdenied",
    "not authorized",
    "permission",
    "model identifier",
    "model id",
    "not enabled",
    "throughput",
    "kms",
)
# The service is busy or the in-flight quota is full: leave the job for a later run.
BUSY_ERRORS = {
    "ServiceQuotaExceededException",
    "ThrottlingException",
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelNotReadyException",
}
STATES: dict[str, InvocationState] = {
    "InProgress": "in_progress",
    "Completed": "completed",
    "Failed": "failed",
}
# Our clock and Bedrock's may disagree: the thorough check lists running jobs this far back from our
# submit times. The cheap listing of finished jobs allows only QUICK_MARGIN (our submit time is taken
# before the request, so only a clock of ours running ahead of Bedrock's can hide a job from it; NTP keeps
# that to milliseconds), and the thorough check finds what it misses.
CLOCK_SKEW = timedelta(minutes=5)
QUICK_MARGIN = timedelta(seconds=0.5)
# "On-demand InvokeModel async concurrent requests for TwelveLabs Marengo Embed 3.0" (Service Quotas code
# L-BC3096B9) and its 2.7 counterpart: per account and region; raise them in Service Quotas and set
# MEDIAEMBED_QUOTAS to match.
DEFAULT_ASYNC_QUOTA = 30
# Open jobs missing from every listing are looked up with GetAsyncInvoke, at most this many a call.
SWEEP_LIMIT = 100
# GetAsyncInvoke has no not-found error in its model (an unknown ARN is a ValidationException, see
# operations below); ResourceNotFoundException is accepted too, should Bedrock ever send it.
NOT_FOUND_ERRORS = {"ResourceNotFoundException", "NotFoundException"}
# Where Bedrock offers Marengo: a region worth suggesting to someone whose buckets are there.
MARENGO_REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-2")
INVOCATION_ARN = re.compile(
    r"arn:aws(-[^:]+)?:bedrock:(?P<region>[a-z0-9-]{1,20}):[0-9]{12}:async-invoke/[a-z0-9]{12}"
)


def refusal_is_object_specific(code: str, message: str, media_uri: str) -> bool:
    """Whether a permanent refusal is about this object (so it says nothing about the next one).

    Only validation errors can be; access, an unknown or disabled model and wrong regions refuse every
    object alike, and so does a validation error that, with the object's URI masked, names the set-up.
    """
    if code != "ValidationException":
        return False
    masked = message.replace(media_uri, "<media>").lower()
    return not any(hint in masked for hint in SETUP_HINTS)


def provider_error(code: str, message: str, media_uri: str) -> ProviderError | None:
    """The neutral error for a botocore error code, or None for a code that fits none (it is raised)."""
    reason = f"{code}: {message}"
    if code in PERMANENT_ERRORS:
        if refusal_is_object_specific(code, message, media_uri):
            return PermanentError(reason)
        return SetupError(reason)
    if code in BUSY_ERRORS:
        return RetryableError(reason)
    return None


def invocation_not_found(code: str, arn: str, region: str) -> bool:
    """Whether a GetAsyncInvoke error means the provider does not know this invocation.

    Asked only for ARNs Bedrock itself returned and that no listing since their submission showed. A
    ValidationException then means "not found" when the ARN is well formed and in our own region; in
    another region (the configuration changed) the job may well exist, so it is not declared lost.
    """
    if code in NOT_FOUND_ERRORS:
        return True
    match = INVOCATION_ARN.fullmatch(arn)
    return code == "ValidationException" and match is not None and match.group("region") == region


class BedrockMarengo(MarengoProvider):
    """Marengo on Amazon Bedrock. Async results land under `output_s3_uri/<model key>/<invocation id>/`."""

    region_name: str = Field(description="AWS region of the model; the S3 buckets must be in it too.")
    output_s3_uri: str = Field(description="s3:// prefix where Bedrock writes async invocation results.")
    endpoint_url: str | None = Field(
        default=None, description="bedrock-runtime endpoint override (else AWS_ENDPOINT_URL_BEDROCK_RUNTIME)."
    )
    bucket_owner: str | None = Field(default=None, description="Account id that owns the media bucket.")
    retry_mode: Literal["standard", "adaptive", "legacy"] = Field(default="standard")
    max_attempts: int = Field(default=5, description="botocore attempts per call, including the first.")
    storage: S3Storage
    _client: Any = PrivateAttr(default=None)
    _bucket_regions: dict[str, str | None] = PrivateAttr(default_factory=dict)

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock"

    def default_quota(self, model: MarengoModel) -> int:
        return DEFAULT_ASYNC_QUOTA

    def client(self) -> Any:
        """One bedrock-runtime client per resource instance, with botocore's own retry modes."""
        if self._client is None:
            self._client = runtime_client(
                self.region_name, self.endpoint_url, self.retry_mode, self.max_attempts
            )
        return self._client

    def preflight(self) -> None:
        """botocore's errors go up as they are: callers explain them with the endpoint and the bucket. An
        output bucket outside the model's region is a SetupError: Bedrock would refuse every job."""
        self.client().list_async_invokes(maxResults=1)
        problem = self.setup_problem()
        if problem is not None:
            raise SetupError(problem)

    def bucket_region(self, bucket: str) -> str | None:
        """The region `bucket` is in (GetBucketLocation), asked once per bucket for this resource's life.

        None when S3 will not say (no s3:GetBucketLocation permission, say): nothing is refused up front
        then, and Bedrock's own answer to the request decides."""
        if bucket not in self._bucket_regions:
            region: str | None
            try:
                region = bucket_region(self.storage.get_client(), bucket)
            except (ClientError, BotoCoreError):
                region = None
            self._bucket_regions[bucket] = region
        return self._bucket_regions[bucket]

    @staticmethod
    def _region_hint(region: str) -> str:
        """Moving the whole set-up to the bucket's region is an answer only where Marengo is offered."""
        if region in MARENGO_REGIONS:
            return f", or set AWS_REGION to {region} (Bedrock offers Marengo there too)"
        return ""

    def setup_problem(self) -> str | None:
        """Bedrock writes async results only to a bucket in the model's region: any other refuses every
        job, so it is found before the first request."""
        bucket = S3Uri.parse(self.output_s3_uri).bucket
        region = self.bucket_region(bucket)
        if region is None or region == self.region_name:
            return None
        return (
            f"the async output bucket {bucket} is in {region}, but Marengo runs in {self.region_name} and "
            f"Bedrock writes only to buckets in the model's region: point MEDIAEMBED_ASYNC_OUTPUT_URI at a "
            f"bucket in {self.region_name}{self._region_hint(region)}"
        )

    def unusable_buckets(self, buckets: Collection[str]) -> dict[str, str]:
        """Bedrock reads media only from buckets in the model's region; objects elsewhere are skipped."""
        refused: dict[str, str] = {}
        for bucket in buckets:
            region = self.bucket_region(bucket)
            if region is not None and region != self.region_name:
                refused[bucket] = (
                    f"media bucket {bucket} is in {region}, but Marengo runs in {self.region_name} and "
                    f"Bedrock reads only buckets in the model's region: move or replicate the objects to a "
                    f"bucket in {self.region_name}{self._region_hint(region)}"
                )
        return refused

    def submit(self, job: EmbeddingJob) -> Submission:
        output = S3Uri.parse(self.output_s3_uri).join(job.model.key)
        model_route = self.route(job.model)
        # Before the request: Bedrock's submit time is later, so listings from our time never miss the job.
        submitted_at = datetime.now(UTC)
        try:
            response = self.client().start_async_invoke(
                clientRequestToken=job.client_token,
                modelId=model_route.model_id,
                modelInput=async_model_input(
                    model_route, job.modality, job.media_uri, job.options, self.bucket_owner
                ),
                outputDataConfig={"s3OutputDataConfig": {"s3Uri": str(output)}},
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            refusal = provider_error(code, message, job.media_uri)
            if refusal is None:
                raise
            raise refusal from error
        arn = response["invocationArn"]
        return Submission(
            job=job,
            invocation_id=arn,
            output_uri=str(output.join(arn.rsplit("/", 1)[-1])),
            submitted_at=submitted_at,
        )

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        """Raises ListingIncomplete, with what it read, when Bedrock keeps refusing a call (throttled)."""
        if not open_jobs:
            return []
        # Running jobs first: one that finishes between the two listings is then in both, never in none.
        try:
            running = {
                status.client_token
                for status in self._list(submitted_after - CLOCK_SKEW, "InProgress")
                if status.client_token in open_jobs
            }
        except ListingIncomplete as cut:
            # Without the running jobs nobody is known to be unseen: list the finished ones, sweep nothing.
            raise ListingIncomplete(cut.reason, self._finished_so_far(open_jobs, submitted_after)) from cut
        # Cut short, this raises with what it read: without every finished job nobody is known unseen.
        found = self.newly_finished(open_jobs, submitted_after)
        finished = {status.client_token: status for status in found}
        # Open in our ledger but in no listing: our submit time was off (clock skew, or a token replayed
        # after a crash answered with an older invocation), or Bedrock no longer knows the job. Ask for
        # those by ARN, a bounded number a call; what cannot be asked is reported, never skipped.
        unseen = [(t, arn) for t, arn in open_jobs.items() if t not in running and t not in finished]
        for token, arn in unseen[:SWEEP_LIMIT]:
            status = self._look_up(token, arn)
            if status is None:  # throttled: the rest waits for the next sweep, none is counted unreadable
                done = [s for s in finished.values() if s.state != "in_progress"]
                raise ListingIncomplete(f"GetAsyncInvoke throttled after {len(finished)} found", done)
            finished[token] = status
        return [s for s in finished.values() if s.state != "in_progress"]

    def _finished_so_far(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        try:
            return self.newly_finished(open_jobs, submitted_after)
        except ListingIncomplete as cut:
            return cut.found

    def newly_finished(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        """Raises ListingIncomplete, with what it read, when Bedrock keeps refusing a page (throttled)."""
        if not open_jobs:
            return []
        since = submitted_after - QUICK_MARGIN
        found: list[InvocationStatus] = []
        try:
            for state in ("Completed", "Failed"):
                found += [s for s in self._list(since, state) if s.client_token in open_jobs]
        except ListingIncomplete as cut:
            raise ListingIncomplete(cut.reason, found) from cut
        return found

    def _look_up(self, token: str, arn: str) -> InvocationStatus | None:
        """The job's status by ARN; None when Bedrock is too busy to say (nothing learnt, nothing counted)."""
        try:
            return _status(self.client().get_async_invoke(invocationArn=arn))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in BUSY_ERRORS:
                return None
            message = f"GetAsyncInvoke: {code}: {error.response.get('Error', {}).get('Message', '')}"
            state: InvocationState = (
                "lost" if invocation_not_found(code, arn, self.region_name) else "unknown"
            )
        except BotoCoreError as error:
            message, state = f"GetAsyncInvoke: {error}", "unknown"
        return InvocationStatus(arn, token, state, None, None, message, None)

    def _list(self, submitted_after: datetime, status: str) -> Iterator[InvocationStatus]:
        """Every page of one listing; a page Bedrock keeps refusing after botocore's retries (throttling,
        unavailable) ends it with ListingIncomplete (its `found` is filled in by the caller)."""
        paginator = self.client().get_paginator("list_async_invokes")
        pages = paginator.paginate(
            submitTimeAfter=submitted_after,
            statusEquals=status,
            sortBy="SubmissionTime",
            sortOrder="Ascending",
            PaginationConfig={"PageSize": 1000},
        )
        try:
            for page in pages:
                for summary in page.get("asyncInvokeSummaries", []):
                    yield _status(summary)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code not in BUSY_ERRORS:
                raise
            raise ListingIncomplete(f"ListAsyncInvokes ({status}): {code} after retries", []) from error

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        if not invocation.output_uri:
            raise MarengoOutputError(f"invocation {invocation.invocation_id} has no output location")
        location = S3Uri.parse(invocation.output_uri).join("output.json")
        payload = read_output_json(self.storage, location, "the job completed")
        return parse_output(payload, job.model, job.modality)

    def fetch_lost_output(self, job: EmbeddingJob, output_uri: str | None) -> list[SegmentEmbedding] | None:
        """Bedrock writes `output.json` under the output location the submission recorded, at completion
        (one PUT: it is there whole or not at all), so a lost job that had completed left it there."""
        if not output_uri:
            return None
        location = S3Uri.parse(output_uri).join("output.json")
        try:
            payload = read_output_json(self.storage, location, "the job may have completed")
            return parse_output(payload, job.model, job.modality)
        except MarengoOutputError:  # not there, or not a usable output: nothing paid for to keep
            return None

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        """Raises QueryEmbeddingError with one actionable line (endpoint, credentials, model access)."""
        return embed_text(self.client(), self.route(model), self.region_name, text)


def _status(summary: dict[str, Any]) -> InvocationStatus:
    output = summary["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].rstrip("/")
    arn = summary["invocationArn"]
    return InvocationStatus(
        invocation_id=arn,
        client_token=summary.get("clientRequestToken"),
        state=STATES[summary["status"]],
        submitted_at=summary["submitTime"],
        ended_at=summary.get("endTime"),
        failure_message=summary.get("failureMessage"),
        output_uri=f"{output}/{arn.rsplit('/', 1)[-1]}",
    )
