"""What a listing found out about open jobs, kept in the lake until an ingest run has recorded it.

Whoever asks the provider which jobs finished (the sensor, or a submission run holding the quota) writes
what it found here, one small Parquet file per listing, under `state/invocation_findings/<model>/`. The
ingest run reads these instead of listing again, and deletes the files it read once their outcomes are in
the ledger. So each finished job is listed about once, and a listing's answer is never lost: a file is
deleted only after the ledger holds what it said (a finding for a job the ledger has closed is stale and
simply ignored).

Order of reads: the findings first, then the ledger. Every finding names a job whose submission was in the
ledger before the finding was written, so a ledger read after the findings knows all of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from resources.providers.embedding_jobs import InvocationState, InvocationStatus
from resources.storage.lake import Lake
from resources.storage.retry import race_retries

FINDINGS_DIR = "state/invocation_findings"
# What a listing can say that frees a slot at the provider; "unknown" (could not ask) frees none.
FREES_SLOT = frozenset({"completed", "failed", "lost"})
READ_ATTEMPTS = 5
TS = pa.timestamp("us", tz="UTC")
FINDINGS_SCHEMA = pa.schema(
    [
        ("invocation_id", pa.string()),
        ("client_token", pa.string()),
        ("model_key", pa.string()),
        ("state", pa.string()),
        ("submitted_at", TS),
        ("ended_at", TS),
        ("failure_message", pa.string()),
        ("output_uri", pa.string()),
        ("found_at", TS),
        ("found_by", pa.string()),
    ]
)


@dataclass(frozen=True)
class Findings:
    """The files read (to delete once recorded) and the latest status per invocation id in them."""

    files: list[str]
    statuses: dict[str, InvocationStatus]
    model_of: dict[str, str]  # invocation id -> model key


class InvocationFindings:
    def __init__(self, lake: Lake) -> None:
        self._lake = lake

    def record(self, statuses: Iterable[InvocationStatus], model_key: str, found_by: str) -> int:
        """Write one file with `statuses` (finished jobs of one model); returns how many it holds."""
        now = datetime.now(UTC)
        rows = [
            {
                "invocation_id": s.invocation_id,
                "client_token": s.client_token,
                "model_key": model_key,
                "state": s.state,
                "submitted_at": s.submitted_at,
                "ended_at": s.ended_at,
                "failure_message": s.failure_message,
                "output_uri": s.output_uri,
                "found_at": now,
                "found_by": found_by,
            }
            for s in statuses
        ]
        if rows:
            stamp = now.strftime("%Y%m%dT%H%M%S%f")
            path = f"{FINDINGS_DIR}/{model_key}/{stamp}-{uuid.uuid4().hex[:8]}.parquet"
            self._lake.write_table(pa.Table.from_pylist(rows, schema=FINDINGS_SCHEMA), path)
        return len(rows)

    def read(self, model_key: str | None = None) -> Findings:
        """Every finding not yet consumed (of one model, or all); a file an ingest run deletes meanwhile
        held only findings the ledger now records, so listing again and skipping it loses nothing."""
        folder = FINDINGS_DIR if model_key is None else f"{FINDINGS_DIR}/{model_key}"
        files, table = self._read_folder(folder)
        if table is None:
            return Findings([], {}, {})
        statuses: dict[str, InvocationStatus] = {}
        model_of: dict[str, str] = {}
        for row in table.cast(FINDINGS_SCHEMA).sort_by("found_at").to_pylist():
            state: InvocationState = row["state"]
            statuses[row["invocation_id"]] = InvocationStatus(
                invocation_id=row["invocation_id"],
                client_token=row["client_token"],
                state=state,
                submitted_at=row["submitted_at"],
                ended_at=row["ended_at"],
                failure_message=row["failure_message"],
                output_uri=row["output_uri"],
            )
            model_of[row["invocation_id"]] = row["model_key"]
        return Findings(files, statuses, model_of)

    def _read_folder(self, folder: str) -> tuple[list[str], pa.Table | None]:
        def read() -> tuple[list[str], pa.Table | None]:
            files = self._lake.list_files(folder)
            return files, self._lake.read_tables(files)

        return race_retries(FileNotFoundError, READ_ATTEMPTS)(read)

    def consume(self, files: list[str]) -> None:
        """Delete files whose findings the ledger now holds (another run may have deleted some already)."""
        self._lake.delete_files(files, missing_ok=True)
