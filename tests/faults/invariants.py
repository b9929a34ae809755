"""The invariants every fault case keeps, checked from the provider's own records, the lake and the index.

- objects seen = embedded + failed with a reason + skipped with a reason (no object unaccounted for);
- jobs the provider created = unique (object, model, attempt), each in the ledger under the provider's ARN,
  and a new attempt only after the previous one ended failed or lost: nothing billed twice;
- 0 duplicate segment ids, in the index and in the current version of the embedding table;
- index rows = current embedding-table rows, segment id for segment id;
- 0 jobs open once the drain is over (ledger and provider), and every Dagster run finished;
- the marker credentials found in 0 places: Dagster storage, lake, index, worker logs, stdout/stderr.

A case may check several scopes (sets of media URIs) of one world: `Snapshot` reads everything once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from assets_defs.inventory.media_inventory import read_inventory
from emulators.bedrock_runtime.server import Invocation
from harness.run_slots import LIVE_RUN_STATUSES
from resources.index.segment_index import SegmentIndex
from resources.providers.marengo_models import MARENGO_3_0, marengo_model
from resources.storage.s3_storage import S3Storage
from resources.tables.embedding_table import EmbeddingTable

if TYPE_CHECKING:
    from tests.faults.world import FaultWorld

MARKER = "fault-marker-9c1e7d4b-never-written"
MAX_ATTEMPTS = 2  # InvocationConfig's defaults, which every case runs with
MAX_LOST = 3
ENDED_FAILED = {"failed", "lost"}
MODEL = marengo_model(MARENGO_3_0.key)


@dataclass(frozen=True)
class Counts:
    seen: int
    embedded: int
    failed: int
    skipped: int
    jobs_created: int
    duplicates: int
    index_rows: int
    table_rows: int
    open_past_limit: int
    secrets_found: int

    @staticmethod
    def headers() -> list[str]:
        return ["case", *(f.name.replace("_", " ") for f in fields(Counts))]

    def row(self, case: str) -> list[object]:
        return [case, *astuple(self)]


@dataclass(frozen=True)
class Snapshot:
    """Everything the invariants look at, read once after the drain."""

    inventory: pd.DataFrame
    jobs: pd.DataFrame  # the ledger's state per client token
    submissions: pd.DataFrame
    provider: list[Invocation]  # the emulator's own records
    index: pa.Table  # segment_id, media_uri of every indexed row
    secrets: list[str]
    live_runs: list[str]

    @staticmethod
    def take(world: FaultWorld) -> Snapshot:
        index = SegmentIndex(uri=str(world.index_dir), storage=S3Storage(region_name=world.env["AWS_REGION"]))
        table = index.open_table(MODEL)
        columns = pa.schema([("segment_id", pa.string()), ("media_uri", pa.string())])
        rows = columns.empty_table() if table is None else table.to_arrow().select(columns.names)
        live = world.instance.get_runs(filters=dg.RunsFilter(statuses=LIVE_RUN_STATUSES))
        return Snapshot(
            inventory=read_inventory(world.lake),
            jobs=world.jobs(),
            submissions=world.ledger().submissions(),
            provider=world.provider_jobs(),
            index=rows,
            secrets=secret_places(world),
            live_runs=[f"{r.run_id} {r.status.value}" for r in live],
        )


def _verdict(jobs: pd.DataFrame) -> tuple[str, str]:
    """(embedded | failed | skipped | open | unaccounted, reason) of one object version from its jobs."""
    if (jobs["status"] == "in_progress").any():
        return "open", ""
    for status, verdict in (
        ("completed", "embedded"),
        ("no_content", "skipped"),
        ("rejected", "skipped"),
        ("failed", "failed"),
        ("lost", "failed"),
    ):
        ended = jobs[jobs["status"] == status]
        if not ended.empty:
            reason = ended.sort_values("recorded_at")["reason"].iloc[-1]
            return verdict, "" if pd.isna(reason) else str(reason)
    return "unaccounted", ""


def classify(snap: Snapshot, scope: set[str] | None) -> dict[str, tuple[str, str]]:
    """media URI -> (verdict, reason) for every object the inventory saw (in scope)."""
    inventory = snap.inventory
    if scope is not None:
        inventory = inventory[inventory["media_uri"].isin(scope)]
    verdicts: dict[str, tuple[str, str]] = {}
    for row in inventory.to_dict("records"):
        uri = str(row["media_uri"])
        if row["status"] != "ok":
            verdicts[uri] = ("skipped", str(row["reason"] or ""))
            continue
        mine = snap.jobs[(snap.jobs["media_uri"] == uri) & (snap.jobs["etag"] == row["etag"])]
        verdict, reason = _verdict(mine)
        if verdict == "failed":
            failures, losses = (mine["status"] == "failed").sum(), (mine["status"] == "lost").sum()
            assert failures >= MAX_ATTEMPTS or losses >= MAX_LOST, f"{uri} failed with attempts left"
        verdicts[uri] = (verdict, reason)
    return verdicts


def _in_scope(job: Invocation, scope: set[str] | None) -> bool:
    return scope is None or (job.request.media is not None and job.request.media.uri in scope)


def check_billing(snap: Snapshot, scope: set[str] | None) -> int:
    """Jobs the provider created: each once per (object, model, attempt), each known to the ledger."""
    provider = [job for job in snap.provider if _in_scope(job, scope)]
    submissions = snap.submissions
    if scope is not None:
        submissions = submissions[submissions["media_uri"].isin(scope)]
    by_token = submissions.drop_duplicates("client_token").set_index("client_token")
    assert submissions["invocation_id"].nunique() == len(by_token), "a token recorded with two ARNs"
    tokens = {job.client_request_token for job in provider}
    assert tokens == set(by_token.index), (
        f"provider jobs unknown to the ledger: {sorted(tokens - set(by_token.index))[:3]}; "
        f"ledger jobs unknown to the provider: {sorted(set(by_token.index) - tokens)[:3]}"
    )
    for job in provider:
        assert by_token.loc[job.client_request_token, "invocation_id"] == job.arn, job.client_request_token
    unique = set(by_token[["media_uri", "etag", "model_key", "attempt"]].itertuples(index=False))
    assert len(provider) == len(unique), f"{len(provider)} jobs billed for {len(unique)} (object, attempt)s"

    status = snap.jobs.set_index("client_token")["status"]
    for (uri, _etag, _model), group in by_token.groupby(["media_uri", "etag", "model_key"]):
        attempts = sorted(group["attempt"])
        assert attempts == list(range(1, len(attempts) + 1)), f"{uri}: attempts {attempts}"
        earlier = group[group["attempt"] < attempts[-1]].index
        assert set(status.loc[earlier]) <= ENDED_FAILED, f"{uri}: a new attempt before the last one ended"
    return len(provider)


def check_tables(
    world: FaultWorld,
    snap: Snapshot,
    verdicts: dict[str, tuple[str, str]],
    scope: set[str] | None,
    held: set[str],
) -> tuple[int, int, int]:
    """(duplicate segment ids, index rows, current table rows); the index holds exactly the current table:
    the latest embedding of every embedded object in scope, and of the objects held by the removal guard."""
    done = snap.jobs[snap.jobs["status"] == "completed"].sort_values("recorded_at")
    latest = done.drop_duplicates("media_uri", keep="last").set_index("media_uri")
    current = sorted({uri for uri, (verdict, _) in verdicts.items() if verdict == "embedded"} | held)
    table_ids: list[str] = []
    table = EmbeddingTable(world.lake, MODEL).read(columns=["media_uri", "segment_id", "invocation_id"])
    if scope is not None:
        table = table.filter(pc.is_in(table.column("media_uri"), pa.array(sorted(scope | held), pa.string())))
    in_table = set(table.column("media_uri").to_pylist())
    assert in_table == set(current), (
        f"current rows of objects with no current embedding: {sorted(in_table - set(current))[:3]}; "
        f"embedded objects without rows: {sorted(set(current) - in_table)[:3]}"
    )
    for uri in current:
        rows = table.filter(pc.equal(table.column("media_uri"), uri))
        invocations = set(rows.column("invocation_id").to_pylist())
        assert invocations == {latest.loc[uri, "invocation_id"]}, f"{uri}: table rows of {invocations}"
        assert rows.num_rows == latest.loc[uri, "segments"], f"{uri}: table rows differ from the ledger"
        table_ids += rows.column("segment_id").to_pylist()

    rows = snap.index
    if scope is not None:
        rows = rows.filter(pc.is_in(rows.column("media_uri"), pa.array(sorted(scope | held), pa.string())))
    index_ids = rows.column("segment_id").to_pylist()
    duplicates = len(index_ids) - len(set(index_ids)) + len(table_ids) - len(set(table_ids))
    assert set(index_ids) == set(table_ids), (
        f"indexed without a current table row: {sorted(set(index_ids) - set(table_ids))[:3]}, "
        f"current table rows not indexed: {sorted(set(table_ids) - set(index_ids))[:3]}"
    )
    return duplicates, len(index_ids), len(table_ids)


def _files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file()) if root.exists() else iter(())


def secret_places(world: FaultWorld) -> list[str]:
    """Every place the marker credentials were found: the files of Dagster storage, lake, index and worker
    logs, this case's objects in S3 (media and async outputs), and what the test process printed."""
    marker = MARKER.encode()
    found = []
    for label, root in (
        ("dagster storage", world.home),
        ("lake", world.lake_dir),
        ("index", world.index_dir),
    ):
        found += [f"{label}: {p}" for p in _files(root) if marker in p.read_bytes()]
    found += [f"worker log: {p}" for p in world.logs if p.exists() and marker in p.read_bytes()]
    client = world.s3.client()
    for bucket, prefix in ((world.output_bucket, world.output_prefix + "/"), (world.bucket, "")):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if marker in client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read():
                    found.append(f"s3://{bucket}/{obj['Key']}")
    found += [f"stdout/stderr #{i}" for i, text in enumerate(world.printed) if MARKER in text]
    return found


def check_invariants(world: FaultWorld, snap: Snapshot, scope: set[str] | None, held: set[str]) -> Counts:
    verdicts = classify(snap, scope)
    without_end = {u: v for u, (v, reason) in verdicts.items() if v in ("open", "unaccounted")}
    without_reason = [u for u, (v, reason) in verdicts.items() if v in ("failed", "skipped") and not reason]
    assert not without_end and not without_reason, f"no end: {without_end}; no reason: {without_reason}"
    tally = {
        v: sum(verdict == v for verdict, _ in verdicts.values()) for v in ("embedded", "failed", "skipped")
    }
    assert len(verdicts) == sum(tally.values())

    created = check_billing(snap, scope)
    duplicates, index_rows, table_rows = check_tables(world, snap, verdicts, scope, held)
    assert duplicates == 0, f"{duplicates} duplicate segment ids"
    assert index_rows == table_rows

    jobs = snap.jobs if scope is None else snap.jobs[snap.jobs["media_uri"].isin(scope)]
    still_open = int((jobs["status"] == "in_progress").sum())
    still_open += sum(job.status == "InProgress" for job in snap.provider if _in_scope(job, scope))
    assert still_open == 0, f"{still_open} jobs still open after the drain"
    assert not snap.live_runs, f"runs that never finished: {snap.live_runs}"
    assert not snap.secrets, f"the marker credentials were found in: {snap.secrets}"
    return Counts(
        seen=len(verdicts),
        embedded=tally["embedded"],
        failed=tally["failed"],
        skipped=tally["skipped"],
        jobs_created=created,
        duplicates=duplicates,
        index_rows=index_rows,
        table_rows=table_rows,
        open_past_limit=still_open,
        secrets_found=len(snap.secrets),
    )
