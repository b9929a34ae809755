"""One writer per local index table: concurrent writers never duplicate rows, a dead one never blocks."""

import subprocess
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from resources.index.segment_index import SegmentIndex
from resources.index.writer_lock import LocalWriterLock, WriterLockTimeout
from resources.providers.marengo_models import MARENGO_3_0
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import media_id
from tests.unit.test_segment_index import object_segments, unit

ROOT = Path(__file__).resolve().parents[2]


def index_at(path: Path) -> SegmentIndex:
    return SegmentIndex(uri=str(path), storage=S3Storage(region_name="us-east-1"))


def test_two_writers_at_once_write_each_segment_once(tmp_path: Path) -> None:
    """Without the lock both merge_inserts commit their new keys: 4,000 rows for 2,000 segment ids."""
    uris = [f"s3://m/{i}.mp4" for i in range(200)]
    segments = pa.concat_tables([object_segments(u, "e", unit(10)) for u in uris])
    ids = [media_id(u) for u in uris]
    index_at(tmp_path).replace_media(MARENGO_3_0, segments.slice(0, 0), [])  # the table exists, empty
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def write() -> None:
        writer = index_at(tmp_path)  # its own resource and connection, like a second run
        start.wait()
        try:
            writer.replace_media(MARENGO_3_0, segments, ids)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    index = index_at(tmp_path)
    assert not errors
    assert (index.state(MARENGO_3_0).rows, index.duplicate_segment_ids(MARENGO_3_0)) == (2000, 0)


def test_a_killed_writer_never_blocks_and_a_live_one_is_named(tmp_path: Path) -> None:
    lock_file = tmp_path / "_locks" / "segments_x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from resources.index.writer_lock import LocalWriterLock;"
            f"LocalWriterLock(Path({str(lock_file)!r}), 'segments_x', 'run dead-beef').acquire(5);"
            "print('held', flush=True); sys.stdin.read()",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waits: list[str] = []
        with pytest.raises(WriterLockTimeout, match=r"written by run dead-beef after 0\.2 s"):
            LocalWriterLock(lock_file, "segments_x", "run b").acquire(0.2, on_wait=waits.append)
        assert waits == ["index table segments_x is being written by run dead-beef; waiting"]
    finally:
        holder.kill()  # SIGKILL: no release, no cleanup
        holder.wait()
    successor = LocalWriterLock(lock_file, "segments_x", "run c")
    successor.acquire(5)  # the kernel dropped the dead process's flock
    successor.release()


def test_nested_writes_in_one_thread_reuse_the_held_lock(tmp_path: Path) -> None:
    index = index_at(tmp_path / "idx")
    a = object_segments("s3://m/a.mp4", "e1", unit(3))
    with index.writer(MARENGO_3_0, holder="run outer"):
        index.replace_media(MARENGO_3_0, a, [media_id("s3://m/a.mp4")])  # would wait for ever if not reused
        other = SegmentIndex(
            uri=str(tmp_path / "idx"), storage=S3Storage(region_name="us-east-1"), writer_wait_sec=0.1
        )
        with pytest.raises(WriterLockTimeout, match="run outer"):
            other.remove_media(MARENGO_3_0, [media_id("s3://m/a.mp4")])
    assert index.state(MARENGO_3_0).rows == 3
    assert index.remove_media(MARENGO_3_0, [media_id("s3://m/a.mp4")]).rows == 0
