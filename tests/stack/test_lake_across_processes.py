"""Nothing assumes one machine: run workers that share no memory, no disk and no lock file commit to the same
lake and index on S3 at once, and every row lands exactly once.

On a deployment each run is its own process, on whatever node or task the launcher picked, so the only
things they share are the instance and the bucket. Here each writer is a separate spawned process with its
own resources, its own boto3 client and its own LanceDB connection; moto's S3 stands in for the bucket.
What keeps them apart is what would on AWS:
- the embedding table (Delta): delta-rs commits a version by a conditional put of its log entry, so a
  writer that lost the race gets `CommitFailedError` and the table retries on the new version;
- the index (LanceDB): the S3 writer lease of `resources/storage/locks.py` (conditional puts on
  `_locks/<table>.lease`), since two `merge_insert`s of the same new keys would both commit (lance#4585).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from emulators.s3 import S3Emulator
from resources.index.segment_index import SegmentIndex
from resources.providers.marengo_models import MARENGO_3_0
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_schema import media_id
from tests.unit.test_segment_index import object_segments, unit

pytestmark = pytest.mark.slow  # two spawned writers per test: ~10 s each

BUCKET = "shared-lake"
WRITERS = 2
OBJECTS_PER_WRITER = 6  # one commit per object: a dozen commits racing for the next table versions
SEGMENTS_PER_OBJECT = 5
JOIN_TIMEOUT_SEC = 300  # a hung writer fails the test instead of stalling the suite


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Emulator]:
    emulator = S3Emulator().start()
    try:
        emulator.client().create_bucket(Bucket=BUCKET)
        yield emulator
    finally:
        emulator.stop()


def _environment(endpoint: str) -> dict[str, str]:
    """What a run worker's task gets: the AWS chain's keys and the S3 endpoint, nothing else."""
    return {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }


def _storage() -> S3Storage:
    return S3Storage(region_name="us-east-1")


def _uris(writer: int) -> list[str]:
    return [f"s3://media/w{writer}/{i}.mp4" for i in range(OBJECTS_PER_WRITER)]


def _commit_table_rows(endpoint: str, root: str, writer: int, start: Any) -> None:
    """One run worker: its objects into the embedding table, one commit each."""
    os.environ.update(_environment(endpoint))
    table = EmbeddingTable(Lake(root=root, storage=_storage()), MARENGO_3_0)
    start.wait()
    for uri in _uris(writer):
        table.replace(object_segments(uri, "e1", unit(SEGMENTS_PER_OBJECT)), [media_id(uri)])


def _write_index(endpoint: str, root: str, segments: pa.Table, ids: list[str], start: Any) -> None:
    """One run worker: the same objects into the same index table as the other writer."""
    os.environ.update(_environment(endpoint))
    index = SegmentIndex(uri=root, storage=_storage())
    start.wait()
    index.replace_media(MARENGO_3_0, segments, ids)


def _run_at_once(target: Any, args: tuple[Any, ...], per_writer: list[tuple[Any, ...]]) -> list[int | None]:
    context = multiprocessing.get_context("spawn")  # nothing inherited: as separate as two tasks
    start = context.Barrier(WRITERS)
    workers = [context.Process(target=target, args=(*args, *extra, start)) for extra in per_writer]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(JOIN_TIMEOUT_SEC)
        if worker.is_alive():
            worker.kill()
            worker.join()
    return [worker.exitcode for worker in workers]


def test_concurrent_run_workers_commit_every_table_row_once(
    s3: S3Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = f"s3://{BUCKET}/table-race/"
    exits = _run_at_once(_commit_table_rows, (s3.endpoint, root), [(w,) for w in range(WRITERS)])

    assert exits == [0] * WRITERS
    for name, value in _environment(s3.endpoint).items():
        monkeypatch.setenv(name, value)
    table = EmbeddingTable(Lake(root=root, storage=_storage()), MARENGO_3_0)
    rows = table.read(columns=["media_id"])
    expected = {media_id(uri) for w in range(WRITERS) for uri in _uris(w)}
    assert rows.num_rows == len(expected) * SEGMENTS_PER_OBJECT  # no commit lost, none applied twice
    assert set(rows.column("media_id").to_pylist()) == expected
    # One version per data commit: none overwrote another's log entry. (Both writers may also have
    # created the table, mode "ignore": the loser's create lands as a second, identical metadata commit.)
    assert _data_commits(s3, "table-race/tables/marengo_embeddings/marengo-3.0/_delta_log/") == (
        WRITERS * OBJECTS_PER_WRITER
    )


def test_concurrent_run_workers_write_each_index_segment_once(
    s3: S3Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = f"s3://{BUCKET}/index-race/"
    uris = [f"s3://media/both/{i}.mp4" for i in range(40)]
    segments = pa.concat_tables([object_segments(uri, "e1", unit(SEGMENTS_PER_OBJECT)) for uri in uris])
    ids = [media_id(uri) for uri in uris]
    for name, value in _environment(s3.endpoint).items():
        monkeypatch.setenv(name, value)
    SegmentIndex(uri=root, storage=_storage()).replace_media(MARENGO_3_0, segments.slice(0, 0), [])

    exits = _run_at_once(_write_index, (s3.endpoint, root, segments, ids), [()] * WRITERS)

    assert exits == [0] * WRITERS
    index = SegmentIndex(uri=root, storage=_storage())
    assert index.state(MARENGO_3_0).rows == len(uris) * SEGMENTS_PER_OBJECT
    assert index.duplicate_segment_ids(MARENGO_3_0) == 0
    assert not [key for key in _keys(s3, "index-race/_locks/")], "the lease was released"


def _data_commits(s3: S3Emulator, log: str) -> int:
    """Log entries that add files (Delta's commit JSON lines), read off the bucket itself."""
    count = 0
    for key in _keys(s3, log):
        body = s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        count += any('"add"' in line.split(":", 1)[0] for line in body.splitlines())
    return count


def _keys(s3: S3Emulator, prefix: str) -> list[str]:
    listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]
