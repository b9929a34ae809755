"""The embedding table's audit: rows stored before ingest validated every output are checked once against
the segment rules, and what breaks them is taken back.

Since outputs are validated before their commit, a table can only hold a wrong row written by an earlier
release (a segment three times, a zero vector, a span past the media). Each such object's job gets the
verdict its output would get now, `failed` with the reason (so the next submission run embeds it again, as
after any unusable output), and its rows leave the table's current version; the index follows, because the
object no longer has a current embedding. The audit runs once per table and rules revision: a marker in the
lake records it, so ingest runs after it cost nothing.

Order makes it safe to kill: the verdicts first, then the delete, then the marker. A kill before the marker
only means the next run audits again and finds what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from resources.providers.marengo_models import MarengoModel
from resources.storage.lake import Lake
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_schema import media_id
from resources.tables.segment_validity import (
    RULES_REVISION,
    faults_by_object,
    repeat_faults,
    span_faults,
    vector_faults,
)
from resources.tables.submission_ledger import Outcome, SubmissionLedger

AUDIT_REASON = "unusable output found in the embedding table by its audit: "
MARKER_SCHEMA = pa.schema(
    [
        ("rules_revision", pa.int32()),
        ("table_version", pa.int64()),
        ("objects_taken_back", pa.int64()),
        ("audited_at", pa.timestamp("us", tz="UTC")),
    ]
)
ID_COLUMNS = ["media_uri", "segment_id", "start_sec", "end_sec", "invocation_id"]


@dataclass(frozen=True)
class AuditReport:
    """What one audit did; `ran` is False when the table was audited under these rules already."""

    ran: bool
    rows_checked: int = 0
    taken_back: pd.DataFrame = field(default_factory=pd.DataFrame)  # media_uri, invocation_id, problem


class TableAudit:
    def __init__(self, lake: Lake, model: MarengoModel) -> None:
        self._lake = lake
        self._table = EmbeddingTable(lake, model)
        self._model = model
        self.marker = f"state/table_audit/{model.key}.parquet"

    def done(self) -> bool:
        marker = self._lake.read_table(self.marker)
        return marker is not None and RULES_REVISION in marker.column("rules_revision").to_pylist()

    def run(self, durations: Callable[[], Mapping[str, float | None]], run_id: str) -> AuditReport:
        """Audit the table unless done; `durations()`: media URI -> probed seconds, from the inventory (read
        only when the audit runs: once per table and rules revision)."""
        if self.done():
            return AuditReport(ran=False)
        bad_rows, checked = self._bad_rows(durations())
        faults = faults_by_object(bad_rows)
        if not faults.empty:
            self._take_back(faults, run_id)
        version = self._table.version()
        marker = pa.Table.from_pylist(
            [
                {
                    "rules_revision": RULES_REVISION,
                    "table_version": -1 if version is None else version,
                    "objects_taken_back": len(faults),
                    "audited_at": datetime.now(UTC),
                }
            ],
            schema=MARKER_SCHEMA,
        )
        self._lake.write_table(marker, self.marker)
        return AuditReport(ran=True, rows_checked=checked, taken_back=faults)

    def _bad_rows(self, durations: Mapping[str, float | None]) -> tuple[pd.DataFrame, int]:
        """Every stored row breaking a rule (media_uri, invocation_id, fault), and how many were read. The
        vectors are read a batch at a time, so memory stays flat whatever the table's size; spans and
        repeats need only the small columns of the whole table."""
        keys = self._table.read_stored(columns=ID_COLUMNS)
        uris = keys.column("media_uri").to_pandas()
        seconds = uris.map(lambda uri: durations.get(uri)).astype(float).to_numpy()
        spans = span_faults(
            keys.column("start_sec").to_numpy(zero_copy_only=False).astype(float),
            keys.column("end_sec").to_numpy(zero_copy_only=False).astype(float),
            seconds,
        )
        repeats = repeat_faults(keys.column("segment_id").to_numpy(zero_copy_only=False), uris.to_numpy())
        frames = [_bad(keys, np.where(pd.isna(spans), repeats, spans))]
        for batch in self._table.stored_batches(["media_uri", "invocation_id", "vector"]):
            frames.append(_bad(pa.Table.from_batches([batch]), vector_faults(batch.column("vector"))))
        return pd.concat(frames, ignore_index=True), keys.num_rows

    def _take_back(self, faults: pd.DataFrame, run_id: str) -> None:
        """The failed verdict for each bad object's job, then its rows out of the current version."""
        jobs = SubmissionLedger(self._lake, None).jobs(self._model.key)
        bad = jobs[jobs["invocation_id"].isin(faults["invocation_id"])]
        problem = dict(zip(faults["invocation_id"], faults["problem"], strict=True))
        for provider, theirs in bad.groupby("provider"):
            ledger = SubmissionLedger(self._lake, str(provider))
            ledger.record_outcomes(
                [
                    Outcome(
                        job_key=str(row["job_key"]),
                        client_token=str(row["client_token"]),
                        model_key=self._model.key,
                        media_uri=str(row["media_uri"]),
                        etag=str(row["etag"]),
                        invocation_id=str(row["invocation_id"]),
                        status="failed",
                        reason=AUDIT_REASON + problem[row["invocation_id"]],
                        media_seconds=None if pd.isna(row["media_seconds"]) else float(row["media_seconds"]),
                    )
                    for row in theirs.to_dict("records")
                ],
                run_id,
            )
            ledger.reopen(theirs, run_id)
        self._table.delete(sorted({media_id(str(uri)) for uri in np.asarray(faults["media_uri"])}))


def _bad(rows: pa.Table, faults: np.ndarray) -> pd.DataFrame:
    bad = ~pd.isna(faults)
    return pd.DataFrame(
        {
            "media_uri": rows.column("media_uri").to_numpy(zero_copy_only=False)[bad],
            "invocation_id": rows.column("invocation_id").to_numpy(zero_copy_only=False)[bad],
            "fault": faults[bad],
        }
    )
