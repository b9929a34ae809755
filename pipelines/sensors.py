"""The sensor that follows Marengo invocations: it hands finished ones to an ingest run, and starts a
submission run when a provider's quota has free slots and objects wait for them.

Each configured provider is asked only about its own open jobs (the ledger read filters by provider), so a
Bedrock invocation ARN never reaches the TwelveLabs API, and jobs still open at a provider that no longer
serves their model are followed to their end by that provider."""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from assets_defs import keys
from assets_defs.inventory.media_inventory import OBJECTS_REMOVED
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.marengo.submission_stop import SubmissionStop
from assets_defs.metadata import materialization_metadata
from assets_defs.search.serving import kept_up
from pipelines.jobs import SUBMITTING_JOBS, holding_config, ingest_marengo_job, submit_marengo_job
from pipelines.run_statuses import ACTIVE_RUN_STATUSES
from pipelines.settings import sensor_interval_sec
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import InvocationStatus
from resources.providers.errors import ListingIncomplete
from resources.providers.marengo_models import marengo_model
from resources.providers.marengo_resource import MarengoProviders
from resources.storage.lake import Lake
from resources.tables.invocation_findings import FREES_SLOT, InvocationFindings
from resources.tables.serving_versions import ServingState
from resources.tables.submission_ledger import SubmissionLedger, open_jobs

# A finished invocation whose ingest run did not record it (the run failed or was cancelled, or its output
# could not be read yet) is handed off again after this long.
REHAND_AFTER_SEC = 15 * 60
# Every tick lists only finished jobs submitted since the oldest open one (about one status record per
# job). This often, it also lists the running ones and looks up by ARN what no listing showed: jobs whose
# submit time by Bedrock's clock is earlier than ours says, and jobs Bedrock lost.
RECONCILE_EVERY_SEC = 10 * 60
# Inventory materializations a tick looks back over for removals not yet dropped from the index.
REMOVALS_LOOK_BACK = 100
# How the ingest runs the sensor requests take their statuses: from the sensor's findings, listing nothing.
FROM_FINDINGS = {"ops": {keys.op_name(keys.MARENGO_EMBEDDINGS): {"config": {"list_provider": False}}}}
# A hand-off of at most this many objects has its index update audit only them; a larger one (a backfill's
# burst) audits the whole index, which then costs about as much, and keeps the run config small.
SCOPED_INDEX_MAX_OBJECTS = 2_000


def handed_off_config(media_uris: list[str]) -> dict[str, Any]:
    """How an ingest run the sensor requests runs: from the sensor's findings, its index update limited to
    the objects handed to it (`media_uris`), unless there are more than SCOPED_INDEX_MAX_OBJECTS."""
    if len(media_uris) > SCOPED_INDEX_MAX_OBJECTS:
        return FROM_FINDINGS
    index = {keys.op_name(keys.SEARCH_MARENGO_SEGMENTS): {"config": {"media_uris": media_uris}}}
    return {"ops": {**FROM_FINDINGS["ops"], **index}}


@dataclass
class SensorState:
    """The cursor: invocation id -> when it was handed to an ingest run (jobs still open only), and when
    the last thorough check ran."""

    handed_off: dict[str, float] = field(default_factory=dict)
    reconciled_at: float | None = None

    @classmethod
    def load(cls, cursor: str | None) -> SensorState:
        raw = json.loads(cursor) if cursor else {}
        if "handed_off" not in raw:  # a cursor written before the findings: the hand-offs alone
            return cls({str(k): float(v) for k, v in raw.items()})
        return cls({str(k): float(v) for k, v in raw["handed_off"].items()}, raw.get("reconciled_at"))

    def dump(self) -> str:
        return json.dumps({"handed_off": self.handed_off, "reconciled_at": self.reconciled_at})


@dg.sensor(
    jobs=[ingest_marengo_job, submit_marengo_job],
    minimum_interval_seconds=sensor_interval_sec(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Lists the Marengo jobs finished since the oldest open one (two paginated calls a tick), records "
        "them in the lake for the ingest run it requests, and requests a submission run when the quota "
        "has free slots and objects wait."
    ),
)
def marengo_invocation_sensor(
    context: dg.SensorEvaluationContext, marengo: MarengoProviders, lake: Lake
) -> dg.SensorResult | dg.SkipReason:
    state = SensorState.load(context.cursor)
    now = time.time()
    store = InvocationFindings(lake)
    known = store.read()  # before the ledger: it then holds every job these findings name
    open_at = {
        p.provider_name: SubmissionLedger(lake, p.provider_name).in_progress() for p in marengo.configured()
    }
    pending = pd.concat(open_at.values(), ignore_index=True) if open_at else pd.DataFrame()
    open_ids = set(pending["invocation_id"]) if not pending.empty else set()
    state.handed_off = {k: v for k, v in state.handed_off.items() if k in open_ids}
    found = {i: s for i, s in known.statuses.items() if i in open_ids}
    model_of = dict(zip(pending["invocation_id"], pending["model_key"], strict=True)) if open_ids else {}
    uri_of = dict(zip(pending["invocation_id"], pending["media_uri"], strict=True)) if open_ids else {}
    reconcile = state.reconciled_at is None or now - state.reconciled_at >= RECONCILE_EVERY_SEC
    if reconcile:
        state.reconciled_at = now

    listed: list[InvocationStatus] = []
    for provider in marengo.configured():
        provider_open = open_at[provider.provider_name]
        if provider_open.empty:
            continue
        try:
            listed += _ask_provider(context, provider, provider_open, found, state, now, reconcile)
        except ListingIncomplete as cut:  # throttled: act on what was read, the rest next tick
            context.log.warning(
                f"{provider.provider_name} cut the listing short ({cut.reason}): {len(cut.found)} finished "
                "jobs read; the next tick asks about the rest"
            )
            listed += cut.found
            if reconcile:
                state.reconciled_at = None  # the thorough check did not finish: the next tick does it
    by_model: dict[str, list[InvocationStatus]] = defaultdict(list)
    for status in listed:
        by_model[model_of[status.invocation_id]].append(status)
    for model_key, statuses in by_model.items():
        store.record(statuses, model_key, found_by="sensor")
    found.update((s.invocation_id, s) for s in listed)

    fresh = [
        s for i, s in found.items() if now - state.handed_off.get(i, -REHAND_AFTER_SEC) >= REHAND_AFTER_SEC
    ]
    handed: dict[str, list[str]] = defaultdict(list)
    handed_uris: dict[str, set[str]] = defaultdict(set)
    for status in fresh:
        state.handed_off[status.invocation_id] = now
        handed[model_of[status.invocation_id]].append(f"{status.invocation_id}@{now}")
        handed_uris[model_of[status.invocation_id]].add(str(uri_of[status.invocation_id]))
    run_requests = [
        dg.RunRequest(
            job_name=ingest_marengo_job.name,
            partition_key=model_key,
            # Invocations and hand-off time: a re-hand-off is a new run; one hand-off is one run at most.
            run_key=f"ingest-{model_key}-{short_digest(sorted(ids))}",
            run_config=handed_off_config(sorted(handed_uris[model_key])),
            tags={"mediaembed/finished_invocations": str(len(ids))},
        )
        for model_key, ids in sorted(handed.items())
    ]

    serving = lake.serving_versions().current()
    run_requests += _removal_requests(context.instance, serving, set(handed))

    finished_ids = {i for i, s in found.items() if s.state in FREES_SLOT}
    routing = marengo.routing()
    for model_key in marengo_model_partitions.get_partition_keys():
        if not kept_up(serving, model_key):
            continue  # retired: its open jobs are still followed to their end, nothing new is submitted
        at_provider = open_at.get(routing[model_key])
        if at_provider is None:
            continue  # the provider of this version is not configured: nothing can be submitted to it
        in_model = at_provider[at_provider["model_key"] == model_key]
        holding = sorted(set(in_model["invocation_id"]) - finished_ids)
        request = _submission_request(context, marengo.serving(marengo_model(model_key)), model_key, holding)
        if request is not None:
            run_requests.append(request)

    context.log.info(
        f"{len(pending)} open in the ledger, {len(found)} of them finished ({len(listed)} found now), "
        f"{len(fresh)} handed to ingest runs, {len(run_requests) - len(handed)} submission runs requested"
    )
    if not run_requests:
        reason = f"{len(pending)} invocations open, none newly finished, no submission run needed"
        return dg.SensorResult(skip_reason=reason, cursor=state.dump())
    return dg.SensorResult(run_requests=run_requests, cursor=state.dump())


def _ask_provider(
    context: dg.SensorEvaluationContext,
    marengo: MarengoProvider,
    pending: pd.DataFrame,
    found: dict[str, InvocationStatus],
    state: SensorState,
    now: float,
    reconcile: bool,
) -> list[InvocationStatus]:
    """Which of one provider's open jobs not found finished yet have finished now.

    Each tick asks cheaply about the jobs never handed off; the thorough check now and then also asks
    again about handed-off jobs still open after REHAND_AFTER_SEC whose finding is gone (their status
    could not be read), and finds what the cheap listing cannot see.
    """
    ids = pending["invocation_id"]
    not_found = ~ids.isin(list(found))
    handed_at = ids.map(state.handed_off)
    ask = not_found & handed_at.isna()
    if reconcile:
        ask |= not_found & (now - handed_at.fillna(now) >= REHAND_AFTER_SEC)
    asked = pending[ask]
    if asked.empty:
        return []
    look = marengo.finished_invocations if reconcile else marengo.newly_finished
    asked_ids = set(asked["invocation_id"])
    try:
        statuses = look(open_jobs(asked), asked["submitted_at"].min().to_pydatetime())
    except ListingIncomplete as cut:
        _warn_about(context, marengo, cut.found)
        raise ListingIncomplete(cut.reason, [s for s in cut.found if s.invocation_id in asked_ids]) from cut
    _warn_about(context, marengo, statuses)
    return [s for s in statuses if s.invocation_id in asked_ids]


def _warn_about(
    context: dg.SensorEvaluationContext, marengo: MarengoProvider, statuses: list[InvocationStatus]
) -> None:
    # Handed off like finished jobs: the ingest run records them (lost: resubmitted by the next submission
    # run; unknown: read again, and failed once past the ingest's read limits), so none stays open for ever.
    for status in statuses:
        if status.state == "unknown":
            context.log.warning(
                f"cannot ask {marengo.provider_name} about {status.invocation_id}: {status.failure_message}; "
                "the ingest run counts it and fails the job past its read limits"
            )
        elif status.state == "lost":
            context.log.warning(
                f"{marengo.provider_name} no longer knows {status.invocation_id} "
                f"({status.failure_message}); the ingest run keeps its output if it left one, else "
                "records it lost for resubmission"
            )


def _removal_requests(
    instance: dg.DagsterInstance, serving: ServingState, ingesting: set[str]
) -> list[dg.RunRequest]:
    """An ingest run per indexed version when an inventory since its last index run found objects gone
    from the bucket: it drops them from the table and the index (within the removal guard), with no
    finished job needed. Every inventory since counts, not only the latest (S3 events make many small
    inventory runs, and a removal may be in any of them); the latest of them is in the run key."""
    recent = instance.fetch_materializations(
        dg.AssetRecordsFilter(keys.MEDIA_INVENTORY), limit=REMOVALS_LOOK_BACK
    ).records
    removing = [
        (record, removed)
        for record in recent
        if (removed := int(metadata_value(materialization_metadata(record), OBJECTS_REMOVED, 0)))
    ]
    if not removing:
        return []
    requests = []
    for model_key in marengo_model_partitions.get_partition_keys():
        if model_key in ingesting or not kept_up(serving, model_key):
            continue  # an ingest run of this tick drops them too; a retired version is left as it is
        indexed = latest_materialization(
            instance, dg.AssetRecordsFilter(keys.SEARCH_MARENGO_SEGMENTS, asset_partitions=[model_key])
        )
        if indexed is None:
            continue  # never indexed: nothing to drop
        since = [(r, n) for r, n in removing if not _read_after(instance, indexed, r)]
        if not since:
            continue  # indexed by a run that read every inventory that removed something
        requests.append(
            dg.RunRequest(
                job_name=ingest_marengo_job.name,
                partition_key=model_key,
                run_key=f"removals-{model_key}-{max(r.storage_id for r, _ in since)}",
                run_config=FROM_FINDINGS,
                tags={"mediaembed/objects_removed": str(sum(n for _, n in since))},
            )
        )
    return requests


def _read_after(instance: dg.DagsterInstance, record: dg.EventLogRecord, written: dg.EventLogRecord) -> bool:
    """Whether the run that materialized `record` started after `written` landed (so it read it)."""
    run = instance.get_run_record_by_id(record.run_id)
    return run is not None and run.start_time is not None and run.start_time >= written.timestamp


def _submission_request(
    context: dg.SensorEvaluationContext, marengo: MarengoProvider, model_key: str, holding: list[str]
) -> dg.RunRequest | None:
    """A submission run for `model_key` when its quota has a free slot, objects wait, and no submission
    run of the model is queued or running. One run key per slot window: the jobs holding slots and the
    last submission run, so the same state never starts two runs."""
    quota = marengo.max_in_flight(marengo_model(model_key))
    if len(holding) >= quota:
        return None
    instance = context.instance
    last = latest_materialization(
        instance, dg.AssetRecordsFilter(keys.MARENGO_INVOCATIONS, asset_partitions=[model_key])
    )
    if last is None:
        return None  # nothing was ever submitted for this model: the schedule (or a person) starts it
    due = due_work(instance, model_key, last)
    if due is None:
        return None
    active = instance.get_runs(
        dg.RunsFilter(statuses=ACTIVE_RUN_STATUSES, tags={"dagster/partition": model_key}), limit=50
    )
    if any(run.job_name in SUBMITTING_JOBS for run in active):
        return None
    free = quota - len(holding)
    context.log.info(f"{model_key}: {free} of {quota} slots free and {due}: requesting a submission run")
    return dg.RunRequest(
        job_name=submit_marengo_job.name,
        partition_key=model_key,
        run_key=f"submit-{model_key}-{short_digest([*holding, last.run_id])}",
        run_config=holding_config(),
        tags={"mediaembed/free_slots": str(free), "mediaembed/waiting": due},
    )


# How many submission runs back `due_work` looks for one that planned the library.
PLANS_LOOKED_BACK = 100


def due_work(instance: dg.DagsterInstance, model_key: str, last: dg.EventLogRecord) -> str | None:
    """Why objects may wait for submission, from the last submission runs' metadata and what happened
    since they planned; None when nothing does (planning is left to the run itself).

    An event run plans only its changed objects, so what it leaves says nothing about the rest: the
    library stands as the last run that planned it left it, plus the event runs since, whose own
    inventory changes they planned."""
    plans = [last]
    if _planned_named_objects(last):
        earlier = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                keys.MARENGO_INVOCATIONS, asset_partitions=[model_key], before_storage_id=last.storage_id
            ),
            limit=PLANS_LOOKED_BACK,
        ).records
        full = next((i for i, record in enumerate(earlier) if not _planned_named_objects(record)), None)
        if full is None:
            return f"no submission run of the last {len(earlier) + 1} planned the whole library"
        plans += earlier[: full + 1]
    for plan in plans:
        metadata = materialization_metadata(plan)
        deferred = int(metadata_value(metadata, "deferred", 0))
        reason = str(metadata_value(metadata, "deferred_reason", ""))
        if deferred and not SubmissionStop.of(metadata).waits_for_a_person:
            return f"{deferred} objects wait ({reason})"
    library_plan = plans[-1]
    planned_at = float(
        metadata_value(materialization_metadata(library_plan), "planned_at", library_plan.timestamp)
    )
    ingests = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            keys.MARENGO_EMBEDDINGS, asset_partitions=[model_key], after_timestamp=planned_at
        ),
        limit=100,
    ).records
    retries = 0
    for record in ingests:
        meta = materialization_metadata(record)
        retries += int(metadata_value(meta, "objects_failed", 0)) + int(metadata_value(meta, "jobs_lost", 0))
    if retries:
        return f"{retries} jobs failed or lost since the last submission run planned"
    planned_changes = {plan.run_id for plan in plans[:-1]}  # event runs plan their own inventory's changes
    changes = instance.fetch_materializations(
        dg.AssetRecordsFilter(keys.MEDIA_INVENTORY, after_timestamp=planned_at), limit=PLANS_LOOKED_BACK
    ).records
    if any(record.run_id not in planned_changes for record in changes):
        return "the inventory changed since the last submission run planned"
    return None


def _planned_named_objects(record: dg.EventLogRecord) -> bool:
    """Whether the submission run planned only named objects (an event run), not the library."""
    return str(metadata_value(materialization_metadata(record), "plan_scope", "library")) != "library"


def latest_materialization(
    instance: dg.DagsterInstance, records: dg.AssetRecordsFilter
) -> dg.EventLogRecord | None:
    found = instance.fetch_materializations(records, limit=1).records
    return found[0] if found else None


def metadata_value(metadata: Mapping[str, Any], key: str, default: float | str) -> Any:
    """The plain value of a metadata entry (MetadataValue.value), or `default` when it is absent."""
    value = metadata.get(key)
    return default if value is None else getattr(value, "value", value)


def short_digest(parts: list[str]) -> str:
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()[:16]
