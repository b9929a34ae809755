"""Jobs: submitting new media, and ingesting what the provider has finished."""

import dagster as dg

from assets_defs.marengo_embeddings import marengo_embeddings
from assets_defs.marengo_invocations import marengo_invocations
from assets_defs.media_inventory import media_inventory
from assets_defs.segment_index import marengo_segment_index

embed_new_media_job = dg.define_asset_job(
    "embed_new_media",
    selection=dg.AssetSelection.assets(media_inventory, marengo_invocations),
    description="Inventory the media prefix and start Marengo jobs for anything new (partition = model).",
)

ingest_marengo_job = dg.define_asset_job(
    "ingest_marengo_embeddings",
    selection=dg.AssetSelection.assets(marengo_embeddings, marengo_segment_index),
    description="Turn finished Marengo invocations into Parquet rows and LanceDB index entries.",
)
