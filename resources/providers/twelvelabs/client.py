"""The TwelveLabs API client, its error mapping and the synchronous query embedding, free of Dagster.

`TwelveLabsMarengo` builds its client and maps errors through these functions; `mediaembed search` calls
the same ones without loading the code location.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from twelvelabs import TwelveLabs
from twelvelabs.core.api_error import ApiError

from resources.providers.errors import (
    MarengoOutputError,
    PermanentError,
    ProviderError,
    QueryEmbeddingError,
    RetryableError,
    SetupError,
)
from resources.providers.model_routes import ModelRoute
from resources.providers.twelvelabs.bodies import (
    legacy_query_request,
    no_media_url,
    parse_embedding_data,
    parse_legacy_embedding,
    plain_item,
    query_request,
    query_vector,
)
from resources.search.marengo_query import MarengoQuery, QueryLimitError, check_query

API_KEY_ENV = "TWELVELABS_API_KEY"
BASE_URL_ENV = "TWELVELABS_BASE_URL"
# Reads are retried by the SDK (429, 408, 409 and 5xx, honouring Retry-After); a task create never is:
# the API has no idempotency token, and the intent in the ledger recovers a create whose answer was lost.
# SDK 1.3.6 starts its retry counter at 2 (`retries: int = 2` in core/http_client.py), so `max_retries`
# must be the retries wanted plus 2: READ_RETRIES = 5 is three retries.
SDK_RETRY_OFFSET = 2
READ_RETRIES = 3 + SDK_RETRY_OFFSET


def api_client(api_key: str, base_url: str | None = None, timeout_sec: float = 60.0) -> TwelveLabs:
    """The SDK client; `base_url=None` follows TWELVELABS_BASE_URL, else the public API."""
    if not api_key:
        raise SetupError(f"no TwelveLabs API key: set {API_KEY_ENV}")
    kwargs: dict[str, Any] = {"api_key": api_key, "timeout": timeout_sec}
    if base_url:
        kwargs["base_url"] = base_url
    return TwelveLabs(**kwargs)


def api_message(error: ApiError) -> str:
    """The API's own message (`{"code", "message"}`), never the request (URLs carry signatures)."""
    body = error.body
    if isinstance(body, dict):
        code, message = body.get("code"), body.get("message")
        if message:
            return f"{code}: {message}" if code else str(message)
    return f"HTTP {error.status_code}"


def provider_error(error: ApiError, what: str = "the request") -> ProviderError:
    """The neutral error for an SDK ApiError, by HTTP status."""
    status = error.status_code or 0
    said = f"TwelveLabs refused {what} ({status} {api_message(error)})"
    if status in (401, 403):
        return SetupError(f"{said}: check {API_KEY_ENV} and the key's access")
    if status == 429 or status >= 500 or status in (408, 409):
        return RetryableError(said)
    return PermanentError(said)


def embed_text(client: TwelveLabs, route: ModelRoute, text: str) -> list[float]:
    return embed_query(client, route, MarengoQuery.of_text(text), no_media_url)


def embed_query(
    client: TwelveLabs, route: ModelRoute, query: MarengoQuery, url_for: Callable[[str], str]
) -> list[float]:
    """A query vector in the route's model space; every failure becomes a QueryEmbeddingError. The query's
    limits are checked before anything is sent; S3 media go by `url_for` (a presigned URL)."""
    try:
        check_query(query, route)
    except QueryLimitError as error:
        raise QueryEmbeddingError(str(error)) from None
    options: dict[str, Any] = {"max_retries": READ_RETRIES}
    try:
        if route.request_style == "twelvelabs-embed-v1":
            request = legacy_query_request(route, query, url_for)
            options.update(request.pop("request_options", {}))
            legacy = client.embed.create(**request, request_options=options)  # type: ignore[arg-type]
            return parse_legacy_embedding(legacy.dict(), route.model)
        response = client.embed.v_2.create(**query_request(route, query, url_for), request_options=options)  # type: ignore[arg-type]
    except ApiError as error:
        raise QueryEmbeddingError(provider_error(error, "the query").reason) from None
    except httpx.HTTPError as error:
        endpoint = client._client_wrapper.get_base_url()  # the SDK exposes no other way
        raise QueryEmbeddingError(
            f"cannot reach the TwelveLabs API at {endpoint} ({type(error).__name__}): check "
            f"{BASE_URL_ENV}, the network, or start the emulators (`mediaembed emulate`)"
        ) from None
    except MarengoOutputError as error:
        raise QueryEmbeddingError(f"TwelveLabs returned an unusable query embedding: {error}") from None
    data = [plain_item(item) for item in (response.data or [])]
    try:
        segments = parse_embedding_data(data, route.model)
    except MarengoOutputError as error:
        raise QueryEmbeddingError(f"TwelveLabs returned an unusable query embedding: {error}") from None
    if not segments:
        raise QueryEmbeddingError("TwelveLabs returned no embedding for the query")
    return query_vector(segments)
