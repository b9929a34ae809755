"""Every shell block of the README and docs/ marked `<!-- runnable -->` runs as printed, in a folder
where `make demo` has just run: the lines those pages tell a person to type keep working."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.local_searcher import stop_local_searcher

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^<!-- runnable -->\n```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
RUN_TIMEOUT_SEC = 600  # a hang fails the test instead of stalling the suite


def runnable_blocks() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(ROOT)}#{n}", block)
        for page in PAGES
        for n, block in enumerate(BLOCK.findall(page.read_text()), 1)
    ]


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder as after `make demo`: its `.venv` (this one), the `.local` the demo wrote and the local
    searcher it started (stopped at the end)."""
    folder = tmp_path_factory.mktemp("clone")
    (folder / ".venv").symlink_to(sys.prefix)
    done = subprocess.run(
        [str(folder / ".venv" / "bin" / "mediaembed"), "demo"],
        cwd=folder,
        env=user_env(folder),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SEC,
    )
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        yield folder
    finally:
        stop_local_searcher(folder / ".local")


def user_env(folder: Path) -> dict[str, str]:
    """A person's shell: a PATH and a home, none of the suite's settings."""
    return {"PATH": os.environ["PATH"], "HOME": str(folder), "LANG": "C.UTF-8"}


def test_the_pages_mark_blocks_to_run() -> None:
    names = [name for name, _ in runnable_blocks()]
    assert "README.md#1" in names and any(n.startswith("docs/") for n in names)


@pytest.mark.parametrize(("name", "block"), runnable_blocks(), ids=[n for n, _ in runnable_blocks()])
def test_a_runnable_block_runs_as_printed(name: str, block: str, demo_folder: Path) -> None:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=demo_folder,
        env=user_env(demo_folder),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SEC,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stderr[-3000:]}"
    assert done.stdout.strip(), f"{name} printed nothing"
    assert "Traceback" not in done.stdout + done.stderr
