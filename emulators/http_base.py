"""The HTTP plumbing every emulator shares: a threaded werkzeug server on loopback, routing, JSON answers.

`LoopbackServer` serves any WSGI app in a daemon thread (the S3 emulator serves moto's app on it).
`HttpEmulator` is the base of the emulators written here: its lifecycle (bind, serve, stop, a context
manager), its background work, and the catch-all that turns every failure into the service's own error
answer, never an HTML stack trace. A subclass answers requests (`_answer`) and says how it refuses them.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Self, TypeVar

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from emulators.background import BackgroundWork

log = logging.getLogger(__name__)

# A WSGI application: environ and start_response in, the body's chunks out.
WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]
W = TypeVar("W", bound=WsgiApp)
E = TypeVar("E", bound=Exception)
LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago (bind to 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class LoopbackServer:
    """A threaded werkzeug server in a daemon thread (port 0: any free port, read back once started).

    The server reads its app per request, so `intercept` can put middleware in front of a running one.
    """

    def __init__(
        self,
        app: WsgiApp,
        *,
        name: str,
        host: str = LOOPBACK,
        port: int = 0,
        poll_interval: float = 0.05,
        request_handler: type[WSGIRequestHandler] | None = None,
    ) -> None:
        self._app = app
        self.name = name
        self.host = host
        self._requested_port = port
        self._poll_interval = poll_interval
        self._request_handler = request_handler
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return int(self._server.server_port)

    def start(self) -> None:
        """Bind and serve in a background thread; nothing if already serving."""
        if self._server is not None:
            return
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = make_server(
            self.host, self._requested_port, self._app, threaded=True, request_handler=self._request_handler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": self._poll_interval},
            name=self.name,
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    @contextmanager
    def intercept(self, wrap: Callable[[WsgiApp], W]) -> Iterator[W]:
        """Route every request through `wrap(app)` while the block runs (a test's middleware: it can hold
        requests at an exact point); yields the wrapper, and puts the app back after."""
        server = self._server
        if server is None:
            raise RuntimeError(f"{self.name} is not started")
        original = server.app
        wrapper = wrap(original)
        server.app = wrapper
        try:
            yield wrapper
        finally:
            server.app = original


# --- requests and answers --------------------------------------------------------------------------------


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")


def raw_uri(request: Request) -> str:
    """The path and query string as the client sent them (still percent-encoded): what it signed."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        return str(raw)
    query = request.environ.get("QUERY_STRING", "")
    return urllib.parse.quote(request.path) + (f"?{query}" if query else "")


@dataclass(frozen=True)
class Route:
    """One operation: the path (werkzeug rule syntax) and method it answers, and its handler, called with
    the request and the path's variables."""

    path: str
    method: str
    operation: str
    handler: Callable[..., Response]


class Router:
    """Requests to operations; a path nothing serves and a method a path does not take are the service's
    own refusals (`unknown_path`, `wrong_method`), raised from werkzeug's."""

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        unknown_path: Callable[[Request], Exception],
        wrong_method: Callable[[Request], Exception],
        **map_options: Any,
    ) -> None:
        self._routes = {route.operation: route for route in routes}
        rules = [Rule(r.path, methods=[r.method], endpoint=r.operation) for r in self._routes.values()]
        self._map = Map(rules, **map_options)
        self._unknown_path = unknown_path
        self._wrong_method = wrong_method

    def match(self, request: Request) -> tuple[Route, Mapping[str, Any]]:
        adapter = self._map.bind_to_environ(request.environ)
        try:
            operation, args = adapter.match()
        except NotFound as exc:
            raise self._unknown_path(request) from exc
        except MethodNotAllowed as exc:
            raise self._wrong_method(request) from exc
        return self._routes[str(operation)], args


# --- the emulators' base ---------------------------------------------------------------------------------


class HttpEmulator(Generic[E]):
    """An emulated service on loopback: serving, background work, and failures answered in its own words.

    A subclass answers a request (`_answer`), turns its own refusals (`refusal_type`) into responses
    (`_refusal`), says what an unexpected failure is answered with (`_internal_error`), and may resume
    kept work around serving (`_before_serving`, `_after_serving`) and stamp every answer (`_stamp`).
    """

    refusal_type: type[E]

    def __init__(self, *, name: str, host: str, port: int, workers: int) -> None:
        self.host = host
        self._name = name
        self._http = LoopbackServer(self._wsgi, name=f"{name}-emu", host=host, port=port)
        self._work = BackgroundWork(workers, f"{name}-emu-worker")

    # --- lifecycle ----------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._http.running:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._http.port

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Bind (port 0 = any free port) and serve in a background thread; work kept from an earlier run,
        or abandoned by stop(), carries on."""
        if self._http.running:
            return self
        self._before_serving()
        self._work.start()
        self._http.start()
        self._after_serving()
        return self

    def stop(self) -> None:
        """Stop serving, cancel pending latency timers and abandon queued work (it carries on at the next
        start)."""
        self._work.halt()
        self._http.stop()
        self._work.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def intercept(self, wrap: Callable[[WsgiApp], W]) -> Iterator[W]:
        """Route every request through `wrap(app)` while the block runs (see LoopbackServer.intercept)."""
        with self._http.intercept(wrap) as wrapper:
            yield wrapper

    # --- what a subclass says -------------------------------------------------------------------------------

    def _answer(self, request: Request) -> Response:
        raise NotImplementedError

    def _refusal(self, refusal: E) -> Response:
        raise NotImplementedError

    def _internal_error(self, exc: Exception) -> E:
        raise NotImplementedError

    def _stamp(self, response: Response) -> None:
        """Headers every answer carries; none by default."""

    def _before_serving(self) -> None:
        """Runs before the port is bound."""

    def _after_serving(self) -> None:
        """Runs once the server is up."""

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self._answer(request)
        except self.refusal_type as refusal:
            response = self._refusal(refusal)
        except Exception as exc:  # never leak a stack trace as HTML: answer as the service would
            log.exception("%s emulator: unhandled error", self._name)
            response = self._refusal(self._internal_error(exc))
        self._stamp(response)
        return response(environ, start_response)
