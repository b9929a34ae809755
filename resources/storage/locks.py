"""The two kinds of writer lock (a table's `Location.writer_lock` picks one): one writer per LanceDB table
at a time, wherever the index lives and whatever the instance's pools say.

Two concurrent `merge_insert`s that add the same new keys commit both sets of rows (lance#4585): two
ingest runs on an instance without a `lancedb_writer` pool limit doubled every segment of the index. A
Dagster pool is a setting someone can forget, so the index writer also takes a lock next to the data:

- A local directory: an exclusive `flock` (filelock's UnixFileLock) on `<index>/_locks/<table>.lock`.
  The kernel drops it when the process dies, so a killed writer never blocks the next one.
- `s3://`: a lease object `<prefix>/_locks/<table>.lease`, created with a conditional write
  (`If-None-Match: *`, which S3 and its emulator honour), renewed every `ttl/3` by `If-Match` on its own
  ETag and deleted with `If-Match` on release. A lease is stale once its ETag has stayed the same for its
  `ttl` on the waiter's own monotonic clock, or once its Last-Modified is more than `ttl` (+2 s of
  one-second rounding) older than the server's `Date`; a waiter takes it over with `If-Match` on the stale
  ETag, so exactly one waiter wins. A writer checks that its lease is still fresh before each commit, so
  one whose renewals failed stops instead of writing next to the new holder. A killed writer holds the
  table for at most `ttl` seconds.

Waiting is bounded: after `wait_sec` the writer gives up with a one-line error naming the holder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import filelock
from botocore.exceptions import ClientError

from resources.storage.s3_objects import is_conflict

MAX_POLL_SEC = 1.0
# S3 reports Last-Modified and Date to the second: allow both roundings before a lease counts as expired.
CLOCK_ROUNDING_SEC = 2.0


class WriterLockTimeout(TimeoutError):
    """Another writer kept the table for longer than this writer was willing to wait."""


class WriterLeaseLost(RuntimeError):
    """This writer's lease could not be renewed in time; another writer may now hold the table."""


def describe_holder(holder: str | None) -> str:
    """Who is writing: the caller's label (a Dagster run id) plus process and host, for waiting messages."""
    where = f"pid {os.getpid()} on {socket.gethostname()}"
    return f"{holder} ({where})" if holder else where


class WriterLock:
    """Interface of the two lock kinds: acquire with a bounded wait, check before each commit, release."""

    table: str

    def acquire(self, wait_sec: float, on_wait: Callable[[str], None] | None = None) -> None:
        raise NotImplementedError

    def ensure_held(self) -> None:
        """Raise WriterLeaseLost if committing now could overlap another writer."""

    def release(self) -> None:
        raise NotImplementedError

    def _timeout(self, wait_sec: float, holder: str) -> WriterLockTimeout:
        return WriterLockTimeout(
            f"index table {self.table} is still being written by {holder} after {wait_sec:g} s: "
            "run the ingest again once that writer has finished or been stopped"
        )


def _poll_delays(wait_sec: float) -> Any:
    """Growing pauses between attempts (50 ms up to 1 s), ending at the deadline."""
    deadline = time.monotonic() + wait_sec
    delay = 0.05
    while (left := deadline - time.monotonic()) > 0:
        yield min(delay, left)
        delay = min(delay * 2, MAX_POLL_SEC)


class LocalWriterLock(WriterLock):
    """filelock's flock on a file beside the tables (per open file, so threads exclude each other too).

    flock, not a soft lock: the kernel drops it when the holder dies. The holder's label is written into the
    held file, which contenders never truncate, so a waiter can name who writes.
    """

    def __init__(self, path: Path, table: str, holder: str) -> None:
        self.path, self.table, self.holder = path, table, holder
        self._lock = filelock.UnixFileLock(
            path,
            thread_local=False,  # released by whichever thread ends the write, like the descriptor it wraps
            fallback_to_soft=False,  # a lock file left by a killed writer must never block the next one
            preserve_lock_file=True,
            on_acquired=self._name_holder,
        )

    def _name_holder(self, fd: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, self.holder.encode(), 0)

    def _current_holder(self) -> str:
        try:
            return self.path.read_text().strip() or "another writer"
        except OSError:
            return "another writer"

    def acquire(self, wait_sec: float, on_wait: Callable[[str], None] | None = None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire(blocking=False)
            return
        except filelock.Timeout:
            pass
        if on_wait:
            on_wait(f"index table {self.table} is being written by {self._current_holder()}; waiting")
        try:
            self._lock.acquire(timeout=wait_sec, poll_interval=0.05)
        except filelock.Timeout:
            raise self._timeout(wait_sec, self._current_holder()) from None

    def release(self) -> None:
        if self._lock.is_locked:
            with contextlib.suppress(OSError):
                os.truncate(self.path, 0)
            self._lock.release()


def _is_missing(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = str(error.response.get("Error", {}).get("Code", ""))
    return status == 404 or code in ("NoSuchKey", "404")


class S3WriterLease(WriterLock):
    """A lease object taken and renewed by S3 conditional writes (see the module docstring)."""

    def __init__(self, client: Any, bucket: str, key: str, table: str, holder: str, ttl_sec: float) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.table, self.holder, self.ttl_sec = table, holder, ttl_sec
        self._owner = uuid.uuid4().hex
        self._etag: str | None = None
        self._renewed_at = 0.0  # monotonic time of the last write that is known to have landed
        self._renewals = 0
        self._lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = threading.Lock()

    def _body(self) -> bytes:
        self._renewals += 1  # a new body each time, so every renewal gives the lease a new ETag
        body = {"holder": self.holder, "owner": self._owner, "ttl_sec": self.ttl_sec, "n": self._renewals}
        return json.dumps(body).encode()

    def _put(self, **condition: str) -> bool:
        started = time.monotonic()
        try:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=self._body(),
                ContentType="application/json",
                **condition,
            )
        except ClientError as error:
            if is_conflict(error) or _is_missing(error):
                return False
            raise
        with self._state:
            self._etag, self._renewed_at = response["ETag"], started
        return True

    def _read(self) -> tuple[str, dict[str, Any], float | None] | None:
        """(etag, body, seconds since Last-Modified by the server's clock) of the current lease, if any."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if _is_missing(error):
                return None
            raise
        try:
            body = json.loads(response["Body"].read())
        except ValueError:
            body = {}
        age: float | None = None
        server_date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        modified: datetime | None = response.get("LastModified")
        if server_date and modified:
            age = (parsedate_to_datetime(server_date) - modified).total_seconds()
        return response["ETag"], body if isinstance(body, dict) else {}, age

    def acquire(self, wait_sec: float, on_wait: Callable[[str], None] | None = None) -> None:
        seen_etag: str | None = None
        seen_since = 0.0
        holder = "another writer"
        delays = _poll_delays(wait_sec)
        told = False
        while True:
            if self._put(IfNoneMatch="*"):
                break
            current = self._read()  # None: released between the two calls, so try again shortly
            if current is not None:
                etag, body, age = current
                holder = str(body.get("holder") or holder)
                ttl = float(body.get("ttl_sec") or self.ttl_sec)
                now = time.monotonic()
                if etag != seen_etag:
                    seen_etag, seen_since = etag, now
                stale = now - seen_since >= ttl or (age is not None and age > ttl + CLOCK_ROUNDING_SEC)
                if stale and self._put(IfMatch=etag):
                    break  # took over a lease its holder stopped renewing; a lost race just waits on
            if on_wait and not told:
                on_wait(f"index table {self.table} is being written by {holder}; waiting")
                told = True
            delay = next(delays, None)
            if delay is None:
                raise self._timeout(wait_sec, holder)
            time.sleep(delay)
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_until_released, daemon=True, name=self.key)
        self._thread.start()

    def _renew_until_released(self) -> None:
        while not self._stop.wait(self.ttl_sec / 3):
            with self._state:
                etag = self._etag
            try:
                renewed = etag is not None and self._put(IfMatch=etag)
            except Exception:  # network trouble: try again next round; ensure_held decides if it is too late
                continue
            if not renewed:
                self._lost = True  # someone took the lease over: this writer must not commit again
                return

    def ensure_held(self) -> None:
        with self._state:
            since = time.monotonic() - self._renewed_at
        if self._lost or since > self.ttl_sec / 2:
            raise WriterLeaseLost(
                f"the writer lease of index table {self.table} was not renewed for {since:.0f} s: "
                "stopped before writing; run the ingest again"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._state:
            etag, self._etag = self._etag, None
        if etag is None or self._lost:
            return
        with contextlib.suppress(ClientError):  # not ours any more, or not deletable now: it expires
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=etag)
