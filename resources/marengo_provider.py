"""What the pipeline needs from whoever serves Marengo, whichever service that is.

Assets and sensors depend on this interface only; Bedrock (and later the TwelveLabs API) implement it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from datetime import datetime

import dagster as dg

from resources.embedding_jobs import EmbeddingJob, InvocationStatus, SegmentEmbedding, Submission
from resources.marengo_models import MarengoModel


class MarengoProvider(dg.ConfigurableResource):
    @property
    @abstractmethod
    def provider_name(self) -> str: ...

    @abstractmethod
    def submit(self, job: EmbeddingJob) -> Submission:
        """Start one asynchronous embedding job; raises SubmissionRefused when the provider declines."""

    @abstractmethod
    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        """Completed or failed invocations among `open_jobs` (client token -> invocation id).

        Found with a few listing calls; jobs a listing does not show at all are looked up one by one.
        """

    @abstractmethod
    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        """The embeddings a completed invocation produced.

        Raises MarengoOutputError when the output is there but unusable, OutputUnavailable when it cannot
        be read right now.
        """

    @abstractmethod
    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        """A query vector in the model's space, synchronously."""
