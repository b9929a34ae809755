"""The Pegasus description assets: only what is new is called, limits skip without a call, one failure
stops nothing else, and chapters land with their times. Bedrock is a typed fake that records each call."""

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from botocore.exceptions import ClientError
from pydantic import Field

from assets_defs.inventory.media_inventory import INVENTORY_SCHEMA
from assets_defs.pegasus.description_run import (
    DescribeTask,
    Video,
    description_row,
    next_rows,
    plan_descriptions,
)
from assets_defs.pegasus.descriptions import pegasus_chapters, pegasus_descriptions
from resources.pegasus.prompts import DEFAULT_PROMPTS, PegasusPrompt
from resources.providers.bedrock.pegasus import BedrockPegasus
from resources.providers.bedrock.pegasus_bodies import PEGASUS_MODEL_ID, PegasusAnswer
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.description_tables import chapter_table, description_table
from resources.tables.inventory_table import InventoryTable
from resources.tables.segment_schema import media_id

MB = 10**6  # decimal, as the documented limits
SHORT = ["s3://media/a.mp4", "s3://media/b.mp4"]
LONG = "s3://media/long.mp4"
BIG = "s3://media/big.mp4"
CHAPTERS = [
    {"start_sec": 0.0, "end_sec": 2.0, "title": "Red circle", "summary": "A red circle on black."},
    {"start_sec": 2.0, "end_sec": 5.0, "title": "Blue square", "summary": "A blue square."},
]
_LOCK = threading.Lock()


class RecordingPegasus(BedrockPegasus):
    """Answers like Pegasus for the three prompt shapes and appends every call to `log` (a JSON-lines
    file: Dagster copies resources, a file is what every copy shares)."""

    log: str
    failing: list[str] = Field(default_factory=list)
    truncating: list[str] = Field(default_factory=list)
    caller: str | None = "210987654321"
    bucket_regions: dict[str, str] = Field(default_factory=dict)
    crash_after: int | None = None  # calls answered before the process "dies" (an error nothing catches)

    def bucket_region(self, bucket: str) -> str | None:
        return self.bucket_regions.get(bucket)

    def caller_account(self) -> tuple[str | None, str | None]:
        return (self.caller, None) if self.caller else (None, "STS GetCallerIdentity failed: no credentials")

    def invoke(self, model_id: str, body: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        source = body["mediaSource"]
        uri = source.get("s3Location", {}).get("uri", "")  # base64 calls carry no URI
        if self.crash_after is not None and len(self.calls()) >= self.crash_after:
            raise SystemError("the worker died")
        with _LOCK, open(self.log, "a") as file:
            file.write(json.dumps({"model_id": model_id, "body": body}) + "\n")
        if uri in self.failing:
            raise ClientError(
                {"Error": {"Code": "ValidationException", "Message": f"Unable to read {uri}"}}, "InvokeModel"
            )
        schema = body.get("responseFormat", {}).get("jsonSchema")
        if schema is None:
            message: str = f"A red circle, then a blue square ({uri})."
        elif schema["items"]["type"] == "object":
            message = json.dumps(CHAPTERS)
        else:
            message = json.dumps(["red", "circle"])
        reason = "stop"
        if uri in self.truncating:
            message, reason = message[: len(message) // 2], "length"
        return {"message": message, "finishReason": reason}, {"x-amzn-bedrock-input-token-count": "100"}

    def read_media(self, media_uri: str, etag: str) -> bytes:
        return f"video bytes of {media_uri}".encode()

    def calls(self) -> list[dict[str, Any]]:
        path = Path(self.log)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def inventory_row(uri: str, duration: float, size: int, modality: str = "video") -> dict[str, Any]:
    return {
        "media_uri": uri,
        "media_id": media_id(uri),
        "key": uri.rsplit("/", 1)[-1],
        "etag": f"etag-{uri}",
        "size_bytes": size,
        "modality": modality,
        "duration_sec": duration,
        "status": "ok",
    }


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))
    rows = [
        *(inventory_row(u, 5.0, 5 * MB) for u in SHORT),
        inventory_row(LONG, 3700.0, 50 * MB),
        inventory_row(BIG, 600.0, 40 * MB),
        inventory_row("s3://media/still.png", 0.0, MB, modality="image"),
    ]
    InventoryTable(lake).replace_all(pa.Table.from_pylist(rows, schema=INVENTORY_SCHEMA))
    return lake


def fake(tmp_path: Path, **kwargs: Any) -> RecordingPegasus:
    return RecordingPegasus(
        region_name="us-east-1",
        storage=S3Storage(region_name="us-east-1"),
        log=str(tmp_path / "calls.jsonl"),
        **kwargs,
    )


def materialize(
    pegasus: BedrockPegasus, lake: Lake, prompts_file: str | None = None
) -> dg.ExecuteInProcessResult:
    config = {"prompts_file": prompts_file}
    result = dg.materialize(
        [pegasus_descriptions, pegasus_chapters],
        resources={"pegasus": pegasus, "lake": lake},
        run_config={
            "ops": {"pegasus__descriptions": {"config": config}, "pegasus__chapters": {"config": config}}
        },
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return result


def rows_by_key(lake: Lake) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["media_uri"], r["prompt_id"]): r for r in description_table(lake).read().to_pylist()}


def test_first_run_describes_each_video_once_per_prompt_and_skips_the_over_long_one(
    tmp_path: Path, lake: Lake
) -> None:
    pegasus = fake(tmp_path, transport="s3", bucket_owner="123456789012")
    materialize(pegasus, lake)
    calls = pegasus.calls()
    called = sorted((c["body"]["mediaSource"]["s3Location"]["uri"], c["body"]["inputPrompt"]) for c in calls)
    assert called == sorted((u, p.prompt) for u in [*SHORT, BIG] for p in DEFAULT_PROMPTS)
    assert {c["model_id"] for c in calls} == {f"us.{PEGASUS_MODEL_ID}"}
    assert all(c["body"]["mediaSource"]["s3Location"]["bucketOwner"] == "123456789012" for c in calls)
    rows = rows_by_key(lake)
    assert len(rows) == 4 * 3  # three usable videos and the long one, three prompts each; no image
    for prompt in DEFAULT_PROMPTS:
        long_row = rows[(LONG, prompt.prompt_id)]
        assert long_row["status"] == "skipped" and "1-hour limit" in long_row["reason"]
        assert long_row["text"] is None
    ok = rows[(SHORT[0], "keywords")]
    assert ok["status"] == "ok" and json.loads(ok["parsed_json"]) == ["red", "circle"]
    assert ok["model_id"] == PEGASUS_MODEL_ID and ok["input_tokens"] == 100 and ok["output_tokens"] is None
    assert rows[(SHORT[0], "summary")]["parsed_json"] is None
    chapters = chapter_table(lake).read().to_pylist()
    a = sorted(
        (c["chapter_index"], c["start_sec"], c["end_sec"], c["title"])
        for c in chapters
        if c["media_uri"] == SHORT[0]
    )
    assert a == [(0, 0.0, 2.0, "Red circle"), (1, 2.0, 5.0, "Blue square")]
    assert {c["media_uri"] for c in chapters} == {*SHORT, BIG}


def test_an_unchanged_run_calls_nothing_and_a_changed_prompt_re_describes_only_that_prompt(
    tmp_path: Path, lake: Lake
) -> None:
    pegasus = fake(tmp_path, transport="s3")
    materialize(pegasus, lake)
    first = len(pegasus.calls())
    before = rows_by_key(lake)
    version = description_table(lake).version()

    result = materialize(pegasus, lake)
    assert len(pegasus.calls()) == first, "an unchanged (ETag, prompt, model) is never called again"
    assert description_table(lake).version() == version, "nothing changed, so nothing is committed"
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["calls_made"].value == 0

    prompts = tmp_path / "prompts.json"
    prompts.write_text(
        json.dumps({"prompts": [{"id": "summary", "prompt": "One sentence about the video."}]})
    )
    materialize(pegasus, lake, str(prompts))
    new_calls = pegasus.calls()[first:]
    assert sorted(c["body"]["mediaSource"]["s3Location"]["uri"] for c in new_calls) == sorted([*SHORT, BIG])
    assert {c["body"]["inputPrompt"] for c in new_calls} == {"One sentence about the video."}
    after = rows_by_key(lake)
    assert after[(SHORT[0], "summary")]["prompt_hash"] != before[(SHORT[0], "summary")]["prompt_hash"]
    for key in [(SHORT[0], "chapters"), (SHORT[1], "keywords"), (LONG, "keywords")]:
        assert after[key]["created_at"] == before[key]["created_at"], key


def test_base64_over_36_mb_is_skipped_with_its_reason_and_no_call(tmp_path: Path, lake: Lake) -> None:
    pegasus = fake(tmp_path, transport="base64")
    result = materialize(pegasus, lake)
    calls = pegasus.calls()
    assert calls and all("base64String" in c["body"]["mediaSource"] for c in calls)
    sent = {c["body"]["mediaSource"]["base64String"] for c in calls}
    assert len(sent) == len(SHORT)  # the two short videos, inline; neither the big nor the long one
    rows = rows_by_key(lake)
    assert rows[(BIG, "summary")]["status"] == "skipped" and "36 MB" in rows[(BIG, "summary")]["reason"]
    assert "1-hour" in rows[(LONG, "chapters")]["reason"]
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["calls_made"].value == 6 and meta["skipped"].value == 6
    assert meta["estimated_cost_usd"].value == pytest.approx(6 * 5.0 * 0.00049, abs=1e-4)
    assert sum(meta["skipped_reasons"].value.values()) == 6


def test_the_bucket_owner_defaults_to_the_callers_account(tmp_path: Path, lake: Lake) -> None:
    pegasus = fake(tmp_path, transport="s3")
    materialize(pegasus, lake)
    assert {c["body"]["mediaSource"]["s3Location"]["bucketOwner"] for c in pegasus.calls()} == {
        "210987654321"
    }


def test_without_a_bucket_owner_nothing_is_sent_and_the_reason_says_what_to_set(
    tmp_path: Path, lake: Lake
) -> None:
    pegasus = fake(tmp_path, transport="s3", caller=None)
    result = materialize(pegasus, lake)
    assert pegasus.calls() == []
    reasons = {r["reason"] for r in rows_by_key(lake).values() if r["status"] == "failed"}
    assert len(reasons) == 1 and "set MEDIAEMBED_BUCKET_OWNER" in reasons.pop()
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "calls_accepted"]
    assert not check.passed


def test_videos_in_a_bucket_of_another_region_are_skipped_without_a_call(tmp_path: Path, lake: Lake) -> None:
    pegasus = fake(tmp_path, transport="s3", bucket_regions={"media": "eu-west-1"})
    materialize(pegasus, lake)
    assert pegasus.calls() == []
    row = rows_by_key(lake)[(SHORT[0], "summary")]
    assert row["status"] == "skipped" and "media bucket media is in eu-west-1" in row["reason"]
    inline = fake(tmp_path / "inline", transport="base64", bucket_regions={"media": "eu-west-1"})
    (tmp_path / "inline").mkdir()
    materialize(inline, lake)
    assert len(inline.calls()) == 2 * 3, "inline media have no region rule"


def test_one_failing_video_stops_nothing_else_and_is_retried_next_run(tmp_path: Path, lake: Lake) -> None:
    pegasus = fake(tmp_path, transport="s3", failing=[SHORT[0]])
    materialize(pegasus, lake)
    rows = rows_by_key(lake)
    assert rows[(SHORT[0], "summary")]["status"] == "failed"
    assert "ValidationException: Unable to read" in rows[(SHORT[0], "summary")]["reason"]
    assert rows[(SHORT[1], "summary")]["status"] == "ok"
    first = len(pegasus.calls())

    healed = fake(tmp_path, transport="s3")
    materialize(healed, lake)
    retried = healed.calls()[first:]
    assert sorted(c["body"]["mediaSource"]["s3Location"]["uri"] for c in retried) == [SHORT[0]] * 3
    assert rows_by_key(lake)[(SHORT[0], "summary")]["status"] == "ok"


def test_a_length_finish_is_kept_flagged_and_warned_about(tmp_path: Path, lake: Lake) -> None:
    pegasus = fake(tmp_path, transport="s3", truncating=[SHORT[1]])
    result = materialize(pegasus, lake)
    row = rows_by_key(lake)[(SHORT[1], "chapters")]
    assert (row["status"], row["finish_reason"], row["parsed_json"]) == ("ok", "length", None)
    assert "max_output_tokens=2048" in row["reason"]
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "no_truncated_descriptions"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["length_truncated"].value == 3
    assert all(c["media_uri"] != SHORT[1] for c in chapter_table(lake).read().to_pylist())
    calls = len(pegasus.calls())
    materialize(pegasus, lake)
    assert len(pegasus.calls()) == calls, "a truncated answer is kept, not asked again"


# --- the pure planning --------------------------------------------------------------------------------


VIDEO = Video("s3://m/v.mp4", media_id("s3://m/v.mp4"), "e1", 5 * MB, 10.0)
PROMPT = PegasusPrompt("summary", "Summarize")


def _row(
    video: Video, prompt: PegasusPrompt, status: str = "ok", reason: str | None = None
) -> dict[str, Any]:
    answer = PegasusAnswer("text", "stop") if status == "ok" else None
    task = DescribeTask(video, prompt, reason if status == "skipped" else None)
    return description_row(task, PEGASUS_MODEL_ID, answer, reason, datetime.now(UTC))


def test_planning_calls_what_is_new_changed_or_failed_and_nothing_else() -> None:
    changed = PegasusPrompt("summary", "Summarize briefly")
    done = [_row(VIDEO, PROMPT)]
    assert plan_descriptions([VIDEO], [PROMPT], done, PEGASUS_MODEL_ID, "s3") == []
    [task] = plan_descriptions([VIDEO], [changed], done, PEGASUS_MODEL_ID, "s3")
    assert task.prompt == changed and task.skip_reason is None
    new_etag = Video(VIDEO.media_uri, VIDEO.media_id, "e2", VIDEO.size_bytes, VIDEO.duration_sec)
    assert len(plan_descriptions([new_etag], [PROMPT], done, PEGASUS_MODEL_ID, "s3")) == 1
    assert len(plan_descriptions([VIDEO], [PROMPT], done, "other-model", "s3")) == 1
    failed = [_row(VIDEO, PROMPT, "failed", "ThrottlingException: slow down")]
    assert len(plan_descriptions([VIDEO], [PROMPT], failed, PEGASUS_MODEL_ID, "s3")) == 1


def test_a_prompt_over_2000_tokens_is_skipped_for_every_video_and_re_planned_once_shortened() -> None:
    long_prompt = PegasusPrompt("summary", "Describe every frame. " * 100)
    tasks = plan_descriptions([VIDEO], [long_prompt, PROMPT], [], PEGASUS_MODEL_ID, "s3")
    assert [(t.prompt.prompt_id, t.skip_reason is None) for t in tasks] == [
        ("summary", False),
        ("summary", True),
    ]
    assert "2000-token limit" in (tasks[0].skip_reason or "")


def test_a_skip_is_recorded_once_and_re_planned_when_its_reason_no_longer_holds() -> None:
    big = Video("s3://m/big.mp4", media_id("s3://m/big.mp4"), "e", 40 * MB, 10.0)
    [task] = plan_descriptions([big], [PROMPT], [], PEGASUS_MODEL_ID, "base64")
    assert task.skip_reason and "36 MB" in task.skip_reason
    recorded = [_row(big, PROMPT, "skipped", task.skip_reason)]
    assert plan_descriptions([big], [PROMPT], recorded, PEGASUS_MODEL_ID, "base64") == []
    [call] = plan_descriptions([big], [PROMPT], recorded, PEGASUS_MODEL_ID, "s3")
    assert call.skip_reason is None


def test_next_rows_replace_per_object_and_drop_old_etags_gone_objects_and_removed_prompts() -> None:
    keywords = PegasusPrompt("keywords", "Keywords", "json", {"type": "array"})
    gone = Video("s3://m/gone.mp4", media_id("s3://m/gone.mp4"), "e", 1, 1.0)
    old = [_row(VIDEO, PROMPT), _row(VIDEO, keywords), _row(gone, PROMPT)]
    new = [_row(VIDEO, PegasusPrompt("summary", "Summarize briefly"))]
    rows, touched = next_rows(old, new, {VIDEO.media_id: "e1"}, {"summary", "keywords"})
    assert touched == sorted([VIDEO.media_id, gone.media_id])
    assert sorted((r["media_uri"], r["prompt_id"]) for r in rows) == [
        (VIDEO.media_uri, "keywords"),
        (VIDEO.media_uri, "summary"),
    ]
    assert [r for r in rows if r["prompt_id"] == "summary"] == new
    rows, touched = next_rows(old[:2], [], {VIDEO.media_id: "e1"}, {"summary"})
    assert touched == [VIDEO.media_id] and [r["prompt_id"] for r in rows] == ["summary"]


def test_the_describe_schedule_waits_while_a_describe_run_is_going() -> None:
    from pipelines.definitions import defs
    from pipelines.schedules import describe_new_media_schedule

    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance) as context:
            assert isinstance(describe_new_media_schedule(context), dg.RunRequest)
        run = instance.add_run(
            dg.DagsterRun(
                job_name=defs.resolve_job_def("describe_media").name, status=dg.DagsterRunStatus.STARTED
            )
        )
        with dg.build_schedule_context(instance=instance) as context:
            skipped = describe_new_media_schedule(context)
        assert isinstance(skipped, dg.SkipReason) and run.run_id in str(skipped.skip_message)


def test_a_run_that_dies_mid_way_keeps_the_answers_it_committed_and_the_next_asks_only_the_rest(
    tmp_path: Path, lake: Lake
) -> None:
    dying = fake(tmp_path, transport="s3", bucket_owner="123456789012", crash_after=5)
    config = {"prompts_file": None, "commit_every": 3, "max_concurrent_calls": 1}
    died = dg.materialize(
        [pegasus_descriptions],
        resources={"pegasus": dying, "lake": lake},
        run_config={"ops": {"pegasus__descriptions": {"config": config}}},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not died.success
    kept = [r for r in rows_by_key(lake).values() if r["status"] == "ok"]
    assert len(kept) == 3, "the first commit's answers survive the crash"
    paid = len(dying.calls())
    healthy = fake(tmp_path, transport="s3", bucket_owner="123456789012")
    materialize(healthy, lake)
    after = [r for r in rows_by_key(lake).values() if r["status"] == "ok"]
    asked = [
        (c["body"]["mediaSource"]["s3Location"]["uri"], c["body"]["inputPrompt"])
        for c in healthy.calls()[paid:]
    ]
    assert len(asked) == len(after) - len(kept), "only what was not committed is asked again"
    assert len(set(asked)) == len(asked), "and each of those once"
