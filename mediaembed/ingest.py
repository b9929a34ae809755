"""`mediaembed ingest s3://bucket/prefix`: one command from a bucket of media to a searchable index.

It does what the schedule and the sensor do under a daemon, in this process and on the DAGSTER_HOME
instance (so every run shows in the Dagster UI): run `embed_new_media` for the prefix, follow the
invocations with the real sensor, which requests the ingest runs, submit again while objects wait (the
in-flight quota, retries of failed jobs), and stop when nothing is left or the wait runs out, saying what is
still in flight. The summary comes from the inventory and the ledger, the same records the pipeline keeps.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from resources.providers.model_routes import describe_cost, route
from resources.storage.clock import REAL_CLOCK, Clock
from resources.storage.location import location

if TYPE_CHECKING:
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
) -> Summary:
    """Classify each object under `prefix` from the inventory and the model's ledger jobs.

    embedded: a job for its current content completed; skipped (nothing billed): unusable, refused or
    over a limit, or nothing in it to embed; failed: the provider ran it and it failed, out of attempts;
    in flight; waiting: not submitted yet (the quota) or to be resubmitted (lost, changed meanwhile).
    """
    options = options or EmbeddingOptions()
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
        summary.priced = all(route(p, model.key).priced for p in set(ours["provider"]))
        summary.estimated_cost_usd = float(
            sum(
                route(p, model.key).estimated_cost_usd(m, None if pd.isna(s) else float(s))
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


def _at_most(limit: int, in_flight: pd.DataFrame) -> bool:
    return len(in_flight) <= limit


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
    from assets_defs.marengo.submission_stop import SubmissionStop
    from mediaembed.run_slots import PoolSlotTimeout
    from mediaembed.runner import (
        SensorDriver,
        StillInFlight,
        in_flight_line,
        materialization_metadata,
        run_job,
    )
    from pipelines.definitions import pipeline_resources
    from resources.providers.marengo_models import marengo_model
    from resources.tables.submission_ledger import SubmissionLedger

    resources = {
        "marengo": pipeline_resources["marengo"],
        "lake": pipeline_resources["lake"],
    }
    with dg.build_resources(resources) as built:
        serving = built.lake.serving_versions().current().serving
        model = marengo_model(model_key or serving)  # by default the version serving search
        try:
            _preflight(prefix, built.marengo, built.lake, model, os.environ)
        except ProviderError as error:  # the serving provider is not configured
            raise IngestError(error.reason) from error
        lake = built.lake
        if not replace:
            check_lake_prefix(read_inventory(lake), str(prefix), os.environ["MEDIAEMBED_LAKE_URI"])
        ledger = SubmissionLedger(lake, None)
        wrote = prepare_instance_home(Path(os.environ["DAGSTER_HOME"]))
        if wrote:
            progress.say(wrote)
        instance = dg.DagsterInstance.get()
        driver = SensorDriver(instance, log_level="CRITICAL", clock=wait.clock)
        submit_runs: set[str] = set()
        follower = _Follower(progress, lambda: ledger.jobs(model.key), submit_runs)
        run_config = {"resources": {"media": {"config": {"uri": str(prefix)}}}}

        def finish() -> Summary:
            progress.close()
            submit_runs.update(r.run_id for r in driver.submission_results)  # those the sensor requested
            summary = summarize(str(prefix), read_inventory(lake), ledger.jobs(model.key), model, submit_runs)
            print("\n".join(summary.lines()), file=out, flush=True)
            return summary

        pause = FIRST_POLL_SEC
        try:
            while True:
                first = not submit_runs
                if first:
                    progress.say(f"listing and probing {prefix} ...")
                submit = run_job(instance, "embed_new_media", model.key, run_config, log_level="CRITICAL")
                submit_runs.add(submit.run_id)
                invocations = materialization_metadata(submit, keys.MARENGO_INVOCATIONS)
                if first:
                    inventory = materialization_metadata(submit, keys.MEDIA_INVENTORY)
                    progress.say(
                        f"{inventory['dagster/row_count']} objects, {inventory['usable_objects']} usable, "
                        f"{inventory['unusable_objects']} skipped, {inventory['media_seconds']:.1f} media s"
                    )
                if invocations["submitted"] or first:
                    cost = describe_cost(
                        float(invocations["estimated_cost_usd"]), bool(invocations["priced"])
                    )
                    progress.say(
                        f"submitted {invocations['submitted']} Marengo invocations "
                        f"({invocations['already_handled']} already handled, {cost})"
                    )
                reason = str(invocations["deferred_reason"]).removeprefix("stopped: ")
                stop = SubmissionStop.of(invocations)
                if stop is SubmissionStop.OVER_BUDGET:
                    finish()
                    raise IngestError(f"nothing submitted: {reason}")
                if stop is SubmissionStop.SETUP_REFUSED:
                    finish()
                    raise IngestError(f"{model.key} at its provider: {reason}: fix that, then run again")
                in_flight = ledger.in_progress(model.key)
                if in_flight.empty and not invocations["deferred"] and not invocations["submitted"]:
                    break
                remaining = wait.remaining()
                if remaining <= 0 and in_flight.empty:
                    finish()
                    raise IngestError(
                        f"stopped waiting after {wait.waited():.0f} s: {invocations['deferred']} objects "
                        f"still wait for Bedrock ({reason}): run the same command again later",
                        EXIT_STILL_IN_FLIGHT,
                    )
                if remaining <= 0:
                    raise StillInFlight(wait.waited(), in_flight)
                if in_flight.empty:  # busy or throttled with nothing of ours running: ask again later
                    progress.say(f"{invocations['deferred']} objects wait: {reason}; asking again")
                    wait.clock.sleep(min(pause, remaining))
                    pause = min(pause * 2, MAX_POLL_SEC)
                    continue
                pause = FIRST_POLL_SEC
                # With objects waiting for the quota, submit again once half of the in-flight jobs ended
                # (all of them when there is one): never a new submission run before any job finished.
                half = len(in_flight) // 2
                until = partial(_at_most, half) if invocations["deferred"] and half else None
                driver.drain(
                    lake,
                    deadline=wait.deadline,
                    interval_sec=FIRST_POLL_SEC,
                    progress=follower,
                    until=until,
                    max_interval_sec=MAX_POLL_SEC,
                )
        except StillInFlight as stop:
            finish()
            raise IngestError(
                f"stopped waiting: {in_flight_line(stop.in_flight, wait.waited())}; nothing is lost or "
                "billed twice: run the same command again to "
                "collect them (or let the sensor of `dagster dev` do it)",
                EXIT_STILL_IN_FLIGHT,
            ) from stop
        except (KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
            summary = finish()
            raise IngestError(
                f"interrupted with {len(summary.in_flight)} objects in flight at Bedrock (they finish and "
                "bill regardless): run the same command again to collect them",
                EXIT_INTERRUPTED,
            ) from None
        except PoolSlotTimeout as error:
            raise IngestError(str(error)) from error
        except (ClientError, BotoCoreError, dg.DagsterError) as error:
            message = explain_aws_error(error, str(prefix))
            if message is None:
                raise
            raise IngestError(message) from error
        summary = finish()
    if summary.embedded:
        flag = "" if model.key == serving else f" --model {model.key}"
        print(f'search it: mediaembed search "<what you are looking for>"{flag}', file=out)
    return 0
