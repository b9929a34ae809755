"""Text search over the segment index: embed the query with InvokeModel, rank segments by cosine.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TextIO

from resources.bedrock_query import embed_text, runtime_client
from resources.marengo_models import MARENGO_MODELS, SERVING_MODEL_KEY, MarengoModel
from resources.model_routes import ProviderName, configured_providers, route
from resources.provider_errors import ProviderError, QueryEmbeddingError
from resources.segment_search import (
    DEFAULT_NPROBES,
    DEFAULT_REFINE_FACTOR,
    IndexNotFound,
    SearchHit,
    connect_for_reading,
    local_index_path,
    open_segments,
    search_segments,
)

CONFIG_HELP = "see 'Configuration' in the README"
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
    bedrock_endpoint: str | None = None  # None: AWS_ENDPOINT_URL_BEDROCK_RUNTIME / config / AWS default
    # Which provider embeds queries for each version (MEDIAEMBED_PROVIDERS over the defaults), and the
    # TwelveLabs key and base URL (None: TWELVELABS_BASE_URL / the public API) where it is one of them.
    providers: Mapping[str, ProviderName] | None = None
    twelvelabs_api_key: str = ""
    twelvelabs_base_url: str | None = None
    nprobes: int = DEFAULT_NPROBES
    refine_factor: int = DEFAULT_REFINE_FACTOR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SearchSettings:
        """The same variables the pipeline reads; a missing one is named with where to get it."""
        env = os.environ if env is None else env
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
            providers=providers,
            twelvelabs_api_key=env.get("TWELVELABS_API_KEY", "").strip(),
            twelvelabs_base_url=env.get("TWELVELABS_BASE_URL", "").strip() or None,
        )


def query_token_bound(text: str) -> int:
    """An upper bound on the tokens Marengo's text encoder can make of `text`; never an underestimate.

    Bedrock does not publish Marengo's tokenizer, so count the worst case: byte-level BPE (the CLIP and GPT
    family) and SentencePiece with byte fallback never emit more tokens than the UTF-8 bytes of the text,
    with each run of whitespace counted as one byte; add one start and one end marker. English words
    usually take a quarter of this, so the bound can flag a query the model would accept, never the reverse.
    """
    return len(" ".join(text.split()).encode("utf-8")) + 2


def check_query(text: str, model: MarengoModel) -> str | None:
    """Refuse a query Marengo cannot embed. Returns a one-line notice when the model may truncate it.

    Over the limit, Marengo 2.7 documents cutting the text at the end (`textTruncate: end`, its default):
    the query runs, and the notice says the tail may be ignored. Marengo 3.0 answers ValidationException
    instead, so a query that may exceed its limit is refused before it is sent, naming the limit.
    """
    if not text.strip():
        raise BadQuery(
            'the query is empty: give the words to search for, e.g. mediaembed search "red circle"'
        )
    bound = query_token_bound(text)
    if bound <= model.max_text_tokens:
        return None
    limit = f"Marengo {model.version}'s {model.max_text_tokens}-token text limit"
    counted = f"up to {bound} tokens, counting each UTF-8 byte as one"
    if model.truncates_long_text:
        return (
            f"note: the query may exceed {limit} ({counted}); the model reads the first "
            f"{model.max_text_tokens} tokens and ignores the rest (textTruncate=end)"
        )
    raise BadQuery(f"the query may exceed {limit} ({counted}): shorten it")


def check_top_k(top_k: int) -> None:
    if top_k < 1:
        raise BadQuery(f"--top-k must be 1 or more, got {top_k}")


def serving_model(model_key: str) -> MarengoModel:
    try:
        return MARENGO_MODELS[model_key]
    except KeyError:
        raise BadQuery(f"unknown model {model_key!r}: choose one of {', '.join(MARENGO_MODELS)}") from None


class Searcher:
    """Embeds text queries and ranks indexed segments, holding one Bedrock client and one LanceDB
    connection (and each opened table) for as long as it lives.

    `read_consistency_interval` is how stale a long-lived searcher may be while the pipeline writes: LanceDB
    looks for a newer table version at most that often. `max_attempts` bounds botocore's retries, so an
    unreachable endpoint is reported within seconds.
    """

    def __init__(
        self,
        settings: SearchSettings,
        *,
        read_consistency_interval: timedelta | None = timedelta(seconds=5),
        max_attempts: int = 3,
    ) -> None:
        self.settings = settings
        self.read_consistency_interval = read_consistency_interval
        self._max_attempts = max_attempts
        self._clients: dict[str, Any] = {}
        self._db: Any = None
        self._tables: dict[str, Any] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **options: Any) -> Searcher:
        return cls(SearchSettings.from_env(env), **options)

    def search(self, text: str, top_k: int = 5, model_key: str = SERVING_MODEL_KEY) -> list[SearchHit]:
        """The `top_k` best segments for `text`, best first. The index is opened before the query is embedded,
        so a search with nothing to search costs no Bedrock call."""
        model = serving_model(model_key)
        check_top_k(top_k)
        check_query(text, model)
        table = self._table(model)
        try:
            vector = self._embed_query(model, text)
        except (QueryEmbeddingError, ProviderError) as error:
            raise SearchError(str(error)) from None
        return search_segments(
            table, vector, top_k, nprobes=self.settings.nprobes, refine_factor=self.settings.refine_factor
        )

    def _embed_query(self, model: MarengoModel, text: str) -> list[float]:
        """The query vector from the provider that serves `model`: one client per provider, kept."""
        provider = (self.settings.providers or configured_providers())[model.key]
        if provider == "twelvelabs":
            from resources.twelvelabs_query import api_client
            from resources.twelvelabs_query import embed_text as twelvelabs_embed_text

            client = self._clients.get(provider)
            if client is None:
                client = api_client(self.settings.twelvelabs_api_key, self.settings.twelvelabs_base_url)
                self._clients[provider] = client
            return twelvelabs_embed_text(client, route(provider, model.key), text)
        client = self._clients.get(provider)
        if client is None:
            settings = self.settings
            client = runtime_client(
                settings.region, settings.bedrock_endpoint, "standard", self._max_attempts
            )
            self._clients[provider] = client
        return embed_text(client, route(provider, model.key), self.settings.region, text)

    def _table(self, model: MarengoModel) -> Any:
        table = self._tables.get(model.key)
        if table is None:
            uri = self.settings.index_uri
            options = self._storage_options() if self._db is None else None
            try:
                if self._db is None:
                    self._db = connect_for_reading(uri, options, self.read_consistency_interval)
                table = open_segments(self._db, model, uri)
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

    def _storage_options(self) -> dict[str, str] | None:
        if local_index_path(self.settings.index_uri) is not None:
            return None
        # Deferred: dagster-aws costs a second of imports, and only an index on S3 needs the S3 settings.
        from resources.s3_storage import S3Storage

        return S3Storage(region_name=self.settings.region).lance_storage_options()


def search(text: str, top_k: int = 5, model_key: str = SERVING_MODEL_KEY) -> list[SearchHit]:
    """One search with settings read from the environment now (a long-lived caller keeps a `Searcher`)."""
    return Searcher.from_env().search(text, top_k, model_key)


def hit_record(rank: int, hit: SearchHit) -> dict[str, Any]:
    """Everything the text output shows, for `--json`."""
    return {
        "rank": rank,
        "media_uri": hit.media_uri,
        "start_sec": hit.start_sec,
        "end_sec": hit.end_sec,
        "score": hit.score,
        "model": hit.model,
        "embedding_option": hit.embedding_option,
        "embedding_type": hit.embedding_type,
        "embedding_scope": hit.embedding_scope,
    }


def print_hits(hits: Sequence[SearchHit], as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    for rank, hit in enumerate(hits, 1):
        if as_json:
            print(json.dumps(hit_record(rank, hit)), file=out)
            continue
        span = "" if hit.start_sec is None else f"  [{hit.start_sec:6.2f}s - {hit.end_sec:6.2f}s]"
        fused = "fused" if hit.embedding_type == "fused" else None  # separate: its option says enough
        kind = ", ".join(k for k in (hit.embedding_option, fused, hit.embedding_scope) if k)
        print(f"{rank:2d}. {hit.score:.4f}  {hit.media_uri}{span}  {hit.model}  ({kind})", file=out)


def run_search(
    text: str,
    top_k: int,
    model_key: str,
    *,
    as_json: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`mediaembed search`: hits on `out`; notices and errors as one line each on `err`; the exit status."""
    err = err or sys.stderr
    try:
        model = serving_model(model_key)
        check_top_k(top_k)
        notice = check_query(text, model)
        if notice:
            print(f"mediaembed search: {notice}", file=err)
        hits = Searcher.from_env().search(text, top_k, model_key)
    except SearchError as error:
        print(f"mediaembed search: {error}", file=err)
        return error.exit_code
    except Exception as error:  # the last line of defence: one line, never a traceback
        if os.environ.get("MEDIAEMBED_DEBUG"):
            raise
        reason = " ".join(str(error).split())[:300]
        print(
            f"mediaembed search: unexpected {type(error).__name__}: {reason} "
            "(MEDIAEMBED_DEBUG=1 shows the traceback)",
            file=err,
        )
        return 1
    if not hits:
        print(f"mediaembed search: the {model_key} index holds no segments yet", file=err)
    out = out or sys.stdout
    try:
        print_hits(hits, as_json, out)
        out.flush()
    except BrokenPipeError:  # `| head -1` stopped reading: not an error, and no traceback at exit
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
