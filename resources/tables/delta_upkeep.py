"""What every Delta table of the lake shares: how files are written, retried and kept few.

delta-rs compacts with ZSTD by default, which reads back about 40% slower than the Snappy files its writes
make, so every write and compaction uses Snappy. A commit that lost to another writer is tried again,
bounded. `maintain` compacts small files once there are many, checkpoints the log and vacuums what no
version of the last week needs.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
from deltalake import DeltaTable, WriterProperties
from deltalake.exceptions import CommitFailedError

from resources.storage.retry import race_retries

WRITER = WriterProperties(compression="SNAPPY")
# Compact once this many data files make up the current version (runs add one or a few each): every file is
# a fragment each read opens, so a read of few large files stays near one Parquet file's.
COMPACT_FROM_FILES = 16
# A table this small is compacted into one file after every commit that leaves it in several: rewriting
# it costs a run well under a second, and every read then opens one file.
SMALL_TABLE_BYTES = 64 * 1024 * 1024
# Files no version younger than this needs are vacuumed: a week of time travel.
RETENTION_HOURS = 7 * 24
COMMIT_ATTEMPTS = 5


def commit_with_retries(write: Callable[[], int]) -> int:
    """A commit, tried again when another writer committed first (bounded: it ends)."""
    return race_retries(CommitFailedError, COMMIT_ATTEMPTS, backoff_sec=0.1)(lambda: int(write()))


def maintain(table: DeltaTable, target_file_bytes: int | None = None) -> str:
    """Compact small files once there are many (a small table: into one file after every commit that left
    several), checkpoint, then vacuum what no version of the last week needs."""
    files = len(table.file_uris())
    size = sum(pa.table(table.get_add_actions()).column("size_bytes").to_pylist())
    small = size <= SMALL_TABLE_BYTES
    if files < COMPACT_FROM_FILES and not (small and files > 1):
        return f"{files} data files, compaction from {COMPACT_FROM_FILES}"
    metrics = table.optimize.compact(
        target_size=SMALL_TABLE_BYTES if small else target_file_bytes, writer_properties=WRITER
    )
    # A checkpoint: readers then load the log from one Parquet file instead of replaying every commit.
    table.create_checkpoint()
    removed = table.vacuum(retention_hours=RETENTION_HOURS, dry_run=False, full=True)
    return (
        f"compacted {metrics.get('numFilesRemoved', files)} files into "
        f"{metrics.get('numFilesAdded', '?')}; vacuumed {len(removed)} files older than {RETENTION_HOURS} h"
    )
