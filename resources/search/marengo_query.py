"""A search query for Marengo, whatever it carries (text, images, a short audio clip), and its limits.

Pure: the facts a check needs (sizes, durations, bucket regions) are resolved beforehand at the I/O edge
(`resources/search/query_media.py`), so every documented limit is checked here, before any provider is called,
and the refusal names the limit. Which input type a query becomes follows from what it carries:
text alone is `text`, one image `image`, text and one image `text_image`, several images (or text naming
images by `<@name>`) `multi_input`, a clip `audio`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from resources.providers.marengo_models import MB
from resources.providers.model_routes import ModelRoute

QueryInputType = Literal["text", "image", "text_image", "multi_input", "audio"]
QueryMediaKind = Literal["image", "audio"]
TextTruncate = Literal["start", "end", "none"]

# Inline media (Bedrock `base64String`, TwelveLabs `base64_string`): at most 36 MB decoded.
MAX_BASE64_BYTES = 36 * MB
# TwelveLabs `multi_input`: at most 10 media sources.
MAX_MULTI_INPUT_IMAGES = 10
# Synchronous embedding of audio (a query is always synchronous): under 10 minutes.
MAX_SYNC_AUDIO_SEC = 600.0
PLACEHOLDER = re.compile(r"<@([A-Za-z0-9_-]+)>")

# What each route's synchronous embedding takes (Bedrock InvokeModel: 2.7 text and image, 3.0 also
# text_image; the TwelveLabs API: everything, 3.5 through `multi_input`; its legacy 2.7 call: text, image
# and audio).
QUERY_TYPES: dict[str, tuple[QueryInputType, ...]] = {
    "bedrock-flat": ("text", "image"),
    "bedrock-nested": ("text", "image", "text_image"),
    "twelvelabs-embed-v2": ("text", "image", "text_image", "multi_input", "audio"),
    "twelvelabs-embed-v1": ("text", "image", "audio"),
}


class QueryLimitError(ValueError):
    """A query the model cannot embed; `str()` is one line naming the limit."""


@dataclass(frozen=True)
class QueryMedia:
    """An image or audio clip of a query: an S3 object (sent by reference) or bytes (sent inline).

    `label` is how the person named it (a path or an s3:// URI); the facts are resolved before the check.
    """

    kind: QueryMediaKind
    label: str
    size_bytes: int
    s3_uri: str | None = None
    data: bytes | None = None
    duration_sec: float | None = None
    bucket_region: str | None = None
    name: str = ""

    @property
    def inline(self) -> bool:
        return self.s3_uri is None


@dataclass(frozen=True)
class MarengoQuery:
    text: str | None = None
    media: tuple[QueryMedia, ...] = field(default_factory=tuple)
    # Marengo 2.7 only: which end of a text over 77 tokens is dropped (`none`: refuse instead).
    text_truncate: TextTruncate | None = None

    @classmethod
    def of_text(cls, text: str) -> MarengoQuery:
        return cls(text=text)

    @property
    def images(self) -> tuple[QueryMedia, ...]:
        return tuple(m for m in self.media if m.kind == "image")

    @property
    def audio(self) -> tuple[QueryMedia, ...]:
        return tuple(m for m in self.media if m.kind == "audio")

    def named_media(self) -> tuple[QueryMedia, ...]:
        """The media with a name each (`image1`, `image2`, ... unless given), as `multi_input` refers to
        them by `<@name>`."""
        return tuple(m if m.name else replace(m, name=f"{m.kind}{i}") for i, m in enumerate(self.media, 1))

    def describe(self) -> str:
        parts = [f"text {self.text!r}"] if self.text else []
        parts += [f"{m.kind} {m.label}" for m in self.media]
        return " + ".join(parts) or "nothing"


def input_type(query: MarengoQuery) -> QueryInputType:
    """The input type the query is sent as (before any route's own spelling, e.g. 3.5's `multi_input`)."""
    text = (query.text or "").strip()
    images, audio = query.images, query.audio
    if audio:
        if len(audio) > 1 or images or text:
            raise QueryLimitError(
                "an audio query carries one clip and nothing else: give --audio alone, or search by text "
                "and images"
            )
        return "audio"
    if not images:
        if not text:
            raise QueryLimitError(
                'the query is empty: give the words to search for, e.g. mediaembed search "red circle", '
                "or --image PATH"
            )
        return "text"
    if len(images) > 1 or PLACEHOLDER.search(text):
        return "multi_input"
    return "text_image" if text else "image"


def query_token_bound(text: str) -> int:
    """An upper bound on the tokens Marengo's text encoder can make of `text`; never an underestimate.

    Neither provider publishes Marengo's tokenizer, so count the worst case: byte-level BPE (the CLIP and
    GPT family) and SentencePiece with byte fallback never emit more tokens than the UTF-8 bytes of the
    text, with each run of whitespace counted as one byte; add one start and one end marker. English words
    usually take a quarter of this, so the bound can flag a query the model would accept, never the reverse.
    """
    return len(" ".join(text.split()).encode("utf-8")) + 2


def check_query(query: MarengoQuery, route: ModelRoute, region: str | None = None) -> str | None:
    """Refuse a query the route's model cannot embed, naming the limit; a one-line notice when the model
    will cut it instead (2.7's `text_truncate` start or end).

    `region` is the model's region where the provider has the same-region rule (Bedrock reads S3 only in
    its own region); None where it has not (the TwelveLabs API reads presigned URLs from anywhere).
    """
    model = route.model
    kind = input_type(query)
    offered = QUERY_TYPES[route.request_style]
    if kind not in offered:
        other = "the TwelveLabs API (MEDIAEMBED_PROVIDERS=marengo-3.0=twelvelabs)"
        raise QueryLimitError(
            f"Marengo {model.version} on {route.provider} embeds {', '.join(offered)} queries, not "
            f"{kind}" + (f"; {kind} queries are served by {other}" if route.provider == "bedrock" else "")
        )
    if query.text_truncate is not None and model.version != "2.7":
        raise QueryLimitError(
            f"text truncation (start/end/none) is a Marengo 2.7 option; Marengo {model.version} refuses "
            "text over its limit instead: leave it out"
        )
    if kind == "multi_input" and len(query.images) > MAX_MULTI_INPUT_IMAGES:
        raise QueryLimitError(
            f"{len(query.images)} images exceed the multi-input limit of {MAX_MULTI_INPUT_IMAGES}: "
            "search with fewer images"
        )
    if kind == "multi_input":
        names = {m.name for m in query.named_media()}
        for placeholder in PLACEHOLDER.findall(query.text or ""):
            if placeholder not in names:
                raise QueryLimitError(
                    f"<@{placeholder}> in the text names no image; the images are named "
                    f"{', '.join(sorted(names))}"
                )
    for media in query.media:
        _check_media(media, route, region)
    return _check_text(query, route) if query.text and query.text.strip() else None


def _check_media(media: QueryMedia, route: ModelRoute, region: str | None) -> None:
    model = route.model
    if media.inline and media.size_bytes > MAX_BASE64_BYTES:
        raise QueryLimitError(
            f"{media.label}: {media.size_bytes} bytes exceed the {MAX_BASE64_BYTES // MB} MB limit of "
            "inline (base64) media: upload it to S3 and give its s3:// URI"
        )
    if media.kind == "image" and media.size_bytes > model.max_image_bytes:
        raise QueryLimitError(
            f"{media.label}: {media.size_bytes} bytes exceed Marengo {model.version}'s image limit of "
            f"{model.max_image_bytes // MB} MB: use a smaller image"
        )
    if media.kind == "audio":
        if media.duration_sec is None:
            raise QueryLimitError(f"{media.label}: its duration cannot be read; give a playable audio file")
        if media.duration_sec > MAX_SYNC_AUDIO_SEC:
            raise QueryLimitError(
                f"{media.label}: {media.duration_sec / 60:.1f} minutes of audio exceed the "
                f"{MAX_SYNC_AUDIO_SEC / 60:.0f}-minute limit of a synchronous embedding: search with a "
                "shorter clip"
            )
    if region is not None and media.s3_uri is not None and media.bucket_region not in (None, region):
        bucket = media.s3_uri[len("s3://") :].split("/", 1)[0]
        raise QueryLimitError(
            f"{media.label}: bucket {bucket} is in {media.bucket_region}, but Marengo on {route.provider} "
            f"runs in {region} and reads S3 only in its own region: copy the object to a bucket in "
            f"{region}, or give a local file"
        )


def _check_text(query: MarengoQuery, route: ModelRoute) -> str | None:
    model, text = route.model, query.text or ""
    bound = query_token_bound(text)
    if bound <= model.max_text_tokens:
        return None
    limit = f"Marengo {model.version}'s {model.max_text_tokens}-token text limit"
    counted = f"up to {bound} tokens, counting each UTF-8 byte as one"
    truncate = query.text_truncate or ("end" if model.truncates_long_text else "none")
    if truncate == "none":
        raise QueryLimitError(f"the query may exceed {limit} ({counted}): shorten it")
    kept = "first" if truncate == "end" else "last"
    parameter = "textTruncate" if route.provider == "bedrock" else "text_truncate"
    return (
        f"note: the query may exceed {limit} ({counted}); the model reads the {kept} "
        f"{model.max_text_tokens} tokens and ignores the rest ({parameter}={truncate})"
    )
