"""What the pipeline needs from whoever serves Marengo, whichever service that is.

Assets and sensors depend on this interface only; Bedrock and the TwelveLabs API implement it. Failures
reach callers as the neutral family in `resources/providers/errors.py`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Mapping
from datetime import datetime

import dagster as dg
from pydantic import Field

from resources.providers.embedding_jobs import EmbeddingJob, InvocationStatus, SegmentEmbedding, Submission
from resources.providers.marengo_models import MARENGO_MODELS, MarengoModel
from resources.providers.model_routes import PRICES_ENV, ModelRoute, ProviderName, route

# Concurrent async jobs per model, "marengo-3.0=30,marengo-2.7=30": bound to `async_quotas` where set.
QUOTAS_ENV = "MEDIAEMBED_QUOTAS"


def parse_quotas(text: str, source: str = QUOTAS_ENV) -> dict[str, int]:
    """Model key -> concurrent jobs from "marengo-3.0=30,marengo-2.7=20"; a one-line error names the fault."""
    quotas: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, _, value = (s.strip() for s in part.partition("="))
        if key not in MARENGO_MODELS:
            known = ", ".join(MARENGO_MODELS)
            raise ValueError(f"{source}: unknown model {key!r} in {part!r}; known: {known}")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"{source}: {part!r} needs a whole number of jobs of at least 1, as {key}=30")
        quotas[key] = int(value)
    return quotas


class MarengoProvider(dg.ConfigurableResource):
    async_quotas: str | None = Field(
        default=None,
        description=(
            "How many async jobs the provider runs at once per model, e.g. 'marengo-3.0=30,marengo-2.7=30' "
            f"(your account's quota); bound from {QUOTAS_ENV} where it is set. A model it does not name, "
            "or unset or empty: the provider's documented default."
        ),
    )
    prices: str | None = Field(
        default=None,
        description=(
            "USD per media second or per image of this provider's routes over the published prices, e.g. "
            "'bedrock/marengo-3.0:video=0.0007,audio=0.00014,image=0.0001;"
            "twelvelabs/marengo-3.5:video=0.0005' (the cost estimates and the budget); bound from "
            f"{PRICES_ENV} where it is set. Unset or empty: the published prices."
        ),
    )

    @property
    @abstractmethod
    def provider_name(self) -> ProviderName: ...

    def route(self, model: MarengoModel) -> ModelRoute:
        """How this provider reaches `model` (its id, request style, prices)."""
        return route(self.provider_name, model.key, self.prices or "")

    def default_quota(self, model: MarengoModel) -> int:
        """Concurrent async jobs the provider accepts for `model` unless the account has asked for more."""
        return 30

    def max_in_flight(self, model: MarengoModel) -> int:
        """The quota of concurrent async jobs for `model`: what submission keeps full, and never exceeds."""
        quotas = parse_quotas(self.async_quotas or "", f"async_quotas ({QUOTAS_ENV})")
        return quotas.get(model.key, self.default_quota(model))

    @property
    def needs_intent(self) -> bool:
        """Whether submission runs must record an intent before each submit: a provider without an
        idempotency token cannot tell a retried create from a new one."""
        return False

    def find_submissions(
        self, intents: list[tuple[EmbeddingJob, datetime]], claimed: set[str]
    ) -> list[Submission]:
        """For providers that need intents: the jobs that runs created after recording these intents (job,
        when) but never recorded, skipping invocation ids in `claimed` (the ledger has them already)."""
        raise NotImplementedError(f"{self.provider_name} has idempotency tokens and records no intents")

    def preflight(self) -> None:
        """One cheap call that proves the endpoint, credentials and access work; raises a ProviderError
        (SetupError for what a person must fix) with one line that says what to do."""

    def setup_problem(self) -> str | None:
        """Why this provider would refuse every job, if that can be seen without submitting one (Bedrock:
        its output bucket outside the model's region); one line saying what to do, or None.

        Submission runs ask before submitting anything, so a wrong set-up costs no refused request."""
        return None

    def unusable_buckets(self, buckets: Collection[str]) -> dict[str, str]:
        """The media buckets among `buckets` whose objects this provider would refuse, each with one line
        saying why and what to do (Bedrock: a bucket outside the model's region). Their objects are
        skipped; the others go on."""
        return {}

    @abstractmethod
    def submit(self, job: EmbeddingJob) -> Submission:
        """Start one asynchronous embedding job; raises a ProviderError when the provider declines
        (RetryableError: wait and send it again with the same identity; PermanentError: this object;
        SetupError: every object)."""

    @abstractmethod
    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        """Completed or failed invocations among `open_jobs` (client token -> invocation id), thoroughly.

        `submitted_after` is the earliest submit time of `open_jobs` by our clock. Found with a few listing
        calls; jobs no listing shows (a provider clock ahead of ours, a replayed token, a job the provider
        lost) are looked up one by one, so every open job gets an answer.
        """

    def newly_finished(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        """Completed or failed invocations among `open_jobs`, cheaply: only finished jobs submitted since
        `submitted_after` are listed, about one status record per finished job.

        May miss a job whose provider-side submit time is earlier than ours says (clock skew, a token
        replayed after a crash) or that the provider lost; `finished_invocations` finds those, so callers
        run it now and then. By default the two are the same.
        """
        return self.finished_invocations(open_jobs, submitted_after)

    @abstractmethod
    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        """The embeddings a completed invocation produced.

        Raises MarengoOutputError when the output is there but unusable, OutputUnavailable when it cannot
        be read right now.
        """

    def fetch_lost_output(self, job: EmbeddingJob, output_uri: str | None) -> list[SegmentEmbedding] | None:
        """What a job the provider no longer knows left where the provider writes outputs, if it is there
        and parses; None when there is nothing usable (then, and only then, the job is resubmitted).

        A provider that lost its record of a job may still have written its output: that output was paid
        for, so it is ingested as the job's result instead of buying it again. Raises OutputUnavailable
        when it cannot be read right now. By default there is no such place: a provider whose results
        live only in its own records (the TwelveLabs API's tasks) has nothing left once it lost them."""
        return None

    @abstractmethod
    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        """A query vector in the model's space, synchronously."""
