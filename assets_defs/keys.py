"""The catalog's asset keys, in one place: assets declare theirs from here, and sensors, jobs and commands
that name an asset import it instead of repeating the literal."""

import dagster as dg

MEDIA_INVENTORY = dg.AssetKey(["media", "inventory"])
MARENGO_INVOCATIONS = dg.AssetKey(["marengo", "invocations"])
MARENGO_EMBEDDINGS = dg.AssetKey(["marengo", "embeddings"])
SEARCH_MARENGO_SEGMENTS = dg.AssetKey(["search", "marengo_segments"])
SEARCH_DESCRIPTION_INDEX = dg.AssetKey(["search", "description_index"])
PEGASUS_DESCRIPTIONS = dg.AssetKey(["pegasus", "descriptions"])
PEGASUS_CHAPTERS = dg.AssetKey(["pegasus", "chapters"])
SEARCH_SERVING_VERSION = dg.AssetKey(["search", "serving_version"])
MIGRATION_PLAN = dg.AssetKey(["migration", "plan"])
MIGRATION_CHECKED_VERSION = dg.AssetKey(["migration", "checked_version"])


def op_name(key: dg.AssetKey) -> str:
    """The name of the op that materializes `key`, as run config addresses it (`marengo__invocations`)."""
    return key.to_python_identifier()
