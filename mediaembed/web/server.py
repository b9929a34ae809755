"""`mediaembed serve` on uvicorn: the socket is bound first (a port in use, or an address refused without a
token, is one line and exit status 1), then uvicorn serves it until SIGINT or SIGTERM, when it stops taking
connections and lets requests in flight finish (for up to `GRACE_SEC`).

Logs go to stderr, one line each: the access line of every request, and warnings. uvicorn's own start-up
chatter is left out; its access log is off (the guard writes one that also says how long a request took).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.supervisors import Multiprocess

from mediaembed.search import Searcher, SearchError
from mediaembed.web.app import create_app
from mediaembed.web.auth import TOKEN_SETTING, BindRefused, check_bind

GRACE_SEC = 10
WORKER_APP = "mediaembed.cli:serve_worker"  # what each worker process imports (reads its environment)
KEEP_ALIVE_SEC = 5  # an idle keep-alive connection is closed after this (it holds no worker meanwhile)
STOP_SEC = 30


def default_workers() -> int:
    """One process per core this process may run on: one interpreter runs the Python part of one search at
    a time (signing and parsing the Bedrock call, fusing), so a single process leaves the other cores idle
    (bench/serve_load.py, quiet: 20 searches at once, p99 14.8x the p50 of one with 1 worker, 9.2x with 2)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free one); OSError when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _config(app: Any, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SEC,
        timeout_graceful_shutdown=GRACE_SEC,
        **options,
    )


def make_server(searcher: Searcher, *, token: str = "", debug: bool = False) -> uvicorn.Server:
    return uvicorn.Server(_config(create_app(searcher, token=token, debug=debug)))


def worker_app(env: Mapping[str, str], debug: bool = False) -> ASGIApp:
    """The app of one worker process (`--workers` above 1): its own `Searcher`, from the settings of the
    environment the command passed down (MEDIAEMBED_API_TOKEN included). `mediaembed.cli:serve_worker`
    calls it with the worker's environment, inherited from the command."""
    configure_logging(debug)
    return create_app(Searcher.from_env(env), token=env.get(TOKEN_SETTING, "").strip(), debug=debug)


def configure_logging(debug: bool = False) -> None:
    """One line per record on stderr: access lines, warnings and errors (uvicorn's included)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name, level in (("mediaembed.web", logging.INFO), ("uvicorn", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.DEBUG if debug and name == "mediaembed.web" else level)
        logger.propagate = False


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


@contextmanager
def running(
    searcher: Searcher, host: str = "127.0.0.1", port: int = 0, *, token: str = "", debug: bool = False
) -> Iterator[str]:
    """The server on a thread of this process for the block (tests, a harness); yields its base URL and
    stops it (gracefully) after."""
    check_bind(host, token)
    sock = bind(host, port)
    server = make_server(searcher, token=token, debug=debug)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            threading.Event().wait(0.02)
        yield f"http://{host}:{port_of(sock)}"
    finally:
        server.should_exit = True
        thread.join(STOP_SEC)
        sock.close()


def run_serve(
    host: str,
    port: int,
    searcher: Searcher | None = None,
    env: Mapping[str, str] | None = None,
    debug: bool = False,
    workers: int = 1,
) -> int:
    """`mediaembed serve`: until SIGINT/SIGTERM; a port in use, a refused address or a missing setting is one
    line and exit status 1. The settings come from `env` (the command's environment) unless a `searcher` is
    given; MEDIAEMBED_API_TOKEN (from `env`) turns on the bearer token. `workers` above 1: that many
    processes serve the one socket, each with its own searcher from this process's environment (one
    interpreter runs the Python part of one search at a time; a process per core uses them all)."""
    env = env or {}
    token = env.get(TOKEN_SETTING, "").strip()
    try:
        check_bind(host, token)
        searcher = searcher or Searcher.from_env(env)
        sock = bind(host, port)
    except (SearchError, BindRefused) as error:
        print(f"mediaembed serve: {error}", file=sys.stderr)
        return getattr(error, "exit_code", 1)
    except OSError as error:
        reason = error.strerror or error
        print(
            f"mediaembed serve: cannot listen on {host}:{port}: {reason}; pass another --port",
            file=sys.stderr,
        )
        return 1
    configure_logging(debug)
    shown = f"[{host}]" if ":" in host else host
    auth = f" (bearer token: {TOKEN_SETTING})" if token else ""
    print(f"mediaembed serve: searching at http://{shown}:{port_of(sock)}/{auth} (Ctrl-C stops)", flush=True)
    if threading.current_thread() is threading.main_thread():
        # uvicorn handles the stop signals while it runs, then raises the one it caught again: a SIGTERM
        # that was already acted on must end the command with status 0, as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        if workers > 1:
            config = _config(WORKER_APP, factory=True, workers=workers)
            Multiprocess(config, sockets=[sock]).run()
        else:
            make_server(searcher, token=token, debug=debug).run(sockets=[sock])
    except KeyboardInterrupt:  # a second Ctrl-C while requests finish: stop now, quietly
        pass
    finally:
        sock.close()
    return 0
