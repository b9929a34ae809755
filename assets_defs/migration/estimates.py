"""What a launch will cost and take, whether it fits the budget, and how far each version has got.

Pure functions over the inventory, the ledger and the embedding table, shared by the plan asset (before a
launch), the invocations asset (the budget gate, before any provider call) and both marengo assets
(progress as metadata), so the UI, the gate and the CLI count the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from assets_defs.marengo.submission_plan import SubmissionPlan, plan_submissions
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions
from resources.providers.marengo_models import MarengoModel
from resources.providers.marengo_resource import BUDGET_MEDIA_SECONDS_ENV, BUDGET_USD_ENV
from resources.providers.model_routes import UNPRICED, ModelRoute, route
from resources.storage.lake import Lake
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.submission_ledger import DONE_STATUSES

# The prefix the invocation sensor reads as "waits for a person" (pipelines/sensors.py).
OVER_BUDGET = "stopped: over budget"
# Jobs the provider ran to their end, so billed: superseded ones too (their object changed meanwhile).
BILLED_STATUSES = (*DONE_STATUSES, "superseded")
# The ledger columns a version's cost so far is priced from (besides status), read with the planning ones.
COST_JOB_COLUMNS = ["provider", "modality", "media_seconds"]
PROGRESS_STATES = ("done", "in_flight", "failed", "waiting", "not_started")


class SubmissionSettings(dg.Config):
    """What decides which objects a submission run sends and what it may spend: shared by the submission
    run and the plan, so the plan costs exactly what a launch with the same settings would submit."""

    segmentation: Literal["dynamic", "fixed"] = Field(
        default="dynamic", description="dynamic: scene-aligned clips (video); fixed: equal clips."
    )
    min_segment_sec: float = Field(default=4.0, ge=1, le=10, description="Shortest dynamic clip, seconds.")
    fixed_segment_sec: float = Field(default=6.0, ge=1, le=10, description="Fixed clip length, seconds.")
    max_attempts: int = Field(default=2, ge=1, description="Attempts per object before a failure is final.")
    max_lost: int = Field(
        default=3,
        ge=1,
        description=(
            "Jobs the provider lost (no longer knows) are resubmitted without using up an attempt, "
            "up to this many times per object."
        ),
    )
    budget_usd: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Refuse to submit when the estimated cost of what is still to embed for this version exceeds "
            "this many US dollars. Unset: the marengo resource's budget_usd (bound from "
            f"{BUDGET_USD_ENV}), else no limit."
        ),
    )
    budget_media_seconds: float | None = Field(
        default=None,
        ge=0,
        description=(
            "Refuse to submit when the media-seconds still to embed for this version exceed this. "
            "Unset: the marengo resource's budget_media_seconds (bound from "
            f"{BUDGET_MEDIA_SECONDS_ENV}), else no limit."
        ),
    )

    def options(self) -> EmbeddingOptions:
        return EmbeddingOptions(self.segmentation, self.min_segment_sec, self.fixed_segment_sec)

    def budget(self, default_usd: str | None = None, default_media_seconds: str | None = None) -> Budget:
        """This run's budget: the run config's limits, else the defaults (the marengo resource's)."""
        return resolve_budget(self.budget_usd, self.budget_media_seconds, default_usd, default_media_seconds)


# --- the estimate ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """What submitting `jobs` commits to: one async invocation per object."""

    objects: int
    media_seconds: float
    cost_usd: float
    priced: bool
    by_modality: pd.DataFrame

    @property
    def invocations(self) -> int:
        return self.objects


def estimate_jobs(
    jobs: list[EmbeddingJob], seconds: Mapping[str, float | None], route: ModelRoute
) -> Estimate:
    """Media-seconds and list price of submitting `jobs` (the route's prices; images have no seconds)."""
    rows = [
        {
            "modality": job.modality,
            "media_seconds": 0.0 if job.modality == "image" else seconds.get(job.media_uri) or 0.0,
            "cost_usd": route.estimated_cost_usd(job.modality, seconds.get(job.media_uri)),
        }
        for job in jobs
    ]
    frame = pd.DataFrame(rows, columns=["modality", "media_seconds", "cost_usd"])
    by_modality = (
        frame.groupby("modality")
        .agg(
            objects=("modality", "size"), media_seconds=("media_seconds", "sum"), cost_usd=("cost_usd", "sum")
        )
        .reset_index()
    )
    return Estimate(
        objects=len(jobs),
        media_seconds=float(frame["media_seconds"].sum()),
        cost_usd=float(frame["cost_usd"].sum()),
        priced=route.priced,
        by_modality=by_modality,
    )


def expected_duration_sec(
    media_seconds: list[float], quota: int, job_overhead_sec: float, sec_per_media_sec: float
) -> float:
    """How long the jobs take with `quota` running at once, each `job_overhead_sec` plus
    `sec_per_media_sec` per media second: the work spread over the slots, but never less than the
    longest job (a lower bound for a queue that refills each slot as it frees)."""
    if not media_seconds:
        return 0.0
    each = [job_overhead_sec + sec_per_media_sec * s for s in media_seconds]
    return max(sum(each) / max(quota, 1), max(each))


def describe_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


# --- the budget --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    usd: float | None = None
    media_seconds: float | None = None
    usd_source: str = ""
    media_seconds_source: str = ""

    def describe(self) -> str:
        parts = []
        if self.usd is not None:
            parts.append(f"${self.usd:.2f} ({self.usd_source})")
        if self.media_seconds is not None:
            parts.append(f"{self.media_seconds:g} media s ({self.media_seconds_source})")
        return ", ".join(parts) or "none set"


def parse_amount(text: str | None, name: str, example: str) -> float | None:
    """A limit from the setting `name`'s text; unset or empty: none. A bad one is one line naming it."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={text!r}: give a number of at least 0, as {name}={example}, or unset it")
    return value


def resolve_budget(
    usd: float | None,
    media_seconds: float | None,
    default_usd: str | None = None,
    default_media_seconds: str | None = None,
) -> Budget:
    """The run config's budget where set, else the defaults: the texts of MEDIAEMBED_BUDGET_USD and
    MEDIAEMBED_BUDGET_MEDIA_SECONDS, as the marengo resource binds them. Each limit says where it came
    from."""
    env_usd = parse_amount(default_usd, BUDGET_USD_ENV, "25")
    env_seconds = parse_amount(default_media_seconds, BUDGET_MEDIA_SECONDS_ENV, "36000")
    return Budget(
        usd=usd if usd is not None else env_usd,
        media_seconds=media_seconds if media_seconds is not None else env_seconds,
        usd_source="run config budget_usd" if usd is not None else BUDGET_USD_ENV,
        media_seconds_source=(
            "run config budget_media_seconds" if media_seconds is not None else BUDGET_MEDIA_SECONDS_ENV
        ),
    )


def _how_to_raise(source: str, env: str, field: str, needed: str) -> str:
    where = f"raise {env}" if source == env else f"raise the run config's {field}"
    return f"{where} to at least {needed}, or embed fewer objects"


def budget_problem(estimate: Estimate, budget: Budget, model_key: str, provider: str) -> str | None:
    """One line naming the budget, the estimate and how to raise it, when `estimate` does not fit;
    None when it does (nothing to submit always fits)."""
    if estimate.objects == 0:
        return None
    what = f"{estimate.objects} objects of {model_key} still to embed"
    if budget.usd is not None and not estimate.priced:
        return (
            f"{OVER_BUDGET}: {provider} has no published price for {model_key}, so the budget of "
            f"${budget.usd:.2f} ({budget.usd_source}) cannot be checked for {what}; set a budget in "
            f"media-seconds ({BUDGET_MEDIA_SECONDS_ENV}) instead of {BUDGET_USD_ENV}"
        )
    if budget.usd is not None and estimate.cost_usd > budget.usd:
        fix = _how_to_raise(budget.usd_source, BUDGET_USD_ENV, "budget_usd", f"{estimate.cost_usd:.2f}")
        return (
            f"{OVER_BUDGET}: {what} are estimated at ${estimate.cost_usd:.4f}, over the budget of "
            f"${budget.usd:.2f} ({budget.usd_source}); {fix}"
        )
    if budget.media_seconds is not None and estimate.media_seconds > budget.media_seconds:
        fix = _how_to_raise(
            budget.media_seconds_source,
            BUDGET_MEDIA_SECONDS_ENV,
            "budget_media_seconds",
            f"{math.ceil(estimate.media_seconds)}",
        )
        return (
            f"{OVER_BUDGET}: {what} are {estimate.media_seconds:.1f} media s, over the budget of "
            f"{budget.media_seconds:g} media s ({budget.media_seconds_source}); {fix}"
        )
    return None


# --- progress ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionProgress:
    """Per version, where every usable object stands. waiting: due and the version has jobs (behind the
    quota, or a retry); not_started: due and nothing was ever submitted for the version."""

    model_key: str
    objects: int
    done: int = 0
    in_flight: int = 0
    failed: int = 0
    waiting: int = 0
    not_started: int = 0
    retrying: int = 0  # of the waiting: objects whose earlier job failed or was lost
    # List price of every job of the version that ran to its end, so far; None: not read (the ledger
    # columns it needs, COST_JOB_COLUMNS, were not read).
    cost_usd: float | None = 0.0
    priced: bool = True  # False: a provider of those jobs has no published price

    @property
    def coverage(self) -> float:
        """The share of the usable objects done (0 to 1): what search has of this version."""
        return self.done / self.objects if self.objects else 0.0

    def counts(self) -> dict[str, int]:
        return {state: getattr(self, state) for state in PROGRESS_STATES}

    def line(self) -> str:
        """As a CLI progress line: `5/7 done, 2 in flight, 0 failed, 0 waiting`."""
        rest = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in self.counts().items() if s != "done")
        return f"{self.done}/{self.objects} done, {rest}"

    def metadata(self) -> dict[str, dg.MetadataValue]:
        """The counts, and the figures the UI plots per version partition: the share covered, the
        objects embedded and what the version has cost so far ("unpriced" where a route has no price)."""
        cost: dict[str, dg.MetadataValue] = {}
        if self.cost_usd is not None:
            usd = dg.MetadataValue.float(round(self.cost_usd, 4))
            cost["cost_so_far_usd"] = usd if self.priced else dg.MetadataValue.text(UNPRICED)
        return {
            "coverage_fraction": dg.MetadataValue.float(round(self.coverage, 4)),
            "embedded_objects": dg.MetadataValue.int(self.done),
            **cost,
            **{f"progress_{state}": dg.MetadataValue.int(n) for state, n in self.counts().items()},
            "progress": dg.MetadataValue.md(coverage_markdown([self])),
        }


def object_states(
    inventory: pd.DataFrame,
    ledger_jobs: pd.DataFrame,
    embedded: pd.DataFrame,
    model: MarengoModel,
    options: EmbeddingOptions,
    max_attempts: int = 2,
    max_lost: int = 3,
    plan: SubmissionPlan | None = None,
) -> tuple[pd.Series, SubmissionPlan]:
    """The state of every usable object (media URI -> one of PROGRESS_STATES), from the plan a submission
    run would make: objects it settles are done (a completed job of their current job key: this ETag, these
    options), in flight or failed (refused); those it would not send are failed; the rest wait or are not
    started. Rows in the table at the object's current ETag make it done whatever the ledger says (unless
    a job for it runs): coverage is what search has.
    `ledger_jobs` are every provider's jobs of this model; `embedded` has the table's media_id and etag.
    `plan`: the plan of these same inputs where the caller made it already (a submission run that wrote
    nothing to the ledger), so a library is planned once per run."""
    usable = inventory[inventory["status"] == "ok"]
    if plan is None or plan.object_history is None:
        plan = plan_submissions(usable, ledger_jobs, model, options, max_attempts, max_lost)
    held = plan.object_history  # the ledger's jobs under each object's current job key, row by row
    if held is None or held.num_rows != len(usable):
        raise ValueError(f"the plan given is of another inventory than these {len(usable)} usable objects")
    # Numpy and Arrow over the columns: no Python string per object of a million-object library.
    state = np.full(len(usable), PROGRESS_STATES.index("failed"), dtype=np.int8)
    state[held.column("done").to_numpy()] = PROGRESS_STATES.index("done")
    state[held.column("running").to_numpy()] = PROGRESS_STATES.index("in_flight")
    due = pa.array([job.media_uri for job in plan.due], pa.string())
    uris = pa.array(usable["media_uri"], pa.string())
    state[pc.is_in(uris, value_set=due).to_numpy(zero_copy_only=False)] = PROGRESS_STATES.index(
        "waiting" if len(ledger_jobs) else "not_started"
    )
    if len(embedded):
        in_table = pc.is_in(
            _pairs(usable["media_id"], usable["etag"]),
            value_set=_pairs(embedded["media_id"], embedded["etag"]),
            skip_nulls=True,
        ).to_numpy(zero_copy_only=False)
        state[in_table & (state != PROGRESS_STATES.index("in_flight"))] = PROGRESS_STATES.index("done")
    states = pd.Categorical.from_codes(state, pd.Index(PROGRESS_STATES))
    return pd.Series(states, index=pd.Index(usable["media_uri"])), plan


def _pairs(first: pd.Series, second: pd.Series) -> pa.Array:
    """Two string columns joined row by row (`first`, a newline, `second`): one hashable key per row."""
    return pc.binary_join_element_wise(pa.array(first, pa.string()), pa.array(second, pa.string()), "\n")


def version_progress(
    inventory: pd.DataFrame,
    ledger_jobs: pd.DataFrame,
    embedded: pd.DataFrame,
    model: MarengoModel,
    options: EmbeddingOptions,
    max_attempts: int = 2,
    max_lost: int = 3,
    plan: SubmissionPlan | None = None,
    prices: str = "",
) -> VersionProgress:
    """Counts of `object_states`: the one progress figure the UI, the plan and the CLI all show, with
    the version's cost so far at `prices` (MEDIAEMBED_PRICES's form; empty: the published ones)."""
    state, plan = object_states(
        inventory, ledger_jobs, embedded, model, options, max_attempts, max_lost, plan
    )
    return count_states(model.key, state, plan, cost_so_far(ledger_jobs, model.key, prices))


def count_states(
    model_key: str, state: pd.Series, plan: SubmissionPlan, cost: tuple[float | None, bool] = (0.0, True)
) -> VersionProgress:
    counts = state.value_counts()
    return VersionProgress(
        model_key,
        objects=len(state),
        retrying=sum(job.attempt > 1 for job in plan.due),
        cost_usd=cost[0],
        priced=cost[1],
        **{s: int(counts.get(s, 0)) for s in PROGRESS_STATES},
    )


def cost_so_far(ledger_jobs: pd.DataFrame, model_key: str, prices: str = "") -> tuple[float | None, bool]:
    """(USD, priced) of every job of `model_key` that ran to its end (BILLED_STATUSES), at the list price
    of the provider that ran it. Not priced
    when one of those providers' routes has no published price."""
    if not set(COST_JOB_COLUMNS) <= set(ledger_jobs.columns):
        return None, True  # read without them: unknown, never a 0 that reads as free
    if ledger_jobs.empty:
        return 0.0, True
    ran = ledger_jobs.loc[
        ledger_jobs["status"].isin(BILLED_STATUSES), ["provider", "modality", "media_seconds"]
    ]
    # A price is per image or per media second, so a library's cost is its sums per provider and modality.
    sums = (
        ran.fillna({"media_seconds": 0.0})
        .groupby(["provider", "modality"])["media_seconds"]
        .agg(["size", "sum"])
    )
    total, priced = 0.0, True
    for (provider, modality), jobs, seconds in zip(sums.index, sums["size"], sums["sum"], strict=True):
        at = route(str(provider), model_key, prices)
        priced = priced and at.priced
        if modality == "image":
            total += int(jobs) * at.estimated_cost_usd("image", None)
        else:
            total += at.estimated_cost_usd(modality, float(seconds))
    return total, priced


def coverage_markdown(rows: list[VersionProgress], serving: str | None = None) -> str:
    """A table a person reads in the UI: one row per version, objects per state and the share done."""
    lines = [
        "| version | objects | done | in flight | failed | waiting | not started | coverage |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in rows:
        share = f"{100 * p.done / p.objects:.1f}%" if p.objects else "-"
        name = f"{p.model_key} (serving)" if p.model_key == serving else p.model_key
        lines.append(
            f"| {name} | {p.objects} | {p.done} | {p.in_flight} | {p.failed} | {p.waiting} | "
            f"{p.not_started} | {share} |"
        )
    return "\n".join(lines)


def embedded_objects(lake: Lake, model: MarengoModel) -> pd.DataFrame:
    """(media_id, etag) of every object with rows in the version's table; empty when it has none."""
    rows = EmbeddingTable(lake, model).read(columns=["media_id", "etag"])
    return rows.group_by(["media_id", "etag"]).aggregate([]).to_pandas()
