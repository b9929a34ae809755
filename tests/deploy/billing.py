"""What the emulators themselves recorded of what was billed, and what the lake and the index hold, for the
topology tests: one invocation per object per model version, and index rows equal to table rows."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from emulators.stack import LocalStack
from resources.index.segment_index import SegmentIndex
from resources.providers.marengo_models import marengo_model
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.submission_ledger import SubmissionLedger

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def lake_and_index(settings: dict[str, str]) -> tuple[Lake, SegmentIndex]:
    """The lake and the index the runs wrote (on the S3 emulator: the caller's environment reaches it)."""
    storage = S3Storage(region_name=settings["AWS_REGION"])
    lake = Lake(root=settings["MEDIAEMBED_LAKE_URI"], storage=storage)
    return lake, SegmentIndex(uri=settings["MEDIAEMBED_INDEX_URI"], storage=storage)


def billed(stack: LocalStack) -> Counter[tuple[str, str]]:
    """(model version, media URI) -> how many jobs the providers created for it: Bedrock's async
    invocations and the TwelveLabs API's embed tasks and synchronous embeds (each is paid for)."""
    found: Counter[tuple[str, str]] = Counter()
    for invocation in stack.bedrock.invocations.values():
        media = invocation.request.media
        found[(f"marengo-{invocation.model.version}", media.uri if media and media.uri else "<inline>")] += 1
    for task in stack.twelvelabs.tasks.values():
        found[(f"marengo-{task.request.version}", _source_uri(task.request.source))] += 1
    return found


def sync_embeds(stack: LocalStack) -> int:
    """TwelveLabs synchronous embeds answered (errors included): billed like tasks when they succeed."""
    return int(stack.twelvelabs.calls.get("Embed", 0))


def _source_uri(source: Any) -> str:
    """s3://bucket/key of a presigned URL the TwelveLabs API fetched."""
    if source is None or not source.url:
        return "<inline>"
    path = unquote(source.url.split("?", 1)[0].split("://", 1)[1].split("/", 1)[1])
    return f"s3://{path}"


def open_jobs(lake: Lake, model_key: str) -> int | None:
    """Jobs of a version still in flight in the ledger; None before the version's first submission."""
    jobs = SubmissionLedger(lake, None).jobs(model_key)
    return None if jobs.empty else int((jobs["status"] == "in_progress").sum())


def ledger_jobs(lake: Lake, model_key: str) -> Counter[str]:
    jobs = SubmissionLedger(lake, None).jobs(model_key)
    return Counter(jobs["status"]) if not jobs.empty else Counter()


def embedded(lake: Lake, model_key: str) -> set[str]:
    """Media URIs with rows in the version's embedding table."""
    return set(EmbeddingTable(lake, marengo_model(model_key)).media_uris().values())


def table_and_index_rows(lake: Lake, index: SegmentIndex, model_key: str) -> tuple[list[str], list[str]]:
    """The segment ids of the version's embedding table and of its index, sorted."""
    model = marengo_model(model_key)
    table = EmbeddingTable(lake, model).read(columns=["segment_id"]).column("segment_id").to_pylist()
    scanned = index.scan(model, ["segment_id"])
    indexed = scanned.column("segment_id").to_pylist() if scanned is not None else []
    return sorted(table), sorted(indexed)


def record(name: str, counts: dict[str, Any]) -> None:
    """Counts and durations for CI to keep (test-artifacts/, git-ignored); recorded, never asserted."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"topology-{name}.json").write_text(
        json.dumps({"recorded_at": time.time(), **counts}, indent=2, default=str) + "\n"
    )
