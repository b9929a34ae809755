"""`mediaembed serving`: which Marengo version serves search, and the cut-over and rollback that change it.

Showing reads the lake's serving record directly (no Dagster, a fast start). Changing it runs the same
Dagster jobs the UI launches, on the instance of DAGSTER_HOME, so every change is a run in the UI with who,
when, from and to, and a cut-over passes the same blocking whole-version checks. The settings come from the
mapping the command passes (its environment).
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from resources.storage.location import BotoAccess, location
from resources.tables.serving_versions import (
    INITIAL_SERVING_ENV,
    ServingChangeRefused,
    ServingState,
    ServingVersions,
    record_folder,
)

CUT_OVER_JOB = "cut_over_serving_version"
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


def change(job_name: str, partition_key: str | None, by: str, out: TextIO, env: Mapping[str, str]) -> None:
    """Run the cut-over or rollback job in this process; a refusal is one line naming the failed checks."""
    import dagster as dg

    from mediaembed.ingest import IngestError, prepare_instance_home
    from mediaembed.run_slots import PoolSlotTimeout, execute_holding_slots
    from pipelines.definitions import defs

    home = env.get("DAGSTER_HOME", "").strip()
    if not home:
        raise ServingCommandError(
            "DAGSTER_HOME is not set: set it to the folder of the instance the Dagster UI uses"
        )
    try:
        prepare_instance_home(Path(home))
    except IngestError as error:
        raise ServingCommandError(str(error)) from None
    node = "serving__marengo" if job_name == CUT_OVER_JOB else "roll_back_serving"
    run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    if by:
        run_config["ops"] = {node: {"config": {"by": by}}}
    # Like every run a `mediaembed` command starts: tagged with this process, so that if it is killed the
    # next local run fails it and frees its slots (no daemon watches an in-process run).
    with dg.DagsterInstance.get() as instance:
        try:
            result = execute_holding_slots(
                instance,
                defs.resolve_job_def(job_name),
                partition_key=partition_key if job_name == CUT_OVER_JOB else None,
                run_config=run_config,
                raise_on_error=False,
            )
        except PoolSlotTimeout as error:
            raise ServingCommandError(str(error)) from None
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    if failed:
        names = "; ".join(f"{e.check_name}: {e.description or 'failed'}" for e in failed)
        raise ServingCommandError(
            f"cut-over to {partition_key} refused by its checks ({names}) (run {result.run_id})"
        )
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        data = failure.step_failure_data if failure else None
        reason = "the run failed"
        if data and data.user_failure_data and data.user_failure_data.description:
            reason = data.user_failure_data.description  # a refusal: dg.Failure with its one line
        elif data and data.error:
            reason = data.error.message.strip().splitlines()[0]
        raise ServingCommandError(f"{reason} (run {result.run_id})")
    print(f"{_versions(env).current().describe()} (run {result.run_id})", file=out)


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
