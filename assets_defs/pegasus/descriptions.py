"""Pegasus descriptions of every usable video, for every configured prompt, and the chapters among them.

Not partitioned: there is one Pegasus model, and per-object partitions would make one run per video. The
description table itself is the ledger: a (object, ETag, prompt id, prompt hash, model) described once is
never sent again, so a run calls only for what is new or whose prompt changed.
"""

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from assets_defs import keys
from assets_defs.inventory.media_inventory import media_inventory, read_inventory
from assets_defs.metadata import column_schema, preview
from resources.pegasus.prompts import PegasusPrompt, load_prompts
from resources.providers.bedrock.pegasus import BedrockPegasus, PegasusCallError
from resources.providers.bedrock.pegasus_bodies import (
    PegasusAnswer,
    PegasusOutputError,
    Transport,
    estimated_cost_usd,
    limit_problem,
    parse_chapters,
    parse_json_message,
)
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Uri
from resources.tables.description_tables import (
    CHAPTER_SCHEMA,
    DESCRIPTION_SCHEMA,
    chapter_table,
    description_table,
)

TRUNCATED = "length"
DONE = "ok"
# A complete answer that is not the JSON its prompt asked for: paid for, so never asked again with the
# same prompt (a changed prompt is a new hash, and asks again).
UNPARSED = "unparsed"
ANSWERED = (DONE, UNPARSED)


class DescriptionConfig(dg.Config):
    max_concurrent_calls: int = Field(
        default=4,
        description="Pegasus calls in flight at once in this run (Bedrock's concurrent-request quota for "
        "Pegasus, L-CABD464E, is per account and region).",
    )
    prompts_file: str | None = Field(
        default=None, description="JSON/YAML prompts file (else MEDIAEMBED_PEGASUS_PROMPTS, else defaults)."
    )
    commit_every: int = Field(
        default=24,
        ge=1,
        description="Commit the answers every this many calls: a run stopped mid-way keeps what it was "
        "answered (and paid for), and the next run asks only for the rest.",
    )


@dataclass(frozen=True)
class Video:
    media_uri: str
    media_id: str
    etag: str
    size_bytes: int | None
    duration_sec: float | None


@dataclass(frozen=True)
class DescribeTask:
    video: Video
    prompt: PegasusPrompt
    skip_reason: str | None = None


def usable_videos(inventory: pd.DataFrame) -> list[Video]:
    ok = inventory[(inventory["status"] == "ok") & (inventory["modality"] == "video")]
    return [
        Video(
            r["media_uri"],
            r["media_id"],
            r["etag"],
            None if pd.isna(r["size_bytes"]) else int(r["size_bytes"]),
            None if pd.isna(r["duration_sec"]) else float(r["duration_sec"]),
        )
        for r in ok.to_dict("records")
    ]


def plan_descriptions(
    videos: Sequence[Video],
    prompts: Sequence[PegasusPrompt],
    existing: Iterable[dict[str, Any]],
    model_id: str,
    transport: Transport,
    bucket_problems: Mapping[str, str] | None = None,
) -> list[DescribeTask]:
    """What this run does for each video and prompt: nothing when the table already holds an ok row of
    this (object, ETag, prompt id, prompt hash, model); a skip, without a call, when a documented limit
    or the bucket's region refuses it (unless the same skip is recorded already); otherwise a call."""
    refused = bucket_problems or {}
    rows = {(r["media_id"], r["etag"], r["prompt_id"], r["prompt_hash"], r["model_id"]): r for r in existing}
    tasks = []
    for video in videos:
        for prompt in prompts:
            row = rows.get((video.media_id, video.etag, prompt.prompt_id, prompt.prompt_hash, model_id))
            if row is not None and row["status"] in ANSWERED:
                continue
            problem = limit_problem(
                video.duration_sec, video.size_bytes, transport, prompt.prompt
            ) or refused.get(S3Uri.parse(video.media_uri).bucket)
            if (
                problem is not None
                and row is not None
                and (row["status"], row["reason"]) == ("skipped", problem)
            ):
                continue
            tasks.append(DescribeTask(video, prompt, problem))
    return tasks


def description_row(
    task: DescribeTask,
    model_id: str,
    answer: PegasusAnswer | None,
    error: str | None,
    now: datetime,
) -> dict[str, Any]:
    """The table row of one task's outcome: skipped (the limit), failed (the call's reason, or an answer
    that is not the JSON asked for), or ok; a `length` finish stays ok with its reason, and is flagged."""
    row: dict[str, Any] = {
        "media_uri": task.video.media_uri,
        "media_id": task.video.media_id,
        "etag": task.video.etag,
        "prompt_id": task.prompt.prompt_id,
        "prompt_hash": task.prompt.prompt_hash,
        "model_id": model_id,
        "text": None,
        "parsed_json": None,
        "finish_reason": None,
        "input_tokens": None,
        "output_tokens": None,
        "status": "failed",
        "reason": error,
        "created_at": now,
    }
    if task.skip_reason is not None:
        return {**row, "status": "skipped", "reason": task.skip_reason}
    if answer is None:
        return row
    row.update(
        text=answer.message,
        finish_reason=answer.finish_reason,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        status=DONE,
        reason=None,
    )
    cut = answer.finish_reason == TRUNCATED
    if cut:
        row["reason"] = (
            f"answer cut at max_output_tokens={task.prompt.max_output_tokens} (finishReason length): "
            "raise it for this prompt"
        )
    if task.prompt.kind != "text":
        try:
            parsed = parse_json_message(answer.message)
            if task.prompt.kind == "chapters":
                parse_chapters(parsed)
            row["parsed_json"] = json.dumps(parsed)
        except PegasusOutputError as problem:
            if not cut:  # a complete answer that is not the JSON asked for: kept, not asked again
                row.update(status=UNPARSED, reason=f"{problem}: change the prompt or its schema to ask again")
    return row


def next_rows(
    existing: Iterable[dict[str, Any]],
    new: Sequence[dict[str, Any]],
    current_etags: dict[str, str],
    prompt_ids: set[str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of every object this run changes, and those objects' ids: this run's rows, plus the kept
    rows of the same objects. Rows of an object gone from the inventory, of an older ETag or of a prompt no
    longer configured leave the current table (its history keeps them)."""

    def kept(r: dict[str, Any]) -> bool:
        return current_etags.get(r["media_id"]) == r["etag"] and r["prompt_id"] in prompt_ids

    old = list(existing)
    replaced = {(r["media_id"], r["prompt_id"]) for r in new}
    touched = {r["media_id"] for r in new} | {r["media_id"] for r in old if not kept(r)}
    rows = [
        r
        for r in old
        if r["media_id"] in touched and kept(r) and (r["media_id"], r["prompt_id"]) not in replaced
    ]
    return rows + list(new), sorted(touched)


def chapter_rows(descriptions: Iterable[dict[str, Any]], chapter_prompts: set[str]) -> list[dict[str, Any]]:
    """Every chapter of every ok chapters answer, one row each, with its start and end seconds."""
    rows = []
    for d in descriptions:
        if d["prompt_id"] not in chapter_prompts or d["status"] != DONE or not d["parsed_json"]:
            continue
        try:
            chapters = parse_chapters(json.loads(d["parsed_json"]))
        except (PegasusOutputError, ValueError):
            continue  # an answer stored under another kind of prompt: not chapters, nothing to explode
        for i, chapter in enumerate(chapters):
            rows.append(
                {
                    "media_uri": d["media_uri"],
                    "media_id": d["media_id"],
                    "etag": d["etag"],
                    "prompt_id": d["prompt_id"],
                    "model_id": d["model_id"],
                    "chapter_index": i,
                    "start_sec": chapter.start_sec,
                    "end_sec": chapter.end_sec,
                    "title": chapter.title,
                    "summary": chapter.summary,
                }
            )
    return rows


def _run(pegasus: BedrockPegasus, task: DescribeTask) -> tuple[PegasusAnswer | None, str | None]:
    if task.skip_reason is not None:
        return None, None
    try:
        return pegasus.describe(task.video.media_uri, task.video.etag, task.prompt), None
    except PegasusCallError as error:
        return None, str(error)


def _canonical(rows: Iterable[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True, default=str) for r in rows)


def _short(text: Any, limit: int = 80) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@dg.asset(
    key=keys.PEGASUS_DESCRIPTIONS,
    deps=[media_inventory],
    group_name="pegasus",
    kinds={"bedrock", "deltalake"},
    pool="pegasus",
    check_specs=[
        dg.AssetCheckSpec(
            "no_truncated_descriptions",
            asset=keys.PEGASUS_DESCRIPTIONS,
            description="Warns about descriptions Pegasus cut at max_output_tokens (finishReason length): "
            "raise that prompt's max_output_tokens to describe them whole.",
        ),
        dg.AssetCheckSpec(
            "calls_accepted",
            asset=keys.PEGASUS_DESCRIPTIONS,
            description="Fails when this run called Pegasus and every call failed: a set-up problem "
            "(model access, region, credentials) rather than one bad video.",
        ),
    ],
)
def pegasus_descriptions(
    context: dg.AssetExecutionContext, config: DescriptionConfig, pegasus: BedrockPegasus, lake: Lake
) -> dg.MaterializeResult:
    """A Pegasus description of every usable video for every configured prompt (summary, chapters,
    keywords by default), in the Delta table tables/pegasus_descriptions.

    Only what is new is sent: an unchanged object, prompt and model is never called again, and a changed
    prompt re-describes that prompt alone. Videos over Pegasus's limits are recorded as skipped with the
    reason and no call; a failed call is recorded as failed and tried again next run.
    """
    try:
        prompts = load_prompts(config.prompts_file)
        transport = pegasus.chosen_transport()
    except ValueError as problem:  # a settings mistake: one line, no traceback
        raise dg.Failure(description=str(problem), allow_retries=False) from None
    model_id = pegasus.base_model_id
    table = description_table(lake)
    existing = table.read().to_pylist()
    videos = usable_videos(read_inventory(lake))
    buckets = pegasus.unusable_buckets({S3Uri.parse(v.media_uri).bucket for v in videos})
    tasks = plan_descriptions(videos, prompts, existing, model_id, transport, buckets)
    calls = [t for t in tasks if t.skip_reason is None]
    context.log.info(
        f"{len(videos)} videos x {len(prompts)} prompts: {len(calls)} calls, "
        f"{len(tasks) - len(calls)} skipped"
    )

    # Answers are paid for: they are committed every `commit_every` tasks, so a run stopped mid-way (a kill,
    # the max runtime) keeps what it was answered and the next run asks only for the rest.
    etags, prompt_ids = {v.media_id: v.etag for v in videos}, {p.prompt_id for p in prompts}
    outcomes: list[tuple[PegasusAnswer | None, str | None]] = []
    new: list[dict[str, Any]] = []
    version: int | None = None
    step = max(1, config.commit_every)
    with ThreadPoolExecutor(max(1, config.max_concurrent_calls)) as pool:
        for start in range(0, max(len(tasks), 1), step):
            chunk = tasks[start : start + step]
            answered = list(pool.map(lambda t: _run(pegasus, t), chunk))
            now = datetime.now(UTC)
            batch = [
                description_row(t, model_id, a, e, now) for t, (a, e) in zip(chunk, answered, strict=True)
            ]
            rows, touched = next_rows(existing, batch, etags, prompt_ids)
            version = table.replace(pa.Table.from_pylist(rows, schema=DESCRIPTION_SCHEMA), touched) or version
            existing = table.read().to_pylist()
            outcomes += answered
            new += batch

    current = pd.DataFrame(table.read().to_pylist(), columns=DESCRIPTION_SCHEMA.names)
    made = pd.DataFrame(new, columns=DESCRIPTION_SCHEMA.names)
    called = made.iloc[[i for i, t in enumerate(tasks) if t.skip_reason is None]]
    truncated = current[current["finish_reason"] == TRUNCATED]
    skipped = made[made["status"] == "skipped"]
    failed = made[made["status"] == "failed"]
    ok_calls = int((called["status"] == DONE).sum())
    cost = sum(
        estimated_cost_usd(t.video.duration_sec, a.output_tokens)
        for t, (a, _) in zip(tasks, outcomes, strict=True)
        if a is not None
    )
    snippet = current.assign(text=current["text"].map(_short))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(current),
            "dagster/column_schema": column_schema(DESCRIPTION_SCHEMA),
            "calls_made": len(calls),
            "described": ok_calls,
            "failed": len(failed),
            "skipped": len(skipped),
            "skipped_reasons": dg.MetadataValue.json(dict(Counter(skipped["reason"].tolist()))),
            "length_truncated": len(truncated),
            "estimated_cost_usd": round(cost, 4),
            "table_version": -1 if version is None else version,
            "prompts": dg.MetadataValue.json({p.prompt_id: p.prompt_hash for p in prompts}),
            "location": dg.MetadataValue.path(table.uri),
            "failed_preview": preview(failed[["media_uri", "prompt_id", "reason"]]),
            "preview": preview(snippet[["media_uri", "prompt_id", "status", "finish_reason", "text"]]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="no_truncated_descriptions",
                passed=truncated.empty,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "length_truncated": len(truncated),
                    "descriptions": preview(truncated[["media_uri", "prompt_id", "reason"]]),
                },
            ),
            dg.AssetCheckResult(
                check_name="calls_accepted",
                passed=not calls or ok_calls > 0,
                metadata={"calls_made": len(calls), "described": ok_calls, "failed": len(failed)},
            ),
        ],
    )


@dg.asset(
    key=keys.PEGASUS_CHAPTERS,
    deps=[pegasus_descriptions],
    group_name="pegasus",
    kinds={"deltalake"},
)
def pegasus_chapters(
    context: dg.AssetExecutionContext, config: DescriptionConfig, lake: Lake
) -> dg.MaterializeResult:
    """The chapters of every video, one row each with start and end seconds, in the Delta table
    tables/pegasus_chapters: exploded from the ok answers of the chapters prompts (kind `chapters`)."""
    try:
        prompts = load_prompts(config.prompts_file)
    except ValueError as problem:
        raise dg.Failure(description=str(problem), allow_retries=False) from None
    chapter_prompts = {p.prompt_id for p in prompts if p.kind == "chapters"}
    descriptions = description_table(lake).read().to_pylist()
    rows = chapter_rows(descriptions, chapter_prompts)
    table = chapter_table(lake)
    old = table.read().to_pylist()
    changed = _canonical(old) != _canonical(rows)
    media_ids = sorted({r["media_id"] for r in old} | {r["media_id"] for r in rows})
    version = table.replace(pa.Table.from_pylist(rows, schema=CHAPTER_SCHEMA), media_ids) if changed else None
    frame = pd.DataFrame(rows, columns=CHAPTER_SCHEMA.names)
    context.log.info(f"{len(frame)} chapters of {frame['media_id'].nunique()} videos")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "dagster/column_schema": column_schema(CHAPTER_SCHEMA),
            "videos": int(frame["media_id"].nunique()),
            "table_version": -1 if version is None else version,
            "location": dg.MetadataValue.path(table.uri),
            "preview": preview(frame[["media_uri", "start_sec", "end_sec", "title"]]),
        }
    )
