"""Every test runs in the local world: the code location binds the TwelveLabs provider only when a key
is set when it is loaded, so the local key is set before any test module imports the definitions (each
test's world then points TWELVELABS_BASE_URL at its own emulator).

The optional settings are bound the same way, only where set when the definitions load: each is set here,
empty (which reads as unset) unless the shell sets it, so the definitions bind every one as a `dg.EnvVar`
and a test sets a value with `monkeypatch.setenv` (and unsets it with an empty one, never `delenv`).

Each test carries the marker of its lane, from its folder (pyproject's `markers` say what each means):
`make check` runs the fast lane (`-m "not slow"`), `make test` every lane.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from harness.local_env import bind_local_settings
from pipelines.settings import OPTIONAL_SETTINGS
from tests.postgres import PostgresServer, PostgresUnavailable, postgres_bin, running_postgres, unavailable

bind_local_settings()
for _name in OPTIONAL_SETTINGS:
    os.environ.setdefault(_name, "")
# The daemon that `mediaembed ingest` and `serving` start ticks the invocation sensor as often as it can
# (every 5 s), not every 30 s: what a test waits for is the next tick, not its clock.
os.environ.setdefault("MEDIAEMBED_SENSOR_INTERVAL_SEC", "1")

LANES: dict[str, tuple[str, ...]] = {
    "unit": (),
    "test_definitions.py": (),
    "emulators": ("emulators",),
    "stack": ("emulators", "slow"),
    "pipeline": ("slow",),
    "faults": ("faults", "slow"),
    "browser": ("browser", "slow"),
    "deploy": ("deploy", "slow"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(tests).parts[0]
        for marker in LANES.get(folder, ("slow",)):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server per test process (tests/postgres.py); skipped where absent, failed in CI."""
    try:
        postgres_bin()
    except PostgresUnavailable as error:
        unavailable(str(error))
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server: its connection URL."""
    return postgres_server.create_database(f"test_{uuid4().hex[:12]}")
