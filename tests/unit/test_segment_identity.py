"""A segment's id keys every row in the Delta table and the LanceDB index: an id that changed would rewrite
(and, through a re-ingest, re-bill) what is already indexed. These literals were computed by the formula
as it stood before there were fused vectors; a separate vector must keep them for ever."""

from __future__ import annotations

import numpy as np
import pytest

from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, SegmentEmbedding
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.tables.segment_schema import segment_id

VIDEO = EmbeddingJob(
    "s3://media/videos/red_circle.mp4",
    '"9b2cf535f27731c974343645a3985328"',
    "video",
    MARENGO_3_0,
    EmbeddingOptions(),
)
IMAGE = EmbeddingJob("s3://media/images/a.jpg", "etag-1", "image", MARENGO_2_7, EmbeddingOptions())


def segment(
    option: str | None, scope: str, start: float | None, end: float | None, dim: int
) -> SegmentEmbedding:
    return SegmentEmbedding(option, scope, start, end, np.zeros(dim, np.float32))


@pytest.mark.parametrize(
    ("job", "seg", "expected"),
    [
        (VIDEO, segment("visual", "clip", 0.0, 6.0, 512), "11eb69418c0f43c1b2525a357a3a485a"),
        (VIDEO, segment("audio", "asset", None, None, 512), "d6461bd825326a659e18ddd06cfd0f7a"),
        (IMAGE, segment(None, "asset", None, None, 1024), "593e3706d6bb4c514fded3a9426adc91"),
    ],
)
def test_a_separate_segment_keeps_the_id_it_had_before_fused_vectors(
    job: EmbeddingJob, seg: SegmentEmbedding, expected: str
) -> None:
    assert segment_id(job, seg) == expected
