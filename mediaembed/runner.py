"""Drive the real Dagster definitions in-process: what the daemon does, step by step (no daemon needed).

Used by the demo and the end-to-end tests: the same jobs, the same sensor and its run requests, on a real
DagsterInstance, without a daemon. Nothing here bypasses an asset.
"""

import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from mediaembed.run_slots import execute_holding_slots
from pipelines.definitions import defs, pipeline_resources
from pipelines.sensors import marengo_invocation_sensor
from resources.submission_ledger import SubmissionLedger


def run_job(
    instance: dg.DagsterInstance,
    job_name: str,
    partition_key: str,
    run_config: dict[str, Any] | None = None,
    log_level: str = "INFO",
    **kwargs: Any,
) -> dg.ExecuteInProcessResult:
    run_config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": log_level}}}}
    result = execute_holding_slots(
        instance, defs.resolve_job_def(job_name), partition_key=partition_key, run_config=run_config, **kwargs
    )
    if not result.success:
        raise RuntimeError(f"run of {job_name} for {partition_key} failed: {result.run_id}")
    return result


def materialization_metadata(result: dg.ExecuteInProcessResult, asset_key: list[str]) -> dict[str, Any]:
    """Plain values of an asset's materialization metadata in a run."""
    node = "__".join(asset_key)
    [materialization] = result.asset_materializations_for_node(node)
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


@dataclass
class SensorDriver:
    """Ticks the real invocation sensor and launches the runs it requests, once per run key."""

    instance: dg.DagsterInstance
    cursor: str | None = None
    launched_run_keys: list[str] = field(default_factory=list)
    results: list[dg.ExecuteInProcessResult] = field(default_factory=list)

    def tick(self) -> int:
        sensor_resources = {"marengo": pipeline_resources["marengo"], "lake": pipeline_resources["lake"]}
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=sensor_resources
        ) as context:
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
            self.results.append(run_job(self.instance, job_name, request.partition_key, tags=tags))
            launched += 1
        return launched

    def drain(self, lake_resource: Any, timeout_sec: float = 120.0, interval_sec: float = 0.5) -> None:
        """Tick until the ledger has no invocation in flight, as the daemon would every 30 s."""
        deadline = time.monotonic() + timeout_sec
        while True:
            self.tick()
            if SubmissionLedger(lake_resource, "").in_progress().empty:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"invocations still in flight after {timeout_sec:.0f} s")
            time.sleep(interval_sec)
