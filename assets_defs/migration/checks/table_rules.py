"""The whole-version rules over an embedding table already read: pure functions from pandas/Arrow tables
to problems (media_uri, problem), one row per object to fix or exclude. The vector and span rules are the
ingest's own (resources/tables/segment_validity.py), applied to the stored rows."""

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from resources.providers.marengo_models import MarengoModel
from resources.tables.segment_validity import NOT_FINITE, span_faults, vector_faults

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
    # media_uri, problem: objects no version can embed (the inventory found them corrupt or not media),
    # which never block; listed so that a person sees what search will not hold.
    unembeddable: pd.DataFrame = field(default_factory=lambda: no_problems())


def eligible_objects(
    inventory: pd.DataFrame, model: MarengoModel
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(the usable objects the model can take, the usable media it cannot embed as they are, the objects
    no version can embed). The second block a cut-over by name, with why, until fixed or excluded: a video
    over the model's limits is a hole in search, not something to skip silently. The third are what the
    inventory's probe found corrupt (`unreadable`) or not media (`unsupported`): no version takes them, so
    they never count against a candidate (unless the serving version embedded them, see `coverage`)."""
    usable = inventory[inventory["status"] == "ok"]
    violations = [
        model.limit_violation(m, int(size), None if pd.isna(sec) else float(sec))
        for m, size, sec in zip(usable["modality"], usable["size_bytes"], usable["duration_sec"], strict=True)
    ]
    over = np.array([v is not None for v in violations], dtype=bool)
    blocked = pd.DataFrame(
        {
            "media_uri": usable["media_uri"][over],
            "problem": [f"over the model's limits: {v}" for v in violations if v is not None],
        },
        columns=PROBLEM_COLUMNS,
    ).reset_index(drop=True)
    unusable = inventory[inventory["status"] != "ok"]
    kind = unusable["status"].map(lambda s: "corrupt" if s == "unreadable" else str(s))
    unembeddable = pd.DataFrame(
        {
            "media_uri": unusable["media_uri"],
            "etag": unusable["etag"],
            "problem": [f"{k}: {r}" for k, r in zip(kind, unusable["reason"], strict=True)],
        }
    ).reset_index(drop=True)
    return usable[~over].reset_index(drop=True), blocked, unembeddable


# How a missing object's reason begins while its job still runs (coverage_advice counts those).
IN_FLIGHT = "in flight: "


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
        return f"{IN_FLIGHT}invocation {latest.get('invocation_id')} has not finished"
    if status == "completed":
        return "completed, but its rows are not in the embedding table: run ingest_marengo_embeddings"
    if status == "lost":
        return f"lost by the provider{why}; the next submission run resubmits it"
    return f"{status}{why}"


def coverage_advice(missing: pd.DataFrame, model_key: str, exclude_setting: str) -> str:
    """What to do about the objects `coverage` found missing (media_uri, problem): wait for those still in
    flight, fix and re-embed the others, or exclude them."""
    waiting = missing["problem"].astype(str).str.contains(IN_FLIGHT, regex=False)
    in_flight, others = missing[waiting]["media_uri"].nunique(), missing[~waiting]["media_uri"].nunique()
    wait = f"{in_flight} still in flight: wait for them to finish, then check again"
    fix = f"fix them and re-run the backfill of {model_key}, or exclude them with {exclude_setting}"
    if in_flight and not others:
        return wait
    if in_flight:
        return f"{wait}; of the other {others}: {fix}"
    return fix


def coverage(
    eligible: pd.DataFrame,
    embedded: pd.DataFrame,
    jobs: pd.DataFrame,
    excluded: tuple[str, ...],
    blocked: pd.DataFrame | None = None,
    unembeddable: pd.DataFrame | None = None,
    serving: tuple[str, pd.DataFrame] | None = None,
) -> Coverage:
    """The candidate against what could be embedded: every eligible object, and every object the serving
    version holds at its current ETag, must have rows at that ETag, or have been embedded at it with
    nothing to embed (no_content); the others are named with why they are missing. Objects no version can
    embed (`unembeddable`, from `eligible_objects`) never block, unless the serving version holds them
    (then the candidate would lose what search has today); excluded objects never count.

    `embedded`: media_uri and etag of the candidate's embedding table rows; `jobs`: the ledger's jobs of
    the candidate; `serving`: the serving version's key and the media_uri and etag of its rows (None when
    the candidate is the serving version).
    """
    excluded_set = set(excluded)
    blocked = no_problems() if blocked is None else blocked
    unembeddable = (
        no_problems().assign(etag=pd.Series(dtype=object)) if unembeddable is None else unembeddable
    )
    held: set[tuple[str, str]] = set()
    if serving is not None:
        held = set(zip(serving[1]["media_uri"], serving[1]["etag"], strict=True))
    # What the serving version holds but the inventory calls unembeddable: still required of the candidate.
    pairs_of = zip(unembeddable["media_uri"], unembeddable["etag"], strict=True)
    kept = unembeddable[np.array([pair in held for pair in pairs_of], dtype=bool)]
    required = pd.concat([eligible[["media_uri", "etag"]], kept[["media_uri", "etag"]]], ignore_index=True)
    counted = required[~required["media_uri"].isin(excluded_set)]
    have = set(zip(embedded["media_uri"], embedded["etag"], strict=True))
    empty = jobs[jobs["status"] == "no_content"]
    have |= set(zip(empty["media_uri"], empty["etag"], strict=True))
    pairs = list(zip(counted["media_uri"], counted["etag"], strict=True))
    gaps = [(u, e) for u, e in pairs if (u, e) not in have]
    by_uri = {u: g for u, g in jobs[jobs["media_uri"].isin({u for u, _ in gaps})].groupby("media_uri")}

    def why(uri: str, etag: str) -> str:
        reason = missing_reason(by_uri.get(uri, jobs.iloc[0:0]), etag)
        if (uri, etag) in held:
            return f"the serving version {serving[0]} holds it at this ETag; {reason}"  # type: ignore[index]
        return reason

    blocking = blocked[~blocked["media_uri"].isin(excluded_set)]
    missing = pd.concat(
        [
            blocking,
            pd.DataFrame(
                {"media_uri": [u for u, _ in gaps], "problem": [why(u, e) for u, e in gaps]},
                columns=PROBLEM_COLUMNS,
            ),
        ],
        ignore_index=True,
    )
    known = set(eligible["media_uri"]) | set(blocked["media_uri"]) | set(unembeddable["media_uri"])
    left_out = unembeddable[~unembeddable["media_uri"].isin(set(kept["media_uri"]))]
    return Coverage(
        eligible=len(counted) + len(blocking),
        covered=len(counted) - len(gaps),
        missing=missing,
        excluded=sorted(excluded_set),
        excluded_unknown=sorted(excluded_set - known),
        unembeddable=left_out[PROBLEM_COLUMNS].reset_index(drop=True),
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
