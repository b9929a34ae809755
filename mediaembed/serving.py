"""`mediaembed serving`: which Marengo version serves search, and the cut-over and rollback that change it.

Showing reads the lake's serving record directly (no Dagster, a fast start). Changing it submits the
same Dagster jobs the UI launches to the instance of DAGSTER_HOME, where the daemon runs them
(mediaembed/engine.py), so every change is a run in the UI with who, when, from and to, and a cut-over
passes the same blocking whole-version checks. The settings come from the
mapping the command passes (its environment).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from resources.storage.clock import REAL_CLOCK, Clock
from resources.storage.location import BotoAccess, location
from resources.tables.serving_versions import (
    INITIAL_SERVING_ENV,
    ServingChangeRefused,
    ServingState,
    ServingVersions,
    record_folder,
)

# The jobs of assets_defs/search/serving.py, named here so showing needs no Dagster. Both materialize the
# serving asset's partition of the version to serve, with the same config: the cut-over after its checks.
CUT_OVER_JOB = "cut_over_serving_version"
SERVING_STEP = "search__serving_version"
# Past the job's own `dagster/max_runtime`, run monitoring ends it; the wait allows that and the queue.
QUEUE_ALLOWANCE_SEC = 10 * 60
FIRST_POLL_SEC = 0.5
MAX_POLL_SEC = 5.0
ROLL_BACK_JOB = "roll_back_serving_version"


class ServingCommandError(Exception):
    """One line that says what to do."""


def _versions(env: Mapping[str, str]) -> ServingVersions:
    lake = env.get("MEDIAEMBED_LAKE_URI", "").strip()
    if not lake:
        raise ServingCommandError(
            "MEDIAEMBED_LAKE_URI is not set: it names the lake that holds the serving record "
            "(`mediaembed serving --local` shows what `make demo` built)"
        )
    folder = record_folder(location(lake, BotoAccess(_s3_client)))
    return ServingVersions(folder, initial=env.get(INITIAL_SERVING_ENV))


def _s3_client() -> Any:
    """The standard AWS chain's S3 client (AWS_ENDPOINT_URL_S3 included), made only for a lake on S3."""
    import boto3

    return boto3.session.Session().client("s3")


def state_record(state: ServingState, history: list[ServingState]) -> dict[str, Any]:
    return {**state.record(), "history": [h.record() for h in history]}


def show(as_json: bool, out: TextIO, env: Mapping[str, str]) -> None:
    versions = _versions(env)
    state, history = versions.current(), versions.history()
    if as_json:
        print(json.dumps(state_record(state, history)), file=out)
        return
    print(state.describe(), file=out)
    for change in history[-5:]:
        when = f"{change.since:%Y-%m-%d %H:%M:%S}" if change.since else "-"
        print(
            f"  {change.sequence:3d}. {when}  {change.action:9s} -> {change.serving}  by {change.by or '?'}",
            file=out,
        )


def change(
    job_name: str,
    partition_key: str | None,
    by: str,
    out: TextIO,
    env: Mapping[str, str],
    clock: Clock = REAL_CLOCK,
) -> None:
    """Submit the cut-over or rollback run to the instance's queue and wait for it, as the UI's launch
    does; a refusal is one line naming the failed checks."""
    import dagster as dg

    from mediaembed.engine import ENDED_RUN_STATUSES, EngineError, dagster_engine, failure_reason
    from mediaembed.ingest import IngestError, prepare_instance_home
    from pipelines.jobs import SERVING_CHANGE_MAX_RUNTIME_SEC

    home = env.get("DAGSTER_HOME", "").strip()
    if not home:
        raise ServingCommandError(
            "DAGSTER_HOME is not set: set it to the folder of the instance the Dagster UI uses"
        )
    try:
        prepare_instance_home(Path(home))
    except IngestError as error:
        raise ServingCommandError(str(error)) from None
    if partition_key is None:  # a rollback: to the version that served before, as the UI launches it
        partition_key = rollback_target(_versions(env).current())
    run_config: dict[str, Any] = {"ops": {SERVING_STEP: {"config": {"by": by}}}} if by else {}
    try:
        with dagster_engine(Path(home)) as engine:
            run_id = engine.launch(
                job_name,
                partition_key=partition_key,
                run_config=run_config,
                tags={"mediaembed/command": "serving"},
            )
            waited_at_most = SERVING_CHANGE_MAX_RUNTIME_SEC + QUEUE_ALLOWANCE_SEC
            deadline = clock.monotonic() + waited_at_most
            pause = FIRST_POLL_SEC
            while (status := engine.status(run_id)) not in ENDED_RUN_STATUSES:
                engine.keep_daemon()
                if clock.monotonic() >= deadline:
                    raise ServingCommandError(
                        f"run {run_id} of {job_name} is still {status.value} after {waited_at_most} s: "
                        "see it in the Dagster UI"
                    )
                clock.sleep(pause)
                pause = min(pause * 1.5, MAX_POLL_SEC)
            instance = engine.instance
            evaluations = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            failed = [
                e.dagster_event.asset_check_evaluation_data
                for e in evaluations
                if e.dagster_event is not None and not e.dagster_event.asset_check_evaluation_data.passed
            ]
            reason = failure_reason(instance, run_id) if status != dg.DagsterRunStatus.SUCCESS else ""
    except EngineError as error:
        raise ServingCommandError(str(error)) from None
    if failed:
        names = "; ".join(f"{e.check_name}: {e.description or 'failed'}" for e in failed)
        raise ServingCommandError(
            f"cut-over to {partition_key} refused by its checks ({names}) (run {run_id})"
        )
    if reason:
        raise ServingCommandError(f"{reason} (run {run_id})")
    print(f"{_versions(env).current().describe()} (run {run_id})", file=out)


def rollback_target(state: ServingState) -> str:
    """The partition a rollback launches: the version that served before the last cut-over."""
    if state.previous is None:
        raise ServingCommandError(f"nothing to roll back to: {state.describe()}")
    return state.previous


def run_serving(
    action: str,
    key: str | None,
    as_json: bool,
    by: str,
    out: TextIO | None = None,
    err: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    debug: bool = False,
) -> int:
    """`mediaembed serving`, with the settings of `env` (the command's environment); `debug`
    (MEDIAEMBED_DEBUG) lets an unexpected error out with its traceback. Returns the exit status."""
    out, err, env = out or sys.stdout, err or sys.stderr, env or {}
    try:
        if action == "show":
            show(as_json, out, env)
        elif action == "cut-over":
            change(CUT_OVER_JOB, key, by, out, env)
        elif action == "retire":
            assert key is not None
            retired = _versions(env).retire(key, by or getpass.getuser())
            print(f"{key} retired: no new media are embedded for it; {retired.describe()}", file=out)
        else:
            change(ROLL_BACK_JOB, None, by, out, env)
    except (ServingCommandError, ServingChangeRefused) as error:
        print(f"mediaembed serving: {error}", file=err)
        return 1
    except KeyboardInterrupt:
        print(
            "mediaembed serving: interrupted; a change already submitted goes on as a run of the instance: "
            "see it in the Dagster UI, then `mediaembed serving` shows what serves",
            file=err,
        )
        return 130
    except Exception as error:  # the last line of defence: one line, never a traceback
        if debug:
            raise
        reason = " ".join(str(error).split())[:300]
        print(
            f"mediaembed serving: unexpected {type(error).__name__}: {reason} "
            "(MEDIAEMBED_DEBUG=1 shows the traceback)",
            file=err,
        )
        return 1
    return 0
