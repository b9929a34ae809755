"""`mediaembed serve`: a small search page rendered by the server (stdlib wsgiref, no front-end build).

One long-lived `Searcher` answers every request, so the page reads the same index, serving version and
description index as `mediaembed search`, and pays for its clients once. Each result links its time span to
the media at that second (a presigned S3 GET URL with a `#t=START` media fragment). Whatever goes wrong is one
line on the page, never a traceback.
"""

from __future__ import annotations

import html
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from mediaembed.search import SEARCH_MODES, Searcher, SearchError, check_mode, hit_kind
from resources.search.fusion import FusedHit

StartResponse = Callable[..., Any]
DEFAULT_TOP_K = 10
MAX_TOP_K = 100

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 56rem; margin: 2rem auto; padding: 0 1rem; }
form { display: flex; gap: .5rem; margin-bottom: 1.5rem; }
input[name=q] { flex: 1; font-size: 1.1rem; padding: .4rem; }
.error { color: #a00; }
ol { padding-left: 1.5rem; } li { margin-bottom: 1rem; }
.name { font-weight: 600; } .meta { color: #555; font-size: .9rem; }
.snippet { margin: .25rem 0 0; color: #222; }
"""


def _page(query: str, mode: str, body: str) -> bytes:
    options = "".join(
        f'<option value="{m}"{" selected" if m == mode else ""}>{m}</option>' for m in SEARCH_MODES
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>mediaembed search</title>"
        f"<style>{STYLE}</style></head><body><h1>mediaembed search</h1>"
        '<form method=get action="/">'
        f'<input name=q value="{html.escape(query)}" placeholder="a red circle" autofocus>'
        f"<select name=mode>{options}</select><button type=submit>Search</button></form>"
        f"{body}</body></html>"
    ).encode()


def _span(hit: FusedHit) -> str:
    if hit.start_sec is None:
        return "whole object"
    end = "" if hit.end_sec is None else f" - {hit.end_sec:.2f}s"
    return f"{hit.start_sec:.2f}s{end}"


def _result(searcher: Searcher, hit: FusedHit) -> str:
    name = hit.media_uri.rstrip("/").rsplit("/", 1)[-1] or hit.media_uri
    try:
        url = searcher.media_url(hit.media_uri, hit.start_sec)
    except Exception:  # no link is better than no result: the span is still shown
        url = None
    span = html.escape(_span(hit))
    link = f'<a class=span href="{html.escape(url)}">{span}</a>' if url else f"<span class=span>{span}</span>"
    snippet = f"<p class=snippet>{html.escape(hit.snippet)}</p>" if hit.snippet else ""
    return (
        f'<li><span class=name title="{html.escape(hit.media_uri)}">{html.escape(name)}</span> {link}'
        f"<div class=meta><span class=signals>{html.escape(hit_kind(hit))}</span>"
        f" · score {hit.score:.4f} · {html.escape(hit.model)}</div>{snippet}</li>"
    )


def _error(message: str) -> str:
    return f"<p class=error>{html.escape(' '.join(message.split()))}</p>"


def render(searcher: Searcher, query: str, mode: str = "vector", top_k: int = DEFAULT_TOP_K) -> bytes:
    """The page for one query (the empty query: the box alone)."""
    if not query.strip():
        return _page(query, mode, "")
    try:
        hits = searcher.search(query, top_k, mode=check_mode(mode))
    except SearchError as error:
        return _page(query, mode, _error(str(error)))
    except Exception as error:  # the last line of defence: one line, never a traceback
        reason = " ".join(str(error).split())[:300]
        return _page(query, mode, _error(f"unexpected {type(error).__name__}: {reason}"))
    if not hits:
        return _page(query, mode, _error("nothing matched"))
    return _page(query, mode, "<ol>" + "".join(_result(searcher, h) for h in hits) + "</ol>")


def app(searcher: Searcher) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI application: GET / with q (the query), mode and top_k."""

    def handle(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") not in ("/", ""):
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: the search page is at /\n"]
        params = parse_qs(environ.get("QUERY_STRING", ""))
        query = params.get("q", [""])[0]
        mode = params.get("mode", ["vector"])[0]
        try:
            top_k = min(max(int(params.get("top_k", [str(DEFAULT_TOP_K)])[0]), 1), MAX_TOP_K)
        except ValueError:
            top_k = DEFAULT_TOP_K
        body = render(searcher, query, mode, top_k)
        start_response(
            "200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return handle


class _QuietHandler(WSGIRequestHandler):
    timeout = 15  # one request at a time: a client that connects and sends nothing must not hold the page

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _LoggingHandler(_QuietHandler):
    """With MEDIAEMBED_DEBUG: every request logged on stderr."""

    def log_message(self, format: str, *args: Any) -> None:
        WSGIRequestHandler.log_message(self, format, *args)


def make_search_server(
    searcher: Searcher, host: str = "127.0.0.1", port: int = 8080, debug: bool = False
) -> WSGIServer:
    """A bound server (port 0: any free port; `server.server_port` says which); `serve_forever` runs it.
    `debug` (MEDIAEMBED_DEBUG) logs every request."""
    handler = _LoggingHandler if debug else _QuietHandler
    return make_server(host, port, app(searcher), handler_class=handler)


def run_serve(
    host: str,
    port: int,
    searcher: Searcher | None = None,
    env: Mapping[str, str] | None = None,
    debug: bool = False,
) -> int:
    """`mediaembed serve`: until Ctrl-C; a port in use or a missing setting is one line and exit status 1.
    The settings come from `env` (the command's environment) unless a `searcher` is given."""
    try:
        searcher = searcher or Searcher.from_env(env or {})
        server = make_search_server(searcher, host, port, debug)
    except SearchError as error:
        print(f"mediaembed serve: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        print(
            f"mediaembed serve: cannot listen on {host}:{port}: {error.strerror or error}; "
            "pass another --port",
            file=sys.stderr,
        )
        return 1
    print(f"mediaembed serve: searching at http://{host}:{server.server_port}/ (Ctrl-C stops)", flush=True)
    if threading.current_thread() is threading.main_thread():  # a service manager's stop ends it like Ctrl-C
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        # A second stop signal during shutdown (a service manager and its wrapper both send one) must not
        # interrupt the clean-up with a traceback.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        server.server_close()
    return 0
