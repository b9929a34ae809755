"""The serving pointer as an asset: materializing partition X of `serving/marengo` cuts search over to X.

The cut-over job runs the whole-version checks of X's index in the same run, blocking: a version that is not
complete and checked never reaches the pointer. Rollback is one step back to the previous version, whose
tables stay until it is retired, so it needs no re-embedding.
"""

import getpass

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from pydantic import Field

from assets_defs.partitions import marengo_model_partitions
from assets_defs.version_checks import WHOLE_VERSION_CHECKS, checked_version
from resources.lake import Lake
from resources.serving_versions import ServingChangeRefused, ServingState

SERVING_KEY = dg.AssetKey(["serving", "marengo"])


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


def change_metadata(before: ServingState, after: ServingState) -> dict[str, str | int]:
    """What the UI shows of a change: from, to, who, when, and what a rollback would return to."""
    return {
        "action": after.action,
        "from": before.serving,
        "to": after.serving,
        "by": after.by,
        "at": after.since.isoformat() if after.since else "",
        "rollback_to": after.previous or "none",
        "retired": ", ".join(after.retired) or "none",
        "sequence": after.sequence,
        "serving": after.describe(),
    }


def kept_up(state: ServingState, model_key: str) -> bool:
    """Whether new media are still embedded for this version: every version not retired (the serving one,
    a migration's target, and the previous one, so a rollback finds it up to date)."""
    return model_key == state.serving or model_key not in state.retired


@dg.asset(
    key=SERVING_KEY,
    deps=[checked_version],
    partitions_def=marengo_model_partitions,
    group_name="search",
    description="Which Marengo version serves search. Materialize partition X to cut over to X: only "
    "through the `cut_over_serving_version` job, whose whole-version checks must pass first.",
)
def serving_marengo(
    context: dg.AssetExecutionContext, config: ServingChangeConfig, lake: Lake
) -> dg.MaterializeResult:
    """Points search at this partition's version, atomically: one new record in the lake, or none."""
    unchecked = checks_not_passed_in_run(context)
    if unchecked:
        raise dg.Failure(
            description=f"not cut over to {context.partition_key}: the whole-version checks "
            f"{', '.join(unchecked)} did not pass in this run; launch the cut_over_serving_version job "
            "(or `mediaembed serving cut-over`), which runs them first",
            allow_retries=False,
        )
    versions = lake.serving_versions()
    before = versions.current()
    try:
        after = versions.cut_over(context.partition_key, who(context, config), context.run.run_id)
    except ServingChangeRefused as refused:
        raise dg.Failure(description=str(refused), allow_retries=False) from None
    context.log.info(f"cut over: {after.describe()}")
    return dg.MaterializeResult(metadata=change_metadata(before, after))


def checks_not_passed_in_run(context: dg.AssetExecutionContext) -> list[str]:
    """The whole-version checks that did not pass in this very run: the pointer moves only behind them,
    whatever the selection someone launched (the asset alone from the UI runs none)."""
    keys = [key for check in WHOLE_VERSION_CHECKS for key in check.check_keys]
    latest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    return sorted(
        key.name
        for key in keys
        if (record := latest.get(key)) is None
        or record.run_id != context.run.run_id
        or record.status != AssetCheckExecutionRecordStatus.SUCCEEDED
    )


def roll_back(
    context: dg.OpExecutionContext, config: ServingChangeConfig, lake: Lake
) -> dg.AssetMaterialization:
    """One step back; recorded on `serving/marengo` (partition = the version serving again)."""
    versions = lake.serving_versions()
    before = versions.current()
    try:
        after = versions.roll_back(who(context, config), context.run.run_id)
    except ServingChangeRefused as refused:
        raise dg.Failure(description=str(refused), allow_retries=False) from None
    context.log.info(f"rolled back: {after.describe()}")
    return dg.AssetMaterialization(
        asset_key=SERVING_KEY, partition=after.serving, metadata=change_metadata(before, after)
    )
