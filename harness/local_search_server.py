"""The local searcher's process (harness/local_searcher.py starts it): the emulators `search --local`
needs and one `Searcher` over the work folder's index, answering `mediaembed search --local` on loopback.

Each query runs `run_search`, the command's own code, with this process's one `Searcher` (its boto3 client
pointed at the Bedrock emulator, its LanceDB connection), reading the index and the serving record afresh
every time, so a pipeline run or a cut-over since the last query is seen. Only the Bedrock runtime and
TwelveLabs emulators run at first; the S3 emulator and the sample media (generated again,
deterministically) start with the first query by an s3:// image or clip.

Run: python -m harness.local_search_server --workdir .local [--idle-sec 900] [--fingerprint F]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import secrets
import signal
import sys
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from emulators.http_base import LoopbackServer
from harness.local_search import local_search_env
from harness.local_searcher import IDLE_SEC, RECORD, read_record, write_record
from mediaembed.search import Searcher, SearchError, run_search

# The command's own record ("starting", with this pid) is written as soon as the process exists.
RECORD_WAIT_SEC = 30


class LocalWorld:
    """The emulators and the searcher of one work folder, with the S3 emulator only once needed."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.with_media = False
        self._env = contextlib.ExitStack()
        self.searcher: Searcher | None = None

    def open(self, with_media: bool) -> Searcher:
        self.close()
        self._env.enter_context(local_search_env(self.workdir, with_media=with_media))
        self.with_media = with_media
        self.searcher = Searcher.from_env(os.environ, read_consistency_interval=timedelta(0))
        return self.searcher

    def searcher_for(self, media: list[str]) -> Searcher:
        if self.searcher is None or (not self.with_media and any(m.startswith("s3://") for m in media)):
            return self.open(with_media=self.with_media or any(m.startswith("s3://") for m in media))
        return self.searcher

    def close(self) -> None:
        self._env.close()
        self._env = contextlib.ExitStack()
        self.searcher = None


def answer(world: LocalWorld, query: dict[str, Any]) -> dict[str, Any]:
    """One command's search: its exit status and what it printed on stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    images = [str(i) for i in query.get("images") or []]
    audio = query.get("audio")
    debug = bool(query.get("debug"))
    try:
        searcher = world.searcher_for([*images, *([audio] if audio else [])])
        code = run_search(
            query.get("text"),
            int(query.get("top_k", 5)),
            query.get("model"),
            as_json=bool(query.get("json")),
            images=images,
            audio=audio,
            text_truncate=query.get("text_truncate"),
            mode=str(query.get("mode", "vector")),
            out=out,
            err=err,
            searcher=searcher,
            env=os.environ,
            debug=debug,
        )
    except SearchError as error:
        print(f"mediaembed search: {error}", file=err)
        code = error.exit_code
    except Exception as error:  # never a traceback, unless asked for
        reason = " ".join(str(error).split())[:300]
        message = traceback.format_exc() if debug else f"unexpected {type(error).__name__}: {reason}"
        print(f"mediaembed search: {message} (MEDIAEMBED_DEBUG=1 shows the traceback)", file=err)
        code = 1
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}


class LocalSearcherApp:
    """The loopback API: GET /health, POST /search (a query as JSON), POST /stop; a bearer token each."""

    def __init__(self, world: LocalWorld, token: str, stop: threading.Event) -> None:
        self.world = world
        self.token = token
        self.stop = stop
        self.last_used = time.monotonic()
        self._lock = threading.Lock()  # one search at a time: one searcher, one set of emulators

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.respond(Request(environ))(environ, start_response)

    def respond(self, request: Request) -> Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _json({"error": "not this searcher's token"}, 403)
        self.last_used = time.monotonic()
        if request.path == "/health" and request.method == "GET":
            return _json({"pid": os.getpid()})
        if request.path == "/stop" and request.method == "POST":
            self.stop.set()
            return _json({"stopping": os.getpid()})
        if request.path == "/search" and request.method == "POST":
            query = request.get_json(silent=True)
            if not isinstance(query, dict):
                return _json({"error": "send the query as a JSON object"}, 400)
            with self._lock:
                result = answer(self.world, query)
            self.last_used = time.monotonic()
            return _json(result)
        return _json({"error": f"no {request.method} {request.path}"}, 404)


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _ours(workdir: Path) -> bool:
    record = read_record(workdir)
    return record is not None and record["pid"] == os.getpid()


def serve(workdir: Path, idle_sec: float, stamp: str) -> int:
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    world = LocalWorld(workdir)
    try:
        searcher = world.open(with_media=False)
        with contextlib.suppress(SearchError):  # warm: LanceDB loaded, the serving table open
            searcher.search("warm up", 1)
    except SearchError as error:  # the command shows this last line of the log
        print(error, flush=True)
        world.close()
        return 1
    app = LocalSearcherApp(world, secrets.token_hex(16), stop)
    server = LoopbackServer(app, name="local-searcher")
    server.start()
    try:
        deadline = time.monotonic() + RECORD_WAIT_SEC
        while not _ours(workdir):  # the command that started us writes its "starting" record first
            if time.monotonic() > deadline:
                print("no record of this searcher was written: stopping", flush=True)
                return 1
            time.sleep(0.02)
        write_record(
            workdir,
            {
                "pid": os.getpid(),
                "state": "ready",
                "port": server.port,
                "token": app.token,
                "fingerprint": stamp,
            },
        )
        print(f"local searcher {os.getpid()} ready on 127.0.0.1:{server.port} for {workdir}", flush=True)
        while not stop.wait(1.0):
            if time.monotonic() - app.last_used > idle_sec:
                print(f"idle for {idle_sec:g} s: stopping", flush=True)
                break
            if not _ours(workdir):
                print("its record is gone or names another searcher: stopping", flush=True)
                break
    finally:
        server.stop()
        world.close()
        if _ours(workdir):
            with contextlib.suppress(FileNotFoundError):
                (workdir / RECORD).unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.local_search_server", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".local"))
    parser.add_argument("--idle-sec", type=float, default=IDLE_SEC)
    parser.add_argument("--fingerprint", default="")
    args = parser.parse_args(argv)
    return serve(args.workdir.resolve(), args.idle_sec, args.fingerprint)


if __name__ == "__main__":
    sys.exit(main())
