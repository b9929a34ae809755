"""The invocations asset: refusals about one object never stop the others; set-up refusals do."""

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from assets_defs.marengo_invocations import InvocationConfig, marengo_invocations
from assets_defs.media_inventory import INVENTORY_PATH, INVENTORY_SCHEMA
from resources.embedding_jobs import (
    EmbeddingJob,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
    SubmissionRefused,
)
from resources.lake import Lake
from resources.marengo_models import MARENGO_3_0, MarengoModel
from resources.marengo_provider import MarengoProvider
from resources.s3_storage import S3Storage
from resources.submission_ledger import SubmissionLedger

BAD = [f"s3://m/a{i}/zero-length.mp4" for i in range(3)]  # first in the listing
GOOD = [f"s3://m/videos/{i}.mp4" for i in range(7)]


class RefusingProvider(MarengoProvider):
    """Accepts every job except those for `refused` URIs, which it refuses the way its flags say."""

    refused: list[str]
    object_specific: bool

    @property
    def provider_name(self) -> str:
        return "fake"

    def submit(self, job: EmbeddingJob) -> Submission:
        if job.media_uri in self.refused:
            reason = f"ValidationException: Unable to read media at {job.media_uri}: no decodable frames"
            raise SubmissionRefused(reason, permanent=True, object_specific=self.object_specific)
        return Submission(job, f"arn-{job.client_token}", "s3://out/x", datetime.now(UTC))

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        raise NotImplementedError

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        raise NotImplementedError

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        raise NotImplementedError


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1"))
    rows = [
        {
            "media_uri": u,
            "etag": "e",
            "modality": "video",
            "status": "ok",
            "size_bytes": 10,
            "duration_sec": 0.0,
        }
        for u in BAD + GOOD
    ]
    lake.write_table(pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA), INVENTORY_PATH)
    return lake


def run(provider: MarengoProvider, lake: Lake) -> tuple[dict, dg.AssetCheckResult]:
    with dg.build_asset_context(
        partition_key=MARENGO_3_0.key, resources={"marengo": provider, "lake": lake}
    ) as context:
        result = marengo_invocations(context, InvocationConfig())
    assert isinstance(result, dg.MaterializeResult) and result.metadata and result.check_results
    [check] = result.check_results
    return {k: getattr(v, "value", v) for k, v in result.metadata.items()}, check


def test_three_bad_objects_first_do_not_stop_seven_good_ones(lake: Lake) -> None:
    meta, check = run(RefusingProvider(refused=BAD, object_specific=True), lake)
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (7, 3, 0)
    assert meta["rejected_for_the_object"] == 3
    assert check.passed
    jobs = SubmissionLedger(lake, "").jobs(MARENGO_3_0.key)
    assert sorted(jobs[jobs["status"] == "in_progress"]["media_uri"]) == GOOD
    rejected = jobs[jobs["status"] == "rejected"]
    assert sorted(rejected["media_uri"]) == BAD and rejected["reason"].str.contains("no decodable").all()


def test_three_identical_set_up_refusals_still_stop_the_run(lake: Lake) -> None:
    meta, check = run(RefusingProvider(refused=BAD, object_specific=False), lake)
    assert (meta["submitted"], meta["rejected"], meta["deferred"]) == (0, 3, 7)
    assert not check.passed
