"""The budget on the emulators: a budget below the estimate stops submission before any request reaches
Bedrock (counted by the emulator), the plan shows the same verdict, and a raised budget lets it go on."""

import io

import dagster as dg
import pytest

from assets_defs.migration.estimates import BUDGET_MEDIA_SECONDS_ENV, BUDGET_USD_ENV
from assets_defs.migration.plan import migration_plan
from harness.runner import materialization_metadata, run_job
from mediaembed.ingest import run_ingest
from pipelines.definitions import pipeline_resources
from resources.providers.marengo_models import MARENGO_3_0
from tests.pipeline.conftest import World

USABLE = 7  # three videos, two audio files, two images (and a corrupt and an unsupported object)


def budget_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "within_budget"]
    return check


def plan_metadata(world: World) -> dict[str, object]:
    result = dg.materialize(
        [migration_plan], partition_key=MARENGO_3_0.key, resources=pipeline_resources, instance=world.instance
    )
    return materialization_metadata(result, ["migration", "plan"])


def test_a_budget_below_the_estimate_stops_submission_before_any_call(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BUDGET_USD_ENV, "0.001")
    result = run_job(world.instance, "embed_new_media", MARENGO_3_0.key)
    meta = materialization_metadata(result, ["marengo", "invocations"])
    check = budget_check(result)
    assert not check.passed and (meta["submitted"], meta["deferred"]) == (0, USABLE)
    assert "over the budget of $0.00 (MEDIAEMBED_BUDGET_USD); raise MEDIAEMBED_BUDGET_USD to at least" in str(
        check.description
    )
    assert dict(world.stack.bedrock.calls) == {}, "not one request reached Bedrock"
    assert meta["progress_not_started"] == USABLE

    plan = plan_metadata(world)
    assert plan["objects_to_embed"] == plan["invocations"] == USABLE and plan["within_budget"] is False
    assert plan["estimated_cost_usd"] == pytest.approx(meta["estimated_cost_usd_still_to_embed"])
    assert float(str(plan["estimated_cost_usd"])) > 0.001

    # Raised to the estimate (rounded up), the same launch goes ahead.
    monkeypatch.setenv(BUDGET_USD_ENV, f"{float(str(plan['estimated_cost_usd'])) + 0.01:.2f}")
    result = run_job(world.instance, "submit_marengo_invocations", MARENGO_3_0.key)
    assert budget_check(result).passed
    assert world.stack.bedrock.created_invocations == USABLE
    assert plan_metadata(world)["progress_in_flight"] == USABLE


def test_mediaembed_ingest_past_a_media_seconds_budget_says_how_to_raise_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BUDGET_MEDIA_SECONDS_ENV, "1")
    out, err = io.StringIO(), io.StringIO()
    code = run_ingest("s3://media/", MARENGO_3_0.key, out=out, err=err, tty=False)
    last = err.getvalue().strip().splitlines()[-1]
    assert code != 0 and last.startswith("mediaembed ingest: nothing submitted: over budget: 7 objects")
    assert "(MEDIAEMBED_BUDGET_MEDIA_SECONDS); raise MEDIAEMBED_BUDGET_MEDIA_SECONDS to at least" in last
    # The command's own access check lists jobs once before any run; nothing is submitted.
    assert dict(world.stack.bedrock.calls) == {"ListAsyncInvokes": 1}
