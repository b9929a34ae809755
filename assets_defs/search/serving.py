"""The serving pointer as an asset: materializing partition X of `search/serving_version` makes X serve.

A cut-over and a rollback are launched the same way: a run of partition X (the version to serve) with the
same config (`by`). The job says which: `cut_over_serving_version` runs the whole-version checks of X's
index first, blocking, so a version that is not complete and checked never reaches the pointer;
`roll_back_serving_version` is one step back to the previous version (X must be the one a rollback
returns to), whose tables stay until it is retired, so it needs no checks and no re-embedding.
"""

import getpass
from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.migration.checks import WHOLE_VERSION_CHECKS, checked_version
from assets_defs.search.serving_record import SERVING_KEY, change_metadata
from resources.storage.lake import Lake
from resources.tables.serving_versions import (
    AlreadyServing,
    ServingChangeRefused,
    ServingConflict,
    ServingState,
)

CUT_OVER_JOB = "cut_over_serving_version"
ROLL_BACK_JOB = "roll_back_serving_version"


class ServingChangeConfig(dg.Config):
    by: str = Field(
        default="",
        description="Who makes the change, for the history (default: the run's launching user, else the "
        "account the run runs under).",
    )


def who(context: dg.OpExecutionContext | dg.AssetExecutionContext, config: ServingChangeConfig) -> str:
    return (
        config.by or context.run.tags.get("dagster/user") or context.run.tags.get("user") or getpass.getuser()
    )


def kept_up(state: ServingState, model_key: str) -> bool:
    """Whether new media are still embedded for this version: every version not retired (the serving one,
    a migration's target, and the previous one, so a rollback finds it up to date)."""
    return model_key == state.serving or model_key not in state.retired


@dg.asset(
    key=SERVING_KEY,
    deps=[checked_version],
    partitions_def=marengo_model_partitions,
    group_name="serving",
    description="Which Marengo version serves search. Launch partition X (the version to serve) with the "
    f"`{CUT_OVER_JOB}` job, whose whole-version checks must pass first, or, to return to the version "
    f"that served before, with the `{ROLL_BACK_JOB}` job.",
)
def serving_version(
    context: dg.AssetExecutionContext, config: ServingChangeConfig, lake: Lake
) -> dg.MaterializeResult:
    """Points search at this partition's version, atomically: one new record in the lake, or none."""
    if context.job_name == ROLL_BACK_JOB:
        return roll_back(context, config, lake)
    target, run_id = context.partition_key, context.run.run_id
    unchecked = checks_not_passed_in_run(context.instance, run_id)
    if unchecked:
        raise dg.Failure(
            description=f"not cut over to {target}: the whole-version checks "
            f"{', '.join(unchecked)} did not pass in this run; launch the cut_over_serving_version job "
            "(or `mediaembed serving cut-over`), which runs them first",
            allow_retries=False,
        )
    versions = lake.serving_versions()
    before = versions.current()
    try:
        after = versions.cut_over(target, who(context, config), run_id)
    except ServingConflict as lost:  # another change took the sequence between our read and our write
        raise dg.Failure(description=_lost(target, lost.winner, lost), allow_retries=False) from None
    except AlreadyServing as served:  # ... or before our read, while this run checked the version
        during_run = served.state.since is not None and served.state.since >= _run_started_at(context)
        raise dg.Failure(
            description=_lost(target, served.state if during_run else None, served), allow_retries=False
        ) from None
    except ServingChangeRefused as refused:
        raise dg.Failure(description=str(refused), allow_retries=False) from None
    context.log.info(f"cut over: {after.describe()}")
    return dg.MaterializeResult(metadata=change_metadata(before, after))


def _lost(target: str, winner: ServingState | None, refusal: ServingChangeRefused) -> str:
    """One line for the cut-over that lost a race: who won and when, and that its own checks were fine
    (this step writes only once every check passed in its run). Without a winner, the refusal as it is."""
    if winner is None:
        return str(refusal)
    then = "nothing is left to do" if winner.serving == target else f"cut over again if {target} should serve"
    return (
        f"not cut over to {target}: another change won the race, {winner.describe_change()}; this run's "
        f"whole-version checks passed, nothing is wrong with them: {then}"
    )


def _run_started_at(context: dg.AssetExecutionContext) -> datetime:
    record = context.instance.get_run_record_by_id(context.run.run_id)
    started = record.start_time if record is not None else None
    return datetime.fromtimestamp(started, UTC) if started is not None else datetime.now(UTC)


def checks_not_passed_in_run(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The whole-version checks that did not pass in this very run: the pointer moves only behind them,
    whatever the selection someone launched (the asset alone from the UI runs none). Read from the run's
    own events, so the checks of a cut-over racing this one, evaluated later, never stand in for ours."""
    keys = {key for check in WHOLE_VERSION_CHECKS for key in check.check_keys}
    passed: set[dg.AssetCheckKey] = set()
    events = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    for record in events.records:
        event = record.event_log_entry.dagster_event
        evaluation = event.asset_check_evaluation_data if event is not None else None
        if evaluation is not None and evaluation.passed:
            passed.add(evaluation.asset_check_key)
    return sorted(key.name for key in keys - passed)


def roll_back(
    context: dg.AssetExecutionContext, config: ServingChangeConfig, lake: Lake
) -> dg.MaterializeResult:
    """One step back to this partition's version, which must be the one that served before."""
    versions = lake.serving_versions()
    before = versions.current()
    try:
        after = versions.roll_back(who(context, config), context.run.run_id, to=context.partition_key)
    except ServingConflict as lost:
        description = str(lost)
        if lost.winner is not None:
            description = (
                f"not rolled back: another change won the race, {lost.winner.describe_change()}: look at "
                "`mediaembed serving` before rolling back again"
            )
        raise dg.Failure(description=description, allow_retries=False) from None
    except ServingChangeRefused as refused:
        raise dg.Failure(description=str(refused), allow_retries=False) from None
    context.log.info(f"rolled back: {after.describe()}")
    return dg.MaterializeResult(metadata=change_metadata(before, after))
