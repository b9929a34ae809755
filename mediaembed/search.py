"""Text search over the segment index: embed the query with InvokeModel, rank segments by cosine, and fuse
each segment's embedding options (and, in text and hybrid modes, full-text hits from a `TextHitSource`) by
reciprocal rank fusion (resources/search/fusion.py), so a span is one hit whatever matched it.

Nothing here loads Dagster or the code location. `Searcher` builds the one Bedrock client and the one
LanceDB connection a search needs straight from the environment, once: the command starts in a fraction
of the time the pipeline's definitions take to import, and a long-lived process pays the set-up once.
Everything a person can cause or fix (a bad query, a missing setting, no index yet, an unreachable
endpoint) is a `SearchError` carrying one line that says what to do.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol, TextIO, get_args

from botocore.exceptions import BotoCoreError, ClientError

from resources.providers.bedrock.client import embed_query, runtime_client
from resources.providers.errors import ProviderError, QueryEmbeddingError
from resources.providers.marengo_models import MARENGO_MODELS, MarengoModel
from resources.providers.model_routes import (
    DEFAULT_PROVIDERS,
    ModelRoute,
    ProviderName,
    configured_providers,
    route,
)
from resources.search.description_search import DescriptionSearch
from resources.search.fusion import SIGNAL_ORDER, FusedHit, TextHit, fuse_hybrid, fuse_segments
from resources.search.marengo_query import (
    MarengoQuery,
    QueryLimitError,
    QueryMedia,
    QueryMediaKind,
    TextTruncate,
)
from resources.search.marengo_query import check_query as check_marengo_query
from resources.search.marengo_query import query_token_bound as query_token_bound
from resources.search.segment_search import (
    DEFAULT_NPROBES,
    DEFAULT_REFINE_FACTOR,
    IndexNotFound,
    connect_for_reading,
    open_segments,
    search_segments,
)
from resources.storage.location import BotoAccess, Location, location
from resources.tables.serving_versions import (
    INITIAL_SERVING_ENV,
    ServingChangeRefused,
    ServingState,
    ServingVersions,
    record_folder,
)

CONFIG_HELP = "see docs/configuration.md"
SearchMode = Literal["vector", "text", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
# Rows fetched per hit asked for: one per embedding option (visual, audio, transcription) times a margin, so
# a segment's weaker options are still among the candidates when its rows are fused.
CANDIDATE_OPTIONS = 3
CANDIDATE_FACTOR = 4
NOT_DESCRIBED = (
    "descriptions are not indexed yet: run the describe job (Pegasus descriptions and chapters) first, "
    "or search with --mode vector"
)
LOCAL_HINT = 'to search what `make demo` built, run: mediaembed search --local "red circle"'


class SearchError(Exception):
    """A search that cannot run; `str()` is one line that says what to do. Exit status 1: the world (settings,
    index, provider) is not ready."""

    exit_code = 1


class BadQuery(SearchError):
    """The command line itself is wrong (exit status 2, as for other usage errors)."""

    exit_code = 2


@dataclass(frozen=True)
class SearchSettings:
    """What a search needs; everything else (credentials, endpoints) comes from the standard AWS chain."""

    index_uri: str
    region: str
    # Where the serving record lives (MEDIAEMBED_LAKE_URI): which version a search without --model asks.
    lake_uri: str = ""
    # What serves before the first cut-over (MEDIAEMBED_SERVING_VERSION); empty: the default.
    serving_version: str = ""
    bedrock_endpoint: str | None = None  # None: AWS_ENDPOINT_URL_BEDROCK_RUNTIME / config / AWS default
    # Which provider embeds queries for each version (MEDIAEMBED_PROVIDERS over the defaults), and the
    # TwelveLabs key and base URL (None: TWELVELABS_BASE_URL / the public API) where it is one of them.
    providers: Mapping[str, ProviderName] | None = None
    twelvelabs_api_key: str = ""
    twelvelabs_base_url: str | None = None
    nprobes: int = DEFAULT_NPROBES
    refine_factor: int = DEFAULT_REFINE_FACTOR

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SearchSettings:
        """The same variables the pipeline reads, from `env` (the command's environment); a missing one is
        named with where to get it."""
        index_uri = env.get("MEDIAEMBED_INDEX_URI", "").strip()
        if not index_uri:
            raise SearchError(
                "MEDIAEMBED_INDEX_URI is not set: it is the directory or s3:// prefix the pipeline writes "
                f"the LanceDB index to ({CONFIG_HELP}); {LOCAL_HINT}"
            )
        region = env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip()
        if not region:
            import boto3  # the AWS config file may name a region (AWS_PROFILE, `aws configure`)

            region = boto3.session.Session().region_name or ""
        if not region:
            raise SearchError(
                "AWS_REGION is not set: set it to the region of the Marengo model and your buckets "
                f"(us-east-1, eu-west-1 or ap-northeast-2; {CONFIG_HELP}); {LOCAL_HINT}"
            )
        try:
            providers = configured_providers(dict(env))
        except ValueError as error:
            raise BadQuery(str(error)) from None
        return cls(
            index_uri=index_uri,
            region=region,
            lake_uri=env.get("MEDIAEMBED_LAKE_URI", "").strip(),
            serving_version=env.get(INITIAL_SERVING_ENV, "").strip(),
            providers=providers,
            twelvelabs_api_key=env.get("TWELVELABS_API_KEY", "").strip(),
            twelvelabs_base_url=env.get("TWELVELABS_BASE_URL", "").strip() or None,
        )


def check_query(
    query: str | MarengoQuery,
    model: MarengoModel,
    route_of: ModelRoute | None = None,
    region: str | None = None,
) -> str | None:
    """Refuse a query the serving model cannot embed, before anything is sent; a one-line notice when the
    model will cut it instead (Marengo 2.7's text truncation). `route_of`: the route that embeds it (by
    default the default provider's)."""
    query = MarengoQuery.of_text(query) if isinstance(query, str) else query
    target = route_of or route(DEFAULT_PROVIDERS[model.key], model.key)
    try:
        return check_marengo_query(query, target, region if target.provider == "bedrock" else None)
    except QueryLimitError as error:
        raise BadQuery(str(error)) from None


def check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise BadQuery(f"--top-k must be 1 or more, got {top_k}")


def serving_model(model_key: str) -> MarengoModel:
    try:
        return MARENGO_MODELS[model_key]
    except KeyError:
        raise BadQuery(f"unknown model {model_key!r}: choose one of {', '.join(MARENGO_MODELS)}") from None


class TextHitSource(Protocol):
    """Where text and hybrid search get full-text hits (descriptions and chapters), best first."""

    def search_text(self, text: str, limit: int) -> Sequence[TextHit]: ...


def check_mode(mode: str) -> SearchMode:
    if mode not in SEARCH_MODES:
        raise BadQuery(f"--mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


class Searcher:
    """Embeds text queries and ranks indexed segments, holding one Bedrock client and one LanceDB
    connection (and each opened table) for as long as it lives.

    `read_consistency_interval` is how stale a long-lived searcher may be while the pipeline writes: LanceDB
    looks for a newer table version at most that often. `max_attempts` bounds botocore's retries, so an
    unreachable endpoint is reported within seconds.

    Thread-safe: `mediaembed serve` answers concurrent requests from one searcher on a thread pool. What it
    makes once (clients, the connection, opened tables, the serving record) is made under one lock; the
    searches themselves run in parallel (boto3 clients and LanceDB tables are safe to share).
    """

    def __init__(
        self,
        settings: SearchSettings,
        *,
        read_consistency_interval: timedelta | None = timedelta(seconds=5),
        max_attempts: int = 3,
        clients: Mapping[str, Any] | None = None,
        text_source: TextHitSource | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.settings = settings
        # None (or a source whose table is missing): text and hybrid search say to run the describe job.
        self.text_source = text_source
        self.weights = dict(weights or {})  # RRF weight by signal or list kind; 1.0 where not given
        self.read_consistency_interval = read_consistency_interval
        self._max_attempts = max_attempts
        # "bedrock", "twelvelabs", "s3": built on first use unless given (tests give their own).
        self._clients: dict[str, Any] = dict(clients or {})
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._serving: tuple[ServingState, float] | None = None
        self._setup = threading.RLock()

    @classmethod
    def from_env(cls, env: Mapping[str, str], **options: Any) -> Searcher:
        """A searcher of the index `env` (the command's environment) configures; text and hybrid modes
        search its description table (through the searcher's one connection) unless `text_source` is
        given."""
        searcher = cls(SearchSettings.from_env(env), **options)
        if searcher.text_source is None:
            searcher.text_source = DescriptionSearch(searcher.connection)
        return searcher

    def serving(self) -> ServingState:
        """The lake's serving record, read again once `read_consistency_interval` has passed (as LanceDB
        looks for new table versions): a cut-over or rollback reaches a long-lived searcher within it, and
        one query only ever reads one version's table."""
        with self._setup:
            return self._read_serving()

    def _read_serving(self) -> ServingState:
        interval = (self.read_consistency_interval or timedelta(0)).total_seconds()
        if self._serving is not None and time.monotonic() - self._serving[1] < interval:
            return self._serving[0]
        lake = self.settings.lake_uri
        if not lake:
            raise SearchError(
                "MEDIAEMBED_LAKE_URI is not set: it names the lake whose serving record says which Marengo "
                f"version to search, or pass --model ({CONFIG_HELP}); {LOCAL_HINT}"
            )
        try:
            state = ServingVersions(
                record_folder(self._location(lake)), initial=self.settings.serving_version
            ).current()
        except ServingChangeRefused as error:
            raise SearchError(str(error)) from None
        except (BotoCoreError, ClientError, OSError, ValueError) as error:
            reason = " ".join(str(error).split())[:200]
            raise SearchError(
                f"cannot read the serving record under {lake}: {reason}; check MEDIAEMBED_LAKE_URI, "
                "AWS_ENDPOINT_URL_S3 and access to the bucket"
            ) from None
        self._serving = (state, time.monotonic())
        return state

    def search(
        self,
        query: str | MarengoQuery,
        top_k: int = 5,
        model_key: str | None = None,
        mode: str = "vector",
    ) -> list[FusedHit]:
        """The `top_k` best segments for a query (text, or a `MarengoQuery` with images or a clip), best
        first, each segment once whatever options matched it, from the serving version unless `model_key`
        names another. `mode` "text" ranks full-text hits only, "hybrid" fuses them with the vector hits.
        Limits are checked and the index opened before the query is embedded, so a search that cannot
        succeed costs no provider call."""
        mode = check_mode(mode)
        check_top_k(top_k)
        query = MarengoQuery.of_text(query) if isinstance(query, str) else query
        if mode != "vector":
            if not query.text or not query.text.strip():
                raise BadQuery(f"--mode {mode} needs words to search for")
            if self.text_source is None:
                raise SearchError(NOT_DESCRIBED)
        candidates = top_k * CANDIDATE_OPTIONS * CANDIDATE_FACTOR
        text_hits = self._text_hits(query.text or "", candidates) if mode != "vector" else []
        vector_hits = self._vector_hits(query, candidates, model_key) if mode != "text" else []
        if mode == "vector":
            return vector_hits[:top_k]
        return fuse_hybrid(vector_hits, text_hits, weights=self.weights)[:top_k]

    def _vector_hits(self, query: MarengoQuery, candidates: int, model_key: str | None) -> list[FusedHit]:
        model = serving_model(model_key or self.serving().serving)
        target = self.route_of(model)
        check_query(query, model, target, self.settings.region)
        table = self._table(model)
        try:
            vector = self._embed_query(target, query)
        except (QueryEmbeddingError, ProviderError) as error:
            raise SearchError(str(error)) from None
        rows = search_segments(
            table,
            vector,
            candidates,
            nprobes=self.settings.nprobes,
            refine_factor=self.settings.refine_factor,
        )
        return fuse_segments(rows, weights=self.weights)

    def _text_hits(self, text: str, limit: int) -> list[TextHit]:
        assert self.text_source is not None
        try:
            return list(self.text_source.search_text(text, limit))
        except SearchError:
            raise
        except IndexNotFound:  # no index, or no description table in it, yet
            raise SearchError(NOT_DESCRIBED) from None
        except (OSError, ValueError, RuntimeError) as error:
            reason = " ".join(str(error).split())[:200]
            raise SearchError(
                f"cannot search the description index: {reason}; run the describe job"
            ) from None

    def media_url(self, media_uri: str, start_sec: float | None = None) -> str:
        """A link that opens an indexed object (at `start_sec`, by a media fragment): a presigned GET URL
        for s3:// objects, valid for 10 minutes."""
        url = self._presigned_url(media_uri)
        return url if start_sec is None else f"{url}#t={start_sec:g}"

    def query_media(self, spec: str, kind: QueryMediaKind, name: str = "") -> QueryMedia:
        """An image or clip for a query, from a local path or an s3:// URI (looked at, not yet sent)."""
        from resources.search.query_media import QueryMediaError, resolve_query_media

        try:
            return resolve_query_media(spec, kind, self._s3, name)
        except (QueryMediaError, QueryLimitError) as error:
            raise BadQuery(str(error)) from None

    def route_of(self, model: MarengoModel) -> ModelRoute:
        """The route that embeds this model's queries (MEDIAEMBED_PROVIDERS over the defaults)."""
        return route((self.settings.providers or DEFAULT_PROVIDERS)[model.key], model.key)

    def _embed_query(self, target: ModelRoute, query: MarengoQuery) -> list[float]:
        """The query vector from the provider that serves the model: one client per provider, kept."""
        with self._setup:
            client = self._provider_client(target)
        if target.provider == "twelvelabs":
            from resources.providers.twelvelabs.client import embed_query as twelvelabs_embed_query

            return twelvelabs_embed_query(client, target, query, self._presigned_url)
        return embed_query(client, target, self.settings.region, query)

    def _provider_client(self, target: ModelRoute) -> Any:
        if target.provider == "twelvelabs":
            from resources.providers.twelvelabs.client import api_client

            client = self._clients.get("twelvelabs")
            if client is None:
                client = api_client(self.settings.twelvelabs_api_key, self.settings.twelvelabs_base_url)
                self._clients["twelvelabs"] = client
            return client
        client = self._clients.get("bedrock")
        if client is None:
            settings = self.settings
            client = runtime_client(
                settings.region, settings.bedrock_endpoint, "standard", self._max_attempts
            )
            self._clients["bedrock"] = client
        return client

    def _s3(self) -> Any:
        """One S3 client (the standard AWS chain, AWS_ENDPOINT_URL_S3 included) for a query's media."""
        with self._setup:
            client = self._clients.get("s3")
            if client is None:
                import boto3

                client = boto3.session.Session().client("s3", region_name=self.settings.region)
                self._clients["s3"] = client
            return client

    def _presigned_url(self, uri: str) -> str:
        """How a person or the TwelveLabs API reaches an S3 object: a GET URL valid for 10 minutes (any
        other URI as it is)."""
        from resources.storage.s3_objects import media_link

        return media_link(self._s3, uri, 600)

    def connection(self) -> Any:
        """The one LanceDB connection of this searcher, made on first use (IndexNotFound before the
        pipeline has made the index)."""
        with self._setup:
            if self._db is None:
                self._db = connect_for_reading(
                    self._location(self.settings.index_uri), self.read_consistency_interval
                )
            return self._db

    def _table(self, model: MarengoModel) -> Any:
        with self._setup:
            return self._open_table(model)

    def _open_table(self, model: MarengoModel) -> Any:
        table = self._tables.get(model.key)
        if table is None:
            uri = self.settings.index_uri
            options: dict[str, str] | None = None
            try:
                options = self._location(uri).lance_database()[1] if self._db is None else None
                table = open_segments(self.connection(), model, uri)
            except IndexNotFound as error:
                raise SearchError(
                    f"{error}: run the pipeline first (`make demo` locally, or materialize "
                    f"search/marengo_segments for {model.key}), or point MEDIAEMBED_INDEX_URI at its index"
                ) from None
            except (OSError, ValueError, RuntimeError) as error:  # LanceDB reports I/O as any of these
                via = f" through {options['aws_endpoint']}" if options and "aws_endpoint" in options else ""
                reason = " ".join(str(error).split())[:200]
                raise SearchError(
                    f"cannot open the search index at {uri}{via}: {reason}; check MEDIAEMBED_INDEX_URI, "
                    "AWS_ENDPOINT_URL_S3 and access to the bucket"
                ) from None
            self._tables[model.key] = table
        return table

    def _location(self, uri: str) -> Location:
        """The lake or the index at `uri`, reached on S3 through this searcher's one S3 client."""
        return location(uri, BotoAccess(self._s3))


def search(
    query: str | MarengoQuery,
    top_k: int = 5,
    model_key: str | None = None,
    mode: str = "vector",
    *,
    env: Mapping[str, str],
) -> list[FusedHit]:
    """One search with the settings of `env` as it is now (a long-lived caller keeps a `Searcher`)."""
    return Searcher.from_env(env).search(query, top_k, model_key, mode)


def hit_record(rank: int, hit: FusedHit) -> dict[str, Any]:
    """Everything the text output shows, for `--json`. `score` is the best raw score of the strongest
    signal, `fused_score` the RRF score the ranking is by, `signal_scores` each signal's best raw score; the
    embedding_* keys are those of the best vector row (None for a text-only hit)."""
    return {
        "rank": rank,
        "media_uri": hit.media_uri,
        "start_sec": hit.start_sec,
        "end_sec": hit.end_sec,
        "score": hit.score,
        "fused_score": round(hit.fused_score, 6),
        "signal_scores": {signal: score for signal, score in signal_scores(hit)},
        "model": hit.model,
        "signals": list(hit.signals),
        "snippet": hit.snippet,
        "embedding_option": hit.embedding_option,
        "embedding_type": hit.embedding_type,
        "embedding_scope": hit.embedding_scope,
    }


def signal_scores(hit: FusedHit) -> list[tuple[str, float]]:
    """Each signal's best raw score: the signals that matched first (strongest first), then the others."""
    rest = sorted(
        (s for s in hit.signal_scores if s not in hit.signals),
        key=lambda s: SIGNAL_ORDER.index(s) if s in SIGNAL_ORDER else len(SIGNAL_ORDER),
    )
    return [(s, hit.signal_scores[s]) for s in (*hit.signals, *rest) if s in hit.signal_scores]


def score_line(hit: FusedHit) -> str:
    """What ranked the hit and why: "fused 0.0492 (visual 1.0000, audio 0.9981)"."""
    parts = ", ".join(f"{signal} {score:.4f}" for signal, score in signal_scores(hit))
    return f"fused {hit.fused_score:.4f}" + (f" ({parts})" if parts else "")


def hit_kind(hit: FusedHit) -> str:
    """What matched, as the text output and the web page show it: "visual+audio, clip"."""
    return ", ".join(k for k in ("+".join(hit.signals), hit.embedding_scope) if k)


def print_hits(hits: Sequence[FusedHit], as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    for rank, hit in enumerate(hits, 1):
        if as_json:
            print(json.dumps(hit_record(rank, hit)), file=out)
            continue
        span = "" if hit.start_sec is None else f"  [{hit.start_sec:6.2f}s - {hit.end_sec:6.2f}s]"
        snippet = f'  "{" ".join(hit.snippet.split())[:120]}"' if hit.snippet else ""
        scope = f", {hit.embedding_scope}" if hit.embedding_scope else ""
        line = f"{rank:2d}. {score_line(hit)}{scope}  {hit.media_uri}{span}  {hit.model}{snippet}"
        print(line, file=out)


def run_search(
    text: str | None,
    top_k: int,
    model_key: str | None,
    *,
    as_json: bool,
    images: Sequence[str] = (),
    audio: str | None = None,
    text_truncate: TextTruncate | None = None,
    mode: str = "vector",
    out: TextIO | None = None,
    err: TextIO | None = None,
    searcher: Searcher | None = None,
    env: Mapping[str, str] | None = None,
    debug: bool = False,
) -> int:
    """`mediaembed search`: hits on `out`; notices and errors as one line each on `err`; the exit status.

    The settings come from `env` (the command's environment) unless a `searcher` is given; `debug`
    (MEDIAEMBED_DEBUG) lets an unexpected error out with its traceback. A text-only query is checked before
    the other settings are read; images and a clip (local paths or s3:// URIs) are looked at first, then
    checked, then sent."""
    err = err or sys.stderr
    env = env or {}
    try:
        check_top_k(top_k)
        check_mode(mode)
        query = MarengoQuery(text=text, text_truncate=text_truncate)
        if model_key is not None and not images and audio is None:
            model = serving_model(model_key)
            # Before the other settings are read: only which provider embeds the query.
            provider = configured_providers(env)[model.key]
            notice = check_query(query, model, route(provider, model.key))
        searcher = searcher or Searcher.from_env(env)
        model_key = model_key or searcher.serving().serving  # one version for the whole query
        model = serving_model(model_key)
        if not images and audio is None:
            notice = check_query(query, model)
        if images or audio is not None:
            media = [searcher.query_media(spec, "image") for spec in images]
            media += [searcher.query_media(audio, "audio")] if audio is not None else []
            query = MarengoQuery(text=text, media=tuple(media), text_truncate=text_truncate)
            notice = check_query(query, model, searcher.route_of(model), searcher.settings.region)
        if notice:
            print(f"mediaembed search: {notice}", file=err)
        hits = searcher.search(query, top_k, model_key, mode)
    except SearchError as error:
        print(f"mediaembed search: {error}", file=err)
        return error.exit_code
    except Exception as error:  # the last line of defence: one line, never a traceback
        if debug:
            raise
        reason = " ".join(str(error).split())[:300]
        print(
            f"mediaembed search: unexpected {type(error).__name__}: {reason} "
            "(MEDIAEMBED_DEBUG=1 shows the traceback)",
            file=err,
        )
        return 1
    if not hits:
        where = f"the {model_key} index holds no segments yet" if mode == "vector" else "nothing matched"
        print(f"mediaembed search: {where}", file=err)
    out = out or sys.stdout
    try:
        print_hits(hits, as_json, out)
        out.flush()
    except BrokenPipeError:  # `| head -1` stopped reading: not an error, and no traceback at exit
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
