"""The parts of `mediaembed ingest` that need no stack: the summary, the one-line errors, the progress."""

import io
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from mediaembed import ingest
from mediaembed.ingest import (
    IngestError,
    check_lake_prefix,
    explain_aws_error,
    missing_settings,
    prepare_instance_home,
    settings_error,
)
from mediaembed.ingest_summary import summarize
from mediaembed.progress import Progress
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions, Submission
from resources.providers.marengo_models import MARENGO_3_0
from resources.providers.model_routes import route
from resources.storage.lake import Lake
from resources.storage.s3_storage import S3Storage
from resources.tables.submission_ledger import Outcome, OutcomeStatus, SubmissionLedger

PREFIX = "s3://mine/"


def inventory_row(
    key: str, modality: str | None, seconds: float | None, status: str = "ok", reason: str = ""
):
    return {
        "media_uri": PREFIX + key,
        "etag": f"etag-{key}",
        "modality": modality,
        "duration_sec": seconds,
        "status": status,
        "reason": reason or None,
    }


def job(key: str, modality: str, attempt: int = 1) -> EmbeddingJob:
    return EmbeddingJob(PREFIX + key, f"etag-{key}", modality, MARENGO_3_0, EmbeddingOptions(), attempt)  # type: ignore[arg-type]


def submit(ledger: SubmissionLedger, j: EmbeddingJob, seconds: float | None, run_id: str) -> Submission:
    s = Submission(j, f"arn:{j.client_token}", None, datetime.now(UTC))
    ledger.record_submissions([s], {j.media_uri: seconds}, run_id)
    return s


def end(
    ledger: SubmissionLedger, s: Submission | EmbeddingJob, status: OutcomeStatus, reason: str = ""
) -> None:
    j = s.job if isinstance(s, Submission) else s
    arn = s.invocation_id if isinstance(s, Submission) else None
    outcome = Outcome(
        j.job_key, j.client_token, j.model.key, j.media_uri, j.etag, arn, status, reason or None
    )
    ledger.record_outcomes([outcome], "ingest-run")


@pytest.fixture
def ledger(tmp_path: Path) -> SubmissionLedger:
    return SubmissionLedger(Lake(root=str(tmp_path), storage=S3Storage(region_name="us-east-1")), "bedrock")


def test_every_object_is_classified_once_with_its_reason(ledger: SubmissionLedger) -> None:
    inventory = pd.DataFrame(
        [
            inventory_row("clip.mp4", "video", 12.0),
            inventory_row("retried.mp4", "video", 4.0),
            inventory_row("pic.png", "image", None),
            inventory_row("bad.mp4", "video", 30.0),
            inventory_row("running.wav", "audio", 8.0),
            inventory_row("huge.mp4", "video", 99999.0),
            inventory_row("silent.wav", "audio", 3.0),
            inventory_row("waits.wav", "audio", 3.0),
            inventory_row("notes.txt", None, None, "unsupported", "not media"),
            inventory_row("other/outside.mp4", "video", 1.0),
        ]
    )
    inventory.loc[9, "media_uri"] = "s3://elsewhere/outside.mp4"  # not under the prefix: not counted
    end(ledger, submit(ledger, job("clip.mp4", "video"), 12.0, "earlier-run"), "completed")
    end(ledger, submit(ledger, job("retried.mp4", "video"), 4.0, "run-1"), "failed", "boom")
    end(ledger, submit(ledger, job("retried.mp4", "video", 2), 4.0, "run-2"), "completed")
    end(ledger, submit(ledger, job("pic.png", "image"), None, "run-1"), "completed")
    end(ledger, submit(ledger, job("bad.mp4", "video"), 30.0, "run-1"), "failed", "cannot decode")
    end(ledger, submit(ledger, job("bad.mp4", "video", 2), 30.0, "run-2"), "failed", "cannot decode")
    submit(ledger, job("running.wav", "audio"), 8.0, "run-1")
    end(ledger, job("huge.mp4", "video"), "rejected", "exceeds the limit")
    end(ledger, submit(ledger, job("silent.wav", "audio"), 3.0, "run-1"), "no_content", "no segments")

    summary = summarize(PREFIX, inventory, ledger.jobs(MARENGO_3_0.key), MARENGO_3_0, {"run-1", "run-2"})

    assert summary.seen == 9
    assert sorted(summary.embedded) == [PREFIX + k for k in ("clip.mp4", "pic.png", "retried.mp4")]
    assert summary.skipped == [
        (PREFIX + "huge.mp4", "refused, not billed: exceeds the limit"),
        (PREFIX + "silent.wav", "nothing to embed: the job completed with no segments"),
        (PREFIX + "notes.txt", "unsupported: not media"),
    ]
    assert summary.failed == [(PREFIX + "bad.mp4", "cannot decode (2 attempts)")]
    assert summary.in_flight == [PREFIX + "running.wav"]
    assert [uri for uri, _ in summary.waiting] == [PREFIX + "waits.wav"]
    assert summary.media_seconds == pytest.approx(16.0)  # clip + retried; the image has no seconds
    # This command's invocations only (clip.mp4 was submitted by an earlier run): 7, billed as submitted.
    assert (summary.submitted, summary.submitted_completed, summary.submitted_failed) == (7, 3, 3)
    prices = route("bedrock", MARENGO_3_0.key)
    assert prices.usd_per_video_second and prices.usd_per_audio_second and prices.usd_per_image
    expected = prices.usd_per_video_second * (4 + 4 + 30 + 30) + prices.usd_per_image
    expected += prices.usd_per_audio_second * (8 + 3)
    assert summary.estimated_cost_usd == pytest.approx(expected)
    # `mediaembed ingest` passes the marengo resource's routes: MEDIAEMBED_PRICES prices its summary.
    doubled = "bedrock/marengo-3.0:video=0.0014,audio=0.00028,image=0.0002"
    priced = summarize(
        PREFIX,
        inventory,
        ledger.jobs(MARENGO_3_0.key),
        MARENGO_3_0,
        {"run-1", "run-2"},
        route_of=lambda provider: route(provider, MARENGO_3_0.key, doubled),
    )
    assert priced.estimated_cost_usd == pytest.approx(2 * expected)
    lines = summary.lines()
    assert lines[0] == f"{PREFIX}: 9 seen, 3 embedded, 3 skipped, 1 failed, 1 still in flight, 1 waiting"
    assert f"  failed {PREFIX}bad.mp4: cannot decode (2 attempts)" in lines
    assert f"  in flight {PREFIX}running.wav: Bedrock has not finished it yet" in lines
    assert lines[-1].startswith("16.0 media seconds embedded (marengo-3.0); 7 invocations submitted now")


def test_a_changed_object_is_judged_by_its_current_content(ledger: SubmissionLedger) -> None:
    end(ledger, submit(ledger, job("clip.mp4", "video"), 12.0, "run-0"), "completed")
    changed = pd.DataFrame([{**inventory_row("clip.mp4", "video", 12.0), "etag": "new-etag"}])
    summary = summarize(PREFIX, changed, ledger.jobs(MARENGO_3_0.key), MARENGO_3_0, set())
    assert summary.embedded == [] and [u for u, _ in summary.waiting] == [PREFIX + "clip.mp4"]


def test_a_long_list_is_cut_with_a_count(ledger: SubmissionLedger) -> None:
    inventory = pd.DataFrame([inventory_row(f"{n}.txt", None, None, "unsupported", "x") for n in range(25)])
    lines = summarize(PREFIX, inventory, ledger.jobs(), MARENGO_3_0, set()).lines()
    assert sum(line.startswith("  skipped ") for line in lines) == 20
    assert "  ... and 5 more skipped (the ledger lists them)" in lines


def client_error(code: str, operation: str, message: str = "msg") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_aws_errors_become_one_line_naming_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:1")
    denied = explain_aws_error(client_error("AccessDenied", "ListObjectsV2", "Access Denied"), "s3://b/p/")
    assert denied == (
        "access denied to s3://b/p/ (ListObjectsV2: Access Denied): grant the credentials in use the "
        "permissions listed in docs/deployment.md"
    )
    missing = explain_aws_error(client_error("NoSuchBucket", "ListObjectsV2"), "s3://b/p/")
    assert missing is not None and missing.startswith("bucket 'b' does not exist (s3://b/p/)")
    unreachable = EndpointConnectionError(endpoint_url="http://127.0.0.1:1/b?list-type=2")
    assert explain_aws_error(unreachable, "s3://b/") == (
        "cannot reach s3://b/ at http://127.0.0.1:1: start the emulators (`mediaembed emulate`) or unset "
        "AWS_ENDPOINT_URL_S3 to use AWS"
    )
    # Raised inside a Dagster run, the AWS error is the cause: it is explained all the same.
    try:
        try:
            raise NoCredentialsError()
        except NoCredentialsError as cause:
            raise RuntimeError("step failed") from cause
    except RuntimeError as wrapped:
        assert (explain_aws_error(wrapped, "s3://b/") or "").startswith("no AWS credentials found")
    assert explain_aws_error(ValueError("not AWS"), "s3://b/") is None
    for message in (denied, missing):
        assert "\n" not in (message or "")


def test_missing_settings_are_named_with_what_they_are() -> None:
    env = {"AWS_REGION": "us-east-1", "MEDIAEMBED_LAKE_URI": " ", "MEDIAEMBED_INDEX_URI": "/i"}
    missing = missing_settings(env)
    assert missing == ["MEDIAEMBED_ASYNC_OUTPUT_URI", "MEDIAEMBED_LAKE_URI", "DAGSTER_HOME"]
    error = settings_error(missing)
    assert str(error).startswith(
        "set MEDIAEMBED_ASYNC_OUTPUT_URI (an s3:// prefix Bedrock writes results to);"
    )
    assert error.exit_code == 2


def test_a_lake_of_other_media_is_not_overwritten_silently() -> None:
    inventory = pd.DataFrame([inventory_row("a.mp4", "video", 1.0)])
    check_lake_prefix(inventory, PREFIX, "/lake")  # the same media: fine
    with pytest.raises(IngestError, match=r"indexes other media \(1 objects such as s3://mine/a.mp4\)"):
        check_lake_prefix(inventory, "s3://theirs/", "/lake")


def test_instance_home_gets_pool_limits_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert (
        prepare_instance_home(home)
        == f"wrote {home / 'dagster.yaml'} (pool limits and run monitoring; edit it freely)"
    )
    (home / "dagster.yaml").write_text("# mine\n")
    assert prepare_instance_home(home) is None
    assert (home / "dagster.yaml").read_text() == "# mine\n"
    with pytest.raises(IngestError, match="absolute"):
        prepare_instance_home(Path("relative/home"))


def test_progress_is_plain_lines_off_a_terminal_and_one_line_on_it() -> None:
    plain = io.StringIO()
    progress = Progress(plain, tty=False)
    progress.update(0, 2, "0 embedded")
    progress.update(0, 2, "0 embedded")  # unchanged: not repeated
    progress.update(2, 2, "2 embedded")
    lines = plain.getvalue().splitlines()
    assert [line.rsplit(" (", 1)[0] for line in lines] == [
        "embedding: 0/2 jobs finished, 0 embedded",
        "embedding: 2/2 jobs finished, 2 embedded",
    ]
    assert "\r" not in plain.getvalue()

    terminal = io.StringIO()
    progress = Progress(terminal, tty=True)
    progress.update(1, 2, "1 embedded")
    progress.say("a message")
    progress.update(2, 2, "2 embedded")
    progress.close()
    text = terminal.getvalue()
    assert text.count("\n") == 2  # the message and the final state of the bar: everything else redraws
    assert "a message\n" in text and "2/2 jobs" in text.splitlines()[-1]


def test_ctrl_c_before_the_runs_are_followed_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def pressed_ctrl_c(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(ingest, "_ingest", pressed_ctrl_c)  # wherever in loading, preflight or launching
    err = io.StringIO()

    code = ingest.run_ingest("s3://mine/", None, out=io.StringIO(), err=err, tty=False)

    assert code == ingest.EXIT_INTERRUPTED
    [line] = err.getvalue().splitlines()
    assert line.startswith("mediaembed ingest: interrupted; run the same command again")
