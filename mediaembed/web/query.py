"""A search request of the page or the API (text, mode, top_k, model, uploads), parsed and checked, and run
on a `Searcher` the way `mediaembed search` runs it: one version for the whole query, uploads looked at and
checked before anything is sent. Pure except `run_query`, which blocks (callers put it on a thread)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mediaembed.search import (
    BadQuery,
    Searcher,
    check_mode,
    check_query,
    check_top_k,
    serving_model,
)
from resources.search.fusion import FusedHit
from resources.search.marengo_query import MarengoQuery, QueryLimitError, QueryMediaKind

DEFAULT_TOP_K = 10
MAX_TOP_K = 100
MORE_STEP = 10  # how many more hits the page's "more results" asks for
UPLOAD_FIELDS: dict[str, QueryMediaKind] = {"image": "image", "audio": "audio"}


@dataclass(frozen=True)
class Upload:
    """One uploaded query file: which field it came in (image or audio), its name and its bytes."""

    kind: QueryMediaKind
    filename: str
    data: bytes


@dataclass(frozen=True)
class SearchRequest:
    text: str = ""
    mode: str = "vector"
    top_k: int = DEFAULT_TOP_K
    model: str | None = None
    uploads: tuple[Upload, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        """Nothing to search for: the page shows its empty state, the API says what to give."""
        return not self.text.strip() and not self.uploads

    @property
    def more(self) -> int | None:
        """The top_k of the "more results" control, None at the limit."""
        return min(self.top_k + MORE_STEP, MAX_TOP_K) if self.top_k < MAX_TOP_K else None


@dataclass(frozen=True)
class SearchAnswer:
    version: str  # the Marengo version that answered (the serving one unless the request named another)
    hits: list[FusedHit]
    notice: str | None = None  # a one-line notice, as the CLI prints (Marengo 2.7's text truncation)


def parse_top_k(value: str | None) -> int:
    if value is None or not value.strip():
        return DEFAULT_TOP_K
    try:
        top_k = int(value)
    except ValueError:
        raise BadQuery(f"top_k must be a whole number from 1 to {MAX_TOP_K}, got {value!r}") from None
    check_top_k(top_k)
    if top_k > MAX_TOP_K:
        raise BadQuery(f"top_k must be at most {MAX_TOP_K}, got {top_k}")
    return top_k


def parse_request(params: Mapping[str, str], uploads: Sequence[Upload] = ()) -> SearchRequest:
    """The request of query parameters or form fields `q`, `mode`, `top_k`, `model`; a bad one is a
    `BadQuery` naming it (the CLI's words for the mode)."""
    mode = check_mode((params.get("mode") or "vector").strip())
    model = (params.get("model") or "").strip() or None
    if model is not None:
        serving_model(model)  # an unknown model is named before anything runs
    return SearchRequest(
        text=params.get("q") or "",
        mode=mode,
        top_k=parse_top_k(params.get("top_k")),
        model=model,
        uploads=tuple(uploads),
    )


def run_query(searcher: Searcher, request: SearchRequest) -> SearchAnswer:
    """The hits for a request (blocking: embeds the query and reads the index). An empty request is a
    `BadQuery`; anything the person can fix is a `SearchError` with the CLI's one line."""
    from resources.search.query_media import QueryMediaError, uploaded_media

    if request.empty:
        raise BadQuery("give words to search for (q), or an image or audio file to search with")
    version = request.model or searcher.serving().serving  # one version for the whole query
    model = serving_model(version)
    try:
        media = tuple(uploaded_media(u.data, u.filename, u.kind) for u in request.uploads)
    except (QueryMediaError, QueryLimitError) as error:
        raise BadQuery(str(error)) from None
    query = MarengoQuery(text=request.text.strip() or None, media=media)
    notice = check_query(query, model, searcher.route_of(model), searcher.settings.region)
    hits = searcher.search(query, request.top_k, version, request.mode)
    return SearchAnswer(version, hits, notice)
