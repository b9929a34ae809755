"""`mediaembed search --local` through one warm process per work folder: the local searcher.

A cold `search --local` pays for its imports (LanceDB's alone take over a second on a busy 2-core machine)
and for starting the emulators before it embeds a word: ~4.5 s. The local searcher
(harness/local_search_server.py) pays that once: it holds the emulators and one `Searcher` over the work
folder's index and answers each command over loopback, so a command costs its interpreter's start and the
search itself. The search is the production code path (`run_search`, the real boto3 client pointed at the
emulator), run in that process.

The first `search --local` starts it, and `mediaembed demo` does as it ends. It stops by itself after
IDLE_SEC without a query, or once its work folder's record is gone (`make clean`), or with
`mediaembed search --local --stop`. A command whose settings (MEDIAEMBED_*, TWELVELABS_*) or code differ
from those the searcher started with replaces it, so an answer is always the one a cold command would give.

This side imports only the standard library: it is what every `search --local` loads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.local_env import local_index

RECORD = "local-searcher.json"  # pid, state, port, token, fingerprint (mode 0600: the token is in it)
LOCK = "local-searcher.lock"
LOG = "local-searcher.log"
IDLE_SEC = 900
START_TIMEOUT_SEC = 180
ANSWER_TIMEOUT_SEC = 600
ROOT = Path(__file__).resolve().parents[1]
CODE = ("harness", "mediaembed", "resources", "emulators", "pipelines")


class LocalSearcherError(Exception):
    """The local searcher cannot answer; `str()` is one line that says what to do."""


def fingerprint(env: Mapping[str, str]) -> str:
    """What an answer depends on besides the index: the settings a search reads (MEDIAEMBED_* and
    TWELVELABS_*, empty ones as unset; not MEDIAEMBED_DEBUG, sent with each query), the interpreter, and
    the newest change to the code."""
    settings = sorted(
        (name, value)
        for name, value in env.items()
        if name.startswith(("MEDIAEMBED_", "TWELVELABS_")) and name != "MEDIAEMBED_DEBUG" and value
    )
    newest = 0
    for package in CODE:
        for folder, _, files in os.walk(ROOT / package):
            for name in files:
                if name.endswith(".py"):
                    newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
    body = json.dumps([settings, sys.executable, newest])
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def read_record(workdir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((workdir / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def write_record(workdir: Path, record: dict[str, Any]) -> None:
    """Atomically (a reader sees the old record or the new one), readable by its owner only."""
    partial = workdir / f".{RECORD}.{os.getpid()}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.replace(partial, workdir / RECORD)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _call(record: dict[str, Any], path: str, body: Any = None, timeout: float = 2.0) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{record['port']}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {record['token']}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _answers(record: dict[str, Any]) -> bool:
    try:
        return bool(_call(record, "/health").get("pid") == record["pid"])
    except (OSError, ValueError, KeyError):
        return False


@contextlib.contextmanager
def _locked(workdir: Path) -> Iterator[None]:
    """One command at a time decides whether to start a searcher for the work folder."""
    with open(workdir / LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _log_tail(workdir: Path) -> str:
    try:
        lines = [line for line in (workdir / LOG).read_text().splitlines() if line.strip()]
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no log"


def _spawn(workdir: Path, env: Mapping[str, str], idle_sec: float) -> dict[str, Any]:
    """Start the searcher as its own session (it outlives this command); its record says "starting"."""
    stamp = fingerprint(env)
    with open(workdir / LOG, "w") as log:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.local_search_server",
                "--workdir",
                str(workdir),
                "--idle-sec",
                str(idle_sec),
                "--fingerprint",
                stamp,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=ROOT,
            start_new_session=True,
        )
    record = {"pid": child.pid, "state": "starting", "fingerprint": stamp}
    write_record(workdir, record)
    return record


def _ready(workdir: Path, pid: int, timeout: float = START_TIMEOUT_SEC) -> dict[str, Any]:
    """The record of searcher `pid` once it answers; one line with its log's last line if it stopped."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = read_record(workdir)
        if record is None or record["pid"] != pid:
            break
        if record.get("state") == "ready":
            return record
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child, ended: not a zombie that looks alive
                break
        if not _alive(pid):
            break
        time.sleep(0.05)
    else:
        raise LocalSearcherError(
            f"the local searcher (pid {pid}) did not start within {timeout:.0f} s; see {workdir / LOG}"
        )
    raise LocalSearcherError(f"the local searcher did not start: {_log_tail(workdir)} (see {workdir / LOG})")


def _stop(workdir: Path, record: dict[str, Any]) -> None:
    """Ask the searcher to stop, wait for it to go, and drop its record."""
    if record.get("state") == "ready":
        with contextlib.suppress(OSError, ValueError):
            _call(record, "/stop", {})
    elif _alive(record["pid"]):  # still starting: it cannot be asked yet
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(record["pid"], signal.SIGTERM)
    deadline = time.monotonic() + 15
    while _alive(record["pid"]) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(record["pid"], os.WNOHANG)[0] == record["pid"]:
                break
        time.sleep(0.05)
    current = read_record(workdir)
    if current is not None and current["pid"] == record["pid"]:
        with contextlib.suppress(FileNotFoundError):
            (workdir / RECORD).unlink()


def _check_index(workdir: Path) -> None:
    index = local_index(workdir)
    if not index.is_dir():
        raise LocalSearcherError(
            f"no local index at {index}: run `make demo` first, or pass --workdir to the folder it used"
        )


def start_local_searcher(workdir: Path, env: Mapping[str, str], idle_sec: float = IDLE_SEC) -> int:
    """Replace the work folder's searcher by a new one and wait until it answers (`mediaembed demo` as it
    ends, so that the line it prints last answers warm the first time); its pid."""
    workdir = workdir.resolve()
    _check_index(workdir)
    with _locked(workdir):
        record = read_record(workdir)
        if record is not None:
            _stop(workdir, record)
        return int(_ready(workdir, _spawn(workdir, env, idle_sec)["pid"])["pid"])


def searcher_for(workdir: Path, env: Mapping[str, str], idle_sec: float = IDLE_SEC) -> tuple[dict, bool]:
    """The record of a ready searcher of the work folder with `env`'s settings and this code, started if
    none runs (replacing one of other settings), and whether this call started it."""
    _check_index(workdir)
    stamp = fingerprint(env)
    with _locked(workdir):
        record = read_record(workdir)
        if record is not None and record.get("fingerprint") == stamp:
            if record.get("state") == "ready" and _answers(record):
                return record, False
            if record.get("state") == "starting" and _alive(record["pid"]):
                return _ready(workdir, record["pid"]), False
        if record is not None:
            _stop(workdir, record)
        started = _spawn(workdir, env, idle_sec)
        return _ready(workdir, started["pid"]), True


def search_locally(
    workdir: Path, query: dict[str, Any], env: Mapping[str, str]
) -> tuple[int, str, str, int | None]:
    """Run one `search --local` in the work folder's searcher: its exit status, output and error text, and
    the pid of the searcher this call started (None: one was running)."""
    workdir = workdir.resolve()
    record, started = searcher_for(workdir, env)
    media = [*query.get("images", []), *([query["audio"]] if query.get("audio") else [])]
    local = {spec: os.path.abspath(spec) for spec in media if not spec.startswith("s3://")}
    query = {
        **query,
        "images": [local.get(s, s) for s in query.get("images", [])],
        "audio": local.get(query["audio"], query["audio"]) if query.get("audio") else None,
    }
    try:
        answer = _call(record, "/search", query, timeout=ANSWER_TIMEOUT_SEC)
    except (OSError, ValueError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        raise LocalSearcherError(
            f"the local searcher (pid {record['pid']}) did not answer ({reason}); see {workdir / LOG}, "
            "or run the search again to start a new one"
        ) from None
    return int(answer["code"]), str(answer["out"]), str(answer["err"]), record["pid"] if started else None


def stop_local_searcher(workdir: Path) -> int | None:
    """Stop the work folder's searcher; its pid, or None when none was running."""
    workdir = workdir.resolve()
    if not workdir.is_dir():
        return None
    with _locked(workdir):
        record = read_record(workdir)
        if record is None:
            return None
        running = _alive(record["pid"])
        _stop(workdir, record)
        return int(record["pid"]) if running else None
