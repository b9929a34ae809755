"""Every test runs in the local world: the code location binds the TwelveLabs provider only when a key
is set when it is loaded, so the local key is set before any test module imports the definitions (each
test's world then points TWELVELABS_BASE_URL at its own emulator).

Each test carries the marker of its lane, from its folder (pyproject's `markers` say what each means):
`make check` runs the fast lane (`-m "not slow"`), `make test` every lane.
"""

import os
from pathlib import Path

import pytest

from harness.local_env import bind_local_twelvelabs

bind_local_twelvelabs()
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
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(tests).parts[0]
        for marker in LANES.get(folder, ("slow",)):
            item.add_marker(marker)
