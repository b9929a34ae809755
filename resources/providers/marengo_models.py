"""Marengo model versions as data: what a version is, whoever serves it.

A record holds the facts of the model itself (its space and vector size, the inputs and options it has, its
documented limits). How one provider reaches it (model id, request style, inference profiles, prices) is a
route (`resources/providers/model_routes.py`), and which provider serves which version is configuration. 2.7,
3.0 and 3.5 vectors live in different spaces: the `key` is what separates their tables, indexes and
partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Modality = Literal["video", "audio", "image"]


@dataclass(frozen=True)
class MarengoModel:
    key: str
    version: str
    # What job keys hash to name the model. For 2.7 and 3.0 it is the Bedrock model id they were first
    # keyed by, kept so that no existing job changes key (and is billed again); it names the model's space,
    # not a provider: the same object embedded by either provider is the same job.
    job_identity: str
    dimension: int
    video_embedding_options: tuple[str, ...]
    audio_embedding_options: tuple[str, ...]
    max_media_bytes: int
    max_media_seconds: float
    max_image_bytes: int
    # Text queries: the documented token limit, and whether longer text is cut at the end (2.7's
    # `textTruncate: end`, its default) rather than refused (3.0).
    max_text_tokens: int
    truncates_long_text: bool

    def embedding_options(self, modality: Modality) -> tuple[str, ...]:
        return {"video": self.video_embedding_options, "audio": self.audio_embedding_options}.get(
            modality, ()
        )

    def limit_violation(self, modality: Modality, size_bytes: int, media_seconds: float | None) -> str | None:
        """Why this object cannot be sent to this model, or None when it is within the documented limits."""
        max_bytes = self.max_image_bytes if modality == "image" else self.max_media_bytes
        if size_bytes > max_bytes:
            return (
                f"{size_bytes} bytes exceeds Marengo {self.version}'s {modality} limit of {max_bytes} bytes"
            )
        if modality != "image" and media_seconds is not None and media_seconds > self.max_media_seconds:
            return (
                f"{media_seconds:.0f} s exceeds Marengo {self.version}'s limit of "
                f"{self.max_media_seconds:.0f} s"
            )
        return None


# The documented limits are in decimal units: botocore's model gives InvokeModel's "25 MB" body as
# 25,000,000 bytes, and AWS refuses a 5,000,001-byte image as over "5 MB".
GB = 10**9
MB = 10**6

MARENGO_2_7 = MarengoModel(
    key="marengo-2.7",
    version="2.7",
    job_identity="twelvelabs.marengo-embed-2-7-v1:0",
    dimension=1024,
    video_embedding_options=("visual-text", "visual-image", "audio"),
    audio_embedding_options=(),
    max_media_bytes=2 * GB,
    max_media_seconds=2 * 3600,
    max_image_bytes=5 * MB,
    max_text_tokens=77,
    truncates_long_text=True,
)

MARENGO_3_0 = MarengoModel(
    key="marengo-3.0",
    version="3.0",
    job_identity="twelvelabs.marengo-embed-3-0-v1:0",
    dimension=512,
    video_embedding_options=("visual", "audio", "transcription"),
    audio_embedding_options=("audio", "transcription"),
    max_media_bytes=6 * GB,
    max_media_seconds=4 * 3600,
    max_image_bytes=5 * MB,
    max_text_tokens=500,
    truncates_long_text=False,
)

# Matryoshka vectors: a shorter one is the start of the full 512-d one. The length is configuration, chosen
# once per process before any run (a process serves one length): pipelines/settings.py reads it and the
# binding places (the code location, the `mediaembed` command) hand it to `use_marengo_3_5_dimension`. It
# is part of the job identity, since vectors of two lengths cannot share a table or an index.
MARENGO_3_5_DIMENSION_ENV = "MEDIAEMBED_MARENGO_3_5_DIMENSION"
DEFAULT_MARENGO_3_5_DIMENSION = 512


def parse_matryoshka_dimension(text: str | None) -> int:
    """Marengo 3.5's vector length from the setting's text; unset or empty: 512."""
    text = (text or "").strip() or str(DEFAULT_MARENGO_3_5_DIMENSION)
    if not text.isdigit() or not 1 <= int(text) <= 512:
        raise ValueError(f"{MARENGO_3_5_DIMENSION_ENV}={text!r}: give a whole number from 1 to 512, as 256")
    return int(text)


def marengo_3_5(dimension: int) -> MarengoModel:
    """Marengo 3.5 with vectors of `dimension` (1-512)."""
    return MarengoModel(
        key="marengo-3.5",
        version="3.5",
        job_identity=f"marengo3.5@{dimension}",
        dimension=dimension,
        # "transcription ... Requires Marengo 3.0" (SDK 1.3.6): 3.5's audio embedding includes speech.
        video_embedding_options=("visual", "audio"),
        audio_embedding_options=("audio",),
        # The SDK defers 3.5's limits to its model page, which the reference does not capture: 3.0's apply.
        max_media_bytes=6 * GB,
        max_media_seconds=4 * 3600,
        max_image_bytes=5 * MB,
        max_text_tokens=2000,
        truncates_long_text=False,
    )


# At its default length; `marengo_model(MARENGO_3_5.key)` is the one the process is configured with.
MARENGO_3_5 = marengo_3_5(DEFAULT_MARENGO_3_5_DIMENSION)
MARENGO_MODELS: dict[str, MarengoModel] = {m.key: m for m in (MARENGO_2_7, MARENGO_3_0, MARENGO_3_5)}


def use_marengo_3_5_dimension(dimension: int) -> None:
    """Serve Marengo 3.5 with vectors of `dimension` in this process: what `marengo_model` and
    `MARENGO_MODELS` give from now on. Called by the binding places once, before anything runs."""
    dimension = parse_matryoshka_dimension(str(dimension))
    if MARENGO_MODELS[MARENGO_3_5.key].dimension != dimension:
        # Back at the default, the one MARENGO_3_5 again, not an equal copy: `is` comparisons hold.
        MARENGO_MODELS[MARENGO_3_5.key] = (
            MARENGO_3_5 if dimension == MARENGO_3_5.dimension else marengo_3_5(dimension)
        )


def marengo_model(key: str) -> MarengoModel:
    try:
        return MARENGO_MODELS[key]
    except KeyError:
        raise ValueError(f"unknown Marengo model {key!r}; known: {', '.join(MARENGO_MODELS)}") from None
