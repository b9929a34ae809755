"""The index writer's lock: one writer per LanceDB table at a time (see resources/storage/locks.py for the
two kinds, an flock on a local disk and a lease object on S3), held across a read-decide-write cycle."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from resources.storage.location import Location
from resources.storage.locks import (
    LocalWriterLock,
    S3WriterLease,
    WriterLeaseLost,
    WriterLock,
    WriterLockTimeout,
    describe_holder,
)

__all__ = [
    "LocalWriterLock",
    "S3WriterLease",
    "WriterLeaseLost",
    "WriterLock",
    "WriterLockTimeout",
    "describe_holder",
    "holding",
    "table_writer_lock",
]


def table_writer_lock(index: Location, table: str, holder: str, lease_sec: float) -> WriterLock:
    """The lock of one LanceDB table of the index at `index`, kept beside it: `_locks/<table>.lock` (an
    flock) on a local disk, `_locks/<table>.lease` (a lease object) on S3."""
    return index.writer_lock(f"_locks/{table}", table, holder, lease_sec)


@contextlib.contextmanager
def holding(
    held: threading.local,
    table: str,
    make_lock: Callable[[], WriterLock],
    wait_sec: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[WriterLock]:
    """Hold `table` for writing; a nested call in the same thread reuses the lock it already holds (`held`
    is the resource's thread-local), so a read-decide-write cycle can wrap the writes it calls."""
    locks: dict[str, WriterLock] = held.__dict__.setdefault("locks", {})
    if table in locks:
        yield locks[table]
        return
    lock = make_lock()
    lock.acquire(wait_sec, on_wait)
    locks[table] = lock
    try:
        yield lock
    finally:
        del locks[table]
        lock.release()
