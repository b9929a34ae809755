"""Jobs: submitting new media, submitting what waits for the quota, and ingesting what has finished."""

import dagster as dg

from assets_defs import keys
from assets_defs.inventory.media_inventory import media_inventory
from assets_defs.marengo.embeddings import marengo_embeddings
from assets_defs.marengo.invocations import HOLD_QUOTA_SEC, marengo_invocations
from assets_defs.migration.checks import WHOLE_VERSION_CHECKS, checked_version
from assets_defs.pegasus.description_index import search_descriptions
from assets_defs.pegasus.descriptions import pegasus_chapters, pegasus_descriptions
from assets_defs.search.segment_index import marengo_segment_index
from assets_defs.search.serving import CUT_OVER_JOB, ROLL_BACK_JOB, serving_version

# Run monitoring fails a run still going past `dagster/max_runtime` (seconds), so a run whose worker hangs
# or vanished under a launcher that cannot see it never holds its pool slot for ever. Submission: the
# quota hold (14 min) plus the submissions themselves; ingest: ten thousand outputs with ample room.
SUBMISSION_MAX_RUNTIME_SEC = 60 * 60
INGEST_MAX_RUNTIME_SEC = 4 * 60 * 60
# Pegasus: one synchronous call per video and prompt, a few at a time; ample room for a large first run.
DESCRIBE_MAX_RUNTIME_SEC = 6 * 60 * 60
# A cut-over reads the whole version once (its checks); a rollback writes one record.
SERVING_CHANGE_MAX_RUNTIME_SEC = 60 * 60

embed_new_media_job = dg.define_asset_job(
    "embed_new_media",
    selection=dg.AssetSelection.assets(media_inventory, marengo_invocations),
    description="Inventory the media prefix and start Marengo jobs for anything new (partition = model).",
    tags={"dagster/max_runtime": SUBMISSION_MAX_RUNTIME_SEC},
)

submit_marengo_job = dg.define_asset_job(
    "submit_marengo_invocations",
    selection=dg.AssetSelection.assets(marengo_invocations),
    description=(
        "Start Marengo jobs for what waits (the quota, retries), planned from the existing inventory: no "
        "listing of the bucket. The invocation sensor requests it when slots free."
    ),
    tags={"dagster/max_runtime": SUBMISSION_MAX_RUNTIME_SEC},
)

# A probe run reads the container headers of one batch (MEDIAEMBED_PROBE_BATCH_OBJECTS objects), a few at a
# time; ample room.
PROBE_MAX_RUNTIME_SEC = 60 * 60

probe_media_job = dg.define_asset_job(
    "probe_media",
    selection=dg.AssetSelection.assets(media_inventory),
    description=(
        "Probe one batch of the objects a large listing left pending (config probe_batch). The probe sensor "
        "requests one run per batch, and the run queue runs them side by side on the run workers; they go "
        "after ingest and submission runs (lower priority)."
    ),
    tags={"dagster/max_runtime": PROBE_MAX_RUNTIME_SEC, "dagster/priority": "-1"},
)


def inventory_config(**fields: object) -> dict[str, dict[str, object]]:
    """Run config of the inventory step (assets_defs/inventory/media_inventory.py InventoryConfig)."""
    return {"ops": {keys.op_name(keys.MEDIA_INVENTORY): {"config": fields}}}


def steps_config(*configs: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """One run config of several steps' configs (inventory_config, holding_config)."""
    return {"ops": {op: step for config in configs for op, step in config["ops"].items()}}


# Both submit: at most one of them runs per model at a time (the sensor checks, the pool enforces).
SUBMITTING_JOBS = (embed_new_media_job.name, submit_marengo_job.name)


def holding_config(
    hold_quota_sec: float = HOLD_QUOTA_SEC, media_uris: list[str] | None = None
) -> dict[str, dict[str, object]]:
    """Run config of a submission run that holds the quota (the default, spelled out where automation
    starts one so the run's config shows it; 0 stops at the quota), planning only `media_uris` if given."""
    config: dict[str, object] = {"hold_quota_sec": hold_quota_sec}
    if media_uris is not None:
        config["media_uris"] = media_uris
    return {"ops": {keys.op_name(keys.MARENGO_INVOCATIONS): {"config": config}}}


ingest_marengo_job = dg.define_asset_job(
    "ingest_marengo_embeddings",
    selection=dg.AssetSelection.assets(marengo_embeddings, marengo_segment_index),
    description="Turn finished Marengo invocations into embedding-table rows and LanceDB index entries.",
    tags={"dagster/max_runtime": INGEST_MAX_RUNTIME_SEC},
)


describe_media_job = dg.define_asset_job(
    "describe_media",
    selection=dg.AssetSelection.assets(pegasus_descriptions, pegasus_chapters, search_descriptions),
    description="Describe and chapter every usable video with Pegasus, calling only for what is new "
    "(new objects, changed ETags, changed prompts), and index the words for full-text search.",
    tags={"dagster/max_runtime": DESCRIBE_MAX_RUNTIME_SEC},
)


cut_over_job = dg.define_asset_job(
    CUT_OVER_JOB,
    selection=dg.AssetSelection.assets(checked_version, serving_version)
    | dg.AssetSelection.checks(*WHOLE_VERSION_CHECKS),
    description=(
        "Cut search over to this partition's Marengo version, after its whole-version checks pass "
        "(blocking: a failed check leaves the serving version as it was, and names what failed)."
    ),
    tags={"dagster/max_runtime": SERVING_CHANGE_MAX_RUNTIME_SEC},
)


# Launched as the cut-over is: partition = the version to serve (here the one that served before), the
# same config; only the checks are not run, since the version served already and its tables were kept.
roll_back_job = dg.define_asset_job(
    ROLL_BACK_JOB,
    selection=dg.AssetSelection.assets(serving_version),
    description=(
        "One step back: launch it for the partition of the Marengo version that served search before the "
        "last cut-over (`mediaembed serving` names it); its tables were kept, so nothing is re-embedded."
    ),
    tags={"dagster/max_runtime": SERVING_CHANGE_MAX_RUNTIME_SEC},
)
