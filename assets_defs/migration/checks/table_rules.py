"""Whole-version checks on `migration/checked_version`: what must be true of a model version (its embedding
table and its index) before search may be served from it.

The in-asset checks look at what one run wrote; these look at the whole version (one partition): every
eligible object embedded at its current ETag, every vector sound, every row of this version, the index
equal to the embedding table, and the side-by-side evaluation against the serving version. All are
blocking: in the cut-over job a failure stops the switch, and names the objects to fix or exclude.

The rules are pure functions over pandas/Arrow tables; the checks only read and report.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from assets_defs import keys
from assets_defs.inventory.media_inventory import probed_durations, read_inventory
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.search.segment_index import marengo_segment_index
from resources.index.segment_index import SegmentIndex
from resources.migration.check_settings import (
    EXCLUDE_ENV,
    PROBE_SET_ENV,
    Probe,
    ProbeSetError,
    VersionCheckSettings,
    load_probe_set,
)
from resources.providers.errors import QueryEmbeddingError, SetupError
from resources.providers.marengo_models import MarengoModel, marengo_model
from resources.providers.marengo_resource import MarengoProviders
from resources.search.segment_search import IndexNotFound
from resources.storage.lake import Lake
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.segment_validity import DURATION_TOLERANCE_SEC, NOT_FINITE, span_faults, vector_faults
from resources.tables.submission_ledger import SubmissionLedger

CHECKED = keys.MIGRATION_CHECKED_VERSION
NAMES_SHOWN = 20


@dg.asset(
    key=CHECKED,
    deps=[marengo_segment_index],
    partitions_def=marengo_model_partitions,
    group_name="migration",
    description="A version's embedding table and index, checked as a whole before search may be cut "
    "over to it. Materialized by the `cut_over_serving_version` job: its blocking checks gate "
    "serving/marengo.",
)
def checked_version(context: dg.AssetExecutionContext, lake: Lake) -> dg.MaterializeResult:
    """Where the whole-version checks hang: apart from the index, so that ingest runs and backfills, which
    end while jobs are still in flight, never fail on a version that is simply not finished yet."""
    model = marengo_model(context.partition_key)
    table = EmbeddingTable(lake, model)
    return dg.MaterializeResult(
        metadata={"embedding_table_version": table.version() if table.open() else -1, "model": model.key}
    )


PROBLEM_COLUMNS = ["media_uri", "problem"]


def no_problems() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PROBLEM_COLUMNS})


# --- coverage ----------------------------------------------------------------------------------------------


@dataclass
class Coverage:
    eligible: int
    covered: int
    missing: pd.DataFrame  # media_uri, problem
    excluded: list[str]  # configured exclusions, as given
    excluded_unknown: list[str]  # configured exclusions that name no eligible object


def eligible_objects(
    inventory: pd.DataFrame, model: MarengoModel
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(the usable objects the model can take, the media it cannot embed as they are, the files that are
    not media). The second block a cut-over by name, with why, until fixed or excluded: a corrupt video or
    one over the model's limits is a hole in search, not something to skip silently."""
    usable = inventory[inventory["status"] == "ok"]
    violations = [
        model.limit_violation(m, int(size), None if pd.isna(sec) else float(sec))
        for m, size, sec in zip(usable["modality"], usable["size_bytes"], usable["duration_sec"], strict=True)
    ]
    over = np.array([v is not None for v in violations], dtype=bool)
    unreadable = inventory[inventory["status"] == "unreadable"]
    blocked = pd.concat(
        [
            pd.DataFrame(
                {
                    "media_uri": usable["media_uri"][over],
                    "problem": [f"over the model's limits: {v}" for v in violations if v is not None],
                }
            ),
            pd.DataFrame(
                {
                    "media_uri": unreadable["media_uri"],
                    "problem": [f"corrupt: {r}" for r in unreadable["reason"]],
                }
            ),
        ],
        ignore_index=True,
    )
    not_media = inventory[~inventory["status"].isin(["ok", "unreadable"])]
    others = pd.DataFrame(
        {
            "media_uri": not_media["media_uri"],
            "problem": [f"{s}: {r}" for s, r in zip(not_media["status"], not_media["reason"], strict=True)],
        },
        columns=PROBLEM_COLUMNS,
    )
    return usable[~over].reset_index(drop=True), blocked, others


def missing_reason(jobs: pd.DataFrame, etag: str) -> str:
    """Why an object has no current embedding, from its jobs in the ledger (any ETag, any provider)."""
    if jobs.empty:
        return "never submitted: run embed_new_media (or the backfill) for this version"
    at_etag = jobs[jobs["etag"] == etag]
    if at_etag.empty:
        older = ", ".join(sorted(set(jobs["etag"].astype(str))))
        return (
            f"changed since it was embedded (ETag {older}, now {etag}): not submitted at the current ETag yet"
        )
    when = at_etag["recorded_at"].fillna(at_etag["submitted_at"])
    latest = at_etag.assign(_when=when).sort_values("_when", na_position="last").iloc[-1]
    status, reason = str(latest["status"]), latest.get("reason")
    why = "" if reason is None or pd.isna(reason) else f": {reason}"
    if status == "in_progress":
        return f"in flight: invocation {latest.get('invocation_id')} has not finished"
    if status == "completed":
        return "completed, but its rows are not in the embedding table: run ingest_marengo_embeddings"
    if status == "lost":
        return f"lost by the provider{why}; the next submission run resubmits it"
    return f"{status}{why}"


def coverage(
    eligible: pd.DataFrame,
    embedded: pd.DataFrame,
    jobs: pd.DataFrame,
    excluded: tuple[str, ...],
    blocked: pd.DataFrame | None = None,
) -> Coverage:
    """Every eligible object not excluded must have rows at its current ETag, or have been embedded at it
    with nothing to embed (no_content); the others are named with why they are missing.

    `embedded`: media_uri and etag of the embedding table's rows; `jobs`: the ledger's jobs of the model.
    """
    excluded_set = set(excluded)
    counted = eligible[~eligible["media_uri"].isin(excluded_set)]
    have = set(zip(embedded["media_uri"], embedded["etag"], strict=True))
    empty = jobs[jobs["status"] == "no_content"]
    have |= set(zip(empty["media_uri"], empty["etag"], strict=True))
    pairs = list(zip(counted["media_uri"], counted["etag"], strict=True))
    gaps = [(u, e) for u, e in pairs if (u, e) not in have]
    by_uri = {u: g for u, g in jobs[jobs["media_uri"].isin({u for u, _ in gaps})].groupby("media_uri")}
    blocked = no_problems() if blocked is None else blocked
    blocking = blocked[~blocked["media_uri"].isin(excluded_set)]
    missing = pd.concat(
        [
            blocking,
            pd.DataFrame(
                {
                    "media_uri": [u for u, _ in gaps],
                    "problem": [missing_reason(by_uri.get(u, jobs.iloc[0:0]), e) for u, e in gaps],
                },
                columns=PROBLEM_COLUMNS,
            ),
        ],
        ignore_index=True,
    )
    known = set(eligible["media_uri"]) | set(blocked["media_uri"])
    return Coverage(
        eligible=len(counted) + len(blocking),
        covered=len(counted) - len(gaps),
        missing=missing,
        excluded=sorted(excluded_set),
        excluded_unknown=sorted(excluded_set - known),
    )


# --- vectors and rows --------------------------------------------------------------------------------------


def _per_object(rows: pd.DataFrame, describe: str) -> pd.DataFrame:
    """Bad rows (media_uri, detail) as one problem per object: `describe` formats count and details."""
    if rows.empty:
        return no_problems()
    problems = [
        (uri, describe.format(n=len(group), details=", ".join(sorted(set(map(str, group["detail"])))[:3])))
        for uri, group in rows.groupby("media_uri")
    ]
    return pd.DataFrame(problems, columns=PROBLEM_COLUMNS)


def wrong_dimension(rows: pa.Table, dimension: int) -> pd.DataFrame:
    """Objects with a vector that is not `dimension` long (rows: media_uri, vector as any list type)."""
    lengths = pc.list_value_length(rows.column("vector")).to_numpy(zero_copy_only=False)
    bad = lengths != dimension
    frame = pd.DataFrame(
        {"media_uri": np.asarray(rows.column("media_uri").to_pylist())[bad], "detail": lengths[bad]}
    )
    return _per_object(frame, f"{{n}} vectors of length {{details}}, not {dimension}")


def bad_vectors(rows: pa.Table) -> pd.DataFrame:
    """Objects with a vector holding NaN or infinity, or of norm zero (rows: media_uri, vector): the
    ingest rule (resources/tables/segment_validity.py) applied to the stored rows."""
    faults = vector_faults(rows.column("vector")) if rows.num_rows else np.array([], dtype=object)
    bad = ~pd.isna(faults)
    detail = np.where(faults[bad] == NOT_FINITE, "NaN or infinite", "zero")
    uris = rows.column("media_uri").to_numpy(zero_copy_only=False)[bad] if rows.num_rows else []
    return _per_object(pd.DataFrame({"media_uri": uris, "detail": detail}), "{n} bad vectors ({details})")


def segments_outside_media(rows: pd.DataFrame, durations: Mapping[str, float | None]) -> pd.DataFrame:
    """Objects with a segment that does not start before it ends, or ends past the media's duration (the
    ingest rule, with its tolerance). rows: media_uri, start_sec, end_sec; images (no span) pass."""
    seconds = rows["media_uri"].map(durations).astype(float)
    faults = span_faults(rows["start_sec"], rows["end_sec"], seconds)
    bad = ~pd.isna(faults)
    frame = rows[bad].copy()
    frame["detail"] = [
        f"{a:g}-{b:g} s of {d:g} s"
        for a, b, d in zip(frame["start_sec"], frame["end_sec"], seconds[bad], strict=True)
    ]
    return _per_object(frame, "{n} segments outside the media ({details})")


def foreign_rows(rows: pd.DataFrame, model: MarengoModel, where: str) -> pd.DataFrame:
    """Objects with rows of another model version (rows: media_uri, model_key and maybe model_version)."""
    wrong = rows["model_key"] != model.key
    if "model_version" in rows:
        wrong |= rows["model_version"] != model.version
    frame = rows[wrong]
    detail = frame["model_key"].astype(str)
    if "model_version" in frame:
        detail = detail + " " + frame["model_version"].astype(str)
    out = pd.DataFrame({"media_uri": frame["media_uri"], "detail": detail})
    return _per_object(out, f"{{n}} rows of another version in the {where} ({{details}}), not {model.key}")


def duplicate_segment_ids(rows: pd.DataFrame, where: str) -> pd.DataFrame:
    """Objects whose segment ids occur more than once (rows: segment_id, media_uri)."""
    counts = rows.groupby(["media_uri", "segment_id"]).size()
    surplus = (counts[counts > 1] - 1).groupby(level="media_uri").sum()
    return pd.DataFrame(
        {
            "media_uri": surplus.index,
            "problem": [f"{int(n)} duplicate segment rows in the {where}" for n in surplus],
        },
        columns=PROBLEM_COLUMNS,
    )


def index_differences(table_rows: pd.DataFrame, index_rows: pd.DataFrame) -> pd.DataFrame:
    """Objects whose segments in the index are not exactly those of the embedding table (both:
    segment_id, media_uri): missing from the index, or there and not in the table."""
    table_ids = table_rows.groupby("media_uri")["segment_id"].agg(set)
    index_ids = index_rows.groupby("media_uri")["segment_id"].agg(set)
    problems = []
    for uri in sorted(set(table_ids.index) | set(index_ids.index)):
        want, got = table_ids.get(uri, set()), index_ids.get(uri, set())
        if want != got:
            problems.append(
                (
                    uri,
                    f"{len(want - got)} table segments not in the index, {len(got - want)} not in the table",
                )
            )
    return pd.DataFrame(problems, columns=PROBLEM_COLUMNS)


# --- reporting ---------------------------------------------------------------------------------------------


def names_md(problems: pd.DataFrame, limit: int = NAMES_SHOWN) -> dg.MetadataValue:
    """At most `limit` objects with their problem, and how many more."""
    if problems.empty:
        return dg.MetadataValue.md("_(none)_")
    shown = problems.sort_values("media_uri").head(limit)
    lines = [f"- `{u}`: {p}" for u, p in zip(shown["media_uri"], shown["problem"], strict=True)]
    if len(problems) > limit:
        lines.append(f"\n_and {len(problems) - limit} more_")
    return dg.MetadataValue.md("\n".join(lines))


def uri_list_md(uris: list[str], limit: int = NAMES_SHOWN) -> dg.MetadataValue:
    if not uris:
        return dg.MetadataValue.md("_(none)_")
    lines = [f"- `{u}`" for u in sorted(uris)[:limit]]
    if len(uris) > limit:
        lines.append(f"\n_and {len(uris) - limit} more_")
    return dg.MetadataValue.md("\n".join(lines))


def problems_result(
    problems: pd.DataFrame, what: str, fix: str, metadata: dict[str, Any]
) -> dg.AssetCheckResult:
    """Passed when there are no problems; else one line naming the first objects and what to do, and the
    first NAMES_SHOWN of them with their problem in the metadata."""
    count = int(problems["media_uri"].nunique()) if not problems.empty else 0
    description = None
    if count:
        first = ", ".join(sorted(problems["media_uri"].unique())[:3])
        more = f" and {count - 3} more" if count > 3 else ""
        description = f"{count} objects {what}: {first}{more}; {fix}"
    return dg.AssetCheckResult(
        passed=count == 0,
        description=description,
        metadata={**metadata, "failing_objects": count, "failures": names_md(problems)},
    )


def _model(context: dg.AssetCheckExecutionContext) -> MarengoModel:
    return marengo_model(context.op_execution_context.partition_key)


# --- the checks --------------------------------------------------------------------------------------------


# Every column any table check reads: the embedding table is read once per check run, not once per check.
TABLE_COLUMNS = [
    "segment_id",
    "media_uri",
    "etag",
    "model_key",
    "model_version",
    "start_sec",
    "end_sec",
    "vector",
]


def covers_every_eligible_object(
    model: MarengoModel,
    rows: pa.Table,
    inventory: pd.DataFrame,
    jobs: pd.DataFrame,
    version_checks: VersionCheckSettings,
) -> dg.AssetCheckResult:
    eligible, blocked, not_eligible = eligible_objects(inventory, model)
    embedded = rows.select(["media_uri", "etag"]).to_pandas()
    result = coverage(eligible, embedded.drop_duplicates(), jobs, version_checks.excluded(), blocked)
    share = result.covered / result.eligible if result.eligible else 1.0
    return problems_result(
        result.missing,
        f"of {result.eligible} have no current {model.key} embedding",
        f"fix them and re-run the backfill of {model.key}, or exclude them with {EXCLUDE_ENV}",
        {
            "eligible_objects": result.eligible,
            "covered_objects": result.covered,
            "coverage": dg.MetadataValue.float(round(100 * share, 3)),
            "excluded": uri_list_md(result.excluded),
            "excluded_count": len(result.excluded),
            "excluded_not_in_library": uri_list_md(result.excluded_unknown),
            "exclusions_from": version_checks.exclusion_source(),
            "not_eligible": names_md(not_eligible),
            "not_eligible_count": len(not_eligible),
        },
    )


def vectors_have_model_dimension(
    model: MarengoModel, rows: pa.Table, segment_index: SegmentIndex
) -> dg.AssetCheckResult:
    problems = wrong_dimension(rows.select(["media_uri", "vector"]), model.dimension)
    index_dimension = segment_index.vector_dimension(model)
    if index_dimension is not None and index_dimension != model.dimension:
        index_problem = pd.DataFrame(
            [
                (
                    f"index table {segment_index.table_name(model)}",
                    f"vectors of {index_dimension}, not {model.dimension}",
                )
            ],
            columns=PROBLEM_COLUMNS,
        )
        problems = pd.concat([problems, index_problem], ignore_index=True)
    return problems_result(
        problems,
        f"have vectors not {model.dimension} long",
        f"re-embed them with {model.key} (a backfill of its partition)",
        {
            "dimension": model.dimension,
            "index_dimension": index_dimension or 0,
            "rows_checked": rows.num_rows,
        },
    )


def no_nan_or_zero_vectors(model: MarengoModel, rows: pa.Table) -> dg.AssetCheckResult:
    return problems_result(
        bad_vectors(rows.select(["media_uri", "vector"])),
        "have NaN, infinite or zero vectors",
        f"re-embed them with {model.key}, or exclude them with {EXCLUDE_ENV}",
        {"rows_checked": rows.num_rows},
    )


def segments_inside_media_duration(
    model: MarengoModel, rows: pa.Table, inventory: pd.DataFrame
) -> dg.AssetCheckResult:
    spans = rows.select(["media_uri", "start_sec", "end_sec"]).to_pandas()
    return problems_result(
        segments_outside_media(spans, probed_durations(inventory)),
        "have segments outside their media",
        f"re-embed them with {model.key} (the media may have changed), or exclude them with {EXCLUDE_ENV}",
        {"rows_checked": len(spans), "tolerance_sec": DURATION_TOLERANCE_SEC},
    )


def rows_of_this_version_only(
    model: MarengoModel, rows: pa.Table, segment_index: SegmentIndex
) -> dg.AssetCheckResult:
    table_rows = rows.select(["media_uri", "model_key", "model_version"])
    index_rows = segment_index.scan(model, ["media_uri", "model_key", "model_version"])
    problems = [foreign_rows(table_rows.to_pandas(), model, "embedding table")]
    if index_rows is not None:
        problems.append(foreign_rows(index_rows.to_pandas(), model, "index"))
    return problems_result(
        pd.concat(problems, ignore_index=True),
        f"have rows of another version than {model.key}",
        f"re-embed them with {model.key}; then materialize search/marengo_segments for it",
        {
            "model": model.key,
            "table_rows": table_rows.num_rows,
            "index_rows": 0 if index_rows is None else index_rows.num_rows,
        },
    )


def segment_ids_unique(
    model: MarengoModel, rows: pa.Table, segment_index: SegmentIndex
) -> dg.AssetCheckResult:
    table_rows = rows.select(["segment_id", "media_uri"]).to_pandas()
    index_rows = segment_index.scan(model, ["segment_id", "media_uri"])
    index_frame = index_rows.to_pandas() if index_rows is not None else table_rows.iloc[0:0]
    problems = pd.concat(
        [duplicate_segment_ids(table_rows, "embedding table"), duplicate_segment_ids(index_frame, "index")],
        ignore_index=True,
    )
    return problems_result(
        problems,
        "have duplicate segment ids",
        f"materialize search/marengo_segments for {model.key} (it drops index duplicates), then check again",
        {
            "table_duplicate_rows": len(table_rows) - table_rows["segment_id"].nunique(),
            "index_duplicate_rows": segment_index.duplicate_segment_ids(model),
        },
    )


def index_rows_equal_table_rows(
    model: MarengoModel, rows: pa.Table, segment_index: SegmentIndex
) -> dg.AssetCheckResult:
    table_rows = rows.select(["segment_id", "media_uri"]).to_pandas()
    index_rows = segment_index.scan(model, ["segment_id", "media_uri"])
    index_frame = index_rows.to_pandas() if index_rows is not None else table_rows.iloc[0:0]
    return problems_result(
        index_differences(table_rows, index_frame),
        "differ between the index and the embedding table",
        f"materialize search/marengo_segments for {model.key}, then check again",
        {"table_rows": len(table_rows), "index_rows": len(index_frame)},
    )


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            asset=CHECKED,
            name="covers_every_eligible_object",
            blocking=True,
            description="Every usable object the model can take has an embedding at its current ETag in the "
            f"embedding table; names the missing ones and why. Objects in {EXCLUDE_ENV} do not count.",
        ),
        dg.AssetCheckSpec(
            asset=CHECKED,
            name="vectors_have_model_dimension",
            blocking=True,
            description="Every vector of the embedding table, and the index's vector column, is the model's "
            "size.",
        ),
        dg.AssetCheckSpec(
            asset=CHECKED,
            name="no_nan_or_zero_vectors",
            blocking=True,
            description="No vector of the embedding table holds NaN or infinity, or has norm zero.",
        ),
        dg.AssetCheckSpec(
            asset=CHECKED,
            name="segments_inside_media_duration",
            blocking=True,
            description="Every segment starts before it ends and ends within its media's duration "
            f"(+{DURATION_TOLERANCE_SEC} s).",
        ),
        dg.AssetCheckSpec(
            asset=CHECKED,
            name="rows_of_this_version_only",
            blocking=True,
            description="Every row of the version's embedding table and index is of this model version.",
        ),
        dg.AssetCheckSpec(
            asset=CHECKED,
            name="segment_ids_unique",
            blocking=True,
            description="0 duplicate segment ids in the version's embedding table and in its LanceDB index "
            "(concurrent merge_insert can duplicate keys: lance#4585).",
        ),
        dg.AssetCheckSpec(
            asset=CHECKED,
            name="index_rows_equal_table_rows",
            blocking=True,
            description="The LanceDB index holds exactly the current embedding table's segments, object by "
            "object.",
        ),
    ],
)
def table_checks(
    context: dg.AssetCheckExecutionContext,
    lake: Lake,
    segment_index: SegmentIndex,
    version_checks: VersionCheckSettings,
) -> Iterator[dg.AssetCheckResult]:
    """The whole-version checks over the embedding table, on one read of it (and of the inventory)."""
    model = _model(context)
    rows = EmbeddingTable(lake, model).read_stored(columns=TABLE_COLUMNS)
    inventory = read_inventory(lake)
    jobs = SubmissionLedger(lake, None).jobs(model.key)
    results = {
        "covers_every_eligible_object": covers_every_eligible_object(
            model, rows, inventory, jobs, version_checks
        ),
        "vectors_have_model_dimension": vectors_have_model_dimension(model, rows, segment_index),
        "no_nan_or_zero_vectors": no_nan_or_zero_vectors(model, rows),
        "segments_inside_media_duration": segments_inside_media_duration(model, rows, inventory),
        "rows_of_this_version_only": rows_of_this_version_only(model, rows, segment_index),
        "segment_ids_unique": segment_ids_unique(model, rows, segment_index),
        "index_rows_equal_table_rows": index_rows_equal_table_rows(model, rows, segment_index),
    }
    for name, result in results.items():
        yield dg.AssetCheckResult(
            asset_key=CHECKED,
            check_name=name,
            passed=result.passed,
            description=result.description,
            metadata=result.metadata,
        )


# --- side-by-side evaluation ------------------------------------------------------------------------------

DEFAULT_PROBE_SET = Path(__file__).parent.parent / "probe_set.json"
# Segments fetched per query to find k distinct objects (an object has several spans and options).
SEGMENTS_PER_OBJECT = 20


@dataclass(frozen=True)
class ProbeOutcome:
    """One probe run against both versions: objects in rank order, and where the right answer ranks."""

    probe: Probe
    right: tuple[str, ...]  # the expected answer as URIs of the library (none: not judged)
    serving: tuple[str, ...] | None  # None: the serving version has no index to compare with
    candidate: tuple[str, ...]


def ranked_objects(media_uris: list[str]) -> tuple[str, ...]:
    """Distinct objects in the order of their best segment: spans differ across versions, objects not."""
    return tuple(dict.fromkeys(media_uris))


def resolve_expected(expected: str | None, library: set[str]) -> tuple[str, ...]:
    """The library's URIs an expected answer names: itself, or those ending in `/<key>`."""
    if expected is None:
        return ()
    if expected in library:
        return (expected,)
    return tuple(sorted(u for u in library if u.endswith("/" + expected.lstrip("/"))))


def rank_of(objects: tuple[str, ...] | None, right: tuple[str, ...]) -> int | None:
    """1-based rank of the first right object, None when it is not among `objects`."""
    for i, uri in enumerate(objects or ()):
        if uri in right:
            return i + 1
    return None


def overlap_at_k(a: tuple[str, ...], b: tuple[str, ...], k: int) -> float:
    """Shared share of the two top-k object lists (of the longer one, when the library has fewer than k)."""
    top_a, top_b = set(a[:k]), set(b[:k])
    return len(top_a & top_b) / max(len(top_a), len(top_b), 1)


@dataclass(frozen=True)
class Evaluation:
    mean_overlap: float | None
    failures: list[str]  # one line per broken floor, naming the query


def evaluate(outcomes: list[ProbeOutcome], k: int, min_overlap: float, max_rank: int) -> Evaluation:
    """The floors: mean overlap@k with the serving version, and every judged right answer within
    `max_rank` of the candidate's objects."""
    failures = []
    for o in outcomes:
        if not o.right:
            continue
        rank = rank_of(o.candidate[:k], o.right)
        if rank is None or rank > max_rank:
            where = "not in the top" if rank is None else f"at rank {rank}, past"
            failures.append(f"{o.probe.query!r}: {o.probe.expected} {where} {max_rank if rank else k}")
    compared = [overlap_at_k(o.serving, o.candidate, k) for o in outcomes if o.serving is not None]
    mean = sum(compared) / len(compared) if compared else None
    if mean is not None and mean < min_overlap:
        failures.append(f"mean overlap@{k} with the serving version {mean:.2f} is under {min_overlap:.2f}")
    return Evaluation(mean, failures)


def probe_table_md(outcomes: list[ProbeOutcome], k: int, serving: str, candidate: str) -> str:
    def rank(objects: tuple[str, ...] | None, right: tuple[str, ...]) -> str:
        if not right:
            return "-"
        if objects is None:
            return "no index"
        found = rank_of(objects[:k], right)
        return str(found) if found else f">{k}"

    lines = [
        f"| query | right answer | rank {serving} | rank {candidate} | overlap@{k} | top {candidate} |",
        "|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        expected = o.probe.expected or "-"
        if o.probe.expected and not o.right:
            expected += " (not in the library)"
        overlap = "-" if o.serving is None else f"{overlap_at_k(o.serving, o.candidate, k):.2f}"
        top = f"`{o.candidate[0]}`" if o.candidate else "(none)"
        lines.append(
            f"| {o.probe.query} | {expected} | {rank(o.serving, o.right)} | {rank(o.candidate, o.right)} "
            f"| {overlap} | {top} |"
        )
    return "\n".join(lines)


def _search_objects(
    marengo: MarengoProviders, index: SegmentIndex, model: MarengoModel, text: str, k: int
) -> tuple[str, ...]:
    vector = marengo.serving(model).embed_text(text, model)
    hits = index.search(model, vector, k=k * SEGMENTS_PER_OBJECT)
    return ranked_objects([h.media_uri for h in hits])[:k]


@dg.asset_check(
    asset=CHECKED,
    name="candidate_matches_serving",
    blocking=True,
    description="Side by side: the probe set's queries run against the serving version and this one; "
    "overlap@k and each right answer's rank per version are recorded, and floors block the cut-over.",
)
def candidate_matches_serving(
    context: dg.AssetCheckExecutionContext,
    lake: Lake,
    segment_index: SegmentIndex,
    marengo: MarengoProviders,
    version_checks: VersionCheckSettings,
) -> dg.AssetCheckResult:
    candidate = _model(context)
    serving_key = lake.serving_versions().current().serving
    floors: dict[str, Any] = {
        "k": version_checks.probe_k,
        "min_overlap": version_checks.min_overlap,
        "max_expected_rank": version_checks.max_expected_rank,
    }
    base: dict[str, Any] = {"serving": serving_key, "candidate": candidate.key, **floors}
    if serving_key == candidate.key:
        return dg.AssetCheckResult(
            passed=True,
            description=f"{candidate.key} already serves search: nothing to compare it with",
            metadata={**base, "note": "candidate is the serving version"},
        )
    path = version_checks.probe_set_path(DEFAULT_PROBE_SET)
    base["probe_set"] = dg.MetadataValue.path(str(path))
    try:
        probes = load_probe_set(path)
    except ProbeSetError as error:
        return dg.AssetCheckResult(passed=False, description=f"{error}", metadata=base)
    serving = marengo_model(serving_key)
    library = set(read_inventory(lake)["media_uri"])
    k = version_checks.probe_k
    outcomes = []
    serving_note = None
    try:
        for probe in probes:
            try:
                served: tuple[str, ...] | None = (
                    None if serving_note else _search_objects(marengo, segment_index, serving, probe.query, k)
                )
            except IndexNotFound as error:
                served, serving_note = None, f"{error}: only the candidate's ranks are judged"
            found = _search_objects(marengo, segment_index, candidate, probe.query, k)
            outcomes.append(ProbeOutcome(probe, resolve_expected(probe.expected, library), served, found))
    except (IndexNotFound, QueryEmbeddingError, SetupError) as error:
        return dg.AssetCheckResult(
            passed=False,
            description=f"the probe {probe.query!r} could not run: {error}",
            metadata=base,
        )
    result = evaluate(outcomes, k, version_checks.min_overlap, version_checks.max_expected_rank)
    metadata: dict[str, Any] = {
        **base,
        "probes": len(outcomes),
        "probes_judged": sum(1 for o in outcomes if o.right),
        "side_by_side": dg.MetadataValue.md(probe_table_md(outcomes, k, serving.key, candidate.key)),
        "floor_failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in result.failures) or "_(none)_"),
    }
    if result.mean_overlap is not None:
        metadata["mean_overlap_at_k"] = dg.MetadataValue.float(round(result.mean_overlap, 3))
    if serving_note:
        metadata["serving_note"] = serving_note
    description = None
    if result.failures:
        description = (
            f"{len(result.failures)} probes under the floor against {serving.key}: {result.failures[0]}; "
            f"fix the candidate's embeddings, or adjust the probe set ({PROBE_SET_ENV}) or the floors "
            "(resources.version_checks)"
        )
    return dg.AssetCheckResult(passed=not result.failures, description=description, metadata=metadata)


# Selected by the cut-over job (AssetSelection.checks(*WHOLE_VERSION_CHECKS)); registered in definitions.
WHOLE_VERSION_CHECKS = (table_checks, candidate_matches_serving)
