"""One error family for every provider, so assets decide what to do without knowing who answered.

Each provider maps its own errors (botocore codes, `twelvelabs` SDK exceptions) onto these at its edge:

- retryable: throttled, quota full, unavailable. The job waits for a later run and is sent again with the
  same idempotency token (botocore's retry modes have already retried what they retry; they never retry
  `ServiceQuotaExceededException`, which lands here).
- permanent: this object cannot be embedded as asked (validation, too large, unsupported). It says nothing
  about the next object.
- setup: the set-up refuses every object alike (access denied, model not enabled, wrong region, a bad key).
- failed invocation: the provider accepted the job, ran it, and it failed.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from resources.providers.embedding_jobs import InvocationStatus

ErrorKind = Literal["retryable", "permanent", "setup", "failed"]


class ProviderError(Exception):
    """A provider refused or failed; `reason` is one line a person can act on."""

    kind: ClassVar[ErrorKind]

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def permanent(self) -> bool:
        """Retrying now cannot help."""
        return self.kind != "retryable"

    @property
    def object_specific(self) -> bool:
        """About this object only: the next object may well be accepted."""
        return self.kind == "permanent"


class RetryableError(ProviderError):
    kind = "retryable"


class ListingIncomplete(RetryableError):
    """A listing of job statuses the provider cut short (throttled, unavailable) after botocore's or the
    SDK's own retries. `found` holds the statuses read before it stopped: each is true, so callers act
    on them and leave the rest to the next listing; a throttled listing never fails a run or a tick."""

    def __init__(self, reason: str, found: list[InvocationStatus]) -> None:
        super().__init__(reason)
        self.found = found


class PermanentError(ProviderError):
    kind = "permanent"


class SetupError(ProviderError):
    kind = "setup"


class InvocationFailed(ProviderError):
    kind = "failed"


class MarengoOutputError(ValueError):
    """A Marengo response that does not hold the embeddings it should (the job counts as failed)."""


class OutputUnavailable(RuntimeError):
    """A finished job's output could not be read now (access, network, throttling): the job itself may be
    fine, so it must stay open and be read again rather than count as a failed, re-billed attempt."""


class QueryEmbeddingError(RuntimeError):
    """A query could not be embedded; the message is one line a person can act on."""
