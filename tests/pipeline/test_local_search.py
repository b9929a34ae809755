"""`mediaembed search --local` after a real `mediaembed demo`: the line it prints answers through the local
searcher the demo started, a query by an s3:// sample image answers, and `--stop` leaves nothing running.

Each command is a fresh process with a person's shell (no settings, no emulators), as typed after the
demo; how fast they answer is bench/search_latency.py's business, not this test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.local_searcher import RECORD, read_record, stop_local_searcher

RUN_TIMEOUT_SEC = 600  # a hang fails the test instead of stalling the suite


def shell(folder: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(folder), "LANG": "C.UTF-8"}


def mediaembed(folder: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(folder / ".venv" / "bin" / "mediaembed"), *argv],
        cwd=folder,
        env=shell(folder),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SEC,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("clone")
    (folder / ".venv").symlink_to(sys.prefix)
    try:
        done = mediaembed(folder, "demo")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "local searcher started for `search --local`" in done.stdout
        assert done.stdout.rstrip().splitlines()[-1].endswith('mediaembed search --local "red circle"')
        yield folder
    finally:
        stop_local_searcher(folder / ".local")


def test_the_printed_line_answers_through_the_searcher_the_demo_started(demo_folder: Path) -> None:
    started = read_record(demo_folder / ".local")
    assert started is not None and alive(started["pid"])
    done = mediaembed(demo_folder, "search", "--local", "red circle", "--json")
    assert (done.returncode, done.stderr) == (0, ""), "no searcher is started: the demo's answers"
    top = json.loads(done.stdout.splitlines()[0])
    assert top["media_uri"] == "s3://media/videos/shapes_a.mp4" and top["model"] == "marengo-3.0"
    assert read_record(demo_folder / ".local")["pid"] == started["pid"]  # type: ignore[index]


def test_an_s3_sample_image_query_answers_with_that_image_first(demo_folder: Path) -> None:
    image = "s3://media/images/purple_circle.jpg"
    done = mediaembed(demo_folder, "search", "--local", "--image", image, "--top-k", "2", "--json")
    assert done.returncode == 0 and "AWS_ENDPOINT_URL_S3" not in done.stderr, done.stderr
    hits = [json.loads(line) for line in done.stdout.splitlines()]
    assert hits[0]["media_uri"] == image and hits[0]["score"] == pytest.approx(1.0, abs=1e-4), hits
    again = mediaembed(demo_folder, "search", "--local", "a purple circle", "--top-k", "1", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["media_uri"] == image, "text queries still answer once S3 runs"


def test_a_local_image_file_is_read_from_the_commands_folder(demo_folder: Path, tmp_path: Path) -> None:
    from emulators.sample_media import generate_sample_media

    [sample] = [s for s in generate_sample_media() if s.key == "images/green_triangle.png"]
    (demo_folder / "query.png").write_bytes(sample.data)
    done = mediaembed(demo_folder, "search", "--local", "--image", "query.png", "--top-k", "1", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["media_uri"] == "s3://media/images/green_triangle.png"


def test_stop_leaves_nothing_running_and_the_next_search_starts_a_new_searcher(demo_folder: Path) -> None:
    first = read_record(demo_folder / ".local")
    assert first is not None
    stopped = mediaembed(demo_folder, "search", "--local", "--stop")
    assert stopped.returncode == 0 and f"(pid {first['pid']})" in stopped.stdout, stopped.stdout
    assert not alive(first["pid"]) and not (demo_folder / ".local" / RECORD).exists()
    assert mediaembed(demo_folder, "search", "--local", "--stop").stdout.startswith("no local searcher runs")

    done = mediaembed(demo_folder, "search", "--local", "red circle", "--top-k", "1")
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("mediaembed search: started a local searcher for .local (pid "), line
    second = read_record(demo_folder / ".local")
    assert second is not None and second["pid"] != first["pid"] and alive(second["pid"])


def test_other_settings_replace_the_searcher_so_the_answer_is_a_cold_commands(demo_folder: Path) -> None:
    before = read_record(demo_folder / ".local") or {}
    env = {**shell(demo_folder), "MEDIAEMBED_SERVING_VERSION": "marengo-2.7"}
    done = subprocess.run(
        [str(demo_folder / ".venv" / "bin" / "mediaembed"), "search", "--local", "red circle"],
        cwd=demo_folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SEC,
    )
    # The demo embedded 3.0 only: under this setting 2.7 serves, and its index does not exist.
    assert done.returncode == 1 and "marengo-2.7" in done.stderr and "Traceback" not in done.stderr
    after = read_record(demo_folder / ".local")
    assert after is not None and after["pid"] != before.get("pid")
    assert before.get("pid") is None or not alive(before["pid"])
