"""A throwaway PostgreSQL server for the tests: Debian's `initdb` and `pg_ctl` on 127.0.0.1 at a free port.

The data directory, the socket and the log live in a fresh temp directory, removed afterwards. Postgres
refuses to run as root, so where the tests run as root the server runs as `nobody` (or, where that user is
absent, a system user created for it), which owns the temp directory. Authentication is `trust`: the server
listens on 127.0.0.1 only and lives as long as the test session.

Where the binaries are absent the tests that need the server skip, saying how to get them (`make test`
installs them where it runs as root with apt-get); where CI is set they fail instead: CI must run them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml

DEPLOYMENT_DOC = Path(__file__).resolve().parents[1] / "docs" / "deployment.md"
DOCS_MARKER = "<!-- dagster.yaml: postgres -->"
URL_VARIABLE = "DAGSTER_POSTGRES_URL"  # what the documented dagster.yaml reads the URL from
# SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; dagster-postgres brings psycopg2 only.
SQLALCHEMY_SCHEME = "postgresql+psycopg2"
BIN_GLOB = "/usr/lib/postgresql/*/bin"
SERVER_USER = "nobody"
FALLBACK_USER = "mediaembed-pg"  # created only where `nobody` is absent
SUPERUSER = "mediaembed"
START_TIMEOUT_SEC = 60
STOP_TIMEOUT_SEC = 60
# A test database: speed over durability (the server dies with the session).
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",  # the daemon, the webserver-free CLI and every run worker hold pools
}


class PostgresUnavailable(RuntimeError):
    """Postgres cannot be had here; the message says why and how to get it."""


def postgres_bin() -> Path:
    """The newest of Debian's PostgreSQL binary folders (or the one on PATH with `initdb`)."""
    found = sorted(Path("/").glob(BIN_GLOB.lstrip("/")), key=lambda p: _version(p.parent.name))
    found = [path for path in found if (path / "initdb").exists() and (path / "pg_ctl").exists()]
    if found:
        return found[-1]
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    raise PostgresUnavailable(
        f"PostgreSQL is absent (no initdb under {BIN_GLOB} or on PATH): "
        "`apt-get install postgresql` as root (make test does it where it can)"
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_user() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when the tests run as root; None when they do not."""
    if os.geteuid() != 0:
        return None
    for name in (SERVER_USER, FALLBACK_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    useradd = shutil.which("useradd")
    if useradd is None:
        raise PostgresUnavailable(f"running as root with no user {SERVER_USER!r} and no useradd to make one")
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(FALLBACK_USER)


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    superuser: str
    # `pg_ctl stop` / `pg_ctl start` on the server's own data directory and port (running_postgres's).
    control: Callable[[str], None] | None = field(default=None, repr=False, compare=False)

    def stop(self) -> None:
        """Stop the server (`pg_ctl stop -m fast`: every connection is dropped at once), keeping its data."""
        assert self.control is not None, "a server started by running_postgres"
        self.control("stop")

    def start(self) -> None:
        """Start the stopped server again, on the same data directory and port, and wait until it answers."""
        assert self.control is not None, "a server started by running_postgres"
        self.control("start")
        wait_until_accepting(self, START_TIMEOUT_SEC)

    def libpq_url(self, database: str = "postgres") -> str:
        """The URL psycopg2 and libpq read."""
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{database}"

    def url(self, database: str = "postgres") -> str:
        """The URL dagster-postgres reads (SQLAlchemy's): the driver named, as docs/deployment.md says."""
        return self.libpq_url(database).replace("postgresql://", f"{SQLALCHEMY_SCHEME}://", 1)

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        connection = psycopg2.connect(self.libpq_url())
        try:
            connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a server in a fresh temp directory; stop it (`pg_ctl stop -m fast`) and remove the directory."""
    binaries = postgres_bin()
    user = server_user()
    base = Path(tempfile.mkdtemp(prefix="mediaembed-pg-"))
    data, sockets, log = base / "data", base / "sockets", base / "postgres.log"
    as_user: dict[str, Any] = {}
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base), "LC_ALL": "C.UTF-8"}

    def run(*command: str | Path) -> None:
        done = subprocess.run(
            [str(part) for part in command], cwd=base, env=env, capture_output=True, text=True, **as_user
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            raise PostgresUnavailable(f"{Path(str(command[0])).name} failed ({done.returncode}): {last[-1]}")

    started = False

    def control(action: str) -> None:
        nonlocal started
        if action == "start":
            run(binaries / "pg_ctl", "start", "-D", data, "-l", log, "-w", "-t", str(START_TIMEOUT_SEC))
            started = True
        else:
            run(binaries / "pg_ctl", "stop", "-D", data, "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_SEC))
            started = False

    try:
        run("mkdir", "-p", sockets)
        run(binaries / "initdb", "-D", data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale")
        port = free_port()
        settings = {
            **SETTINGS,
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{sockets}'",
        }
        with (data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        control("start")
        server = PostgresServer("127.0.0.1", port, SUPERUSER, control)
        wait_until_accepting(server, START_TIMEOUT_SEC)
        yield server
    finally:
        if started:
            control("stop")
        shutil.rmtree(base, ignore_errors=True)


def wait_until_accepting(server: PostgresServer, timeout: float) -> None:
    """Connect until the server answers, for at most `timeout` seconds (pg_ctl -w already waited)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg2.connect(server.libpq_url(), connect_timeout=5).close()
            return
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                reason = str(error).strip().splitlines()[0]
                message = f"postgres on port {server.port} not accepting in {timeout} s: {reason}"
                raise PostgresUnavailable(message) from None
            time.sleep(0.1)


def unavailable(reason: str) -> None:
    """Skip, or fail where CI is set: CI must run the Postgres tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the Postgres tests must run)", pytrace=False)
    pytest.skip(reason)


def documented_instance_yaml() -> str:
    """The Postgres dagster.yaml of docs/deployment.md, as printed (the yaml block after DOCS_MARKER)."""
    text = DEPLOYMENT_DOC.read_text()
    _, marker, rest = text.partition(DOCS_MARKER)
    assert marker, f"{DEPLOYMENT_DOC.name} has no {DOCS_MARKER}"
    block = rest.lstrip().removeprefix("```yaml\n").partition("```")[0]
    assert yaml.safe_load(block)["storage"]["postgres"]["postgres_url"] == {"env": URL_VARIABLE}
    return block
