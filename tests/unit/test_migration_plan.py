"""The plan before a launch: the estimate, the expected duration, the budget gate and per-version progress."""

import io
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from assets_defs.inventory.media_inventory import INVENTORY_SCHEMA
from assets_defs.marengo.invocations import InvocationConfig, marengo_invocations
from assets_defs.marengo.submission_plan import SubmissionPlan
from assets_defs.migration.estimates import (
    BUDGET_MEDIA_SECONDS_ENV,
    Budget,
    VersionProgress,
    budget_problem,
    cost_so_far,
    coverage_markdown,
    estimate_jobs,
    expected_duration_sec,
    resolve_budget,
    version_progress,
)
from assets_defs.migration.plan import PlanConfig, make_plan, migration_plan, plan_metadata
from harness.demo import follow
from mediaembed.progress import Progress
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0, MARENGO_3_5, MarengoModel
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import ProviderName, route
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.inventory_table import InventoryTable
from resources.tables.submission_ledger import Outcome, SubmissionLedger

BEDROCK_3_0 = route("bedrock", MARENGO_3_0.key)
# Three 100 s videos, a 50 s audio file and two images: $0.21 + $0.007 + $0.0002 at Bedrock's list prices.
MEDIA = [
    *[(f"s3://m/v{i}.mp4", "video", 100.0) for i in range(3)],
    ("s3://m/a.wav", "audio", 50.0),
    *[(f"s3://m/i{i}.png", "image", None) for i in range(2)],
]
FULL_COST = 3 * 100 * 0.0007 + 50 * 0.00014 + 2 * 0.0001


def job(uri: str, modality: str) -> EmbeddingJob:
    return EmbeddingJob(uri, "e", modality, MARENGO_3_0, EmbeddingOptions())  # type: ignore[arg-type]


def seconds() -> dict[str, float | None]:
    return {uri: s for uri, _, s in MEDIA}


def planned() -> SubmissionPlan:
    return SubmissionPlan(due=all_jobs(), media_seconds=seconds())


def all_jobs() -> list[EmbeddingJob]:
    return [job(uri, modality) for uri, modality, _ in MEDIA]


def test_the_estimate_prices_each_modality_at_the_routes_list_price() -> None:
    estimate = estimate_jobs(all_jobs(), seconds(), BEDROCK_3_0)
    assert (estimate.objects, estimate.invocations, estimate.media_seconds) == (6, 6, 350.0)
    assert estimate.cost_usd == pytest.approx(FULL_COST) and estimate.priced
    by = estimate.by_modality.set_index("modality")
    assert by.loc["image", "objects"] == 2 and by.loc["image", "media_seconds"] == 0.0
    assert by.loc["video", "cost_usd"] == pytest.approx(0.21)


def test_an_unpriced_route_says_so_rather_than_costing_nothing() -> None:
    unpriced = route("twelvelabs", MARENGO_3_5.key)
    estimate = estimate_jobs(all_jobs(), seconds(), unpriced)
    assert not estimate.priced and estimate.media_seconds == 350.0
    launch = make_plan(
        SubmissionPlan(due=all_jobs(), media_seconds=seconds()), MARENGO_3_5, unpriced, 2, Budget()
    )
    meta = plain(plan_metadata(launch))
    assert (meta["estimated_cost_usd"], meta["priced"]) == ("unpriced", False)
    assert "| **total** | **6** | **350.0** | **not priced** |" in str(meta["plan"])
    priced = plain(
        plan_metadata(
            make_plan(
                SubmissionPlan(due=all_jobs(), media_seconds=seconds()), MARENGO_3_0, BEDROCK_3_0, 2, Budget()
            )
        )
    )
    assert priced["estimated_cost_usd"] == pytest.approx(FULL_COST)


def test_the_expected_duration_spreads_the_work_over_the_quota_but_never_beats_the_longest_job() -> None:
    # Ten 100 s videos at 10 s + 0.5 s/s: 60 s each.
    assert expected_duration_sec([100.0] * 10, quota=2, job_overhead_sec=10, sec_per_media_sec=0.5) == 300
    assert expected_duration_sec([100.0] * 10, quota=30, job_overhead_sec=10, sec_per_media_sec=0.5) == 60
    assert expected_duration_sec([], quota=30, job_overhead_sec=10, sec_per_media_sec=0.5) == 0


def test_the_run_configs_budget_wins_over_the_environment_and_says_where_it_came_from() -> None:
    budget = resolve_budget(1.0, None, "5", "3600")  # the defaults: MEDIAEMBED_BUDGET_*'s texts
    assert (budget.usd, budget.usd_source) == (1.0, "run config budget_usd")
    assert (budget.media_seconds, budget.media_seconds_source) == (3600.0, BUDGET_MEDIA_SECONDS_ENV)
    assert (
        resolve_budget(None, None).describe() == resolve_budget(None, None, "", " ").describe() == "none set"
    )


def test_a_budget_that_is_not_a_number_is_one_line_saying_what_to_write() -> None:
    with pytest.raises(ValueError, match=r"MEDIAEMBED_BUDGET_USD='ten': give a number of at least 0, as"):
        resolve_budget(None, None, "ten")


def test_over_a_usd_budget_the_message_names_the_budget_the_estimate_and_how_to_raise_it() -> None:
    estimate = estimate_jobs(all_jobs(), seconds(), BEDROCK_3_0)
    problem = budget_problem(estimate, resolve_budget(None, None, "0.10"), "marengo-3.0", "x")
    assert problem is not None and "\n" not in problem
    assert problem.startswith("stopped: over budget: 6 objects of marengo-3.0 still to embed")
    assert "estimated at $0.2172, over the budget of $0.10 (MEDIAEMBED_BUDGET_USD)" in problem
    assert problem.endswith("raise MEDIAEMBED_BUDGET_USD to at least 0.22, or embed fewer objects")
    assert budget_problem(estimate, Budget(usd=0.22), "marengo-3.0", "x") is None


def test_a_media_seconds_budget_stops_too_and_points_at_its_own_setting() -> None:
    estimate = estimate_jobs(all_jobs(), seconds(), BEDROCK_3_0)
    budget = resolve_budget(None, 300)
    problem = budget_problem(estimate, budget, "marengo-3.0", "bedrock")
    assert problem is not None and "350.0 media s, over the budget of 300 media s" in problem
    assert "raise the run config's budget_media_seconds to at least 350" in problem


def test_a_usd_budget_cannot_pass_a_provider_without_prices() -> None:
    estimate = estimate_jobs(all_jobs(), seconds(), route("twelvelabs", MARENGO_3_5.key))
    problem = budget_problem(estimate, Budget(usd=1000, usd_source="x"), "marengo-3.5", "twelvelabs")
    assert problem is not None and "twelvelabs has no published price for marengo-3.5" in problem
    assert budget_problem(estimate_jobs([], {}, BEDROCK_3_0), Budget(usd=0), "marengo-3.0", "x") is None


# --- progress ---------------------------------------------------------------------------------------------


def inventory() -> pd.DataFrame:
    rows = [
        {
            "media_uri": uri,
            "media_id": f"id-{n}",
            "etag": "e",
            "modality": modality,
            "status": "ok",
            "size_bytes": 10,
            "duration_sec": s,
        }
        for n, (uri, modality, s) in enumerate(MEDIA)
    ]
    rows.append({"media_uri": "s3://m/bad.mp4", "etag": "e", "modality": None, "status": "corrupt"})
    return pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA).to_pandas()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1"))
    InventoryTable(lake).replace_all(pa.Table.from_pandas(inventory(), schema=INVENTORY_SCHEMA))
    return lake


def submit(lake: Lake, jobs: list[EmbeddingJob]) -> None:
    subs = [Submission(j, f"arn-{j.client_token}", "s3://o/x", datetime.now(UTC)) for j in jobs]
    SubmissionLedger(lake, "bedrock").record_submissions(subs, seconds(), "run-1")


def end(lake: Lake, job: EmbeddingJob, status: str) -> None:
    outcome = Outcome(
        job.job_key,
        job.client_token,
        job.model.key,
        job.media_uri,
        job.etag,
        "arn",
        status,  # type: ignore[arg-type]
    )
    SubmissionLedger(lake, "bedrock").record_outcomes([outcome], "run-2")


def a_backfill_under_way(lake: Lake) -> None:
    """v0 done, v1 in flight, v2 failed twice (out of attempts), the audio failed once (a retry waits),
    an image refused; the other image never sent."""
    v0, v1, v2, audio, image, _ = all_jobs()
    submit(lake, [v0, v1, v2, audio])
    end(lake, v0, "completed")
    end(lake, v2, "failed")
    end(lake, audio, "failed")
    second = EmbeddingJob(v2.media_uri, "e", "video", MARENGO_3_0, EmbeddingOptions(), attempt=2)
    submit(lake, [second])
    end(lake, second, "failed")
    refused = Outcome(
        image.job_key, image.client_token, MARENGO_3_0.key, image.media_uri, "e", None, "rejected"
    )
    SubmissionLedger(lake, "bedrock").record_outcomes([refused], "run-1")


def test_progress_counts_every_usable_object_in_exactly_one_state(lake: Lake) -> None:
    a_backfill_under_way(lake)
    jobs = SubmissionLedger(lake, None).jobs(MARENGO_3_0.key)
    empty = pd.DataFrame({"media_id": [], "etag": []})
    progress = version_progress(inventory(), jobs, empty, MARENGO_3_0, EmbeddingOptions())
    assert progress.counts() == {"done": 1, "in_flight": 1, "failed": 2, "waiting": 2, "not_started": 0}
    assert (progress.objects, progress.retrying) == (6, 1)
    assert progress.line() == "1/6 done, 1 in flight, 2 failed, 2 waiting, 0 not started"


def test_rows_in_the_table_at_the_current_etag_count_as_done_and_a_version_never_run_is_not_started(
    lake: Lake,
) -> None:
    no_jobs = SubmissionLedger(lake, None).jobs(MARENGO_2_7.key)
    table = pd.DataFrame({"media_id": ["id-0", "id-1"], "etag": ["e", "older-etag"]})
    progress = version_progress(inventory(), no_jobs, table, MARENGO_2_7, EmbeddingOptions())
    assert progress.counts() == {"done": 1, "in_flight": 0, "failed": 0, "waiting": 0, "not_started": 5}


def test_the_coverage_table_has_a_row_per_version_with_its_share_done() -> None:
    rows = [VersionProgress("marengo-2.7", 4, done=4), VersionProgress("marengo-3.0", 4, done=1, waiting=3)]
    table = coverage_markdown(rows, serving="marengo-2.7")
    assert "| marengo-2.7 (serving) | 4 | 4 | 0 | 0 | 0 | 0 | 100.0% |" in table
    assert "| marengo-3.0 | 4 | 1 | 0 | 0 | 3 | 0 | 25.0% |" in table


# --- the assets -------------------------------------------------------------------------------------------


class CountingProvider(MarengoProvider):
    """Bedrock as far as routes and quotas go; counts every call that would reach it."""

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock"

    def setup_problem(self) -> str | None:
        CALLS.append("setup_problem")
        return None

    def unusable_buckets(self, buckets: object) -> dict[str, str]:
        CALLS.append("unusable_buckets")
        return {}

    def submit(self, job: EmbeddingJob) -> Submission:
        CALLS.append("submit")
        return Submission(job, f"arn-{job.client_token}", "s3://out/x", datetime.now(UTC))

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        CALLS.append("finished_invocations")
        return []

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        raise NotImplementedError

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        raise NotImplementedError


CALLS: list[str] = []  # resources are copied when bound: the calls land here


@pytest.fixture(autouse=True)
def no_calls_yet() -> None:
    CALLS.clear()


def resources(lake: Lake, **marengo: str) -> dict[str, object]:
    """`marengo`: the resource's fields, as the definitions bind them (budget_usd: MEDIAEMBED_BUDGET_USD)."""
    providers = MarengoProviders(bedrock=CountingProvider(async_quotas="marengo-3.0=2"), **marengo)  # type: ignore[arg-type]
    return {"marengo": providers, "lake": lake}


def plain(metadata: Mapping[str, object]) -> dict[str, object]:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def plan(lake: Lake, config: PlanConfig, **marengo: str) -> tuple[dict[str, object], dg.AssetCheckResult]:
    with dg.build_asset_context(
        partition_key=MARENGO_3_0.key, resources=resources(lake, **marengo)
    ) as context:
        result = migration_plan(context, config)
    assert isinstance(result, dg.MaterializeResult) and result.metadata and result.check_results
    [check] = result.check_results
    return plain(result.metadata), check


def test_the_plan_lists_what_a_launch_would_embed_cost_and_take_without_calling_the_provider(
    lake: Lake,
) -> None:
    a_backfill_under_way(lake)
    meta, check = plan(lake, PlanConfig(job_overhead_sec=10, sec_per_media_sec=0.5))
    # Due: the audio's retry and the image never sent; the rest are done, running or failed for good.
    assert (meta["objects_to_embed"], meta["invocations"], meta["media_seconds"]) == (2, 2, 50.0)
    assert meta["estimated_cost_usd"] == pytest.approx(50 * 0.00014 + 0.0001)
    assert (meta["quota"], meta["expected_duration_sec"], meta["out_of_attempts"]) == (2, 35.0, 1)
    assert meta["within_budget"] and check.passed and meta["budget"] == "none set"
    assert (meta["progress_done"], meta["progress_in_flight"], meta["progress_waiting"]) == (1, 1, 2)
    coverage = str(meta["coverage_per_version"])
    assert "| marengo-3.0 (serving) | 6 | 1 | 1 | 2 | 2 | 0 | 16.7% |" in coverage
    assert "| marengo-2.7 | 6 | 0 | 0 | 0 | 0 | 6 | 0.0% |" in coverage
    assert "| **total** | **2** | **50.0** | **$0.0071** |" in str(meta["plan"])
    assert CALLS == []


def test_the_plan_shows_an_estimate_over_the_budget_as_a_failed_check(lake: Lake) -> None:
    meta, check = plan(lake, PlanConfig(), budget_usd="0.01")  # as bound from MEDIAEMBED_BUDGET_USD
    assert meta["objects_to_embed"] == 6 and not meta["within_budget"] and not check.passed
    assert "over the budget of $0.01 (MEDIAEMBED_BUDGET_USD)" in str(check.description)


def invocations(
    lake: Lake, config: InvocationConfig
) -> tuple[dict[str, object], list[dg.AssetCheckEvaluation]]:
    result = dg.materialize(
        [marengo_invocations],
        partition_key=MARENGO_3_0.key,
        resources=resources(lake),
        run_config=dg.RunConfig(ops={"marengo__invocations": config}),
    )
    [materialization] = result.asset_materializations_for_node("marengo__invocations")
    return plain(materialization.metadata), result.get_asset_check_evaluations()


def test_submission_past_the_budget_refuses_before_any_provider_call(lake: Lake) -> None:
    meta, checks = invocations(lake, InvocationConfig(budget_usd=0.05, hold_quota_sec=0))
    assert CALLS == [] and meta["submitted"] == 0 and meta["deferred"] == 6
    assert str(meta["deferred_reason"]).startswith("stopped: over budget:")
    assert meta["stop"] == "over_budget", "the sensor waits for a person"
    [budget] = [c for c in checks if c.check_name == "within_budget"]
    assert not budget.passed and "raise the run config's budget_usd to at least 0.22" in str(
        budget.description
    )
    assert SubmissionLedger(lake, None).jobs(MARENGO_3_0.key).empty
    assert meta["progress_not_started"] == 6


def test_submission_within_the_budget_goes_on_and_reports_progress(lake: Lake) -> None:
    meta, checks = invocations(lake, InvocationConfig(budget_usd=0.22, hold_quota_sec=0))
    assert meta["submitted"] == 2 and CALLS.count("submit") == 2, "the quota of 2, as without a budget"
    assert all(c.passed for c in checks)
    assert (meta["progress_in_flight"], meta["progress_waiting"]) == (2, 4)
    # The next run plans what is left: under the same budget, since the estimate only shrinks.
    meta, _ = invocations(lake, InvocationConfig(budget_usd=0.22, hold_quota_sec=0))
    assert meta["submitted"] == 0 and meta["deferred_reason"] == "2 invocations in flight (the bedrock quota)"


def test_an_old_rejection_does_not_count_as_failed_for_ever(lake: Lake) -> None:
    """A refusal older than a day is retried, so progress shows it waiting again, not failed."""
    image = all_jobs()[4]
    refused = Outcome(
        image.job_key, image.client_token, MARENGO_3_0.key, image.media_uri, "e", None, "rejected"
    )
    SubmissionLedger(lake, "bedrock").record_outcomes([refused], "run-1")
    jobs = SubmissionLedger(lake, None).jobs(MARENGO_3_0.key)
    empty = pd.DataFrame({"media_id": [], "etag": []})
    assert version_progress(inventory(), jobs, empty, MARENGO_3_0, EmbeddingOptions()).failed == 1
    jobs["recorded_at"] = datetime.now(UTC) - timedelta(days=2)
    assert version_progress(inventory(), jobs, empty, MARENGO_3_0, EmbeddingOptions()).failed == 0


def test_the_demos_progress_line_is_the_pipelines_own_counts(lake: Lake) -> None:
    a_backfill_under_way(lake)
    err = io.StringIO()
    follow(Progress(err, tty=False), lake, MARENGO_3_0.key)(pd.DataFrame())
    assert err.getvalue().startswith(
        "embedding: 3/6 jobs finished, marengo-3.0: 1/6 done, 1 in flight, 2 failed, 2 waiting, 0 not started"
    )


def test_a_versions_cost_so_far_is_the_list_price_of_the_jobs_its_providers_ran() -> None:
    jobs = pd.DataFrame(
        [
            ("bedrock", "video", 100.0, "completed"),
            ("bedrock", "audio", 50.0, "superseded"),  # billed, though its object changed since
            ("bedrock", "image", None, "no_content"),
            ("bedrock", "video", 999.0, "failed"),  # not run to its end
            ("bedrock", "video", 999.0, "in_progress"),
        ],
        columns=["provider", "modality", "media_seconds", "status"],
    )
    assert cost_so_far(jobs, MARENGO_3_0.key) == (pytest.approx(100 * 0.0007 + 50 * 0.00014 + 0.0001), True)
    assert cost_so_far(jobs, MARENGO_3_0.key, "bedrock/marengo-3.0:video=0.001")[0] == pytest.approx(
        0.1 + 50 * 0.00014 + 0.0001
    )
    with_twelvelabs = pd.concat([jobs, jobs.assign(provider="twelvelabs")], ignore_index=True)
    assert cost_so_far(with_twelvelabs, MARENGO_3_0.key)[1] is False
    assert cost_so_far(jobs.iloc[0:0], MARENGO_3_0.key) == (0.0, True)


def test_the_progress_metadata_plots_coverage_embedded_objects_and_cost_per_version() -> None:
    half = VersionProgress("marengo-3.0", 4, done=2, waiting=2, cost_usd=0.123456)
    meta = plain(half.metadata())
    assert (meta["coverage_fraction"], meta["embedded_objects"], meta["cost_so_far_usd"]) == (0.5, 2, 0.1235)
    unpriced = plain(VersionProgress("marengo-3.5", 0, priced=False).metadata())
    assert (unpriced["coverage_fraction"], unpriced["cost_so_far_usd"]) == (0.0, "unpriced")
