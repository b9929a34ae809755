"""The whole-version checks: each rule on tables, then all of them through Dagster on a real small lake
(local Delta table, local LanceDB, ledger), gating a downstream asset the way the cut-over job does."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from assets_defs.inventory.media_inventory import INVENTORY_SCHEMA
from assets_defs.marengo.partitions import marengo_model_partitions
from assets_defs.migration.checks import WHOLE_VERSION_CHECKS, checked_version
from assets_defs.migration.checks.candidate_check import DEFAULT_PROBE_SET, candidate_matches_serving
from assets_defs.migration.checks.outcome import names_md
from assets_defs.migration.checks.side_by_side import (
    ProbeOutcome,
    evaluate,
    overlap_at_k,
    probe_table_md,
    rank_of,
    ranked_objects,
    resolve_expected,
)
from assets_defs.migration.checks.table_rules import (
    bad_vectors,
    coverage,
    coverage_advice,
    duplicate_segment_ids,
    eligible_objects,
    foreign_rows,
    index_differences,
    missing_reason,
    segments_outside_media,
    wrong_dimension,
)
from assets_defs.search.segment_index import marengo_segment_index
from resources.index.segment_index import SegmentIndex
from resources.migration.check_settings import (
    Probe,
    ProbeSetError,
    VersionCheckSettings,
    load_probe_set,
    parse_exclusions,
)
from resources.providers.base import MarengoProvider
from resources.providers.embedding_jobs import (
    EmbeddingJob,
    EmbeddingOptions,
    InvocationStatus,
    SegmentEmbedding,
    Submission,
)
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0, MarengoModel
from resources.providers.marengo_resource import MarengoProviders
from resources.providers.model_routes import ProviderName, route
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.inventory_table import InventoryTable
from resources.tables.segment_schema import media_id, segments_table
from resources.tables.submission_ledger import Outcome, SubmissionLedger

MODEL = MARENGO_3_0
RNG = np.random.default_rng(12)


def job(uri: str, etag: str = "e1", model: MarengoModel = MODEL) -> EmbeddingJob:
    return EmbeddingJob(uri, etag, "video", model, EmbeddingOptions())


def segments(
    uri: str, etag: str = "e1", n: int = 2, model: MarengoModel = MODEL, **vector: np.ndarray
) -> pa.Table:
    vectors = vector.get("vectors", RNG.normal(size=(n, model.dimension)).astype(np.float32))
    spans = [
        SegmentEmbedding("visual", "clip", 5.0 * i, 5.0 * (i + 1), v.tolist()) for i, v in enumerate(vectors)
    ]
    return segments_table(
        job(uri, etag, model),
        spans,
        route=route("bedrock", model.key),
        invocation_id=f"inv-{uri}",
        ingested_at=datetime.now(UTC),
    )


def inventory(*objects: tuple[str, str, float], status: str = "ok") -> pd.DataFrame:
    rows = [
        {
            "media_uri": uri,
            "media_id": media_id(uri),
            "key": uri.split("/", 3)[-1],
            "etag": etag,
            "size_bytes": 1000,
            "modality": "video",
            "duration_sec": seconds,
            "status": status,
            "reason": None if status == "ok" else "cannot decode",
        }
        for uri, etag, seconds in objects
    ]
    return pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA).to_pandas()


def no_jobs() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["media_uri", "etag", "status", "reason", "invocation_id", "recorded_at", "submitted_at"]
    )


def ledger_rows(*rows: tuple[str, str, str, str | None]) -> pd.DataFrame:
    now = pd.Timestamp.now(tz="UTC")
    return pd.DataFrame(
        [
            {
                "media_uri": u,
                "etag": e,
                "status": s,
                "reason": r,
                "invocation_id": f"inv-{u}",
                "recorded_at": pd.NaT if s == "in_progress" else now + pd.Timedelta(seconds=i),
                "submitted_at": now,
            }
            for i, (u, e, s, r) in enumerate(rows)
        ]
    )


# --- rules -------------------------------------------------------------------------------------------------


def test_coverage_names_each_missing_object_with_its_reason() -> None:
    inv = inventory(
        *(
            (f"s3://m/{n}.mp4", "e2" if n == "changed" else "e1", 10.0)
            for n in ("ok", "failed", "flight", "never", "changed", "empty", "gone")
        )
    )
    embedded = pd.DataFrame({"media_uri": ["s3://m/ok.mp4", "s3://m/changed.mp4"], "etag": ["e1", "e1"]})
    jobs = ledger_rows(
        ("s3://m/ok.mp4", "e1", "completed", None),
        ("s3://m/failed.mp4", "e1", "failed", "bad codec"),
        ("s3://m/flight.mp4", "e1", "in_progress", None),
        ("s3://m/changed.mp4", "e1", "completed", None),
        ("s3://m/empty.mp4", "e1", "no_content", "nothing to embed"),
    )
    result = coverage(
        *eligible_objects(inv, MODEL)[:1], embedded, jobs, ("s3://m/gone.mp4", "s3://m/elsewhere.mp4")
    )
    problems = dict(zip(result.missing["media_uri"], result.missing["problem"], strict=True))
    assert set(problems) == {
        "s3://m/failed.mp4",
        "s3://m/flight.mp4",
        "s3://m/never.mp4",
        "s3://m/changed.mp4",
    }
    assert problems["s3://m/failed.mp4"] == "failed: bad codec"
    assert problems["s3://m/flight.mp4"].startswith("in flight")
    assert problems["s3://m/never.mp4"].startswith("never submitted")
    assert "ETag e1, now e2" in problems["s3://m/changed.mp4"]
    assert (result.eligible, result.covered) == (6, 2), "the excluded object does not count; no_content does"
    assert result.excluded == ["s3://m/elsewhere.mp4", "s3://m/gone.mp4"]
    assert result.excluded_unknown == ["s3://m/elsewhere.mp4"]


def test_the_advice_says_to_wait_for_objects_in_flight_and_to_fix_the_others() -> None:
    inv = inventory(*((f"s3://m/{n}.mp4", "e1", 10.0) for n in ("a", "b", "c")))
    none = pd.DataFrame({"media_uri": [], "etag": []})
    flying = ledger_rows(*((f"s3://m/{n}.mp4", "e1", "in_progress", None) for n in ("a", "b", "c")))
    missing = coverage(*eligible_objects(inv, MODEL)[:1], none, flying, ()).missing
    assert (
        coverage_advice(missing, MODEL.key, "X")
        == "3 still in flight: wait for them to finish, then check again"
    )
    flying = ledger_rows(
        ("s3://m/a.mp4", "e1", "in_progress", None),
        ("s3://m/b.mp4", "e1", "in_progress", None),
        ("s3://m/c.mp4", "e1", "failed", "bad codec"),
    )
    missing = coverage(*eligible_objects(inv, MODEL)[:1], none, flying, ()).missing
    assert coverage_advice(missing, MODEL.key, "X") == (
        "2 still in flight: wait for them to finish, then check again; of the other 1: fix them and re-run "
        f"the backfill of {MODEL.key}, or exclude them with X"
    )
    missing = coverage(*eligible_objects(inv, MODEL)[:1], none, flying.iloc[2:], ()).missing
    assert coverage_advice(missing, MODEL.key, "X").startswith("fix them and re-run the backfill")


def test_a_later_attempt_in_flight_wins_over_an_earlier_failure() -> None:
    jobs = ledger_rows(("s3://m/a.mp4", "e1", "failed", "x"), ("s3://m/a.mp4", "e1", "in_progress", None))
    jobs.loc[1, "submitted_at"] = jobs.loc[0, "recorded_at"] + pd.Timedelta(seconds=5)
    assert missing_reason(jobs, "e1").startswith("in flight")
    assert missing_reason(jobs.iloc[:1], "e1") == "failed: x"


def test_over_limit_media_block_by_name_until_excluded_and_what_no_version_can_embed_never_counts() -> None:
    inv = pd.concat(
        [
            inventory(("s3://m/long.mp4", "e", 5 * 3600.0)),
            inventory(("s3://m/bad.mp4", "e", 0.0), status="unreadable"),
            inventory(("s3://m/notes.txt", "e", 0.0), status="unsupported"),
        ]
    )
    eligible, blocked, unembeddable = eligible_objects(inv, MODEL)
    assert eligible.empty
    problems = dict(zip(blocked["media_uri"], blocked["problem"], strict=True))
    assert (
        list(problems) == ["s3://m/long.mp4"] and "exceeds Marengo 3.0's limit" in problems["s3://m/long.mp4"]
    )
    cannot = dict(zip(unembeddable["media_uri"], unembeddable["problem"], strict=True))
    assert cannot == {
        "s3://m/bad.mp4": "corrupt: cannot decode",
        "s3://m/notes.txt": "unsupported: cannot decode",
    }
    no_rows = pd.DataFrame({"media_uri": [], "etag": []})
    jobs = ledger_rows(("s3://m/x.mp4", "e", "completed", None)).iloc[0:0]
    result = coverage(eligible, no_rows, jobs, (), blocked, unembeddable)
    assert (result.eligible, result.covered) == (1, 0)
    assert list(result.missing["media_uri"]) == ["s3://m/long.mp4"]
    assert sorted(result.unembeddable["media_uri"]) == ["s3://m/bad.mp4", "s3://m/notes.txt"]
    result = coverage(eligible, no_rows, jobs, ("s3://m/bad.mp4", "s3://m/long.mp4"), blocked, unembeddable)
    assert (result.eligible, result.missing.empty, result.excluded_unknown) == (0, True, [])


def test_what_the_serving_version_holds_is_required_of_the_candidate_even_where_the_probe_failed() -> None:
    inv = pd.concat(
        [
            inventory(("s3://m/a.mp4", "e1", 10.0), ("s3://m/b.mp4", "e1", 10.0)),
            inventory(("s3://m/odd.mp4", "e1", 0.0), ("s3://m/bad.mp4", "e1", 0.0), status="unreadable"),
        ]
    )
    eligible, blocked, unembeddable = eligible_objects(inv, MODEL)
    candidate = pd.DataFrame({"media_uri": ["s3://m/a.mp4", "s3://m/b.mp4"], "etag": ["e1", "e1"]})
    # The serving version embedded odd.mp4 at its current ETag (its provider could decode it), and bad.mp4
    # at an older one: only odd.mp4 is held by search today.
    held = pd.DataFrame(
        {"media_uri": ["s3://m/a.mp4", "s3://m/odd.mp4", "s3://m/bad.mp4"], "etag": ["e1", "e1", "e0"]}
    )
    jobs = ledger_rows(("s3://m/x.mp4", "e", "completed", None)).iloc[0:0]
    result = coverage(eligible, candidate, jobs, (), blocked, unembeddable, ("marengo-2.7", held))
    assert (result.eligible, result.covered) == (3, 2)
    [problem] = result.missing["problem"]
    assert list(result.missing["media_uri"]) == ["s3://m/odd.mp4"]
    assert problem.startswith("the serving version marengo-2.7 holds it at this ETag; never submitted")
    assert list(result.unembeddable["media_uri"]) == ["s3://m/bad.mp4"]


def test_vectors_of_the_wrong_length_are_named_per_object() -> None:
    rows = pa.table(
        {
            "media_uri": ["s3://m/a.mp4", "s3://m/b.mp4", "s3://m/b.mp4"],
            "vector": pa.array([[1.0] * 512, [1.0] * 1024, [1.0] * 1024], pa.list_(pa.float32())),
        }
    )
    problems = wrong_dimension(rows, 512)
    assert problems.to_dict("records") == [
        {"media_uri": "s3://m/b.mp4", "problem": "2 vectors of length 1024, not 512"}
    ]


def test_nan_infinite_and_zero_vectors_are_found_and_sound_ones_pass() -> None:
    vectors = [[1.0, 0.0], [np.nan, 1.0], [0.0, 0.0], [np.inf, 0.0], [0.0, -2.0]]
    rows = pa.table(
        {
            "media_uri": ["s3://m/ok", "s3://m/nan", "s3://m/zero", "s3://m/inf", "s3://m/ok"],
            "vector": pa.array(vectors),
        }
    )
    problems = dict(zip(*bad_vectors(rows).to_dict("list").values(), strict=True))
    assert problems == {
        "s3://m/nan": "1 bad vectors (NaN or infinite)",
        "s3://m/zero": "1 bad vectors (zero)",
        "s3://m/inf": "1 bad vectors (NaN or infinite)",
    }


def test_segments_past_the_duration_or_backwards_are_named_within_tolerance() -> None:
    rows = pd.DataFrame(
        {
            "media_uri": ["s3://m/a", "s3://m/a", "s3://m/b", "s3://m/c", "s3://m/img"],
            "start_sec": [0.0, 6.0, 4.0, 3.0, None],
            "end_sec": [6.0, 10.4, 3.0, 12.0, None],
        }
    )
    problems = segments_outside_media(
        rows, {"s3://m/a": 10.0, "s3://m/b": 10.0, "s3://m/c": 10.0, "s3://m/img": None}
    )
    assert problems.to_dict("records") == [
        {"media_uri": "s3://m/b", "problem": "1 segments outside the media (4-3 s of 10 s)"},
        {"media_uri": "s3://m/c", "problem": "1 segments outside the media (3-12 s of 10 s)"},
    ]


def test_rows_of_another_version_are_named() -> None:
    rows = pd.DataFrame(
        {
            "media_uri": ["s3://m/a", "s3://m/b"],
            "model_key": ["marengo-3.0", "marengo-2.7"],
            "model_version": ["3.0", "2.7"],
        }
    )
    problems = foreign_rows(rows, MODEL, "index")
    assert problems.to_dict("records") == [
        {
            "media_uri": "s3://m/b",
            "problem": "1 rows of another version in the index (marengo-2.7 2.7), not marengo-3.0",
        }
    ]
    assert foreign_rows(rows.iloc[:1], MODEL, "index").empty


def test_duplicate_segment_ids_and_index_differences_are_counted_per_object() -> None:
    table = pd.DataFrame(
        {"segment_id": ["a1", "a2", "b1"], "media_uri": ["s3://m/a", "s3://m/a", "s3://m/b"]}
    )
    index = pd.DataFrame(
        {"segment_id": ["a1", "a1", "a1", "a2", "c1"], "media_uri": ["s3://m/a"] * 4 + ["s3://m/c"]}
    )
    assert duplicate_segment_ids(index, "index").to_dict("records") == [
        {"media_uri": "s3://m/a", "problem": "2 duplicate segment rows in the index"}
    ]
    assert duplicate_segment_ids(table, "embedding table").empty
    assert index_differences(table, index).to_dict("records") == [
        {"media_uri": "s3://m/b", "problem": "1 table segments not in the index, 0 not in the table"},
        {"media_uri": "s3://m/c", "problem": "0 table segments not in the index, 1 not in the table"},
    ]
    assert index_differences(table, table.iloc[[2, 0, 1]]).empty


def test_names_are_capped_with_a_count() -> None:
    problems = pd.DataFrame({"media_uri": [f"s3://m/{i:02d}" for i in range(25)], "problem": ["x"] * 25})
    text = str(names_md(problems).value)
    assert text.count("- `s3://m/") == 20 and "_and 5 more_" in text


def test_exclusions_and_probe_sets_parse(tmp_path: Path) -> None:
    assert parse_exclusions(" s3://m/b.mp4, ,s3://m/a.mp4,s3://m/b.mp4 ") == ("s3://m/a.mp4", "s3://m/b.mp4")
    assert parse_exclusions(None) == ()
    shipped = load_probe_set(DEFAULT_PROBE_SET)
    assert Probe("red circle", "videos/shapes_a.mp4") in shipped
    yaml_file = tmp_path / "probes.yaml"
    yaml_file.write_text("- query: red circle\n  media_uri: s3://media/videos/shapes_a.mp4\n- query: a hum\n")
    assert load_probe_set(yaml_file) == (
        Probe("red circle", "s3://media/videos/shapes_a.mp4"),
        Probe("a hum"),
    )
    bad = tmp_path / "bad.json"
    bad.write_text('[{"media_uri": "x"}]')
    with pytest.raises(ProbeSetError, match="entry 0 has no query text"):
        load_probe_set(bad)
    with pytest.raises(ProbeSetError, match="cannot read the probe set"):
        load_probe_set(tmp_path / "missing.json")


def test_exclusions_come_from_the_launchpad_list_and_the_setting() -> None:
    """The definitions bind `exclude_setting` from MEDIAEMBED_MIGRATION_EXCLUDE (tests/unit/test_settings.py);
    `exclude` is the launchpad's list."""
    setting = VersionCheckSettings(exclude_setting=" s3://m/x.mp4, ,s3://m/x.mp4")
    assert setting.excluded() == ("s3://m/x.mp4",)
    both = VersionCheckSettings(exclude=["s3://m/y.mp4", "s3://m/x.mp4"], exclude_setting="s3://m/x.mp4")
    assert both.excluded() == ("s3://m/x.mp4", "s3://m/y.mp4")
    assert VersionCheckSettings(exclude_setting="").excluded() == VersionCheckSettings().excluded() == ()


def test_the_launchpad_takes_exclude_as_a_list_of_strings() -> None:
    """As typed in the launchpad's YAML: `exclude: [s3://...]` validates; a bare string is refused."""

    @dg.asset
    def uses(version_checks: VersionCheckSettings) -> list[str]:
        return list(version_checks.excluded())

    config = {"resources": {"version_checks": {"config": {"exclude": ["s3://m/a.mp4", "s3://m/b.mp4"]}}}}
    result = dg.materialize([uses], resources={"version_checks": VersionCheckSettings()}, run_config=config)
    assert result.output_for_node("uses") == ["s3://m/a.mp4", "s3://m/b.mp4"]
    with pytest.raises(dg.DagsterInvalidConfigError):
        dg.materialize(
            [uses],
            resources={"version_checks": VersionCheckSettings()},
            run_config={"resources": {"version_checks": {"config": {"exclude": "s3://m/a.mp4"}}}},
        )


# --- through Dagster, on a real small lake -----------------------------------------------------------------

CHECKED = "marengo-3.0"
URIS = ("s3://media/a.mp4", "s3://media/b.mp4", "s3://media/c.mp4")


@dg.asset(key=["serving", "gated"], deps=[checked_version], partitions_def=marengo_model_partitions)
def gated() -> None:
    """Stands in for the cut-over: runs only when every blocking check passed."""


def world(tmp_path: Path, serving_version: str | None = None) -> dict[str, object]:
    """a and b embedded and indexed at their ETag; c failed at the provider; `serving_version` serves
    until a cut-over (MEDIAEMBED_SERVING_VERSION)."""
    storage = S3Storage(region_name="us-east-1")
    lake = Lake(root=str(tmp_path / "lake"), serving_version=serving_version, storage=storage)
    index = SegmentIndex(uri=str(tmp_path / "idx"), storage=storage)
    inv = inventory(*((u, "e1", 10.0) for u in URIS))
    InventoryTable(lake).replace_all(pa.Table.from_pandas(inv, schema=INVENTORY_SCHEMA, preserve_index=False))
    rows = pa.concat_tables([segments(u) for u in URIS[:2]])
    ids = [media_id(u) for u in URIS[:2]]
    EmbeddingTable(lake, MODEL).replace(rows, ids)
    index.replace_media(MODEL, rows, ids)
    ledger = SubmissionLedger(lake, "bedrock")
    subs = [Submission(job(u), f"inv-{u}", None, datetime.now(UTC)) for u in URIS]
    ledger.record_submissions(subs, {}, "run-submit")
    ledger.record_outcomes(
        [
            Outcome(
                s.job.job_key,
                s.job.client_token,
                MODEL.key,
                s.job.media_uri,
                "e1",
                s.invocation_id,
                status,
                why,
            )
            for s, (status, why) in zip(
                subs, [("completed", None), ("completed", None), ("failed", "bad codec")], strict=True
            )
        ],
        "run-ingest",
    )
    return {
        "lake": lake,
        "segment_index": index,
        "version_checks": VersionCheckSettings(),
        "marengo": MarengoProviders(
            bedrock=ProbeProvider(), providers="marengo-2.7=bedrock,marengo-3.0=bedrock"
        ),
    }


def run_checks(resources: dict[str, object], exclude: tuple[str, ...] = ()) -> dg.ExecuteInProcessResult:
    job_def = dg.define_asset_job(
        "cut_over_stand_in",
        selection=dg.AssetSelection.checks(*WHOLE_VERSION_CHECKS)
        | dg.AssetSelection.assets(checked_version, gated),
    )
    defs = dg.Definitions(
        assets=[marengo_segment_index, checked_version, gated],
        asset_checks=list(WHOLE_VERSION_CHECKS),
        jobs=[job_def],
        resources=resources,
    )
    return defs.resolve_job_def("cut_over_stand_in").execute_in_process(
        partition_key=CHECKED,
        raise_on_error=False,
        run_config={"resources": {"version_checks": {"config": {"exclude": list(exclude)}}}},
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def gated_ran(result: dg.ExecuteInProcessResult) -> bool:
    return gated.key in {e.asset_key for e in result.get_asset_materialization_events()}


def test_a_failed_object_blocks_by_name_until_it_is_excluded(tmp_path: Path) -> None:
    resources = world(tmp_path)
    blocked = run_checks(resources)
    results = evaluations(blocked)
    assert set(results) == {key.name for c in WHOLE_VERSION_CHECKS for key in c.check_keys}
    failed = {name for name, e in results.items() if not e.passed}
    assert failed == {"covers_every_eligible_object"}
    coverage_result = results["covers_every_eligible_object"]
    assert "s3://media/c.mp4" in (coverage_result.description or "")
    assert "`s3://media/c.mp4`: failed: bad codec" in str(coverage_result.metadata["failures"].value)
    assert not gated_ran(blocked), "a failed blocking check stops the cut-over"

    excluded = run_checks(resources, exclude=("s3://media/c.mp4",))
    results = evaluations(excluded)
    assert all(e.passed for e in results.values()), {n: e.description for n, e in results.items()}
    assert "`s3://media/c.mp4`" in str(results["covers_every_eligible_object"].metadata["excluded"].value)
    assert gated_ran(excluded)


def test_an_index_out_of_step_with_the_table_blocks(tmp_path: Path) -> None:
    resources = world(tmp_path)
    index = resources["segment_index"]
    assert isinstance(index, SegmentIndex)
    foreign = segments("s3://media/b.mp4", model=MARENGO_2_7)
    # b's rows in the 3.0 index now: other segment ids, of the 2.7 model (cast to 3.0's vector size)
    foreign = foreign.drop_columns(["vector"]).append_column(
        "vector", segments("s3://media/b.mp4").column("vector")
    )
    index.replace_media(MODEL, foreign, [media_id("s3://media/b.mp4")])
    results = evaluations(run_checks(resources, exclude=("s3://media/c.mp4",)))
    failed = {name: e.description for name, e in results.items() if not e.passed}
    assert set(failed) == {"rows_of_this_version_only", "index_rows_equal_table_rows"}, failed
    assert all("s3://media/b.mp4" in (d or "") for d in failed.values())


# --- side by side ------------------------------------------------------------------------------------------


def outcome_of(
    query: str, expected: str | None, serving: tuple[str, ...] | None, candidate: tuple[str, ...]
) -> ProbeOutcome:
    return ProbeOutcome(Probe(query, expected), (expected,) if expected else (), serving, candidate)


def test_overlap_is_on_objects_and_ranks_name_the_right_answer() -> None:
    assert ranked_objects(["a", "b", "a", "c", "b"]) == ("a", "b", "c")
    assert overlap_at_k(("a", "b", "c"), ("c", "a", "d"), 3) == pytest.approx(2 / 3)
    assert overlap_at_k(("a",), ("a",), 10) == 1.0, "a library smaller than k compares what there is"
    assert rank_of(("x", "a"), ("a",)) == 2 and rank_of(("x",), ("a",)) is None
    library = {"s3://media/videos/shapes_a.mp4", "s3://media/old/videos/shapes_a.mp4", "s3://media/b.mp4"}
    assert resolve_expected("s3://media/b.mp4", library) == ("s3://media/b.mp4",)
    assert resolve_expected("videos/shapes_a.mp4", library) == tuple(sorted(library - {"s3://media/b.mp4"}))
    assert resolve_expected("videos/gone.mp4", library) == ()


def test_floors_fail_by_query_and_unjudged_probes_do_not_count() -> None:
    good = outcome_of("red circle", "a", ("a", "b"), ("a", "b"))
    late = outcome_of("blue square", "b", ("b", "a"), ("a", "c", "b"))
    absent = outcome_of("green", "g", ("g",), ("a", "b"))
    unknown = ProbeOutcome(Probe("hum", "not/in/library.wav"), (), ("a",), ("b",))
    passed = evaluate([good, unknown], k=10, min_overlap=0.0, max_rank=1)
    assert passed.failures == [] and passed.mean_overlap == pytest.approx(0.5)
    failed = evaluate([good, late, absent], k=10, min_overlap=0.9, max_rank=2)
    assert failed.failures == [
        "'blue square': b at rank 3, past 2",
        "'green': g not in the top 10",
        f"mean overlap@10 with the serving version {failed.mean_overlap:.2f} is under 0.90",
    ]
    no_serving = evaluate([outcome_of("red circle", "a", None, ("a",))], k=10, min_overlap=1.0, max_rank=1)
    assert no_serving.mean_overlap is None and no_serving.failures == []
    table = probe_table_md([good, unknown], 10, "marengo-2.7", "marengo-3.0")
    assert "| red circle | a | 1 | 1 | 1.00 | `a` |" in table
    assert "not/in/library.wav (not in the library)" in table


class ProbeProvider(MarengoProvider):
    """Embeds a probe query as the first vector of the object it names in that model's index."""

    @property
    def provider_name(self) -> ProviderName:
        return "bedrock"

    def submit(self, job: EmbeddingJob) -> Submission:
        raise NotImplementedError

    def finished_invocations(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        return []

    def newly_finished(
        self, open_jobs: Mapping[str, str], submitted_after: datetime
    ) -> list[InvocationStatus]:
        return []

    def fetch_segments(self, invocation: InvocationStatus, job: EmbeddingJob) -> list[SegmentEmbedding]:
        raise NotImplementedError

    def embed_text(self, text: str, model: MarengoModel) -> list[float]:
        return list(QUERY_VECTORS[(model.key, text)])


QUERY_VECTORS: dict[tuple[str, str], list[float]] = {}


def side_by_side_world(tmp_path: Path, candidate_finds_b: bool) -> dict[str, object]:
    """2.7 serves; a and b are indexed for 2.7 and 3.0. "find b" finds b with 2.7, and with 3.0 only when
    `candidate_finds_b` (else it lands on a)."""
    resources = world(tmp_path, serving_version=MARENGO_2_7.key)
    index = resources["segment_index"]
    assert isinstance(index, SegmentIndex)
    for model in (MARENGO_2_7, MARENGO_3_0):
        rows = {u: segments(u, model=model) for u in URIS[:2]}
        index.replace_media(model, pa.concat_tables(list(rows.values())), [media_id(u) for u in rows])
        first = {u: t.column("vector")[0].as_py() for u, t in rows.items()}
        QUERY_VECTORS[(model.key, "find a")] = first[URIS[0]]
        finds_b = model is MARENGO_2_7 or candidate_finds_b
        QUERY_VECTORS[(model.key, "find b")] = first[URIS[1] if finds_b else URIS[0]]
    probes = tmp_path / "probes.json"
    probes.write_text(
        json.dumps([{"query": "find a", "media_uri": "a.mp4"}, {"query": "find b", "media_uri": URIS[1]}])
    )
    resources["marengo"] = MarengoProviders(
        bedrock=ProbeProvider(), providers="marengo-2.7=bedrock,marengo-3.0=bedrock"
    )
    resources["version_checks"] = VersionCheckSettings(
        probe_set=str(probes), max_expected_rank=1, min_overlap=0.5
    )
    return resources


def run_side_by_side(resources: dict[str, object], partition: str) -> tuple[dg.AssetCheckEvaluation, bool]:
    job_def = dg.define_asset_job(
        "side_by_side",
        selection=dg.AssetSelection.checks(candidate_matches_serving)
        | dg.AssetSelection.assets(checked_version, gated),
    )
    defs = dg.Definitions(
        assets=[marengo_segment_index, checked_version, gated],
        asset_checks=[candidate_matches_serving],
        jobs=[job_def],
        resources=resources,
    )
    result = defs.resolve_job_def("side_by_side").execute_in_process(
        partition_key=partition, raise_on_error=False
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation, gated_ran(result)


def test_the_candidate_is_compared_with_the_serving_version(tmp_path: Path) -> None:
    evaluation, cut_over = run_side_by_side(side_by_side_world(tmp_path, candidate_finds_b=True), CHECKED)
    assert evaluation.passed and cut_over, evaluation.description
    assert evaluation.metadata["serving"].value == MARENGO_2_7.key
    table = str(evaluation.metadata["side_by_side"].value)
    assert "| find a | a.mp4 | 1 | 1 | 1.00 |" in table
    assert "| find b | s3://media/b.mp4 | 1 | 1 | 1.00 |" in table


def test_a_right_answer_ranked_too_low_blocks_the_cut_over(tmp_path: Path) -> None:
    evaluation, cut_over = run_side_by_side(side_by_side_world(tmp_path, candidate_finds_b=False), CHECKED)
    assert not evaluation.passed and not cut_over
    assert "'find b': s3://media/b.mp4 at rank 2, past 1" in (evaluation.description or "")
    assert "| find b | s3://media/b.mp4 | 1 | 2 |" in str(evaluation.metadata["side_by_side"].value)


def test_the_serving_version_passes_against_itself(tmp_path: Path) -> None:
    evaluation, _ = run_side_by_side(side_by_side_world(tmp_path, candidate_finds_b=False), "marengo-2.7")
    assert evaluation.passed and "already serves search" in (evaluation.description or "")
