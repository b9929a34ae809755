"""`mediaembed ingest s3://bucket/prefix`: one command from a bucket of media to a searchable index.

It runs on Dagster's own engine, on the DAGSTER_HOME instance (mediaembed/engine.py): it submits an
`embed_new_media` run for the prefix to the instance's queue, and the daemon (the one serving the instance,
or one this command starts) does the rest as in any deployment: the invocation sensor hands finished jobs to
ingest runs and requests submission runs while objects wait (the in-flight quota, retries of failed jobs).
The command follows the run records and the ledger for its progress, and stops when nothing is queued,
running, in flight or due, or when the wait runs out, saying what is still in flight. The summary comes from
the inventory and the ledger, the same records the pipeline keeps.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import pandas as pd
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from assets_defs import keys
from resources.providers.embedding_jobs import EmbeddingJob, EmbeddingOptions
from resources.providers.errors import ProviderError
from resources.providers.marengo_models import MarengoModel
from resources.providers.model_routes import ModelRoute, describe_cost, route
from resources.storage.clock import REAL_CLOCK, Clock
from resources.storage.location import location

if TYPE_CHECKING:
    from mediaembed.engine import Engine
    from resources.storage.s3_storage import S3Uri

# What `mediaembed ingest` needs besides the prefix, and what each one is.
REQUIRED_SETTINGS: dict[str, str] = {
    "AWS_REGION": "the region of the model and the buckets",
    "MEDIAEMBED_ASYNC_OUTPUT_URI": "an s3:// prefix Bedrock writes results to",
    "MEDIAEMBED_LAKE_URI": "a directory or s3:// prefix for the tables and the ledger",
    "MEDIAEMBED_INDEX_URI": "a directory or s3:// prefix for the LanceDB index",
    "DAGSTER_HOME": "a directory for the run history the Dagster UI shows",
}
DEFAULT_TIMEOUT_SEC = 3600.0
FIRST_POLL_SEC = 0.5
MAX_POLL_SEC = 15.0
LISTED_PER_KIND = 20
EXIT_USAGE, EXIT_ERROR, EXIT_STILL_IN_FLIGHT, EXIT_INTERRUPTED = 2, 1, 3, 130
_SETTINGS_HINT = "see docs/your-own-media.md (locally: eval the export lines `mediaembed emulate` prints)"


class IngestError(Exception):
    """A problem a person fixes: the message is one line naming what to do."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- settings and the one-line errors ---------------------------------------------------------------------


def missing_settings(environ: Mapping[str, str]) -> list[str]:
    return [name for name in REQUIRED_SETTINGS if not environ.get(name, "").strip()]


def settings_error(missing: list[str]) -> IngestError:
    named = "; ".join(f"{name} ({REQUIRED_SETTINGS[name]})" for name in missing)
    return IngestError(f"set {named}: {_SETTINGS_HINT}", EXIT_USAGE)


def _endpoint_hint(variable: str) -> str:
    if os.environ.get(variable):
        return f"start the emulators (`mediaembed emulate`) or unset {variable} to use AWS"
    return "check the network and AWS_REGION"


def explain_aws_error(error: BaseException, subject: str) -> str | None:
    """One line for an AWS SDK failure about `subject` (a bucket, a prefix, Bedrock), or None if it is none.

    Looks through the exception's causes, so an error raised inside a Dagster run is explained the same.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        message = _explain_one(current, subject)
        if message:
            return message
        current = current.__cause__ or current.__context__
    return None


def _explain_one(error: BaseException, subject: str) -> str | None:
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: configure the standard chain (AWS_PROFILE, `aws configure sso`, "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    if isinstance(error, NoRegionError):
        return "no AWS region: set AWS_REGION to the region of the model and the buckets"
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError):
        parts = urlsplit(str(getattr(error, "kwargs", {}).get("endpoint_url", "")))
        endpoint = f"{parts.scheme}://{parts.netloc}" if parts.netloc else "its endpoint"
        variable = (
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME" if "bedrock" in subject.lower() else "AWS_ENDPOINT_URL_S3"
        )
        return f"cannot reach {subject} at {endpoint}: {_endpoint_hint(variable)}"
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = str(details.get("Code", ""))
        text = str(details.get("Message", "")).splitlines()[0] if details.get("Message") else code
        operation = error.operation_name
        if code in ("NoSuchBucket", "404", "NotFound") and operation in ("ListObjectsV2", "HeadBucket"):
            bucket = subject.removeprefix("s3://").split("/", 1)[0]
            return (
                f"bucket {bucket!r} does not exist ({subject}): check the name, or create it "
                f"(locally: `mediaembed emulate --bucket {bucket}`)"
            )
        if code in ("AccessDenied", "AccessDeniedException", "403", "Forbidden", "AllAccessDisabled"):
            return (
                f"access denied to {subject} ({operation}: {text}): grant the credentials in use the "
                "permissions listed in docs/deployment.md"
            )
        if code in (
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredToken",
            "ExpiredTokenException",
            "InvalidClientTokenId",
        ):
            return f"AWS rejected the credentials ({operation}: {code}): refresh or fix them, then run again"
        return f"{operation} on {subject} failed: {code}: {text}"
    if isinstance(error, BotoCoreError):
        return f"AWS SDK error for {subject}: {error}"
    return None


# --- the summary -------------------------------------------------------------------------------------------


@dataclass
class Summary:
    """What became of every object under the prefix, and of the invocations this command submitted."""

    prefix: str
    model_key: str
    seen: int = 0
    embedded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    in_flight: list[str] = field(default_factory=list)
    waiting: list[tuple[str, str]] = field(default_factory=list)
    media_seconds: float = 0.0
    submitted: int = 0
    submitted_completed: int = 0
    submitted_failed: int = 0
    estimated_cost_usd: float = 0.0
    priced: bool = True

    def lines(self) -> list[str]:
        head = (
            f"{self.prefix}: {self.seen} seen, {len(self.embedded)} embedded, {len(self.skipped)} skipped, "
            f"{len(self.failed)} failed"
        )
        if self.in_flight:
            head += f", {len(self.in_flight)} still in flight"
        if self.waiting:
            head += f", {len(self.waiting)} waiting"
        out = [head]
        running = [(uri, "Bedrock has not finished it yet") for uri in self.in_flight]
        kinds = [("skipped", self.skipped), ("failed", self.failed), ("in flight", running)]
        for label, items in [*kinds, ("waiting", self.waiting)]:
            out += [f"  {label} {uri}: {reason}" for uri, reason in items[:LISTED_PER_KIND]]
            if len(items) > LISTED_PER_KIND:
                out.append(f"  ... and {len(items) - LISTED_PER_KIND} more {label} (the ledger lists them)")
        out.append(
            f"{self.media_seconds:.1f} media seconds embedded ({self.model_key}); "
            f"{self.submitted} invocations submitted now ({self.submitted_completed} completed, "
            f"{self.submitted_failed} failed), "
            f"{describe_cost(self.estimated_cost_usd, self.priced, 'estimated cost')}"
        )
        return out


def _latest(rows: pd.DataFrame) -> dict[str, Any]:
    order = rows.assign(_when=rows["recorded_at"].fillna(rows["submitted_at"]))
    return dict(order.sort_values("_when", na_position="first").iloc[-1])


def summarize(
    prefix: str,
    inventory: pd.DataFrame,
    jobs: pd.DataFrame,
    model: MarengoModel,
    submit_run_ids: set[str],
    options: EmbeddingOptions | None = None,
    route_of: Callable[[str], ModelRoute] | None = None,
) -> Summary:
    """Classify each object under `prefix` from the inventory and the model's ledger jobs.

    embedded: a job for its current content completed; skipped (nothing billed): unusable, refused or
    over a limit, or nothing in it to embed; failed: the provider ran it and it failed, out of attempts;
    in flight; waiting: not submitted yet (the quota) or to be resubmitted (lost, changed meanwhile).
    """
    options = options or EmbeddingOptions()
    route_of = route_of or (lambda provider: route(provider, model.key))  # published prices
    summary = Summary(prefix, model.key)
    inventory = inventory[inventory["media_uri"].str.startswith(prefix)]
    summary.seen = len(inventory)
    by_key = {key: rows for key, rows in jobs.groupby("job_key")} if not jobs.empty else {}
    for row in inventory.to_dict("records"):
        uri = str(row["media_uri"])
        if row["status"] != "ok":
            summary.skipped.append((uri, f"{row['status']}: {row['reason']}"))
            continue
        key = EmbeddingJob(uri, str(row["etag"]), row["modality"], model, options).job_key
        rows = by_key.get(key)
        if rows is None:
            summary.waiting.append((uri, "not submitted yet (the in-flight quota was full)"))
            continue
        statuses = set(rows["status"])
        if "completed" in statuses:
            summary.embedded.append(uri)
            summary.media_seconds += 0.0 if pd.isna(row["duration_sec"]) else float(row["duration_sec"])
        elif "in_progress" in statuses:
            summary.in_flight.append(uri)
        elif "no_content" in statuses:
            summary.skipped.append((uri, "nothing to embed: the job completed with no segments"))
        else:
            latest = _latest(rows)
            reason = str(latest["reason"])
            if latest["status"] == "rejected":
                summary.skipped.append((uri, f"refused, not billed: {reason}"))
            elif latest["status"] == "failed":
                attempts = int((rows["status"] == "failed").sum())
                summary.failed.append((uri, f"{reason} ({attempts} attempts)"))
            else:
                summary.waiting.append((uri, f"{latest['status']}: {reason}; the next run resubmits it"))
    if not jobs.empty:
        ours = jobs[jobs["run_id"].isin(submit_run_ids) & jobs["invocation_id"].notna()]
        summary.submitted = len(ours)
        summary.submitted_completed = int(ours["status"].isin(["completed", "no_content"]).sum())
        summary.submitted_failed = int((ours["status"] == "failed").sum())
        summary.priced = all(route_of(p).priced for p in set(ours["provider"]))
        summary.estimated_cost_usd = float(
            sum(
                route_of(p).estimated_cost_usd(m, None if pd.isna(s) else float(s))
                for p, m, s in zip(ours["provider"], ours["modality"], ours["media_seconds"], strict=True)
            )
        )
    return summary


# --- progress ----------------------------------------------------------------------------------------------


class Progress:
    """One updating line on a terminal (tqdm), plain lines when the output is a file or a pipe; a plain
    line says how long since `started_at` on `clock` (default: since this was made)."""

    def __init__(
        self,
        stream: TextIO,
        tty: bool | None = None,
        clock: Clock = REAL_CLOCK,
        started_at: float | None = None,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._bar: Any = None
        self._last = ""
        self._clock = clock
        self._started = clock.monotonic() if started_at is None else started_at

    def say(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def update(self, finished: int, total: int, detail: str) -> None:
        if self.tty:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=total,
                    desc="embedding",
                    bar_format="{desc} {bar} {n_fmt}/{total_fmt} jobs [{elapsed}{postfix}]",
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=True,
                )
            self._bar.total = total
            self._bar.n = finished
            self._bar.set_postfix_str(detail, refresh=False)
            self._bar.refresh()
            return
        line = f"embedding: {finished}/{total} jobs finished, {detail}"
        if line != self._last:
            self._last = line
            elapsed = self._clock.monotonic() - self._started
            print(f"{line} ({elapsed:.0f} s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# --- the Dagster instance --------------------------------------------------------------------------------


INSTANCE_YAML = """\
# Written by `mediaembed ingest` because this DAGSTER_HOME had none; yours to edit, never rewritten.
# One submitter, one ingester and one LanceDB writer at a time (docs/deployment.md).
concurrency:
  pools:
    default_limit: 1
# For `dagster dev` on this home: fail runs whose worker died, and free the pool slots they held.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 120
  free_slots_after_run_end_seconds: 300
telemetry:
  enabled: false
"""


def prepare_instance_home(home: Path) -> str | None:
    """Create DAGSTER_HOME and, where it has no dagster.yaml, one with the pipeline's pool limits."""
    if not home.is_absolute():
        raise IngestError(f"DAGSTER_HOME must be an absolute path, not {home}: set it to one", EXIT_USAGE)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if config.exists():
        return None
    config.write_text(INSTANCE_YAML)
    return f"wrote {config} (pool limits and run monitoring; edit it freely)"


# --- the command ---------------------------------------------------------------------------------------


@dataclass
class _Follower:
    """Progress after each sensor tick: of the jobs this command submitted (and any it found in flight),
    how many have finished and how. Reads the ledger again only when the set in flight changed."""

    progress: Progress
    read_jobs: Callable[[], pd.DataFrame]
    submit_runs: set[str]
    tracked: set[str] = field(default_factory=set)
    last_seen: tuple[frozenset[str], int] | None = None
    counts: tuple[int, int, str] = (0, 0, "")

    def __call__(self, in_flight: pd.DataFrame) -> None:
        tokens = frozenset(in_flight["client_token"])
        self.tracked |= tokens
        if (tokens, len(self.submit_runs)) != self.last_seen:
            self.last_seen = (tokens, len(self.submit_runs))
            jobs = self.read_jobs()
            ours = jobs[
                jobs["invocation_id"].notna()
                & (jobs["run_id"].isin(self.submit_runs) | jobs["client_token"].isin(self.tracked))
            ]
            done = ours[ours["status"] != "in_progress"]
            embedded = int(done["status"].isin(["completed", "no_content"]).sum())
            failed = int((done["status"] == "failed").sum())
            detail = f"{embedded} embedded, {failed} failed, {len(tokens)} in flight"
            if len(done) > embedded + failed:
                detail += f", {len(done) - embedded - failed} to resubmit"
            self.counts = (len(done), len(ours), detail)
        self.progress.update(*self.counts)


def _preflight(prefix: S3Uri, marengo: Any, lake: Any, model: Any, environ: Mapping[str, str]) -> None:
    """Ask each store once, cheaply, so a wrong name, access or endpoint is one line before any run."""
    provider = marengo.serving(model)
    s3 = lake.storage.get_client()
    try:
        listing = s3.list_objects_v2(Bucket=prefix.bucket, Prefix=prefix.key, MaxKeys=1)
    except (ClientError, BotoCoreError) as error:
        raise IngestError(explain_aws_error(error, str(prefix)) or str(error)) from error
    if not listing.get("KeyCount") and not listing.get("Contents"):
        raise IngestError(f"no objects under {prefix}: upload media there, or check the prefix")
    stores = []
    if provider.provider_name == "bedrock":  # where Bedrock writes async results
        stores.append(("MEDIAEMBED_ASYNC_OUTPUT_URI", environ["MEDIAEMBED_ASYNC_OUTPUT_URI"]))
    stores += [(n, environ[n]) for n in ("MEDIAEMBED_LAKE_URI", "MEDIAEMBED_INDEX_URI")]
    for name, uri in stores:
        try:  # Bedrock's output is always on S3; the lake and the index may be local (no bucket)
            on_s3 = name == "MEDIAEMBED_ASYNC_OUTPUT_URI"
            bucket = type(prefix).parse(uri).bucket if on_s3 else location(uri).bucket()
        except ValueError as error:
            raise IngestError(f"{name}: {error}", EXIT_USAGE) from error
        if bucket is None:
            continue
        try:
            s3.head_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError) as error:
            message = explain_aws_error(error, f"s3://{bucket}/") or str(error)
            raise IngestError(f"{name}: {message}") from error
    try:
        provider.preflight()
    except ProviderError as error:
        raise IngestError(error.reason) from error
    except (ClientError, BotoCoreError) as error:
        raise IngestError(explain_aws_error(error, "Bedrock runtime") or str(error)) from error


def check_lake_prefix(inventory: pd.DataFrame, prefix: str, lake_uri: str) -> None:
    """Refuses (IngestError) to ingest `prefix` into a lake whose inventory holds media outside it:
    ingesting would drop those from the index."""
    others = inventory[~inventory["media_uri"].str.startswith(prefix)]
    if others.empty:
        return
    example = str(others["media_uri"].iloc[0])
    raise IngestError(
        f"the lake at {lake_uri} indexes other media ({len(others)} objects such as {example}), which "
        f"ingesting {prefix} would drop from the index: use another MEDIAEMBED_LAKE_URI and "
        "MEDIAEMBED_INDEX_URI for this prefix, or pass --replace",
        EXIT_USAGE,
    )


def in_flight_line(in_flight: pd.DataFrame, waited_sec: float) -> str:
    """'N invocations still in flight after S s: uri, uri, uri and M more'."""
    uris = sorted(set(in_flight["media_uri"]))
    shown = ", ".join(uris[:3]) + (f" and {len(uris) - 3} more" if len(uris) > 3 else "")
    return f"{len(in_flight)} invocations still in flight after {waited_sec:.0f} s: {shown}"


class StillInFlight(TimeoutError):
    """The wait for the provider ended before every invocation did; `in_flight` lists the open jobs."""

    def __init__(self, waited_sec: float, in_flight: pd.DataFrame) -> None:
        self.waited_sec = waited_sec
        self.in_flight = in_flight
        super().__init__(in_flight_line(in_flight, waited_sec))


def run_ingest(
    uri: str,
    model_key: str,
    timeout_sec: float = DEFAULT_TIMEOUT_SEC,
    replace: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
    tty: bool | None = None,
    *,
    started_at: float | None = None,
    clock: Clock = REAL_CLOCK,
) -> int:
    """The command: returns the exit code, and prints every problem as one line naming what to do.

    The wait of `timeout_sec` counts from `started_at` on `clock` (the command line passes the moment it
    started, before loading anything; by default: now), so start-up time is part of it.
    """
    started_at = clock.monotonic() if started_at is None else started_at
    out, err = out or sys.stdout, err or sys.stderr
    progress = Progress(err, tty, clock, started_at)
    try:
        return _ingest(uri, model_key, Wait(started_at, timeout_sec, clock), replace, out, progress)
    except IngestError as error:
        progress.close()
        print(f"mediaembed ingest: {error}", file=err)
        return error.exit_code
    except Exception as error:
        if os.environ.get("MEDIAEMBED_TRACEBACK"):
            raise
        progress.close()
        first_line = (str(error).strip().splitlines() or [""])[0]
        print(
            f"mediaembed ingest: unexpected {type(error).__name__}: {first_line}: runs so far are in the "
            "Dagster UI (`dagster dev` with this DAGSTER_HOME); MEDIAEMBED_TRACEBACK=1 shows the traceback",
            file=err,
        )
        return EXIT_ERROR
    finally:
        progress.close()


@dataclass(frozen=True)
class Wait:
    """How long the command may wait for the provider: `timeout_sec` from `started_at`, on `clock`."""

    started_at: float
    timeout_sec: float
    clock: Clock

    @property
    def deadline(self) -> float:
        return self.started_at + self.timeout_sec

    def remaining(self) -> float:
        return self.deadline - self.clock.monotonic()

    def waited(self) -> float:
        """Seconds since the command started: what a message about stopping names."""
        return self.clock.monotonic() - self.started_at


def _ingest(
    uri: str, model_key: str | None, wait: Wait, replace: bool, out: TextIO, progress: Progress
) -> int:
    missing = missing_settings(os.environ)
    if missing:
        raise settings_error(missing)

    # Imported here: loading the code location takes seconds, and a settings error should not wait for it.
    import dagster as dg

    from resources.storage.s3_storage import S3Uri

    try:
        prefix = S3Uri.parse(uri)
    except ValueError as error:
        raise IngestError(f"{error}: name the media as s3://bucket/prefix", EXIT_USAGE) from error

    from assets_defs.inventory.media_inventory import read_inventory
    from mediaembed.engine import EngineError, dagster_engine
    from pipelines.definitions import pipeline_resources
    from resources.providers.marengo_models import marengo_model

    resources = {"marengo": pipeline_resources["marengo"], "lake": pipeline_resources["lake"]}
    with dg.build_resources(resources) as built:
        serving = built.lake.serving_versions().current().serving
        model = marengo_model(model_key or serving)  # by default the version serving search
        try:
            _preflight(prefix, built.marengo, built.lake, model, os.environ)
        except ProviderError as error:  # the serving provider is not configured
            raise IngestError(error.reason) from error
        if not replace:
            check_lake_prefix(read_inventory(built.lake), str(prefix), os.environ["MEDIAEMBED_LAKE_URI"])
        home = Path(os.environ["DAGSTER_HOME"])
        wrote = prepare_instance_home(home)
        if wrote:
            progress.say(wrote)
        try:
            with dagster_engine(home) as engine:
                summary = _follow(engine, prefix, model, built, wait, out, progress)
        except EngineError as error:
            raise IngestError(str(error)) from error
        except (ClientError, BotoCoreError, dg.DagsterError) as error:
            message = explain_aws_error(error, str(prefix))
            if message is None:
                raise
            raise IngestError(message) from error
    if summary.embedded:
        flag = "" if model.key == serving else f" --model {model.key}"
        print(f'search it: mediaembed search "<what you are looking for>"{flag}', file=out)
    return 0


def _follow(
    engine: Engine,
    prefix: S3Uri,
    model: MarengoModel,
    built: Any,
    wait: Wait,
    out: TextIO,
    progress: Progress,
) -> Summary:
    """Submit `embed_new_media` for the prefix to the instance's queue, then follow the runs the daemon
    starts and the ledger until nothing is queued, running, in flight or due, or the wait ends."""
    from assets_defs.inventory.media_inventory import read_inventory
    from assets_defs.marengo.submission_stop import SubmissionStop
    from mediaembed.engine import ENDED_RUN_STATUSES
    from pipelines.jobs import SUBMITTING_JOBS
    from pipelines.run_statuses import ACTIVE_RUN_STATUSES
    from resources.tables.submission_ledger import SubmissionLedger

    lake = built.lake
    ledger = SubmissionLedger(lake, None)
    since = datetime.now(UTC)
    progress.say(f"listing and probing {prefix} ... (runs in the Dagster UI of {engine.home})")
    first = engine.launch(
        "embed_new_media",
        partition_key=model.key,
        run_config={"resources": {"media": {"config": {"uri": str(prefix)}}}},
        tags={"mediaembed/command": "ingest"},
    )
    runs = _Runs(engine.instance, model.key, since, SUBMITTING_JOBS, ACTIVE_RUN_STATUSES)
    follower = _Follower(progress, lambda: ledger.jobs(model.key), runs.submissions)

    def finish() -> Summary:
        progress.close()
        runs.refresh()
        summary = summarize(
            str(prefix), read_inventory(lake), ledger.jobs(model.key), model, runs.submissions
        )
        print("\n".join(summary.lines()), file=out, flush=True)
        return summary

    reported: set[str] = set()
    pause = FIRST_POLL_SEC
    try:
        while True:
            engine.keep_daemon()
            runs.refresh()
            for run_id, job_name, reason in runs.failed():
                finish()
                raise IngestError(
                    f"run {run_id} of {job_name} failed: {reason}: see it in the Dagster UI, fix that, then "
                    "run the same command again"
                )
            status = engine.status(first)
            if status not in ENDED_RUN_STATUSES:
                if wait.remaining() <= 0:
                    finish()
                    raise IngestError(
                        f"stopped waiting after {wait.waited():.0f} s: run {first} of embed_new_media is "
                        f"still {status.value}: see it in the Dagster UI; run the same command again later",
                        EXIT_STILL_IN_FLIGHT,
                    )
                _pause(wait, pause)
                pause = min(pause * 1.5, MAX_POLL_SEC)
                continue
            invocations = _report_submissions(engine.instance, model.key, runs, reported, progress)
            stop = SubmissionStop.of(invocations)
            reason = str(invocations.get("deferred_reason", "")).removeprefix("stopped: ")
            if stop is SubmissionStop.OVER_BUDGET:
                finish()
                raise IngestError(f"nothing submitted: {reason}")
            if stop is SubmissionStop.SETUP_REFUSED:
                finish()
                raise IngestError(f"{model.key} at its provider: {reason}: fix that, then run again")
            in_flight = ledger.in_progress(model.key)
            follower(in_flight)
            due = _due(engine.instance, model.key)
            if not runs.active and in_flight.empty and due is None:
                break
            if wait.remaining() <= 0:
                if in_flight.empty:
                    finish()
                    waits_for = due or "runs still queued or running"
                    raise IngestError(
                        f"stopped waiting after {wait.waited():.0f} s: {waits_for}: run the same command "
                        "again later",
                        EXIT_STILL_IN_FLIGHT,
                    )
                raise StillInFlight(wait.waited(), in_flight)
            _pause(wait, pause)
            pause = min(pause * 1.5, MAX_POLL_SEC)
    except StillInFlight as stop_waiting:
        finish()
        raise IngestError(
            f"stopped waiting: {in_flight_line(stop_waiting.in_flight, wait.waited())}; nothing is lost or "
            "billed twice: run the same command again to collect them (or let the daemon of `dagster dev` "
            "do it)",
            EXIT_STILL_IN_FLIGHT,
        ) from stop_waiting
    except KeyboardInterrupt:
        summary = finish()
        raise IngestError(
            f"interrupted with {len(summary.in_flight)} objects in flight at the provider (they finish and "
            "bill regardless): run the same command again to collect them",
            EXIT_INTERRUPTED,
        ) from None
    return finish()


def _pause(wait: Wait, pause: float) -> None:
    wait.clock.sleep(max(0.0, min(pause, wait.remaining())))


@dataclass
class _Runs:
    """The runs of one model's partition created since the command started, read again on `refresh`."""

    instance: Any
    model_key: str
    since: datetime
    submitting_jobs: tuple[str, ...]
    active_statuses: list[Any]
    submissions: set[str] = field(default_factory=set)
    active: list[Any] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)

    def refresh(self) -> None:
        import dagster as dg

        mine = dg.RunsFilter(tags={"dagster/partition": self.model_key}, created_after=self.since)
        self.records = list(self.instance.get_runs(mine, limit=1000))
        self.submissions.update(r.run_id for r in self.records if r.job_name in self.submitting_jobs)
        going = dg.RunsFilter(tags={"dagster/partition": self.model_key}, statuses=self.active_statuses)
        self.active = list(self.instance.get_runs(going, limit=50))

    def failed(self) -> list[tuple[str, str, str]]:
        """(run id, job, first line of why) of each run of ours that failed."""
        from mediaembed.engine import failure_reason

        return [
            (r.run_id, r.job_name, failure_reason(self.instance, r.run_id))
            for r in self.records
            if r.status.value == "FAILURE"
        ]


def _report_submissions(
    instance: Any, model_key: str, runs: _Runs, reported: set[str], progress: Progress
) -> Mapping[str, Any]:
    """Say what each submission run of ours found and submitted, once; the latest one's metadata."""
    import dagster as dg

    from pipelines.sensors import materialization_metadata, metadata_value

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(keys.MARENGO_INVOCATIONS, asset_partitions=[model_key]), limit=20
    ).records
    ours = [r for r in reversed(records) if r.run_id in runs.submissions]
    for record in ours:
        if record.run_id in reported:
            continue
        metadata = {k: metadata_value(materialization_metadata(record), k, "") for k in _SUBMISSION_FIELDS}
        if not reported:
            _report_inventory(instance, record.run_id, progress)
        reported.add(record.run_id)
        if metadata["submitted"] or len(reported) == 1:
            cost = describe_cost(float(metadata["estimated_cost_usd"] or 0), bool(metadata["priced"]))
            progress.say(
                f"submitted {metadata['submitted']} Marengo invocations "
                f"({metadata['already_handled']} already handled, {cost})"
            )
    if not ours:
        return {}
    latest = materialization_metadata(ours[-1])
    return {k: getattr(v, "value", v) for k, v in latest.items()}


_SUBMISSION_FIELDS = ("submitted", "already_handled", "estimated_cost_usd", "priced")


def _report_inventory(instance: Any, run_id: str, progress: Progress) -> None:
    import dagster as dg

    from pipelines.sensors import materialization_metadata, metadata_value

    records = instance.fetch_materializations(dg.AssetRecordsFilter(keys.MEDIA_INVENTORY), limit=5).records
    for record in records:
        if record.run_id == run_id:
            meta = materialization_metadata(record)
            value = partial(metadata_value, meta)
            progress.say(
                f"{value('dagster/row_count', 0)} objects, {value('usable_objects', 0)} usable, "
                f"{value('unusable_objects', 0)} skipped, {float(value('media_seconds', 0.0)):.1f} media s"
            )
            return


def _due(instance: Any, model_key: str) -> str | None:
    """What the invocation sensor would submit next for the model (retries, waiting objects), if anything."""
    import dagster as dg

    from pipelines.sensors import due_work, latest_materialization

    last = latest_materialization(
        instance, dg.AssetRecordsFilter(keys.MARENGO_INVOCATIONS, asset_partitions=[model_key])
    )
    return None if last is None else due_work(instance, model_key, last)
