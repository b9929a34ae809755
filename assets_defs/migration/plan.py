"""The plan before a migration: what a backfill of one model version will embed, cost and take.

Materialize the target version's partition before launching its backfill: the UI then shows the objects
still to embed, their media-seconds, invocations, estimated cost, the expected duration at the quota, the
budget's verdict, and how far every version has got.
"""

from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from assets_defs import keys
from assets_defs.inventory.media_inventory import media_inventory, read_inventory
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.marengo.submission_plan import SubmissionPlan
from assets_defs.migration.estimates import (
    Budget,
    Estimate,
    SubmissionSettings,
    VersionProgress,
    budget_problem,
    cost_so_far,
    count_states,
    coverage_markdown,
    describe_duration,
    embedded_objects,
    estimate_jobs,
    expected_duration_sec,
    object_states,
)
from resources.providers.marengo_models import MARENGO_MODELS, MarengoModel, marengo_model
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import UNPRICED, ModelRoute, cost_metadata, describe_cost
from resources.storage.lake import Lake
from resources.tables.submission_ledger import SubmissionLedger


class PlanConfig(SubmissionSettings):
    job_overhead_sec: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Typical seconds one async job takes besides its media. Unset: the route's figure "
            "(resources/providers/model_routes.py; an assumption, since no provider publishes one)."
        ),
    )
    sec_per_media_sec: float | None = Field(
        default=None,
        ge=0,
        description="Typical seconds of processing per media second. Unset: the route's figure.",
    )


@dataclass(frozen=True)
class MigrationPlan:
    model_key: str
    route: ModelRoute
    estimate: Estimate
    quota: int
    job_overhead_sec: float
    sec_per_media_sec: float
    duration_sec: float
    budget: Budget
    over_budget: str | None
    over_limit: int
    out_of_attempts: int


def make_plan(
    plan: SubmissionPlan,
    model: MarengoModel,
    model_route: ModelRoute,
    quota: int,
    budget: Budget,
    job_overhead_sec: float | None = None,
    sec_per_media_sec: float | None = None,
) -> MigrationPlan:
    """The launch's figures from the submission plan a run would make now (what is due, and the
    durations it read of the objects not settled), at `quota`."""
    seconds = plan.media_seconds
    overhead = model_route.typical_job_overhead_sec if job_overhead_sec is None else job_overhead_sec
    rate = model_route.typical_sec_per_media_sec if sec_per_media_sec is None else sec_per_media_sec
    estimate = estimate_jobs(plan.due, seconds, model_route)
    per_job = [0.0 if j.modality == "image" else seconds.get(j.media_uri) or 0.0 for j in plan.due]
    return MigrationPlan(
        model_key=model.key,
        route=model_route,
        estimate=estimate,
        quota=quota,
        job_overhead_sec=overhead,
        sec_per_media_sec=rate,
        duration_sec=expected_duration_sec(per_job, quota, overhead, rate),
        budget=budget,
        over_budget=budget_problem(estimate, budget, model.key, model_route.provider),
        over_limit=len(plan.over_limit),
        out_of_attempts=len(plan.out_of_attempts),
    )


def plan_markdown(plan: MigrationPlan) -> str:
    """The launch as one table: per modality, then the total, with the cost as a person reads it."""
    rows = plan.estimate.by_modality
    lines = ["| modality | objects | media seconds | est. cost |", "| --- | ---: | ---: | ---: |"]
    priced = plan.estimate.priced
    for r in rows.to_dict("records"):
        cost = f"${r['cost_usd']:.4f}" if priced else "not priced"
        lines.append(f"| {r['modality']} | {r['objects']} | {r['media_seconds']:.1f} | {cost} |")
    total = f"${plan.estimate.cost_usd:.4f}" if priced else "not priced"
    lines.append(
        f"| **total** | **{plan.estimate.objects}** | **{plan.estimate.media_seconds:.1f}** | **{total}** |"
    )
    return "\n".join(lines)


def plan_metadata(plan: MigrationPlan) -> dict[str, dg.MetadataValue]:
    est = plan.estimate
    md, text, num = dg.MetadataValue.md, dg.MetadataValue.text, dg.MetadataValue.float
    return {
        "model": text(plan.model_key),
        "provider": text(plan.route.provider),
        "provider_model_id": text(plan.route.model_id),
        "objects_to_embed": dg.MetadataValue.int(est.objects),
        "media_seconds": num(round(est.media_seconds, 3)),
        "invocations": dg.MetadataValue.int(est.invocations),
        "priced": dg.MetadataValue.bool(est.priced),
        "estimated_cost_usd": num(round(est.cost_usd, 4)) if est.priced else text(UNPRICED),
        "estimated_cost": text(describe_cost(est.cost_usd, est.priced)),
        "quota": dg.MetadataValue.int(plan.quota),
        "typical_job_sec": text(
            f"{plan.job_overhead_sec:g} s + {plan.sec_per_media_sec:g} s per media second"
        ),
        "expected_duration_sec": num(round(plan.duration_sec, 1)),
        "expected_duration": text(describe_duration(plan.duration_sec)),
        "budget": text(plan.budget.describe()),
        "within_budget": dg.MetadataValue.bool(plan.over_budget is None),
        "budget_verdict": text(plan.over_budget or "within the budget"),
        "over_model_limits": dg.MetadataValue.int(plan.over_limit),
        "out_of_attempts": dg.MetadataValue.int(plan.out_of_attempts),
        "plan": md(plan_markdown(plan)),
    }


@dg.asset(
    key=keys.MIGRATION_PLAN,
    deps=[media_inventory],
    partitions_def=marengo_model_partitions,
    group_name="migration",
    check_specs=[
        dg.AssetCheckSpec(
            "estimate_within_budget",
            asset=keys.MIGRATION_PLAN,
            description=(
                "Fails when the launch's estimate is over the budget (budget_usd / MEDIAEMBED_BUDGET_USD, "
                "budget_media_seconds / MEDIAEMBED_BUDGET_MEDIA_SECONDS): submission would refuse it."
            ),
        )
    ],
)
def migration_plan(
    context: dg.AssetExecutionContext, config: PlanConfig, marengo: MarengoProviders, lake: Lake
) -> dg.MaterializeResult:
    """What a backfill of this version would submit now, and what it would cost and take, before launch.

    Planned exactly as a submission run plans (the same settings, the ledger of every provider), so the
    estimate is what the budget gate checks. Reads the lake only; calls no provider.
    """
    model = marengo_model(context.partition_key)
    provider = marengo.serving(model)
    inventory = read_inventory(lake)
    ledger = SubmissionLedger(lake, None)
    coverage: list[VersionProgress] = []
    plans: dict[str, SubmissionPlan] = {}
    for version in MARENGO_MODELS.values():
        jobs = ledger.jobs(version.key)
        states, plans[version.key] = object_states(
            inventory,
            jobs,
            embedded_objects(lake, version),
            version,
            config.options(),
            config.max_attempts,
            config.max_lost,
        )
        cost = cost_so_far(jobs, version.key, provider.prices or "")
        coverage.append(count_states(version.key, states, plans[version.key], cost))
    plan = make_plan(
        plans[model.key],
        model,
        provider.route(model),
        provider.max_in_flight(model),
        config.budget(marengo.budget_usd, marengo.budget_media_seconds),
        config.job_overhead_sec,
        config.sec_per_media_sec,
    )
    if plan.over_budget:
        context.log.warning(plan.over_budget)
    context.log.info(
        f"{model.key}: {plan.estimate.objects} objects to embed, {plan.estimate.media_seconds:.0f} media s, "
        f"{describe_cost(plan.estimate.cost_usd, plan.estimate.priced)}, about "
        f"{describe_duration(plan.duration_sec)} at {plan.quota} in flight"
    )
    target = next(p for p in coverage if p.model_key == model.key)
    serving = lake.serving_versions().current()
    return dg.MaterializeResult(
        metadata={
            **plan_metadata(plan),
            **target.metadata(),
            "coverage_per_version": dg.MetadataValue.md(coverage_markdown(coverage, serving.serving)),
            "serving_version": serving.describe(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="estimate_within_budget",
                passed=plan.over_budget is None,
                description=plan.over_budget,
                metadata={
                    "budget": plan.budget.describe(),
                    "estimated_cost_usd": cost_metadata(plan.estimate.cost_usd, plan.estimate.priced),
                },
            )
        ],
    )
