"""The seven whole-version checks over the embedding table, as plain functions of one `VersionRead`: the
table, inventory, ledger and index of a version read once, so the checks share a single read of the table
instead of each re-reading it. Each returns the `CheckOutcome` of its check; `TABLE_CHECKS` pairs every
check name with its description (the catalog) and its evaluation."""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pyarrow as pa

from assets_defs.inventory.media_inventory import probed_durations
from assets_defs.migration.checks.outcome import CheckOutcome, names_md, problems_outcome, uri_list_md
from assets_defs.migration.checks.table_rules import (
    PROBLEM_COLUMNS,
    bad_vectors,
    coverage,
    coverage_advice,
    duplicate_segment_ids,
    eligible_objects,
    foreign_rows,
    index_differences,
    segments_outside_media,
    wrong_dimension,
)
from resources.migration.check_settings import EXCLUDE_ENV
from resources.providers.marengo_models import MarengoModel
from resources.tables.segment_validity import DURATION_TOLERANCE_SEC

# Every column of the embedding table any of the checks reads.
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
# Every column of the index any of the checks reads (never its vectors: their size is in its schema).
INDEX_COLUMNS = ["segment_id", "media_uri", "model_key", "model_version"]


@dataclass(frozen=True)
class IndexRead:
    table_name: str
    rows: pa.Table | None  # INDEX_COLUMNS of every row; None: the version has no index table
    dimension: int | None  # the size of its vector column; None: no table, or not a fixed size
    duplicate_rows: int  # rows beyond the first of each segment_id


@dataclass(frozen=True)
class VersionRead:
    """What the checks of one version look at, read once per check run."""

    model: MarengoModel
    rows: pa.Table  # TABLE_COLUMNS of the embedding table's stored rows
    inventory: pd.DataFrame
    jobs: pd.DataFrame  # the ledger's jobs of the model
    index: IndexRead
    excluded: tuple[str, ...]  # objects a person excluded from the cut-over
    exclusions_from: str  # where the exclusions came from
    # The serving version's key and the media_uri and etag of its table's rows, when another version
    # serves: what search holds today, which the candidate must hold too.
    serving: tuple[str, pd.DataFrame] | None = None


def covers_every_eligible_object(read: VersionRead) -> CheckOutcome:
    model = read.model
    eligible, blocked, unembeddable = eligible_objects(read.inventory, model)
    embedded = read.rows.select(["media_uri", "etag"]).to_pandas()
    result = coverage(
        eligible, embedded.drop_duplicates(), read.jobs, read.excluded, blocked, unembeddable, read.serving
    )
    share = result.covered / result.eligible if result.eligible else 1.0
    outcome = problems_outcome(
        result.missing,
        f"of {result.eligible} have no current {model.key} embedding",
        coverage_advice(result.missing, model.key, EXCLUDE_ENV),
        {
            "eligible_objects": result.eligible,
            "covered_objects": result.covered,
            "coverage": dg.MetadataValue.float(round(100 * share, 3)),
            "compared_with": read.serving[0] if read.serving else "(the candidate serves)",
            "excluded": uri_list_md(result.excluded),
            "excluded_count": len(result.excluded),
            "excluded_not_in_library": uri_list_md(result.excluded_unknown),
            "exclusions_from": read.exclusions_from,
            "cannot_be_embedded": names_md(result.unembeddable),
            "cannot_be_embedded_count": len(result.unembeddable),
        },
    )
    if not outcome.passed:
        return outcome
    left_out = ""
    if len(result.unembeddable):
        shown = result.unembeddable.sort_values("media_uri").head(3)
        first = ", ".join(f"{u} ({p})" for u, p in zip(shown["media_uri"], shown["problem"], strict=True))
        more = f" and {len(result.unembeddable) - 3} more" if len(result.unembeddable) > 3 else ""
        left_out = f"; {len(result.unembeddable)} objects no version can embed do not count: {first}{more}"
    return dataclasses.replace(
        outcome,
        description=f"{result.covered} of {result.eligible} objects have a current {model.key} embedding"
        f"{left_out}",
    )


def vectors_have_model_dimension(read: VersionRead) -> CheckOutcome:
    model, index = read.model, read.index
    problems = wrong_dimension(read.rows.select(["media_uri", "vector"]), model.dimension)
    if index.dimension is not None and index.dimension != model.dimension:
        index_problem = pd.DataFrame(
            [(f"index table {index.table_name}", f"vectors of {index.dimension}, not {model.dimension}")],
            columns=PROBLEM_COLUMNS,
        )
        problems = pd.concat([problems, index_problem], ignore_index=True)
    return problems_outcome(
        problems,
        f"have vectors not {model.dimension} long",
        f"re-embed them with {model.key} (a backfill of its partition)",
        {
            "dimension": model.dimension,
            "index_dimension": index.dimension or 0,
            "rows_checked": read.rows.num_rows,
        },
    )


def no_nan_or_zero_vectors(read: VersionRead) -> CheckOutcome:
    return problems_outcome(
        bad_vectors(read.rows.select(["media_uri", "vector"])),
        "have NaN, infinite or zero vectors",
        f"re-embed them with {read.model.key}, or exclude them with {EXCLUDE_ENV}",
        {"rows_checked": read.rows.num_rows},
    )


def segments_inside_media_duration(read: VersionRead) -> CheckOutcome:
    spans = read.rows.select(["media_uri", "start_sec", "end_sec"]).to_pandas()
    return problems_outcome(
        segments_outside_media(spans, probed_durations(read.inventory)),
        "have segments outside their media",
        f"re-embed them with {read.model.key} (the media may have changed), or exclude them with "
        f"{EXCLUDE_ENV}",
        {"rows_checked": len(spans), "tolerance_sec": DURATION_TOLERANCE_SEC},
    )


def rows_of_this_version_only(read: VersionRead) -> CheckOutcome:
    model, columns = read.model, ["media_uri", "model_key", "model_version"]
    table_rows = read.rows.select(columns)
    index_rows = None if read.index.rows is None else read.index.rows.select(columns)
    problems = [foreign_rows(table_rows.to_pandas(), model, "embedding table")]
    if index_rows is not None:
        problems.append(foreign_rows(index_rows.to_pandas(), model, "index"))
    return problems_outcome(
        pd.concat(problems, ignore_index=True),
        f"have rows of another version than {model.key}",
        f"re-embed them with {model.key}; then materialize search/marengo_segments for it",
        {
            "model": model.key,
            "table_rows": table_rows.num_rows,
            "index_rows": 0 if index_rows is None else index_rows.num_rows,
        },
    )


def _segment_rows(read: VersionRead) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(segment_id, media_uri) of the table's rows and of the index's (none without an index table)."""
    table_rows = read.rows.select(["segment_id", "media_uri"]).to_pandas()
    index_rows = read.index.rows
    if index_rows is None:
        return table_rows, table_rows.iloc[0:0]
    return table_rows, index_rows.select(["segment_id", "media_uri"]).to_pandas()


def segment_ids_unique(read: VersionRead) -> CheckOutcome:
    table_rows, index_frame = _segment_rows(read)
    problems = pd.concat(
        [duplicate_segment_ids(table_rows, "embedding table"), duplicate_segment_ids(index_frame, "index")],
        ignore_index=True,
    )
    return problems_outcome(
        problems,
        "have duplicate segment ids",
        f"materialize search/marengo_segments for {read.model.key} (it drops index duplicates), then check "
        "again",
        {
            "table_duplicate_rows": len(table_rows) - table_rows["segment_id"].nunique(),
            "index_duplicate_rows": read.index.duplicate_rows,
        },
    )


def index_rows_equal_table_rows(read: VersionRead) -> CheckOutcome:
    table_rows, index_frame = _segment_rows(read)
    return problems_outcome(
        index_differences(table_rows, index_frame),
        "differ between the index and the embedding table",
        f"materialize search/marengo_segments for {read.model.key}, then check again",
        {"table_rows": len(table_rows), "index_rows": len(index_frame)},
    )


@dataclass(frozen=True)
class TableCheck:
    description: str
    evaluate: Callable[[VersionRead], CheckOutcome]


# check name -> what it promises (shown in the UI and the docs) and how it is evaluated; in catalog order.
TABLE_CHECKS: dict[str, TableCheck] = {
    "covers_every_eligible_object": TableCheck(
        "Every usable object, and every object the serving version holds, has an embedding at its current "
        "ETag in the embedding table; names the missing ones and why. Objects no version can embed (the "
        "inventory found them corrupt or not media) are listed and do not count, nor do those in "
        f"{EXCLUDE_ENV}.",
        covers_every_eligible_object,
    ),
    "vectors_have_model_dimension": TableCheck(
        "Every vector of the embedding table, and the index's vector column, is the model's size.",
        vectors_have_model_dimension,
    ),
    "no_nan_or_zero_vectors": TableCheck(
        "No vector of the embedding table holds NaN or infinity, or has norm zero.",
        no_nan_or_zero_vectors,
    ),
    "segments_inside_media_duration": TableCheck(
        "Every segment starts before it ends and ends within its media's duration "
        f"(+{DURATION_TOLERANCE_SEC} s).",
        segments_inside_media_duration,
    ),
    "rows_of_this_version_only": TableCheck(
        "Every row of the version's embedding table and index is of this model version.",
        rows_of_this_version_only,
    ),
    "segment_ids_unique": TableCheck(
        "0 duplicate segment ids in the version's embedding table and in its LanceDB index "
        "(concurrent merge_insert can duplicate keys: lance#4585).",
        segment_ids_unique,
    ),
    "index_rows_equal_table_rows": TableCheck(
        "The LanceDB index holds exactly the current embedding table's segments, object by object.",
        index_rows_equal_table_rows,
    ),
}
