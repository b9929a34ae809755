"""Following an ingest on Dagster's engine: the runs of the model's partition and the ledger, until nothing
is queued, running, in flight or due, or the command's wait ends. Imported only once the command has
checked its settings, so it loads Dagster and the pipeline at the top like any module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

import dagster as dg

from assets_defs import keys
from assets_defs.inventory.media_inventory import read_inventory
from assets_defs.marengo.submission_stop import SubmissionStop
from mediaembed.engine import ENDED_RUN_STATUSES, Engine, failure_reason
from mediaembed.ingest import (
    EXIT_INTERRUPTED,
    EXIT_STILL_IN_FLIGHT,
    FIRST_POLL_SEC,
    MAX_POLL_SEC,
    IngestError,
    StillInFlight,
    Wait,
    in_flight_line,
)
from mediaembed.ingest_summary import Summary, summarize
from mediaembed.progress import Follower, Progress
from pipelines.definitions import media_config
from pipelines.jobs import SUBMITTING_JOBS
from pipelines.run_statuses import ACTIVE_RUN_STATUSES
from pipelines.sensors import due_work, latest_materialization, materialization_metadata, metadata_value
from resources.providers.errors import SetupError
from resources.providers.marengo_models import MarengoModel
from resources.providers.model_routes import ModelRoute, cost_from_metadata, describe_cost, route
from resources.tables.inventory_table import InventoryTable
from resources.tables.submission_ledger import SubmissionLedger

if TYPE_CHECKING:
    from resources.storage.s3_storage import S3Uri


def follow(
    engine: Engine,
    prefix: S3Uri,
    model: MarengoModel,
    built: Any,
    wait: Wait,
    out: TextIO,
    progress: Progress,
) -> Summary:
    """Submit `embed_new_media` for the prefix to the instance's queue, then follow the runs the daemon
    starts and the ledger until nothing is queued, running, in flight or due, or the wait ends."""
    lake = built.lake
    ledger = SubmissionLedger(lake, None)
    since = datetime.now(UTC)
    progress.say(f"listing and probing {prefix} ... (runs in the Dagster UI of {engine.home})")
    first = engine.launch(
        "embed_new_media",
        partition_key=model.key,
        run_config={"resources": {"media": {"config": media_config(str(prefix))}}},
        tags={"mediaembed/command": "ingest"},
    )
    runs = _Runs(engine.instance, model.key, since)
    follower = Follower(progress, lambda: ledger.jobs(model.key), runs.submissions)

    def finish() -> Summary:
        progress.close()
        runs.refresh()
        summary = summarize(
            str(prefix),
            read_inventory(lake),
            ledger.jobs(model.key),
            model,
            runs.submissions,
            route_of=partial(_route, built.marengo, model),
        )
        print("\n".join(summary.lines()), file=out, flush=True)
        return summary

    reported: set[str] = set()
    probing_said = 0
    pause = FIRST_POLL_SEC
    try:
        while True:
            engine.keep_daemon()
            runs.refresh()
            for run_id, job_name, reason in runs.failed():
                finish()
                raise IngestError(
                    f"run {run_id} of {job_name} failed: {reason}: see it in the Dagster UI, fix that, then "
                    "run the same command again"
                )
            status = engine.status(first)
            if status not in ENDED_RUN_STATUSES:
                if wait.remaining() <= 0:
                    finish()
                    raise IngestError(
                        f"stopped waiting after {wait.waited():.0f} s: run {first} of embed_new_media is "
                        f"still {status.value}: see it in the Dagster UI; run the same command again later",
                        EXIT_STILL_IN_FLIGHT,
                    )
                _pause(wait, pause)
                pause = min(pause * 1.5, MAX_POLL_SEC)
                continue
            invocations = _report_submissions(engine.instance, model.key, runs, reported, progress)
            stop = SubmissionStop.of(invocations)
            reason = str(invocations.get("deferred_reason", "")).removeprefix("stopped: ")
            if stop is SubmissionStop.OVER_BUDGET:
                finish()
                raise IngestError(f"nothing submitted: {reason}")
            if stop is SubmissionStop.SETUP_REFUSED:
                finish()
                raise IngestError(f"{model.key} at its provider: {reason}: fix that, then run again")
            in_flight = ledger.in_progress(model.key)
            follower(in_flight)
            due = _due(engine.instance, model.key)
            # A listing of more new objects than a probe batch leaves them pending for probe_media runs
            # (not of the model's partition); the invocation sensor submits them once they are probed.
            probing = InventoryTable(lake).pending_objects()
            if probing and probing != probing_said:
                progress.say(f"probing: {probing} objects wait for their probe_media runs")
                probing_said = probing
            if not runs.active and in_flight.empty and due is None and not probing:
                break
            if wait.remaining() <= 0:
                if in_flight.empty:
                    finish()
                    waits_for = (
                        due
                        or (probing and f"{probing} objects still wait for their probe_media runs")
                        or "runs still queued or running"
                    )
                    raise IngestError(
                        f"stopped waiting after {wait.waited():.0f} s: {waits_for}: run the same command "
                        "again later",
                        EXIT_STILL_IN_FLIGHT,
                    )
                raise StillInFlight(wait.waited(), in_flight)
            _pause(wait, pause)
            pause = min(pause * 1.5, MAX_POLL_SEC)
    except StillInFlight as stop_waiting:
        finish()
        raise IngestError(
            f"stopped waiting: {in_flight_line(stop_waiting.in_flight, wait.waited())}; nothing is lost or "
            "billed twice: run the same command again to collect them (or let the daemon of `dagster dev` "
            "do it)",
            EXIT_STILL_IN_FLIGHT,
        ) from stop_waiting
    except KeyboardInterrupt:
        summary = finish()
        raise IngestError(
            f"interrupted with {len(summary.in_flight)} objects in flight at the provider (they finish and "
            "bill regardless): run the same command again to collect them",
            EXIT_INTERRUPTED,
        ) from None
    return finish()


def _route(marengo: Any, model: MarengoModel, provider: str) -> ModelRoute:
    """The route a provider's jobs were priced by: as the marengo resource binds it (MEDIAEMBED_PRICES
    included), or the published one for a provider no longer configured here."""
    try:
        return marengo.named(provider).route(model)
    except SetupError:
        return route(provider, model.key)


def _pause(wait: Wait, pause: float) -> None:
    wait.clock.sleep(max(0.0, min(pause, wait.remaining())))


@dataclass
class _Runs:
    """The runs of one model's partition created since the command started, read again on `refresh`."""

    instance: dg.DagsterInstance
    model_key: str
    since: datetime
    submissions: set[str] = field(default_factory=set)
    active: list[dg.DagsterRun] = field(default_factory=list)
    records: list[dg.DagsterRun] = field(default_factory=list)

    def refresh(self) -> None:
        mine = dg.RunsFilter(tags={"dagster/partition": self.model_key}, created_after=self.since)
        self.records = list(self.instance.get_runs(mine, limit=1000))
        self.submissions.update(r.run_id for r in self.records if r.job_name in SUBMITTING_JOBS)
        going = dg.RunsFilter(tags={"dagster/partition": self.model_key}, statuses=ACTIVE_RUN_STATUSES)
        self.active = list(self.instance.get_runs(going, limit=50))

    def failed(self) -> list[tuple[str, str, str]]:
        """(run id, job, first line of why) of each run of ours that failed."""
        return [
            (r.run_id, r.job_name, failure_reason(self.instance, r.run_id))
            for r in self.records
            if r.status == dg.DagsterRunStatus.FAILURE
        ]


def _report_submissions(
    instance: dg.DagsterInstance, model_key: str, runs: _Runs, reported: set[str], progress: Progress
) -> Mapping[str, Any]:
    """Say what each submission run of ours found and submitted, once; the latest one's metadata."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(keys.MARENGO_INVOCATIONS, asset_partitions=[model_key]), limit=20
    ).records
    ours = [r for r in reversed(records) if r.run_id in runs.submissions]
    for record in ours:
        if record.run_id in reported:
            continue
        metadata = {k: metadata_value(materialization_metadata(record), k, "") for k in _SUBMISSION_FIELDS}
        if not reported:
            _report_inventory(instance, record.run_id, progress)
        reported.add(record.run_id)
        if metadata["submitted"] or len(reported) == 1:
            usd = cost_from_metadata(metadata["estimated_cost_usd"]) or 0.0
            cost = describe_cost(usd, bool(metadata["priced"]))
            progress.say(
                f"submitted {metadata['submitted']} Marengo invocations "
                f"({metadata['already_handled']} already handled, {cost})"
            )
    if not ours:
        return {}
    latest = materialization_metadata(ours[-1])
    return {k: getattr(v, "value", v) for k, v in latest.items()}


_SUBMISSION_FIELDS = ("submitted", "already_handled", "estimated_cost_usd", "priced")


def _report_inventory(instance: dg.DagsterInstance, run_id: str, progress: Progress) -> None:
    records = instance.fetch_materializations(dg.AssetRecordsFilter(keys.MEDIA_INVENTORY), limit=5).records
    for record in records:
        if record.run_id == run_id:
            meta = materialization_metadata(record)
            value = partial(metadata_value, meta)
            progress.say(
                f"{value('dagster/row_count', 0)} objects, {value('usable_objects', 0)} usable, "
                f"{value('unusable_objects', 0)} skipped, {float(value('media_seconds', 0.0)):.1f} media s"
            )
            return


def _due(instance: dg.DagsterInstance, model_key: str) -> str | None:
    """What the invocation sensor would submit next for the model (retries, waiting objects), if anything."""
    last = latest_materialization(
        instance, dg.AssetRecordsFilter(keys.MARENGO_INVOCATIONS, asset_partitions=[model_key])
    )
    return None if last is None else due_work(instance, model_key, last)
