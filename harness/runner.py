"""Drive the real Dagster definitions in-process: what the daemon does, step by step (no daemon needed).

Dev only (production commands submit to the instance's queue: mediaembed/engine.py). Used by the demo, the
bench and the end-to-end tests: the same jobs, the same sensor and its run requests, on a real
DagsterInstance, without a daemon. Nothing here bypasses an asset.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from assets_defs import keys
from assets_defs.keys import op_name
from harness.run_slots import execute_holding_slots
from mediaembed.ingest import StillInFlight
from pipelines.definitions import defs, pipeline_resources
from pipelines.jobs import SUBMITTING_JOBS, holding_config
from pipelines.media_sensors import media_change_sensor
from pipelines.sensors import marengo_invocation_sensor
from resources.storage.clock import REAL_CLOCK, Clock
from resources.tables.submission_ledger import SubmissionLedger


def run_job(
    instance: dg.DagsterInstance,
    job_name: str,
    partition_key: str | None,
    run_config: dict[str, Any] | None = None,
    log_level: str = "INFO",
    **kwargs: Any,
) -> dg.ExecuteInProcessResult:
    """Execute one run in this process and wait for it; a failed run raises.

    A submission run here ends at the quota unless its run config sets `hold_quota_sec`: the caller's loop
    (the sensor driver, `mediaembed ingest`) submits again as jobs end, and a run holding the quota would
    stop that loop while it waits. Under the daemon the default holds. `partition_key` is None for an
    unpartitioned job (describe_media).
    """
    run_config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": log_level}}}}
    if job_name in SUBMITTING_JOBS:
        ops = dict(run_config.get("ops", {}))
        step = dict(ops.get(op_name(keys.MARENGO_INVOCATIONS), {}))
        step["config"] = {"hold_quota_sec": 0.0, **step.get("config", {})}
        run_config["ops"] = {**ops, op_name(keys.MARENGO_INVOCATIONS): step}
    result = execute_holding_slots(
        instance, defs.resolve_job_def(job_name), partition_key=partition_key, run_config=run_config, **kwargs
    )
    if not result.success:
        which = f" for {partition_key}" if partition_key is not None else ""
        raise RuntimeError(f"run of {job_name}{which} failed: {result.run_id}")
    return result


def materialization_metadata(
    result: dg.ExecuteInProcessResult, asset_key: dg.AssetKey | Sequence[str]
) -> dict[str, Any]:
    """Plain values of an asset's materialization metadata in a run. Only the asset's own: a step may
    record another asset too (the first segment index records the serving version)."""
    key = dg.AssetKey.from_coercible(asset_key)
    events = result.asset_materializations_for_node(op_name(key))
    [materialization] = [m for m in events if m.asset_key == key]
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def media_change_requests(instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    """One media change sensor evaluation, as the daemon makes it: the runs it requests (none on a skip)."""
    resources = {n: pipeline_resources[n] for n in ("media_events", "media", "lake")}
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = media_change_sensor(context)
    if isinstance(result, dg.SkipReason):
        return []
    assert isinstance(result, dg.SensorResult)
    return [r for r in result.run_requests or [] if isinstance(r, dg.RunRequest)]


@dataclass
class SensorDriver:
    """Ticks the real invocation sensor and launches the runs it requests, once per run key.

    The runs execute in this process, one after the other, so a submission run the sensor asks to hold
    the quota would stop the ticks while it waits: by default it ends at the quota instead, and the next
    ticks start another as slots free (`hold_quota_sec=None` runs requests exactly as asked). `drain` waits
    between ticks on `clock`.
    """

    instance: dg.DagsterInstance
    cursor: str | None = None
    launched_run_keys: list[str] = field(default_factory=list)
    results: list[dg.ExecuteInProcessResult] = field(default_factory=list)
    log_level: str = "INFO"  # of the sensor's log and of the runs it launches
    hold_quota_sec: float | None = 0.0
    clock: Clock = REAL_CLOCK

    @property
    def ingest_results(self) -> list[dg.ExecuteInProcessResult]:
        return [r for r in self.results if r.job_def.name == "ingest_marengo_embeddings"]

    @property
    def submission_results(self) -> list[dg.ExecuteInProcessResult]:
        return [r for r in self.results if r.job_def.name in SUBMITTING_JOBS]

    def tick(self) -> int:
        sensor_resources = {"marengo": pipeline_resources["marengo"], "lake": pipeline_resources["lake"]}
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=sensor_resources
        ) as context:
            context.log.setLevel(self.log_level)
            result = marengo_invocation_sensor(context)
        if isinstance(result, dg.SkipReason):
            return 0
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor or self.cursor
        launched = 0
        for request in result.run_requests or []:
            assert isinstance(request, dg.RunRequest) and request.partition_key and request.run_key
            if request.run_key in self.launched_run_keys:
                continue  # the daemon runs each run_key at most once
            self.launched_run_keys.append(request.run_key)
            job_name = request.job_name or "ingest_marengo_embeddings"
            tags = {**request.tags, "dagster/run_key": request.run_key}
            run_config = request.run_config if isinstance(request.run_config, dict) else {}
            if job_name in SUBMITTING_JOBS and self.hold_quota_sec is not None:
                run_config = {**run_config, **holding_config(self.hold_quota_sec)}
            self.results.append(
                run_job(
                    self.instance,
                    job_name,
                    request.partition_key,
                    run_config=run_config,
                    log_level=self.log_level,
                    tags=tags,
                )
            )
            launched += 1
        return launched

    def drain(
        self,
        lake_resource: Any,
        timeout_sec: float = 120.0,
        interval_sec: float = 0.5,
        *,
        progress: Callable[[pd.DataFrame], None] | None = None,
        until: Callable[[pd.DataFrame], bool] | None = None,
        max_interval_sec: float | None = None,
        deadline: float | None = None,
    ) -> None:
        """Tick until the ledger has no invocation in flight (or `until(in_flight)` holds), as the daemon
        would every 30 s, then return; past `timeout_sec` (or the caller's `deadline`, a time on the
        driver's clock) raise `StillInFlight` naming what is left and how long this waited.

        `progress(in_flight)` sees the ledger's open jobs after every tick. With `max_interval_sec`, the
        pause between ticks grows by half up to it while nothing finishes (fewer list calls on long jobs).
        """
        started = self.clock.monotonic()
        deadline = started + timeout_sec if deadline is None else deadline
        pause = interval_sec
        while True:
            launched = self.tick()
            in_flight = SubmissionLedger(lake_resource, None).in_progress()
            if progress is not None:
                progress(in_flight)
            if in_flight.empty or (until is not None and until(in_flight)):
                return
            remaining = deadline - self.clock.monotonic()
            if remaining <= 0:
                raise StillInFlight(self.clock.monotonic() - started, in_flight)
            if launched or max_interval_sec is None:
                pause = interval_sec
            else:
                pause = min(pause * 1.5, max(max_interval_sec, interval_sec))
            self.clock.sleep(min(pause, remaining))
