"""Nothing wrong reaches the embedding table: a parseable but wrong output fails its job before the commit;
rows an earlier release committed are taken back by the table's audit; a lost job's paid output is kept.

The provider is a typed fake that serves scripted `output.json` documents through the production parser,
so each case is exactly what Bedrock could write."""

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from pydantic import Field

from assets_defs.inventory.media_inventory import INVENTORY_SCHEMA, read_inventory
from assets_defs.marengo.embeddings import IngestConfig, build_ingest, materialize_result
from assets_defs.marengo.submission_plan import plan_submissions
from resources.providers.base import MarengoProvider
from resources.providers.bedrock.marengo_bodies import parse_output
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.errors import OutputUnavailable
from resources.providers.marengo_models import MARENGO_3_0, MarengoModel
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import ProviderName
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.inventory_table import InventoryTable
from resources.tables.segment_schema import media_id, segments_table
from resources.tables.submission_ledger import Outcome, SubmissionLedger
from resources.tables.table_audit import AUDIT_REASON, TableAudit

DIM = MARENGO_3_0.dimension
GOOD, BAD = "s3://m/good.mp4", "s3://m/bad.mp4"
DURATION = 10.0
GONE = "no output.json at the output location"  # (resource config cannot hold a null)


def vector(seed: int) -> list[float]:
    return np.random.default_rng(seed).normal(size=DIM).round(6).tolist()


def item(start: float, end: float, seed: int = 1, **fields: Any) -> dict[str, Any]:
    return {
        "embedding": vector(seed),
        "embeddingOption": "visual",
        "startSec": start,
        "endSec": end,
        **fields,
    }


OK_OUTPUT = {"data": [item(0, 6, 1), item(6, 10, 2)]}
# Parseable, wrong: what the fault matrix found committed and recorded `completed` before.
WRONG_OUTPUTS = {
    "a segment repeated 3 times": ({"data": [item(0, 6), item(0, 6), item(0, 6)]}, "repeats segment 0"),
    "an all-zero vector": ({"data": [item(0, 6, embedding=[0.0] * DIM)]}, "zero-norm vector"),
    "a span of 0 to 1e9 s on a 10 s video": ({"data": [item(0, 1e9)]}, "past the media's 10 s"),
    "data as an object, not a list": ({"data": item(0, 6)}, "not the documented list of segments"),
    "an undocumented scope": ({"data": [item(0, 6, embeddingScope="scene")]}, "not clip or asset"),
}


class OutputProvider(MarengoProvider):
    """Every open job is in `state`; each object's `output.json` is the scripted document (parsed by the
    production parser), lost jobs' outputs too; `unavailable` makes a lost job's output unreadable."""

    state: str = "completed"
    outputs: dict[str, Any] = Field(default_factory=dict)
    unavailable: bool = False

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock"

    def submit(self, job: EmbeddingJob) -> Submission:
        raise NotImplementedError

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        message = "GetAsyncInvoke: ValidationException: not found" if self.state == "lost" else None
        return [
            InvocationStatus(arn, token, self.state, None, None, message, None)  # type: ignore[arg-type]
            for token, arn in open_jobs.items()
        ]

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        return parse_output(self.outputs.get(job.media_uri, OK_OUTPUT), job.model, job.modality)

    def fetch_lost_output(self, job: EmbeddingJob, output_uri: str | None) -> list[SegmentEmbedding] | None:
        assert output_uri == f"s3://out/{job.client_token}", "read where the submission said"
        if self.unavailable:
            raise OutputUnavailable(f"cannot read {output_uri}/output.json: SlowDown")
        document = self.outputs.get(job.media_uri, OK_OUTPUT)
        return None if document == GONE else parse_output(document, job.model, job.modality)

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        raise NotImplementedError


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1"))
    rows = [
        {
            "media_uri": u,
            "etag": "e1",
            "modality": "video",
            "status": "ok",
            "size_bytes": 10,
            "duration_sec": DURATION,
        }
        for u in (GOOD, BAD)
    ]
    InventoryTable(lake).replace_all(pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA))
    return lake


def job(uri: str, attempt: int = 1) -> EmbeddingJob:
    return EmbeddingJob(uri, "e1", "video", MARENGO_3_0, EmbeddingOptions(), attempt)


def submit(lake: Lake, *uris: str) -> None:
    subs = [
        Submission(job(u), f"arn-{job(u).client_token}", f"s3://out/{job(u).client_token}", datetime.now(UTC))
        for u in uris
    ]
    SubmissionLedger(lake, "bedrock").record_submissions(subs, {u: DURATION for u in uris}, "submit-run")


def ingest(provider: MarengoProvider, lake: Lake) -> dg.MaterializeResult:
    """What the asset reports for one ingest run (its ingest, run directly)."""
    report = build_ingest(
        IngestConfig(), lake, MarengoProviders(bedrock=provider), MARENGO_3_0, "ingest-run"
    ).run()
    return materialize_result(report, IngestConfig())


def latest(lake: Lake, uri: str) -> dict[str, Any]:
    jobs = SubmissionLedger(lake, None).jobs(MARENGO_3_0.key)
    return jobs[jobs["media_uri"] == uri].sort_values("attempt").to_dict("records")[-1]


def stored_uris(lake: Lake) -> list[str]:
    return EmbeddingTable(lake, MARENGO_3_0).read(columns=["media_uri"]).column("media_uri").to_pylist()


def due_attempts(lake: Lake) -> dict[str, int]:
    """Media URI -> the attempt the next submission run would make, of the objects ever submitted."""
    jobs = SubmissionLedger(lake, None).jobs(MARENGO_3_0.key)
    plan = plan_submissions(read_inventory(lake), jobs, MARENGO_3_0, EmbeddingOptions(), 2)
    return {j.media_uri: j.attempt for j in plan.due if j.media_uri in set(jobs["media_uri"])}


@pytest.mark.parametrize("case", list(WRONG_OUTPUTS))
def test_a_parseable_but_wrong_output_fails_its_job_and_nothing_of_it_is_committed(
    lake: Lake, case: str
) -> None:
    document, says = WRONG_OUTPUTS[case]
    submit(lake, GOOD, BAD)
    result = ingest(OutputProvider(outputs={BAD: document}), lake)
    bad = latest(lake, BAD)
    assert bad["status"] == "failed" and bad["reason"].startswith("unusable output: "), bad["reason"]
    assert says in bad["reason"]
    assert latest(lake, GOOD)["status"] == "completed"
    assert sorted(set(stored_uris(lake))) == [GOOD], "only the good object's rows are committed"
    assert stored_uris(lake).count(GOOD) == 2
    assert due_attempts(lake) == {BAD: 2}, "failed once: retried once, like a truncated output"
    checks = {c.check_name: c.passed for c in result.check_results or []}
    assert checks["vectors_well_formed"] and checks["segments_within_media"]
    assert result.metadata and result.metadata["objects_failed"] == 1


def bad_rows_committed_by_an_older_release(lake: Lake) -> None:
    """What the code before output validation committed: a segment three times and a zero vector."""
    submit(lake, GOOD, BAD)
    table = EmbeddingTable(lake, MARENGO_3_0)
    route = OutputProvider().route(MARENGO_3_0)
    segments = parse_output(
        {"data": [item(0, 6), item(0, 6), item(0, 6), item(6, 9, embedding=[0.0] * DIM)]}, MARENGO_3_0
    )
    good = parse_output(OK_OUTPUT, MARENGO_3_0)
    rows = [
        segments_table(
            job(u), s, route=route, invocation_id=f"arn-{job(u).client_token}", ingested_at=datetime.now(UTC)
        )
        for u, s in ((BAD, segments), (GOOD, good))
    ]
    table.replace(pa.concat_tables(rows), [media_id(BAD), media_id(GOOD)])
    ledger = SubmissionLedger(lake, "bedrock")
    ledger.record_outcomes(
        [
            Outcome(
                j.job_key,
                j.client_token,
                MARENGO_3_0.key,
                j.media_uri,
                "e1",
                f"arn-{j.client_token}",
                "completed",
                segments=n,
            )
            for j, n in ((job(BAD), 4), (job(GOOD), 2))
        ],
        "old-ingest",
    )


@pytest.mark.parametrize("compacted", [False, True], ids=["live", "compacted"])
def test_the_audit_takes_back_rows_an_older_release_committed_and_the_object_is_embedded_again(
    lake: Lake, compacted: bool
) -> None:
    bad_rows_committed_by_an_older_release(lake)
    if compacted:  # the jobs ended long ago: their state is in the closed rows, not the live events
        assert SubmissionLedger(lake, "bedrock").compact(min_files=1)
    assert due_attempts(lake) == {}
    result = ingest(OutputProvider(), lake)  # nothing open: only the audit has work
    assert result.metadata and result.metadata["objects_taken_back_by_audit"] == 1
    bad = latest(lake, BAD)
    assert bad["status"] == "failed" and bad["reason"].startswith(AUDIT_REASON), bad["reason"]
    assert "repeats segment 0" in bad["reason"]
    assert sorted(set(stored_uris(lake))) == [GOOD]
    assert due_attempts(lake) == {BAD: 2}
    assert TableAudit(lake, MARENGO_3_0).done()
    again = ingest(OutputProvider(), lake)
    assert again.metadata and again.metadata["table_audit"] == "audited once already"
    assert again.metadata["objects_taken_back_by_audit"] == 0


def test_a_lost_job_whose_output_is_there_is_kept_and_never_resubmitted(lake: Lake) -> None:
    submit(lake, GOOD)
    ingest(OutputProvider(state="lost"), lake)
    row = latest(lake, GOOD)
    assert row["status"] == "completed" and "its output was complete and is kept" in row["reason"]
    assert stored_uris(lake).count(GOOD) == 2
    assert due_attempts(lake) == {}, "nothing is bought again"


@pytest.mark.parametrize(
    ("document", "why"),
    [(GONE, "left no usable output"), ({"data": [item(0, 1e9)]}, "its output is unusable")],
)
def test_a_lost_job_without_a_usable_output_is_resubmitted(lake: Lake, document: Any, why: str) -> None:
    submit(lake, GOOD)
    ingest(OutputProvider(state="lost", outputs={GOOD: document}), lake)
    row = latest(lake, GOOD)
    assert row["status"] == "lost" and why in row["reason"], row["reason"]
    assert stored_uris(lake) == []
    assert due_attempts(lake) == {GOOD: 2}


def test_a_lost_job_whose_output_cannot_be_read_yet_stays_open(lake: Lake) -> None:
    submit(lake, GOOD)
    ingest(OutputProvider(state="lost", unavailable=True), lake)
    assert latest(lake, GOOD)["status"] == "in_progress", "read again before buying it again"
    assert due_attempts(lake) == {}
