"""Full-text search over Pegasus descriptions and chapters: the LanceDB table's rows, and reading it.

Dagster-free, like resources/search/segment_search.py, so `mediaembed search` and `mediaembed serve` load no
code location. The rows are derived from the Delta description and chapter tables (the system of record) by
`text_rows`; resources/index/description_index.py writes them, `DescriptionSearch` answers queries with
LanceDB's native full-text index (BM25 over `text`, English stemming), as `TextHit`s the fused search takes: a
chapter with its seconds, a whole-object description without.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from resources.index.missing_table import is_missing_table
from resources.providers.bedrock.pegasus_bodies import PegasusOutputError, parse_chapters
from resources.search.fusion import TextHit, TextSignal
from resources.search.segment_search import IndexNotFound, connect_for_reading
from resources.storage.location import Location, location

TEXT_TABLE = "pegasus_text"
DESCRIPTION: TextSignal = "description"
CHAPTER: TextSignal = "chapter"
TRUNCATED = "length"  # Pegasus's finishReason when it stopped at maxOutputTokens
SNIPPET_CHARS = 160
# After the snippet of an answer Pegasus cut at maxOutputTokens: the text found is not all it would say.
CUT_MARK = " [cut short: finishReason length]"

TEXT_SCHEMA = pa.schema(
    [
        # media_id/kind/prompt_id[/chapter_index]: the merge key, one row per searchable text
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("media_uri", pa.string(), nullable=False),
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("etag", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "description" | "chapter"
        pa.field("prompt_id", pa.string(), nullable=False),
        pa.field("chapter_index", pa.int32()),  # null for a whole-object description
        pa.field("start_sec", pa.float64()),  # null for a whole-object description
        pa.field("end_sec", pa.float64()),
        pa.field("title", pa.string()),
        pa.field("text", pa.string(), nullable=False),  # what is searched
        pa.field("model_id", pa.string(), nullable=False),
        # of the answer the text comes from: "length" means Pegasus cut it, so the text is incomplete
        pa.field("finish_reason", pa.string()),
    ]
)
HIT_COLUMNS = ["media_uri", "kind", "start_sec", "end_sec", "text", "model_id", "finish_reason", "_score"]


def _leaves(value: Any) -> Iterable[str]:
    """The words of a JSON answer: every string and number, in order (keys are the schema's, not said)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, str):
        if value.strip():
            yield value.strip()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield f"{value:g}"


def _is_chapters(parsed: Any) -> bool:
    """A chapters answer: its text is indexed chapter by chapter (from the chapter table), not whole."""
    try:
        parse_chapters(parsed)
    except PegasusOutputError:
        return False
    return True


def description_text(text: str | None, parsed_json: str | None) -> str | None:
    """What a description row contributes to the index: a text answer as it is, a JSON answer's words
    (keywords: "red circle, red, circle"), nothing for a chapters answer or an empty one."""
    if parsed_json:
        parsed = json.loads(parsed_json)
        if _is_chapters(parsed):
            return None
        words = ", ".join(_leaves(parsed))
        return words or None
    flat = (text or "").strip()
    return flat or None


def text_rows(
    descriptions: Iterable[Mapping[str, Any]], chapters: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The index's rows from the description and chapter tables' rows: one per ok description with text
    (whole object, no seconds) and one per chapter ("title. summary", with its seconds), each carrying
    the finish reason of its answer."""
    ok = sorted(
        (d for d in descriptions if d["status"] == "ok"), key=lambda d: (str(d["created_at"]), d["prompt_id"])
    )
    finish = {(d["media_id"], d["prompt_id"]): d["finish_reason"] for d in ok}
    rows: dict[str, dict[str, Any]] = {}
    for d in ok:
        text = description_text(d["text"], d["parsed_json"])
        if text is None:
            continue
        row_id = f"{d['media_id']}/{DESCRIPTION}/{d['prompt_id']}"
        rows[row_id] = {  # a later row of the same object and prompt wins
            "row_id": row_id,
            "media_uri": d["media_uri"],
            "media_id": d["media_id"],
            "etag": d["etag"],
            "kind": DESCRIPTION,
            "prompt_id": d["prompt_id"],
            "chapter_index": None,
            "start_sec": None,
            "end_sec": None,
            "title": None,
            "text": text,
            "model_id": d["model_id"],
            "finish_reason": d["finish_reason"],
        }
    for c in chapters:
        title, summary = (c["title"] or "").strip(), (c["summary"] or "").strip()
        text = f"{title}. {summary}" if title and summary else title or summary
        if not text:
            continue
        row_id = f"{c['media_id']}/{CHAPTER}/{c['prompt_id']}/{c['chapter_index']}"
        rows[row_id] = {
            "row_id": row_id,
            "media_uri": c["media_uri"],
            "media_id": c["media_id"],
            "etag": c["etag"],
            "kind": CHAPTER,
            "prompt_id": c["prompt_id"],
            "chapter_index": int(c["chapter_index"]),
            "start_sec": float(c["start_sec"]),
            "end_sec": float(c["end_sec"]),
            "title": title or None,
            "text": text,
            "model_id": c["model_id"],
            "finish_reason": finish.get((c["media_id"], c["prompt_id"])),
        }
    return [rows[k] for k in sorted(rows)]


def object_digests(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """media_id -> its rows in a canonical form: two sides hold the same for an object iff equal."""
    per: dict[str, list[str]] = {}
    for r in rows:
        per.setdefault(r["media_id"], []).append(
            json.dumps([r.get(name) for name in TEXT_SCHEMA.names], default=str)
        )
    return {mid: "\n".join(sorted(lines)) for mid, lines in per.items()}


def plan_text_sync(wanted: Mapping[str, str], indexed: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(objects to rewrite: new or different, objects to remove: no longer described), from the digests
    of what the tables say and of what the index holds."""
    changed = sorted(mid for mid, digest in wanted.items() if indexed.get(mid) != digest)
    removed = sorted(mid for mid in indexed if mid not in wanted)
    return changed, removed


_WORD = re.compile(r"\w+")


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """The text around the first query word it contains (or a word sharing its stem, "squares" for
    "square"), about `width` characters on one line, "…" where it was cut."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    lower = flat.lower()
    starts = []
    for word in _WORD.findall(query.lower()):
        stem = word if len(word) <= 4 else word[: max(4, len(word) - 2)]
        found = re.search(rf"\b{re.escape(stem)}", lower)
        if found:
            starts.append(found.start())
    at = min(starts, default=0)
    begin = max(0, min(at - width // 3, len(flat) - width))
    if begin > 0:
        space = flat.find(" ", begin)
        begin = space + 1 if 0 <= space < at else begin
    end = begin + width
    if end < len(flat):
        space = flat.rfind(" ", begin, end)
        end = space if space > at else end
    return ("…" if begin > 0 else "") + flat[begin:end].strip() + ("…" if end < len(flat) else "")


def open_text_table(db: Any) -> Any:
    """The description table of a LanceDB connection; IndexNotFound while nothing is indexed."""
    try:
        return db.open_table(TEXT_TABLE)
    except ValueError as error:
        if not is_missing_table(error):
            raise
        raise IndexNotFound("no descriptions are indexed yet") from None


class DescriptionSearch:
    """Full-text hits on descriptions and chapters (a `TextHitSource` of mediaembed/search.py).

    `db` is a LanceDB connection, the `Location` of the index (or its local directory), or a function that
    returns a connection when the first query needs one (the searcher's own, so a search opens one). The
    table is opened on the first query, and kept."""

    def __init__(self, db: Any | Location | str | Callable[[], Any]) -> None:
        self._db = db
        self._table: Any = None

    def _connection(self) -> Any:
        if isinstance(self._db, str):
            self._db = location(self._db)
        if isinstance(self._db, Location):
            self._db = connect_for_reading(self._db)
        elif callable(self._db) and not hasattr(self._db, "open_table"):
            self._db = self._db()
        return self._db

    def table(self) -> Any:
        if self._table is None:
            self._table = open_text_table(self._connection())
        return self._table

    def search_text(self, text: str, limit: int) -> Sequence[TextHit]:
        """The best `limit` rows for the words of `text` (any of them; BM25), best first."""
        if not _WORD.search(text):
            return []
        try:
            rows = self.table().search(text, query_type="fts").select(HIT_COLUMNS).limit(limit).to_arrow()
        except ValueError as error:
            if "INVERTED index" in str(error):  # the table exists, its index is being made
                raise IndexNotFound("the description index is being built") from None
            raise
        return [
            TextHit(
                media_uri=r["media_uri"],
                start_sec=r["start_sec"],
                end_sec=r["end_sec"],
                signal=CHAPTER if r["kind"] == CHAPTER else DESCRIPTION,
                snippet=snippet(r["text"], text) + (CUT_MARK if r["finish_reason"] == TRUNCATED else ""),
                score=float(r["_score"]),
                model=r["model_id"],
            )
            for r in rows.to_pylist()
        ]
