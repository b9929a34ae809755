"""An object with no segments: a valid index write that empties it, never a crash."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from resources.index.segment_index import SegmentIndex
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.providers.marengo_models import MARENGO_3_0
from resources.providers.model_routes import route
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import media_id, segment_schema, segments_table

URI = "s3://m/a.mp4"


def test_replacing_an_object_with_no_segments_empties_it(tmp_path: Path) -> None:
    index = SegmentIndex(uri=str(tmp_path / "idx"), storage=S3Storage(region_name="us-east-1"))
    job = EmbeddingJob(URI, "e1", "video", MARENGO_3_0, EmbeddingOptions())
    vector = np.ones(MARENGO_3_0.dimension, dtype=np.float32).tolist()
    rows = segments_table(
        job,
        [SegmentEmbedding("visual", "clip", 0.0, 1.0, vector)],
        route=route("bedrock", job.model.key),
        invocation_id="inv-1",
        ingested_at=datetime.now(UTC),
    )
    assert index.replace_media(MARENGO_3_0, rows, [media_id(URI)]).rows == 1
    empty = segment_schema(MARENGO_3_0.dimension).empty_table()
    assert index.replace_media(MARENGO_3_0, empty, [media_id(URI)]).rows == 0  # take([]) used to raise
    assert index.indexed_media(MARENGO_3_0) == {}
