"""A lake written before the table format (one Parquet file per object and model) is migrated once, on
first use, into the Delta Lake table: no new submission, the same rows, search unchanged, history kept."""

import shutil
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import pyarrow.compute as pc
import pytest

from assets_defs.inventory.media_inventory import read_inventory
from harness.runner import SensorDriver, materialization_metadata, run_job
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.providers.marengo_models import MARENGO_3_0
from resources.providers.model_routes import route
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_schema import media_id, segments_table
from tests.pipeline.conftest import USABLE, World, ingest_when_idle, search_json, submit

GONE = "s3://media/videos/deleted_long_ago.mp4"  # a file of an object no longer in the bucket


def write_pre_format_lake(world: World) -> int:
    """Turn the lake into the earlier layout: `<media id>.parquet` per object, no Delta log. Returns rows."""
    table = EmbeddingTable(world.lake, MARENGO_3_0)
    rows = table.read()
    shutil.rmtree(table.uri)
    for mid in sorted(set(rows.column("media_id").to_pylist())):
        mine = rows.filter(pc.equal(rows.column("media_id"), mid))
        world.lake.write_table(mine, f"{table.relative}/{mid}.parquet")
    stale = rows.slice(0, 1)
    stale = stale.set_column(
        stale.schema.get_field_index("media_uri"), "media_uri", pc.cast([GONE], "string")
    ).set_column(stale.schema.get_field_index("media_id"), "media_id", pc.cast([media_id(GONE)], "string"))
    world.lake.write_table(stale, f"{table.relative}/{media_id(GONE)}.parquet")
    assert table.open() is None and len(table.legacy_files()) == USABLE + 1
    return rows.num_rows


@pytest.mark.parametrize("first_user", ["ingest run", "index step"])
def test_a_pre_format_lake_is_migrated_once_with_no_new_submission(world: World, first_user: str) -> None:
    submit(world)
    ingest_when_idle(world)
    [before] = search_json("yellow triangle", top_k=1)
    rows = write_pre_format_lake(world)
    created = world.stack.bedrock.created_invocations

    assert submit(world)["submitted"] == 0, "the ledger still knows every object: nothing is billed again"
    if first_user == "ingest run":  # the whole job: its ingest step opens the table first
        driver = SensorDriver(world.instance)
        driver.tick()
        assert driver.results == [], "no job was open: the sensor requests nothing"
        result = run_job(world.instance, "ingest_marengo_embeddings", MARENGO_3_0.key)
    else:  # the index step alone, as a materialization of only search/marengo_segments
        result = run_job(
            world.instance,
            "ingest_marengo_embeddings",
            MARENGO_3_0.key,
            asset_selection=[dg.AssetKey(["search", "marengo_segments"])],
        )
    assert world.stack.bedrock.created_invocations == created

    table = EmbeddingTable(world.lake, MARENGO_3_0)
    assert table.legacy_files() == [], "the per-object files are gone"
    migrated = table.open(version=0)
    assert migrated is not None and migrated.to_pyarrow_table().num_rows == rows + 1, "version 0: every file"
    current = table.read()
    assert current.num_rows == rows and GONE not in current.column("media_uri").to_pylist()
    index = materialization_metadata(result, ["search", "marengo_segments"])
    assert (index["objects_updated"], index["embedding_table_objects_removed"]) == (0, 1)
    assert index["dagster/row_count"] == rows
    [after] = search_json("yellow triangle", top_k=1)
    assert after == before


def test_rows_committed_before_the_ledger_knows_survive_a_concurrent_index_run(world: World) -> None:
    """Run B's ingest commits an object's rows, then records its outcome; run A's index step in between
    sees rows of a listed object with no completed job. They are not stale: they must stay."""
    submit(world)
    world.stack.bedrock.wait_until_idle(timeout=60)
    uri = "s3://media/images/purple_circle.jpg"
    table = EmbeddingTable(world.lake, MARENGO_3_0)
    table.ensure()
    vector = np.zeros(MARENGO_3_0.dimension, np.float32)
    vector[0] = 1.0
    job = EmbeddingJob(
        uri,
        str(read_inventory(world.lake).set_index("media_uri").loc[uri, "etag"]),
        "image",
        MARENGO_3_0,
        EmbeddingOptions(),
    )
    rows = segments_table(
        job,
        [SegmentEmbedding("visual", "clip", 0.0, 0.0, vector)],
        route=route("bedrock", job.model.key),
        invocation_id="arn:in-flight",
        ingested_at=datetime.now(UTC),
    )
    table.replace(rows, [media_id(uri)])  # run B's commit; its outcome is not recorded yet

    result = run_job(
        world.instance,
        "ingest_marengo_embeddings",
        MARENGO_3_0.key,
        asset_selection=[dg.AssetKey(["search", "marengo_segments"])],
    )  # run A's index step
    assert (
        materialization_metadata(result, ["search", "marengo_segments"])["embedding_table_objects_removed"]
        == 0
    )
    assert table.read([media_id(uri)]).num_rows == 1, "a listed object's rows are never taken as stale"
    ingest_when_idle(world)
    assert uri in {hit["media_uri"] for hit in search_json("purple circle", top_k=3)}
