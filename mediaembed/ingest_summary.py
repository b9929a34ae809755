"""What became of every object under a prefix, from the inventory and the ledger: `mediaembed ingest`'s
summary, classified by the same records the pipeline keeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions
from resources.providers.marengo_models import MarengoModel
from resources.providers.model_routes import ModelRoute, describe_cost, route
from resources.tables.submission_ledger import DONE_STATUSES

if TYPE_CHECKING:
    pass

LISTED_PER_KIND = 20


@dataclass
class Summary:
    """What became of every object under the prefix, and of the invocations this command submitted."""

    prefix: str
    model_key: str
    seen: int = 0
    embedded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    waiting: list[tuple[str, str]] = field(default_factory=list)
    media_seconds: float = 0.0
    submitted: int = 0
    submitted_completed: int = 0
    submitted_failed: int = 0
    estimated_cost_usd: float = 0.0
    priced: bool = True

    def lines(self) -> list[str]:
        head = (
            f"{self.prefix}: {self.seen} seen, {len(self.embedded)} embedded, {len(self.skipped)} skipped, "
            f"{len(self.failed)} failed"
        )
        if self.in_flight:
            head += f", {len(self.in_flight)} still in flight"
        if self.waiting:
            head += f", {len(self.waiting)} waiting"
        out = [head]
        running = [(uri, "Bedrock has not finished it yet") for uri in self.in_flight]
        kinds = [("skipped", self.skipped), ("failed", self.failed), ("in flight", running)]
        for label, items in [*kinds, ("waiting", self.waiting)]:
            out += [f"  {label} {uri}: {reason}" for uri, reason in items[:LISTED_PER_KIND]]
            if len(items) > LISTED_PER_KIND:
                out.append(f"  ... and {len(items) - LISTED_PER_KIND} more {label} (the ledger lists them)")
        out.append(
            f"{self.media_seconds:.1f} media seconds embedded ({self.model_key}); "
            f"{self.submitted} invocations submitted now ({self.submitted_completed} completed, "
            f"{self.submitted_failed} failed), "
            f"{describe_cost(self.estimated_cost_usd, self.priced, 'estimated cost')}"
        )
        return out


def _latest(rows: pd.DataFrame) -> dict[str, Any]:
    order = rows.assign(_when=rows["recorded_at"].fillna(rows["submitted_at"]))
    return dict(order.sort_values("_when", na_position="first").iloc[-1])


def summarize(
    prefix: str,
    inventory: pd.DataFrame,
    jobs: pd.DataFrame,
    model: MarengoModel,
    submit_run_ids: set[str],
    options: EmbeddingOptions | None = None,
    route_of: Callable[[str], ModelRoute] | None = None,
) -> Summary:
    """Classify each object under `prefix` from the inventory and the model's ledger jobs.

    embedded: a job for its current content completed; skipped (nothing billed): unusable, refused or
    over a limit, or nothing in it to embed; failed: the provider ran it and it failed, out of attempts;
    in flight; waiting: not submitted yet (the quota) or to be resubmitted (lost, changed meanwhile).
    """
    options = options or EmbeddingOptions()
    route_of = route_of or (lambda provider: route(provider, model.key))  # published prices
    summary = Summary(prefix, model.key)
    inventory = inventory[inventory["media_uri"].str.startswith(prefix)]
    summary.seen = len(inventory)
    by_key = {key: rows for key, rows in jobs.groupby("job_key")} if not jobs.empty else {}
    for row in inventory.to_dict("records"):
        uri = str(row["media_uri"])
        if row["status"] != "ok":
            summary.skipped.append((uri, f"{row['status']}: {row['reason']}"))
            continue
        key = EmbeddingJob(uri, str(row["etag"]), row["modality"], model, options).job_key
        rows = by_key.get(key)
        if rows is None:
            summary.waiting.append((uri, "not submitted yet (the in-flight quota was full)"))
            continue
        statuses = set(rows["status"])
        if "completed" in statuses:
            summary.embedded.append(uri)
            summary.media_seconds += 0.0 if pd.isna(row["duration_sec"]) else float(row["duration_sec"])
        elif "in_progress" in statuses:
            summary.in_flight.append(uri)
        elif "no_content" in statuses:
            summary.skipped.append((uri, "nothing to embed: the job completed with no segments"))
        else:
            latest = _latest(rows)
            reason = str(latest["reason"])
            if latest["status"] == "rejected":
                summary.skipped.append((uri, f"refused, not billed: {reason}"))
            elif latest["status"] == "failed":
                attempts = int((rows["status"] == "failed").sum())
                summary.failed.append((uri, f"{reason} ({attempts} attempts)"))
            else:
                summary.waiting.append((uri, f"{latest['status']}: {reason}; the next run resubmits it"))
    if not jobs.empty:
        ours = jobs[jobs["run_id"].isin(submit_run_ids) & jobs["invocation_id"].notna()]
        summary.submitted = len(ours)
        summary.submitted_completed = int(ours["status"].isin(DONE_STATUSES).sum())
        summary.submitted_failed = int((ours["status"] == "failed").sum())
        summary.priced = all(route_of(p).priced for p in set(ours["provider"]))
        summary.estimated_cost_usd = float(
            sum(
                route_of(p).estimated_cost_usd(m, None if pd.isna(s) else float(s))
                for p, m, s in zip(ours["provider"], ours["modality"], ours["media_seconds"], strict=True)
            )
        )
    return summary
