"""Provider-neutral vocabulary for asynchronous embedding work.

Bedrock and the TwelveLabs API name the same ideas differently; the pipeline speaks only these types, and
each provider translates at its edge.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from resources.providers.marengo_models import MarengoModel, Modality

# lost: the provider says it does not know the job (it was never run, or it forgot it).
# unknown: the provider could not be asked right now (access, throttling, outage); the job may still be fine.
InvocationState = Literal["in_progress", "completed", "failed", "lost", "unknown"]
# separate: one vector per embedding option (visual, audio, ...); fused: one vector combining the options.
# They live in one table, so this column keeps them apart; every row written before it existed is separate.
EmbeddingType = Literal["separate", "fused"]
# What a row written before the embedding_type column is: every vector was a separate one then.
LEGACY_EMBEDDING_TYPE: EmbeddingType = "separate"


# Options added after jobs were first keyed: absent (None) they are left out of `canonical()` and
# `applicable()`, so every job keyed before they existed keeps its key and its client token.
LATER_OPTIONS = ("start_sec", "end_sec")


@dataclass(frozen=True)
class EmbeddingOptions:
    """How media is cut and which embeddings are asked for; part of every job's identity."""

    segmentation: Literal["dynamic", "fixed"] = "dynamic"
    min_segment_sec: float = 4.0
    fixed_segment_sec: float = 6.0
    scopes: tuple[str, ...] = ("clip",)
    # The part of a video or audio file to embed, in seconds from its start (Bedrock's startSec, and
    # endSec or 2.7's lengthSec). None: from the start, to the end. Images have no such part.
    start_sec: float | None = None
    end_sec: float | None = None

    def __post_init__(self) -> None:
        start = self.start_sec
        if start is not None and not (math.isfinite(start) and start >= 0):
            raise ValueError(f"start_sec must be a number of seconds of at least 0, not {start}")
        if self.end_sec is not None and not (math.isfinite(self.end_sec) and self.end_sec > (start or 0)):
            raise ValueError(f"end_sec must be after start_sec ({start or 0:g} s), not {self.end_sec}")

    @property
    def span(self) -> tuple[float, float | None] | None:
        """(start, end or None) of the part to embed; None for the whole file, however it is spelled
        (no start, or a start of 0), so equal requests have equal keys and bodies."""
        start = self.start_sec or 0.0
        if start == 0 and self.end_sec is None:
            return None
        return start, self.end_sec

    def canonical(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if not (k in LATER_OPTIONS and v is None)}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    def applicable(self, modality: Modality) -> str:
        """Only the options that shape the request for this modality: changing the others must not
        re-embed (and re-bill) objects whose request would be the same."""
        if modality == "image":
            return "image"
        if self.segmentation == "fixed":
            cut = f"fixed:{self.fixed_segment_sec:g}"
        else:
            cut = f"dynamic:{self.min_segment_sec:g}" if modality == "video" else "service-default"
        shape = f"{modality}|{cut}|{','.join(self.scopes)}"
        if self.span is not None:
            start, end = self.span
            shape += f"|span:{start:g}-{'end' if end is None else f'{end:g}'}"
        return shape


def hashed_job_key(media_uri: str, etag: str, suffix: str) -> str:
    """The job key of an object, `suffix` being its job's `key_suffix()` (planning keys a whole inventory
    with one suffix per modality)."""
    return hashlib.sha256(f"{media_uri}|{etag}{suffix}".encode()).hexdigest()[:40]


@dataclass(frozen=True)
class EmbeddingJob:
    """One media object to embed with one model: the unit that is submitted, billed and ledgered.

    Its key names what is embedded (object, model, options), not who embeds it: a version switched to
    another provider does not re-embed what the first one did. Its client token names one attempt at one
    provider, so the ledger tells the providers' jobs apart by token alone.
    """

    media_uri: str
    etag: str
    modality: Modality
    model: MarengoModel
    options: EmbeddingOptions
    attempt: int = 1
    provider: str = "bedrock"

    @classmethod
    def from_record(cls, record: Mapping[Any, Any], model: MarengoModel, provider: str) -> EmbeddingJob:
        """The job a ledger record names (a submission or an intent: object, ETag, modality, canonical
        options, attempt), for `model` at `provider`: the same key and client token it was recorded with."""
        return cls(
            record["media_uri"],
            record["etag"],
            record["modality"],
            model,
            options_from_canonical(record["options"]),
            int(record["attempt"]),
            provider,
        )

    @property
    def job_key(self) -> str:
        """Same object content + model + effective options -> same key, whatever the run or the attempt."""
        return self.key_for(self.media_uri, self.etag)

    def key_for(self, media_uri: str, etag: str) -> str:
        """The job key of another object with this job's modality, model and options (planning uses it to
        key a whole inventory without a job per object)."""
        return hashed_job_key(media_uri, etag, self.key_suffix())

    def key_suffix(self) -> str:
        """What follows the object in the hashed key: `|<model's job identity>|<applicable options>`."""
        return f"|{self.model.job_identity}|{self.options.applicable(self.modality)}"

    @property
    def client_token(self) -> str:
        """Idempotency token: a replay of the same attempt can never start (and bill) a second job.
        Bedrock's tokens keep the form they had before there were two providers (its jobs' tokens must
        not change); the others name their provider."""
        suffix = "" if self.provider == "bedrock" else f"-{self.provider}"
        return f"me-{self.job_key}-a{self.attempt}{suffix}"


@dataclass(frozen=True)
class Submission:
    job: EmbeddingJob
    invocation_id: str
    output_uri: str | None
    submitted_at: datetime


@dataclass(frozen=True)
class InvocationStatus:
    """What the provider says about one job; `failure_message` also carries why a job is lost or unknown."""

    invocation_id: str
    client_token: str | None
    state: InvocationState
    submitted_at: datetime | None
    ended_at: datetime | None
    failure_message: str | None
    output_uri: str | None


@dataclass(frozen=True)
class SegmentEmbedding:
    """One vector for a span of a media object (or the whole object: scope 'asset', or an image).

    `vector` is float32 of the model's dimension, usually a row of the one matrix its response was parsed
    into, so a table of segments is built without touching each float in Python. A fused vector has no
    option (it is all of them): `embedding_type` says what it is.
    """

    embedding_option: str | None
    embedding_scope: str
    start_sec: float | None
    end_sec: float | None
    vector: npt.NDArray[np.float32]
    embedding_type: EmbeddingType = "separate"


def options_from_canonical(canonical: str) -> EmbeddingOptions:
    raw = json.loads(canonical)
    return EmbeddingOptions(**{**raw, "scopes": tuple(raw["scopes"])})
