"""The emulator's invocations on disk (SQLite under its workdir), so a restart forgets no job.

Real Bedrock keeps its async invocations whatever happens to its clients; an emulator restarted over a kept
work folder must too. Each invocation is one row holding its JSON document, written whenever it changes.
Without a workdir nothing is stored and a fresh emulator knows no job (how lost jobs are reproduced).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DB_NAME = "bedrock-invocations.sqlite3"


class InvocationStore:
    """One SQLite file; every call is its own transaction, serialised by a lock (one process writes)."""

    def __init__(self, workdir: Path, name: str = DB_NAME) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.path = workdir / name
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process kill
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS invocations "
            "(arn TEXT PRIMARY KEY, token TEXT NOT NULL, doc TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)"
        )

    def save(self, arn: str, token: str, document: dict[str, Any], created: int | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO invocations (arn, token, doc) VALUES (?, ?, ?) "
                "ON CONFLICT(arn) DO UPDATE SET token = excluded.token, doc = excluded.doc",
                (arn, token, json.dumps(document)),
            )
            if created is not None:
                db.execute(
                    "INSERT INTO counters (name, value) VALUES ('created', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                    (created,),
                )

    def delete(self, arn: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM invocations WHERE arn = ?", (arn,))

    def load(self) -> tuple[list[dict[str, Any]], int | None]:
        """Every stored invocation document, oldest first, and the created counter (None if never set)."""
        with self._lock:
            rows = self._db.execute("SELECT doc FROM invocations ORDER BY rowid").fetchall()
            counter = self._db.execute("SELECT value FROM counters WHERE name = 'created'").fetchone()
        return [json.loads(doc) for (doc,) in rows], (int(counter[0]) if counter else None)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
