"""Marengo model versions as data.

Everything that differs between Marengo versions (ids, vector size, request shape, limits, prices) lives in
one record, so a new version is a new entry here rather than a code path. 2.7 and 3.0 vectors live in
different spaces: the `key` is what separates their tables, indexes and partitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Modality = Literal["video", "audio", "image"]
RequestStyle = Literal["flat", "nested"]


@dataclass(frozen=True)
class MarengoModel:
    key: str
    version: str
    base_model_id: str
    dimension: int
    request_style: RequestStyle
    profile_geos: tuple[str, ...]
    video_embedding_options: tuple[str, ...]
    audio_embedding_options: tuple[str, ...]
    sync_base_id_regions: tuple[str, ...]
    max_media_bytes: int
    max_media_seconds: float
    max_image_bytes: int
    # Text queries: the documented token limit, and whether longer text is cut at the end (2.7's
    # `textTruncate: end`, its default) rather than refused (3.0).
    max_text_tokens: int
    truncates_long_text: bool
    # USD, from public price tables; the Bedrock pricing page is authoritative.
    usd_per_video_second: float
    usd_per_audio_second: float
    usd_per_image: float

    def sync_model_id(self, region: str) -> str:
        """InvokeModel takes a geographic inference profile (or, where offered, the base id);
        StartAsyncInvoke takes the base id."""
        geo = {"us": "us", "eu": "eu", "ap": "apac"}.get(region.split("-", 1)[0])
        if geo is None or geo not in self.profile_geos:
            if region in self.sync_base_id_regions:
                return self.base_model_id
            raise ValueError(
                f"Marengo {self.version} has no inference profile for region {region!r} "
                f"(profiles: {', '.join(self.profile_geos)})"
            )
        return f"{geo}.{self.base_model_id}"

    def embedding_options(self, modality: Modality) -> tuple[str, ...]:
        return {"video": self.video_embedding_options, "audio": self.audio_embedding_options}.get(
            modality, ()
        )

    def estimated_cost_usd(self, modality: Modality, media_seconds: float | None) -> float:
        if modality == "image":
            return self.usd_per_image
        rate = self.usd_per_video_second if modality == "video" else self.usd_per_audio_second
        return rate * (media_seconds or 0.0)

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


GB = 1024**3
MB = 1024**2

MARENGO_2_7 = MarengoModel(
    key="marengo-2.7",
    version="2.7",
    base_model_id="twelvelabs.marengo-embed-2-7-v1:0",
    dimension=1024,
    request_style="flat",
    profile_geos=("us", "eu", "apac"),
    video_embedding_options=("visual-text", "visual-image", "audio"),
    audio_embedding_options=(),
    sync_base_id_regions=(),
    max_media_bytes=2 * GB,
    max_media_seconds=2 * 3600,
    max_image_bytes=5 * MB,
    max_text_tokens=77,
    truncates_long_text=True,
    usd_per_video_second=0.0007,
    usd_per_audio_second=0.00014,
    usd_per_image=0.0001,
)

MARENGO_3_0 = MarengoModel(
    key="marengo-3.0",
    version="3.0",
    base_model_id="twelvelabs.marengo-embed-3-0-v1:0",
    dimension=512,
    request_style="nested",
    profile_geos=("us", "eu"),
    video_embedding_options=("visual", "audio", "transcription"),
    audio_embedding_options=("audio", "transcription"),
    sync_base_id_regions=("us-east-1", "ap-northeast-2"),
    max_media_bytes=6 * GB,
    max_media_seconds=4 * 3600,
    max_image_bytes=5 * MB,
    max_text_tokens=500,
    truncates_long_text=False,
    usd_per_video_second=0.0007,
    usd_per_audio_second=0.00014,
    usd_per_image=0.0001,
)

MARENGO_MODELS: dict[str, MarengoModel] = {m.key: m for m in (MARENGO_2_7, MARENGO_3_0)}
SERVING_MODEL_KEY = MARENGO_3_0.key


def marengo_model(key: str) -> MarengoModel:
    try:
        return MARENGO_MODELS[key]
    except KeyError:
        raise ValueError(f"unknown Marengo model {key!r}; known: {', '.join(MARENGO_MODELS)}") from None
