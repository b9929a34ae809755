"""The index plan: which objects are rewritten, repaired, removed, or kept until a removal is confirmed."""

from pathlib import Path

import pyarrow as pa

from assets_defs.search.index_plan import ExpectedObject, RemovalPolicy, held_message, plan_index_update
from resources.index.segment_index import IndexedObject, SegmentIndex
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.storage.s3_storage import S3Storage
from resources.tables.segment_schema import media_id
from tests.unit.test_segment_index import object_segments, unit

MODEL = MARENGO_3_0.key


def held(uri: str, rows: int = 3, distinct: int = 3, invs: tuple[str, ...] = ("inv-a",), models=(MODEL,)):
    return IndexedObject(uri, rows, distinct, frozenset(invs), frozenset(models))


def want(uri: str, inv: str = "inv-a", segments: int | None = 3) -> ExpectedObject:
    return ExpectedObject(uri, inv, segments)


def uris(n: int) -> list[str]:
    return [f"s3://m/{i}.mp4" for i in range(n)]


def test_each_kind_of_wrong_rows_is_repaired_and_only_those_objects() -> None:
    names = ["ok", "new", "reembedded", "dup", "mixed", "foreign_rows", "short"]
    u = {n: f"s3://m/{n}.mp4" for n in names}
    expected = {media_id(u[n]): want(u[n], "inv-b" if n == "reembedded" else "inv-a") for n in names}
    indexed = {
        media_id(u["ok"]): held(u["ok"]),
        media_id(u["reembedded"]): held(u["reembedded"], 5, 5),  # older invocation, other segment count
        media_id(u["dup"]): held(u["dup"], rows=6),
        media_id(u["mixed"]): held(u["mixed"], invs=("inv-a", "inv-old")),
        media_id(u["foreign_rows"]): held(u["foreign_rows"], models=(MODEL, MARENGO_2_7.key)),
        media_id(u["short"]): held(u["short"], 2, 2),
    }
    plan = plan_index_update(expected, indexed, MODEL, RemovalPolicy())
    assert plan.new == [media_id(u["new"])]
    assert plan.updated == [media_id(u["reembedded"])]
    assert {expected[m].media_uri: why for m, why in plan.repaired.items()} == {
        u["dup"]: "3 duplicate rows",
        u["mixed"]: "rows of 2 invocations",
        u["foreign_rows"]: "rows of marengo-2.7",
        u["short"]: "2 segments indexed, 3 embedded",
    }
    assert media_id(u["ok"]) not in plan.rewrite and len(plan.rewrite) == 6
    assert plan.delete == [] and plan.held == []


def test_normal_churn_is_removed_but_a_shrunk_listing_waits_for_confirmation() -> None:
    indexed = {media_id(x): held(x) for x in uris(10)}
    two_gone = {media_id(x): want(x) for x in uris(10)[2:]}
    churn = plan_index_update(two_gone, indexed, MODEL, RemovalPolicy())
    assert sorted(churn.removed) == sorted(media_id(x) for x in uris(2)) and churn.held == []

    one_left = {media_id(x): want(x) for x in uris(1)}
    kept = plan_index_update(one_left, indexed, MODEL, RemovalPolicy())
    assert kept.removed == [] and sorted(kept.held) == sorted(media_id(x) for x in uris(10)[1:])
    message = held_message(kept, [indexed[m].media_uri for m in kept.held], RemovalPolicy())
    assert message.startswith("9 of 10 indexed objects (90%) are no longer listed, more than the 20%")
    assert "confirm_removals: true" in message and message.endswith("s3://m/5.mp4 and 4 more")

    everything = plan_index_update(one_left, indexed, MODEL, RemovalPolicy(confirm_all=True))
    assert len(everything.removed) == 9 and everything.held == []
    looser = plan_index_update(one_left, indexed, MODEL, RemovalPolicy(max_share=0.9))
    assert len(looser.removed) == 9


def test_confirmed_uris_go_and_the_rest_still_follow_the_share() -> None:
    indexed = {media_id(x): held(x) for x in uris(10)}
    one_left = {media_id(x): want(x) for x in uris(1)}
    policy = RemovalPolicy(confirmed_uris=frozenset(uris(10)[1:8]))
    plan = plan_index_update(one_left, indexed, MODEL, policy)
    # 7 confirmed go; the 2 unconfirmed are 20% of 10 indexed objects: normal churn, so they go too.
    assert len(plan.removed) == 9 and plan.held == []
    policy = RemovalPolicy(confirmed_uris=frozenset(uris(10)[1:4]))
    plan = plan_index_update(one_left, indexed, MODEL, policy)
    assert sorted(plan.removed) == sorted(media_id(x) for x in uris(10)[1:4]) and len(plan.held) == 6


def test_rows_of_another_model_only_always_go_and_held_copies_are_deduplicated() -> None:
    indexed = {media_id(x): held(x) for x in uris(4)}
    stray = "s3://m/stray.mp4"
    indexed[media_id(stray)] = held(stray, models=(MARENGO_2_7.key,))
    indexed[media_id(uris(4)[3])] = held(uris(4)[3], rows=6)
    plan = plan_index_update({media_id(uris(4)[0]): want(uris(4)[0])}, indexed, MODEL, RemovalPolicy())
    assert plan.foreign == [media_id(stray)] and plan.delete == [media_id(stray)]
    assert plan.indexed_objects == 4 and len(plan.held) == 3
    assert plan.deduplicate == [media_id(uris(4)[3])]


def test_the_index_audit_sees_duplicates_and_removes_only_surplus_copies(tmp_path: Path) -> None:
    index = SegmentIndex(uri=str(tmp_path), storage=S3Storage(region_name="us-east-1"))
    a, b = object_segments("s3://m/a.mp4", "e", unit(4)), object_segments("s3://m/b.mp4", "e", unit(2))
    index.replace_media(
        MARENGO_3_0, pa.concat_tables([a, b]), [media_id("s3://m/a.mp4"), media_id("s3://m/b.mp4")]
    )
    table = index.open_table(MARENGO_3_0)
    table.add(a)  # what a second writer without the lock did: every row of `a` once more
    table.add(a.slice(0, 1))
    audit = index.audit(MARENGO_3_0)
    assert audit[media_id("s3://m/a.mp4")] == IndexedObject(
        "s3://m/a.mp4", 9, 4, frozenset({"inv-s3://m/a.mp4-e"}), frozenset({MODEL})
    )
    assert audit[media_id("s3://m/b.mp4")].duplicate_rows == 0
    assert index.duplicate_segment_ids(MARENGO_3_0) == 5
    assert index.remove_duplicate_rows(MARENGO_3_0, [media_id("s3://m/b.mp4")]) == 0
    assert index.remove_duplicate_rows(MARENGO_3_0, [media_id("s3://m/a.mp4")]) == 5
    assert (index.state(MARENGO_3_0).rows, index.duplicate_segment_ids(MARENGO_3_0)) == (6, 0)

    table.add(b)
    state = index.replace_media(MARENGO_3_0, b, [media_id("s3://m/b.mp4")])  # a rewrite drops copies too
    assert (state.rows, index.duplicate_segment_ids(MARENGO_3_0)) == (6, 0)
