"""Pegasus descriptions of every usable video, for every configured prompt, and the chapters among them.

Not partitioned: there is one Pegasus model, and per-object partitions would make one run per video. The
description table itself is the ledger (see `description_run`): a run calls only for what is new or whose
prompt changed.
"""

import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
from pydantic import Field

from assets_defs import keys
from assets_defs.inventory.media_inventory import media_inventory
from assets_defs.metadata import column_schema, preview
from assets_defs.pegasus.description_run import DescriptionReport, DescriptionRun, chapter_rows
from resources.pegasus.prompts import load_prompts
from resources.providers.bedrock.pegasus import BedrockPegasus
from resources.storage.lake import Lake
from resources.tables.description_tables import (
    CHAPTER_SCHEMA,
    DESCRIPTION_SCHEMA,
    chapter_table,
    description_table,
)


class DescriptionConfig(dg.Config):
    max_concurrent_calls: int = Field(
        default=4,
        description="Pegasus calls in flight at once in this run (Bedrock's concurrent-request quota for "
        "Pegasus, L-CABD464E, is per account and region).",
    )
    prompts_file: str | None = Field(
        default=None,
        description="JSON/YAML prompts file (else the pegasus resource's prompts_file, bound from "
        "MEDIAEMBED_PEGASUS_PROMPTS; else the defaults).",
    )
    commit_every: int = Field(
        default=24,
        ge=1,
        description="Commit the answers every this many calls: a run stopped mid-way keeps what it was "
        "answered (and paid for), and the next run asks only for the rest.",
    )


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
        prompts = load_prompts(config.prompts_file or pegasus.prompts_file)
        transport = pegasus.chosen_transport()
    except ValueError as problem:  # a settings mistake: one line, no traceback
        raise dg.Failure(description=str(problem), allow_retries=False) from None
    describe = DescriptionRun(
        pegasus, lake, prompts, transport, config.max_concurrent_calls, config.commit_every
    )
    videos, tasks = describe.plan()
    calls = sum(t.skip_reason is None for t in tasks)
    context.log.info(
        f"{len(videos)} videos x {len(prompts)} prompts: {calls} calls, {len(tasks) - calls} skipped"
    )
    return materialize_result(describe.run(videos, tasks))


def materialize_result(report: DescriptionReport) -> dg.MaterializeResult:
    """The run's outcome as the asset's metadata and its two checks."""
    current, truncated = report.current, report.truncated
    skipped, failed = report.with_status("skipped"), report.with_status("failed")
    calls, described = len(report.calls), report.described
    snippet = current.assign(text=current["text"].map(_short))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(current),
            "dagster/column_schema": column_schema(DESCRIPTION_SCHEMA),
            "calls_made": calls,
            "described": described,
            "failed": len(failed),
            "skipped": len(skipped),
            "skipped_reasons": dg.MetadataValue.json(dict(Counter(skipped["reason"].tolist()))),
            "length_truncated": len(truncated),
            "estimated_cost_usd": round(report.cost_usd, 4),
            "table_version": -1 if report.table_version is None else report.table_version,
            "prompts": dg.MetadataValue.json({p.prompt_id: p.prompt_hash for p in report.prompts}),
            "location": dg.MetadataValue.path(report.table_uri),
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
                passed=not calls or described > 0,
                metadata={"calls_made": calls, "described": described, "failed": len(failed)},
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
    context: dg.AssetExecutionContext, config: DescriptionConfig, pegasus: BedrockPegasus, lake: Lake
) -> dg.MaterializeResult:
    """The chapters of every video, one row each with start and end seconds, in the Delta table
    tables/pegasus_chapters: exploded from the ok answers of the chapters prompts (kind `chapters`)."""
    try:
        prompts = load_prompts(config.prompts_file or pegasus.prompts_file)  # which prompts are chapters
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
