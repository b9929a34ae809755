"""Deciding what to submit: the pure core of the invocations asset.

Given the inventory and the ledger, each usable object is either already handled for this model and these
options (skip), over the model's limits (rejected; checked again a day later), out of retries, or due.

Attempts: every job the provider accepted and that ended `failed` or `lost` used up its client token, so
the next one is attempt `failed + lost + 1` (a new token, never a replay of the spent one). Only `failed`
counts toward `max_attempts`: it is the provider's verdict on a job that ran (or an output that was never
usable). A `lost` job is one the provider no longer knows, which says nothing about the object; it is
resubmitted without using up an attempt, but at most `max_lost` times, so a provider that keeps losing
one object's jobs cannot keep it open for ever.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pandas as pd

from resources.embedding_jobs import EmbeddingJob, EmbeddingOptions
from resources.marengo_models import MarengoModel

SETTLED = {"in_progress", "completed", "no_content", "rejected", "superseded"}
# A refused request was never accepted, so it cost nothing; try it again after this long, in case the
# refusal came from a setup problem since fixed.
RETRY_REJECTED_AFTER = timedelta(hours=24)


@dataclass
class SubmissionPlan:
    due: list[EmbeddingJob] = field(default_factory=list)
    over_limit: list[tuple[EmbeddingJob, str]] = field(default_factory=list)
    already_handled: int = 0
    out_of_attempts: list[EmbeddingJob] = field(default_factory=list)
    after_lost: set[str] = field(default_factory=set)  # job keys whose last job the provider lost


def plan_submissions(
    inventory: pd.DataFrame,
    ledger_jobs: pd.DataFrame,
    model: MarengoModel,
    options: EmbeddingOptions,
    max_attempts: int,
    max_lost: int = 3,
) -> SubmissionPlan:
    expired = datetime.now(UTC) - RETRY_REJECTED_AFTER
    statuses: dict[str, list[str]] = {}
    for row in ledger_jobs.to_dict("records"):
        recorded = row.get("recorded_at")
        if (
            row["status"] == "rejected"
            and recorded is not None
            and not pd.isna(recorded)
            and recorded < expired
        ):
            continue
        statuses.setdefault(str(row["job_key"]), []).append(str(row["status"]))

    plan = SubmissionPlan()
    for row in inventory[inventory["status"] == "ok"].to_dict("records"):
        job = EmbeddingJob(row["media_uri"], row["etag"], row["modality"], model, options)
        history = statuses.get(job.job_key, [])
        if SETTLED.intersection(history):
            plan.already_handled += 1
            continue
        failures, lost = history.count("failed"), history.count("lost")
        if failures >= max_attempts or lost >= max_lost:
            plan.out_of_attempts.append(job)
            continue
        duration = None if pd.isna(row["duration_sec"]) else float(row["duration_sec"])
        violation = model.limit_violation(row["modality"], int(row["size_bytes"]), duration)
        if violation:
            plan.over_limit.append((job, violation))
            continue
        attempt = failures + lost + 1
        if lost:
            plan.after_lost.add(job.job_key)
        plan.due.append(EmbeddingJob(job.media_uri, job.etag, job.modality, model, options, attempt))
    return plan
