"""What one index run must change: the pure rules behind search/marengo_segments.

The index is compared with what it should hold object by object, not only by invocation id: copies of a
segment (two writers at once), rows of another model, rows of an older invocation next to the newer
ones, or a row count that differs from the embedding table all make the object's rows be rewritten from
the embedding table. Objects no longer expected leave the index, unless so many would go at once that a
wrong prefix or a partial listing is the likelier cause: then they stay until someone confirms.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from resources.index.segment_index import IndexedObject

DEFAULT_MAX_REMOVAL_SHARE = 0.2


@dataclass(frozen=True)
class ExpectedObject:
    """The latest completed embedding of an object still listed: what the index must hold for it."""

    media_uri: str
    invocation_id: str
    segments: int | None  # its rows in the embedding table; None when the ledger does not say


@dataclass(frozen=True)
class RemovalPolicy:
    max_share: float = DEFAULT_MAX_REMOVAL_SHARE
    confirm_all: bool = False
    confirmed_uris: frozenset[str] = frozenset()


@dataclass
class IndexPlan:
    new: list[str] = field(default_factory=list)  # media ids never indexed
    updated: list[str] = field(default_factory=list)  # indexed from an older embedding
    repaired: dict[str, str] = field(default_factory=dict)  # media id -> what is wrong with its rows
    removed: list[str] = field(default_factory=list)  # gone from the listing, removal allowed
    foreign: list[str] = field(default_factory=list)  # only rows of another model: never belonged
    withdrawn: list[str] = field(default_factory=list)  # still listed, its embedding taken back
    held: list[str] = field(default_factory=list)  # gone from the listing, waiting for confirmation
    deduplicate: list[str] = field(default_factory=list)  # held objects whose copies still go
    indexed_objects: int = 0  # objects holding rows of this model before the run

    @property
    def rewrite(self) -> list[str]:
        """Media ids whose rows are written from the embedding table, in a stable order."""
        return sorted([*self.new, *self.updated, *self.repaired])

    @property
    def delete(self) -> list[str]:
        return sorted([*self.removed, *self.withdrawn, *self.foreign])


def what_is_wrong(held: IndexedObject, expected: ExpectedObject, model_key: str) -> str | None:
    """Why an object's indexed rows are not exactly its latest embedding (None when they are)."""
    problems = []
    if held.duplicate_rows:
        problems.append(f"{held.duplicate_rows} duplicate rows")
    if held.model_keys - {model_key}:
        problems.append(f"rows of {', '.join(sorted(held.model_keys - {model_key}))}")
    if len(held.invocation_ids) > 1:
        problems.append(f"rows of {len(held.invocation_ids)} invocations")
    current = held.invocation_ids == {expected.invocation_id}
    if current and expected.segments is not None and held.segment_ids != expected.segments:
        problems.append(f"{held.segment_ids} segments indexed, {expected.segments} embedded")
    return "; ".join(problems) or None


def plan_index_update(
    expected: dict[str, ExpectedObject],
    indexed: dict[str, IndexedObject],
    model_key: str,
    policy: RemovalPolicy,
    listed: Collection[str] | None = None,
) -> IndexPlan:
    """Sort every object into new, updated, repaired, removed, withdrawn, held or left alone.

    `listed`: the media ids of the inventory. Indexed objects not expected and not listed are removals,
    which the policy may hold; listed ones are withdrawn. Without it every object not expected counts as
    a removal."""
    plan = IndexPlan(indexed_objects=sum(model_key in obj.model_keys for obj in indexed.values()))
    for mid, want in expected.items():
        held = indexed.get(mid)
        if held is None:
            plan.new.append(mid)
        elif (problem := what_is_wrong(held, want, model_key)) is not None:
            plan.repaired[mid] = problem
        elif held.invocation_ids != {want.invocation_id}:
            plan.updated.append(mid)

    gone = sorted(set(indexed) - set(expected))
    plan.foreign = [mid for mid in gone if model_key not in indexed[mid].model_keys]
    ours = [mid for mid in gone if model_key in indexed[mid].model_keys]
    # Still listed, but its embedding was taken back (an unusable output, a version with no content): no
    # listing mistake can cause that, so it leaves at once, whatever the share.
    plan.withdrawn = [mid for mid in ours if listed is not None and mid in listed]
    candidates = [mid for mid in ours if mid not in plan.withdrawn]
    if policy.confirm_all:
        plan.removed = candidates
    else:
        confirmed = [mid for mid in candidates if indexed[mid].media_uri in policy.confirmed_uris]
        rest = [mid for mid in candidates if indexed[mid].media_uri not in policy.confirmed_uris]
        within_churn = len(rest) <= policy.max_share * plan.indexed_objects
        plan.removed = sorted(confirmed + rest) if within_churn else confirmed
        plan.held = [] if within_churn else rest
    plan.deduplicate = [mid for mid in plan.held if indexed[mid].duplicate_rows]
    return plan


def held_message(plan: IndexPlan, uris: Iterable[str], policy: RemovalPolicy, limit: int = 5) -> str:
    """One line: how many would go, why they stay, how to let them go, and the first few names."""
    names = sorted(uris)
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    share = len(names) / max(plan.indexed_objects, 1)
    return (
        f"{len(names)} of {plan.indexed_objects} indexed objects ({share:.0%}) are no longer listed, more "
        f"than the {policy.max_share:.0%} removed without confirmation; kept until a run sets "
        f"confirm_removals: true (or lists them in confirm_removal_uris): {shown}"
    )
