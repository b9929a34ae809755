"""No litter, no races in the lake: stale temporaries go, concurrent ledger compactions never fail a run."""

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import PrivateAttr

from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, Submission
from resources.providers.marengo_models import MARENGO_3_0
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.submission_ledger import SubmissionLedger

STORAGE = S3Storage(region_name="us-east-1")


def lake_at(root: Path) -> Lake:
    return Lake(root=str(root), storage=STORAGE)


def litter(folder: Path, name: str, age_sec: float) -> Path:
    """A temporary file as write_table names it, as a write killed before its rename leaves it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet.{uuid.uuid4().hex}.tmp"
    path.write_bytes(b"PAR1 half a file")
    then = time.time() - age_sec
    os.utime(path, (then, then))
    return path


def test_the_next_write_removes_stale_temporaries_and_keeps_live_ones(tmp_path: Path) -> None:
    folder = tmp_path / "tables" / "t"
    stale, live = litter(folder, "a", age_sec=7200), litter(folder, "b", age_sec=5)
    elsewhere = litter(tmp_path / "tables" / "other", "c", age_sec=7200)
    lake = lake_at(tmp_path)
    assert lake.list_files("tables/t") == []
    lake.write_table(pa.table({"x": [1]}), "tables/t/new.parquet")
    assert not stale.exists() and live.exists(), "only litter older than stale_temporary_sec goes"
    assert elsewhere.exists(), "a write sweeps its own folder only"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["new.parquet", live.name])

    assert lake.remove_stale_temporaries() == [f"tables/other/{elsewhere.name}"]
    assert lake_at(tmp_path).model_copy(update={"stale_temporary_sec": 1.0}).remove_stale_temporaries(
        "tables"
    ) == [f"tables/t/{live.name}"]


def submissions(n: int) -> list[Submission]:
    jobs = [EmbeddingJob(f"s3://m/{i}.mp4", "e", "video", MARENGO_3_0, EmbeddingOptions()) for i in range(n)]
    return [Submission(j, f"arn:{i}", f"s3://out/{i}", datetime.now(UTC)) for i, j in enumerate(jobs)]


def ledger_with_files(root: Path, n: int) -> SubmissionLedger:
    ledger = SubmissionLedger(lake_at(root), "bedrock")
    for s in submissions(n):
        ledger.record_submissions([s], {}, "run")
    return ledger


class RivalLake(Lake):
    """A lake where another run's compaction runs at a chosen moment: right after this run listed the
    files (before it reads them) or right before it deletes them."""

    moment: str = "read"
    _fired: bool = PrivateAttr(default=False)

    def _rival(self) -> None:
        if not self._fired:
            self._fired = True
            assert SubmissionLedger(Lake(root=self.root, storage=self.storage), "bedrock").compact(4) > 0

    def read_tables(
        self, relative_paths: list[str], columns: list[str] | None = None, where: Any = None
    ) -> pa.Table | None:
        if self.moment == "read":
            self._rival()
        return super().read_tables(relative_paths, columns, where)

    def delete_files(self, relative_paths: list[str], missing_ok: bool = False) -> None:
        if self.moment == "delete":
            self._rival()
        super().delete_files(relative_paths, missing_ok)


def test_a_compaction_that_loses_the_race_neither_fails_nor_loses_events(tmp_path: Path) -> None:
    for moment in ("read", "delete"):
        root = tmp_path / moment
        ledger_with_files(root, 10)
        racing = SubmissionLedger(RivalLake(root=str(root), storage=STORAGE, moment=moment), "bedrock")
        racing.compact(4)  # raised FileNotFoundError before
        events = SubmissionLedger(lake_at(root), "bedrock").submissions()
        assert events["client_token"].nunique() == 10, moment
        assert len(list((root / "ledger" / "submissions").glob("*.parquet"))) <= 2, moment


class ListThenRival(Lake):
    """A reader whose first listing is deleted under it by another run's compaction before it reads."""

    _fired: bool = PrivateAttr(default=False)

    def list_files(self, relative_dir: str) -> list[str]:
        files = super().list_files(relative_dir)
        if not self._fired:
            self._fired = True
            SubmissionLedger(Lake(root=self.root, storage=self.storage), "bedrock").compact(4)
        return files


def test_a_reader_whose_listing_was_compacted_away_lists_again(tmp_path: Path) -> None:
    ledger_with_files(tmp_path, 10)
    jobs = SubmissionLedger(ListThenRival(root=str(tmp_path), storage=STORAGE), "bedrock").jobs()
    assert len(jobs) == 10 and set(jobs["status"]) == {"in_progress"}


def test_many_runs_compacting_and_reading_at_once(tmp_path: Path) -> None:
    ledger_with_files(tmp_path, 40)
    start = threading.Barrier(4)
    errors: list[BaseException] = []
    seen: list[int] = []

    def run(compacts: bool) -> None:
        ledger = SubmissionLedger(lake_at(tmp_path), "bedrock")
        start.wait()
        try:
            for _ in range(3):
                if compacts:
                    ledger.compact(4)
                seen.append(ledger.jobs()["client_token"].nunique())
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i < 3,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(seen) == {40}, "every reader saw every event, whatever was being folded"
