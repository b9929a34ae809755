"""One Pegasus description run: plan what is new, call Pegasus for it, commit the answers in batches.

Plain code: the asset `pegasus/descriptions` builds a `DescriptionRun`, runs it, and turns its
`DescriptionReport` into a materialization. The description table itself is the ledger: a (object, ETag,
prompt id, prompt hash, model) described once is never sent again, so a run calls only for what is new or
whose prompt changed.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from assets_defs.inventory.media_inventory import read_inventory
from resources.pegasus.prompts import PegasusPrompt
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
from resources.tables.description_tables import DESCRIPTION_SCHEMA, description_table

TRUNCATED = "length"
DONE = "ok"
# A complete answer that is not the JSON its prompt asked for: paid for, so never asked again with the
# same prompt (a changed prompt is a new hash, and asks again).
UNPARSED = "unparsed"
ANSWERED = (DONE, UNPARSED)


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


@dataclass(frozen=True)
class DescriptionReport:
    """What one run planned, called and committed, and the description table after it."""

    videos: int
    prompts: Sequence[PegasusPrompt]
    tasks: list[DescribeTask]
    made: pd.DataFrame  # the rows this run wrote, one per task
    current: pd.DataFrame  # the whole description table after the run
    cost_usd: float
    table_version: int | None
    table_uri: str

    @property
    def calls(self) -> list[DescribeTask]:
        return [t for t in self.tasks if t.skip_reason is None]

    @property
    def called(self) -> pd.DataFrame:
        return self.made.iloc[[i for i, t in enumerate(self.tasks) if t.skip_reason is None]]

    @property
    def described(self) -> int:
        return int((self.called["status"] == DONE).sum())

    def with_status(self, status: str) -> pd.DataFrame:
        return self.made[self.made["status"] == status]

    @property
    def truncated(self) -> pd.DataFrame:
        return self.current[self.current["finish_reason"] == TRUNCATED]


@dataclass
class DescriptionRun:
    """Describe every usable video of the lake's inventory with `prompts`, through `pegasus`."""

    pegasus: BedrockPegasus
    lake: Lake
    prompts: Sequence[PegasusPrompt]
    transport: Transport
    max_concurrent_calls: int
    commit_every: int

    def plan(self) -> tuple[list[Video], list[DescribeTask]]:
        videos = usable_videos(read_inventory(self.lake))
        buckets = self.pegasus.unusable_buckets({S3Uri.parse(v.media_uri).bucket for v in videos})
        existing = description_table(self.lake).read().to_pylist()
        model_id = self.pegasus.base_model_id
        return videos, plan_descriptions(videos, self.prompts, existing, model_id, self.transport, buckets)

    def run(self, videos: list[Video], tasks: list[DescribeTask]) -> DescriptionReport:
        # Answers are paid for: they are committed every `commit_every` tasks, so a run stopped mid-way (a
        # kill, the max runtime) keeps what it was answered and the next run asks only for the rest.
        table = description_table(self.lake)
        existing = table.read().to_pylist()
        model_id = self.pegasus.base_model_id
        etags, prompt_ids = {v.media_id: v.etag for v in videos}, {p.prompt_id for p in self.prompts}
        outcomes: list[tuple[PegasusAnswer | None, str | None]] = []
        new: list[dict[str, Any]] = []
        version: int | None = None
        step = max(1, self.commit_every)
        with ThreadPoolExecutor(max(1, self.max_concurrent_calls)) as pool:
            for start in range(0, max(len(tasks), 1), step):
                chunk = tasks[start : start + step]
                answered = list(pool.map(lambda t: _run(self.pegasus, t), chunk))
                now = datetime.now(UTC)
                batch = [
                    description_row(t, model_id, a, e, now) for t, (a, e) in zip(chunk, answered, strict=True)
                ]
                rows, touched = next_rows(existing, batch, etags, prompt_ids)
                committed = table.replace(pa.Table.from_pylist(rows, schema=DESCRIPTION_SCHEMA), touched)
                version = committed or version
                existing = table.read().to_pylist()
                outcomes += answered
                new += batch
        cost = sum(
            estimated_cost_usd(t.video.duration_sec, a.output_tokens)
            for t, (a, _) in zip(tasks, outcomes, strict=True)
            if a is not None
        )
        return DescriptionReport(
            videos=len(videos),
            prompts=self.prompts,
            tasks=tasks,
            made=pd.DataFrame(new, columns=DESCRIPTION_SCHEMA.names),
            current=pd.DataFrame(table.read().to_pylist(), columns=DESCRIPTION_SCHEMA.names),
            cost_usd=cost,
            table_version=version,
            table_uri=table.uri,
        )
