"""The full-text index over Pegasus descriptions and chapters: rows from the tables, per-object sync on a
local LanceDB directory, word search with chapter seconds, and the asset through dg.materialize."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from assets_defs.pegasus.description_index import search_descriptions
from resources.index.description_index import DescriptionIndex
from resources.search.description_search import (
    TEXT_SCHEMA,
    DescriptionSearch,
    description_text,
    snippet,
    text_rows,
)
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.description_tables import (
    CHAPTER_SCHEMA,
    DESCRIPTION_SCHEMA,
    chapter_table,
    description_table,
)
from resources.tables.segment_schema import media_id

MODEL = "twelvelabs.pegasus-1-2-v1:0"
SHAPES = "s3://media/videos/shapes.mp4"
BEACH = "s3://media/videos/beach.mp4"
SHAPES_CHAPTERS = [
    (0.0, 4.0, "Red circle", "A red circle on a blue background."),
    (4.0, 9.0, "Yellow triangle", "A yellow triangle on black, with a low tone."),
]
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def description(uri: str, prompt_id: str, text: str, parsed: Any = None, finish: str = "stop") -> dict:
    return {
        "media_uri": uri,
        "media_id": media_id(uri),
        "etag": "e1",
        "prompt_id": prompt_id,
        "prompt_hash": "h",
        "model_id": MODEL,
        "text": text,
        "parsed_json": None if parsed is None else json.dumps(parsed),
        "finish_reason": finish,
        "input_tokens": None,
        "output_tokens": None,
        "status": "ok",
        "reason": None,
        "created_at": NOW,
    }


def chapters(uri: str, spans: list[tuple[float, float, str, str]]) -> list[dict]:
    return [
        {
            "media_uri": uri,
            "media_id": media_id(uri),
            "etag": "e1",
            "prompt_id": "chapters",
            "model_id": MODEL,
            "chapter_index": i,
            "start_sec": start,
            "end_sec": end,
            "title": title,
            "summary": summary,
        }
        for i, (start, end, title, summary) in enumerate(spans)
    ]


def described(
    uri: str, summary: str, spans: list[tuple[float, float, str, str]], keywords: list[str]
) -> tuple[list, list]:
    answer = [{"start_sec": s, "end_sec": e, "title": t, "summary": m} for s, e, t, m in spans]
    rows = [
        description(uri, "summary", summary),
        description(uri, "chapters", json.dumps(answer), answer),
        description(uri, "keywords", json.dumps(keywords), keywords),
    ]
    return rows, chapters(uri, spans)


SHAPES_DESCRIBED = described(
    SHAPES, "A 9-second video of shapes: a circle, then a triangle.", SHAPES_CHAPTERS, ["shapes", "tone"]
)
BEACH_DESCRIBED = described(
    BEACH, "Waves breaking on a sandy beach at dusk.", [(0.0, 6.0, "Surf", "Waves.")], ["seaside", "waves"]
)


def index_rows(*objects: tuple[list, list]) -> pa.Table:
    descriptions = [d for rows, _ in objects for d in rows]
    chapter_rows = [c for _, cs in objects for c in cs]
    return pa.Table.from_pylist(text_rows(descriptions, chapter_rows), schema=TEXT_SCHEMA)


@pytest.fixture
def index(tmp_path: Path) -> DescriptionIndex:
    return DescriptionIndex(uri=str(tmp_path / "lancedb"), storage=S3Storage(region_name="us-east-1"))


def test_rows_are_whole_object_descriptions_and_chapters_with_their_seconds() -> None:
    rows = text_rows(*SHAPES_DESCRIBED)
    by_kind = {(r["kind"], r["prompt_id"], r["chapter_index"]): r for r in rows}
    assert sorted(by_kind) == [
        ("chapter", "chapters", 0),
        ("chapter", "chapters", 1),
        ("description", "keywords", None),
        ("description", "summary", None),
    ], "the chapters answer is indexed chapter by chapter, not as one JSON description"
    first = by_kind[("chapter", "chapters", 0)]
    assert (first["start_sec"], first["end_sec"], first["title"]) == (0.0, 4.0, "Red circle")
    assert first["text"] == "Red circle. A red circle on a blue background."
    assert by_kind[("description", "keywords", None)]["text"] == "shapes, tone"
    summary = by_kind[("description", "summary", None)]
    assert (summary["start_sec"], summary["end_sec"], summary["finish_reason"]) == (None, None, "stop")


def test_a_truncated_answer_keeps_its_finish_reason_and_failed_or_empty_ones_are_not_indexed() -> None:
    cut = description(SHAPES, "summary", "A red circle, then a yel", finish="length")
    failed = {**description(BEACH, "summary", "ignored"), "status": "failed"}
    empty = description(BEACH, "keywords", "[]", [])
    rows = text_rows([cut, failed, empty], [])
    assert [(r["media_uri"], r["finish_reason"]) for r in rows] == [(SHAPES, "length")]
    assert description_text(None, json.dumps({"keywords": ["red", 3]})) == "red, 3"


def test_a_hit_on_a_cut_answer_says_so_in_its_snippet(index: DescriptionIndex) -> None:
    cut = description(BEACH, "summary", "Waves breaking on a sandy be", finish="length")
    index.sync(pa.Table.from_pylist(text_rows([cut], []), schema=TEXT_SCHEMA))
    [hit] = DescriptionSearch(index.uri).search_text("waves", 5)
    assert hit.snippet == "Waves breaking on a sandy be [cut short: finishReason length]"
    [whole] = DescriptionSearch(index.uri).search_text("sandy", 5)
    assert whole.signal == "description" and whole.start_sec is None


def test_the_snippet_is_the_text_around_the_match_on_one_line() -> None:
    text = "Opening titles. " * 20 + "Then a\ngreen square turns slowly. " + "Closing credits. " * 20
    cut = snippet(text, "squares", width=60)
    assert "green square turns" in cut and "\n" not in cut
    assert cut.startswith("…") and cut.endswith("…") and len(cut) <= 62
    assert snippet("A red circle.", "circle") == "A red circle."


def test_sync_then_search_finds_chapters_with_seconds_and_descriptions_as_whole_objects(
    index: DescriptionIndex,
) -> None:
    result = index.sync(index_rows(SHAPES_DESCRIBED, BEACH_DESCRIBED))
    assert sorted(result.updated) == sorted([media_id(SHAPES), media_id(BEACH)]) and result.removed == []
    assert (result.state.rows, result.state.objects, result.state.fts_index) == (7, 2, True)
    assert result.state.unindexed_rows == 0, "the run's optimize() folds every row into the FTS index"

    search = DescriptionSearch(index.uri)
    [hit] = [h for h in search.search_text("triangle", 10) if h.signal == "chapter"]
    assert (hit.media_uri, hit.start_sec, hit.end_sec) == (SHAPES, 4.0, 9.0)
    assert "Yellow triangle" in hit.snippet and hit.model == MODEL and hit.score > 0

    hits = search.search_text("beach dusk", 10)
    assert [(h.media_uri, h.signal, h.start_sec, h.end_sec) for h in hits] == [
        (BEACH, "description", None, None)
    ]
    assert "sandy beach" in hits[0].snippet
    assert search.search_text("?!", 10) == [] and search.search_text("zeppelin", 10) == []


def test_a_re_described_object_replaces_its_rows_and_a_removed_one_leaves(index: DescriptionIndex) -> None:
    index.sync(index_rows(SHAPES_DESCRIBED, BEACH_DESCRIBED))
    version = index.state().version
    same = index.sync(index_rows(SHAPES_DESCRIBED, BEACH_DESCRIBED))
    assert (same.updated, same.removed, same.state.version) == ([], [], version), "nothing new, no write"

    redone = described(
        SHAPES, "Now a green square alone.", [(0.0, 9.0, "Green square", "A green square.")], ["square"]
    )
    result = index.sync(index_rows(redone))
    assert (result.updated, result.removed) == ([media_id(SHAPES)], [media_id(BEACH)])
    search = DescriptionSearch(index.uri)
    assert search.search_text("triangle", 10) == [], "the old chapters are gone"
    assert search.search_text("waves beach", 10) == [], "the removed object left"
    [chapter] = [h for h in search.search_text("green", 10) if h.signal == "chapter"]
    assert (chapter.media_uri, chapter.start_sec, chapter.end_sec) == (SHAPES, 0.0, 9.0)
    assert (result.state.rows, result.state.objects) == (3, 1)


def test_search_before_anything_is_indexed_raises_index_not_found(tmp_path: Path) -> None:
    from resources.search.segment_search import IndexNotFound

    with pytest.raises(IndexNotFound):
        DescriptionSearch(str(tmp_path / "nothing")).search_text("red", 5)
    assert not (tmp_path / "nothing").exists(), "a search creates no database"


def write_tables(lake: Lake, *objects: tuple[list, list], gone: tuple[str, ...] = ()) -> None:
    ids = [media_id(rows[0]["media_uri"]) for rows, _ in objects] + [media_id(u) for u in gone]
    description_table(lake).replace(
        pa.Table.from_pylist([d for rows, _ in objects for d in rows], schema=DESCRIPTION_SCHEMA), ids
    )
    chapter_table(lake).replace(
        pa.Table.from_pylist([c for _, cs in objects for c in cs], schema=CHAPTER_SCHEMA), ids
    )


def materialize(lake: Lake, index: DescriptionIndex) -> dict[str, Any]:
    result = dg.materialize([search_descriptions], resources={"lake": lake, "description_index": index})
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "matches_description_tables" and check.passed, check.metadata
    [materialization] = result.asset_materializations_for_node("search__description_index")
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def test_the_asset_syncs_the_index_from_the_delta_tables(tmp_path: Path, index: DescriptionIndex) -> None:
    lake = Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))
    write_tables(lake, SHAPES_DESCRIBED, BEACH_DESCRIBED)
    first = materialize(lake, index)
    assert (first["dagster/row_count"], first["objects_updated"], first["objects_removed"]) == (7, 2, 0)
    assert (first["chapters"], first["descriptions"], first["unindexed_rows"]) == (3, 4, 0)

    write_tables(lake, SHAPES_DESCRIBED, gone=(BEACH,))
    second = materialize(lake, index)
    assert (second["dagster/row_count"], second["objects_updated"], second["objects_removed"]) == (4, 0, 1)
    [hit] = [h for h in index.searcher().search_text("red circle", 5) if h.signal == "chapter"]
    assert (hit.media_uri, hit.start_sec, hit.end_sec) == (SHAPES, 0.0, 4.0)
