"""The routes of `mediaembed serve` over one long-lived `Searcher`:

- `GET /` the search page (q, mode, top_k, model); `POST /` the same with an image or audio file;
- `GET /api/search` and `POST /api/search` (multipart, with `image` and/or `audio` files): the JSON answer;
- `GET /api/openapi.json`: the API's OpenAPI document; `/static/`: the page's stylesheet and script.

A search blocks (the query embedding, the index read), so it runs on Starlette's thread pool and the event
loop keeps serving other requests and idle connections meanwhile. Errors are the CLI's one line: JSON
`{"error": ...}` with 400 (a bad request) or 503 (not ready) on the API, a line on the page.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp

from mediaembed.search import SEARCH_MODES, Searcher, SearchError
from mediaembed.web.api import error_body, openapi_document, search_body, status_of
from mediaembed.web.auth import BearerAuth
from mediaembed.web.guard import Guard, one_line
from mediaembed.web.hits import HitView, hit_view
from mediaembed.web.query import (
    UPLOAD_FIELDS,
    SearchAnswer,
    SearchRequest,
    Upload,
    parse_request,
    run_query,
)
from resources.search.marengo_query import MAX_BASE64_BYTES

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")  # autoescaped: select_autoescape() for .html
MAX_UPLOADS = 4
FORM_LIMITS = {"max_files": MAX_UPLOADS, "max_fields": 16, "max_part_size": 64 * 1024}


async def _uploads(form: Any) -> list[Upload]:
    """The non-empty files of the image and audio fields, each read up to one byte past the inline limit
    (enough for the query's check to refuse it by size)."""
    uploads = []
    for name, kind in UPLOAD_FIELDS.items():
        for item in form.getlist(name):
            if isinstance(item, UploadFile) and (item.filename or item.size):
                data = await item.read(MAX_BASE64_BYTES + 1)
                if item.filename or data:
                    uploads.append(Upload(kind, item.filename or "", data))
    return uploads


async def _search_request(request: Request) -> SearchRequest:
    """The request's parameters: the query string for GET, the form (and its files) for POST."""
    if request.method == "GET":
        return parse_request(dict(request.query_params))
    async with request.form(**FORM_LIMITS) as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        return parse_request(fields, await _uploads(form))


def _answer(searcher: Searcher, request: SearchRequest) -> tuple[SearchAnswer, list[HitView]]:
    """Blocking: the hits and the page's view of each (with its presigned media link)."""
    answer = run_query(searcher, request)
    return answer, [
        hit_view(rank, hit, _link(searcher, hit.media_uri)) for rank, hit in enumerate(answer.hits, 1)
    ]


def _link(searcher: Searcher, media_uri: str) -> str | None:
    try:
        return searcher.media_url(media_uri)
    except Exception:  # no player is better than no result: the span and scores still show
        return None


def create_app(searcher: Searcher, *, token: str = "", debug: bool = False) -> ASGIApp:
    """The ASGI application; `token` (MEDIAEMBED_API_TOKEN): every route but the static files and the
    OpenAPI document needs it as a bearer token."""

    async def api_search(request: Request) -> Response:
        try:
            parsed = await _search_request(request)
            answer = await run_in_threadpool(run_query, searcher, parsed)
        except SearchError as error:
            return JSONResponse(error_body(str(error)), status_code=status_of(error))
        return JSONResponse(search_body(parsed, answer))

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def page(request: Request) -> Response:
        context: dict[str, Any] = {"modes": SEARCH_MODES, "hits": [], "error": None, "answer": None}
        parsed = SearchRequest()
        status = 200
        try:
            parsed = await _search_request(request)
            if not parsed.empty:
                context["answer"], context["hits"] = await run_in_threadpool(_answer, searcher, parsed)
        except SearchError as error:
            context["error"], status = " ".join(str(error).split()), status_of(error)
        context["search"] = parsed
        return TEMPLATES.TemplateResponse(request, "search.html", context, status_code=status)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        message = _http_message(error, request.url.path)
        if request.url.path.startswith("/api/"):
            return JSONResponse(error_body(message), status_code=error.status_code, headers=error.headers)
        return PlainTextResponse(message + "\n", status_code=error.status_code, headers=error.headers)

    async def unexpected(request: Request, error: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse(error_body(one_line(error)), status_code=500)
        return PlainTextResponse(one_line(error) + "\n", status_code=500)

    middleware = [Middleware(BearerAuth, token=token)] if token else []
    app = Starlette(
        routes=[
            Route("/", page, methods=["GET", "POST"]),
            Route("/api/search", api_search, methods=["GET", "POST"]),
            Route("/api/openapi.json", openapi, methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error, Exception: unexpected},
    )
    return Guard(app, debug=debug)


def _http_message(error: HTTPException, path: str) -> str:
    messages: dict[int, Callable[[], str]] = {
        404: lambda: f"not found: {path}; the search page is at /, the API at /api/search",
        405: lambda: f"{path} does not take this method; see /api/openapi.json",
    }
    made = messages.get(error.status_code)
    return made() if made else " ".join(str(error.detail).split())
