"""The JSON API's bodies and the OpenAPI document that describes them.

An answer is the hits exactly as `mediaembed search --json` prints them (one `hit_record` each, in rank
order) with the version that answered and the request as understood. An error is `{"error": "<one line>"}`,
the CLI's own message. The document is written here by hand (Starlette has no model layer to derive it
from); tests validate real answers and errors against it.
"""

from __future__ import annotations

from typing import Any

from mediaembed.search import BadQuery, SearchError, hit_record
from mediaembed.web.query import MAX_TOP_K, SearchAnswer, SearchRequest

API_VERSION = "1"


def search_body(request: SearchRequest, answer: SearchAnswer) -> dict[str, Any]:
    return {
        "version": answer.version,
        "query": {
            "q": request.text,
            "mode": request.mode,
            "top_k": request.top_k,
            "model": request.model,
            "uploads": [{"kind": u.kind, "filename": u.filename} for u in request.uploads],
        },
        "notice": answer.notice,
        "hits": [hit_record(rank, hit) for rank, hit in enumerate(answer.hits, 1)],
    }


def error_body(message: str) -> dict[str, str]:
    return {"error": " ".join(message.split())}


def status_of(error: SearchError) -> int:
    """400 for a request the caller can correct, 503 for a world not ready (no index, no provider)."""
    return 400 if isinstance(error, BadQuery) else 503


_NULLABLE_NUMBER = {"type": ["number", "null"]}
_NULLABLE_STRING = {"type": ["string", "null"]}
HIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "One hit, as one line of `mediaembed search --json`.",
    "additionalProperties": False,
    "required": [
        "rank",
        "media_uri",
        "start_sec",
        "end_sec",
        "score",
        "fused_score",
        "signal_scores",
        "model",
        "signals",
        "snippet",
        "embedding_option",
        "embedding_type",
        "embedding_scope",
    ],
    "properties": {
        "rank": {"type": "integer", "minimum": 1},
        "media_uri": {"type": "string"},
        "start_sec": _NULLABLE_NUMBER,
        "end_sec": _NULLABLE_NUMBER,
        "score": {"type": "number", "description": "the best raw score of the strongest signal"},
        "fused_score": {"type": "number", "description": "the reciprocal-rank-fusion score it is ranked by"},
        "signal_scores": {
            "type": "object",
            "additionalProperties": {"type": "number"},
            "description": "the best raw score per signal: cosine for visual/audio/transcription, "
            "the text index's score for chapter/description",
        },
        "model": {"type": "string"},
        "signals": {"type": "array", "items": {"type": "string"}},
        "snippet": _NULLABLE_STRING,
        "embedding_option": _NULLABLE_STRING,
        "embedding_type": _NULLABLE_STRING,
        "embedding_scope": _NULLABLE_STRING,
    },
}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "query", "notice", "hits"],
    "properties": {
        "version": {"type": "string", "description": "the Marengo version that answered"},
        "query": {
            "type": "object",
            "additionalProperties": False,
            "required": ["q", "mode", "top_k", "model", "uploads"],
            "properties": {
                "q": {"type": "string"},
                "mode": {"enum": ["vector", "text", "hybrid"]},
                "top_k": {"type": "integer"},
                "model": _NULLABLE_STRING,
                "uploads": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["kind", "filename"],
                        "properties": {"kind": {"enum": ["image", "audio"]}, "filename": {"type": "string"}},
                    },
                },
            },
        },
        "notice": _NULLABLE_STRING,
        "hits": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
    },
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one line that says what to do"}},
}

_PARAMETERS = [
    {"name": "q", "in": "query", "schema": {"type": "string"}, "description": "the words to search for"},
    {"name": "mode", "in": "query", "schema": {"enum": ["vector", "text", "hybrid"], "default": "vector"}},
    {
        "name": "top_k",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 10},
    },
    {
        "name": "model",
        "in": "query",
        "schema": {"type": "string"},
        "description": "a Marengo version (marengo-2.7, marengo-3.0, marengo-3.5); default: the serving one",
    },
]


def _responses() -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {
        "200": {
            "description": "the hits, best first",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Answer"}}},
        },
        "400": {"description": "a bad request (query, mode, top_k, model or upload)", **error},
        "401": {"description": "a missing or wrong bearer token (MEDIAEMBED_API_TOKEN)", **error},
        "503": {"description": "not ready: no index yet, a setting missing, a provider unreachable", **error},
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document served at /api/openapi.json."""
    form = {
        "type": "object",
        "properties": {
            "q": {"type": "string"},
            "mode": {"enum": ["vector", "text", "hybrid"]},
            "top_k": {"type": "integer"},
            "model": {"type": "string"},
            "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "audio": {"type": "string", "format": "binary"},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mediaembed search",
            "version": API_VERSION,
            "description": "Search indexed media by text, image or audio; the answer is "
            "`mediaembed search --json`'s hits with the version that answered.",
        },
        "components": {
            "schemas": {"Hit": HIT_SCHEMA, "Answer": ANSWER_SCHEMA, "Error": ERROR_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/api/search": {
                "get": {
                    "summary": "Search by text",
                    "operationId": "searchText",
                    "parameters": _PARAMETERS,
                    "responses": _responses(),
                },
                "post": {
                    "summary": "Search with an uploaded image or audio clip (and optional words)",
                    "operationId": "searchMedia",
                    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": form}}},
                    "responses": _responses(),
                },
            }
        },
    }
