"""Text search over the segment index: embed the query with the sync API, rank segments by cosine."""

import json
import sys
from collections.abc import Sequence
from typing import TextIO

import dagster as dg

from pipelines.definitions import pipeline_resources
from resources.marengo_models import marengo_model
from resources.segment_index import SearchHit


def search(text: str, top_k: int, model_key: str) -> list[SearchHit]:
    model = marengo_model(model_key)
    with dg.build_resources(
        {"marengo": pipeline_resources["marengo"], "segment_index": pipeline_resources["segment_index"]}
    ) as built:
        vector = built.marengo.embed_text(text, model)
        return built.segment_index.search(model, vector, top_k)


def print_hits(hits: Sequence[SearchHit], as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    for rank, hit in enumerate(hits, 1):
        if as_json:
            record = {
                "media_uri": hit.media_uri,
                "start_sec": hit.start_sec,
                "end_sec": hit.end_sec,
                "score": hit.score,
                "model": hit.model,
            }
            print(json.dumps(record), file=out)
        else:
            span = "" if hit.start_sec is None else f"  [{hit.start_sec:6.2f}s - {hit.end_sec:6.2f}s]"
            option = f"  ({hit.embedding_option})" if hit.embedding_option else ""
            print(f"{rank:2d}. {hit.score:.4f}  {hit.media_uri}{span}  {hit.model}{option}", file=out)
