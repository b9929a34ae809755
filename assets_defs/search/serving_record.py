"""What the serving asset's materializations say: a change (cut-over, rollback) or, where the instance has
recorded none yet, the version that serves already, so the UI shows what serves from the first run on."""

import dagster as dg

from assets_defs import keys
from resources.storage.lake import Lake
from resources.tables.serving_versions import ServingState

SERVING_KEY = keys.SEARCH_SERVING_VERSION


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


def serving_so_far(instance: dg.DagsterInstance, lake: Lake) -> dg.AssetMaterialization | None:
    """The serving version as a materialization of its partition, where the instance has no
    materialization of the serving asset yet (a new instance: before any cut-over, the initial version
    MEDIAEMBED_SERVING_VERSION names); None once it has one. "from" is "none": nothing changed."""
    if instance.get_latest_materialization_event(SERVING_KEY) is not None:
        return None
    state = lake.serving_versions().current()
    metadata = {**change_metadata(state, state), "from": "none"}
    return dg.AssetMaterialization(asset_key=SERVING_KEY, partition=state.serving, metadata=metadata)
