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
from collections.abc import Mapping
from dataclasses import dataclass
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

from mediaembed.progress import Progress
from resources.providers.errors import ProviderError
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


# --- the Dagster instance --------------------------------------------------------------------------------


INSTANCE_YAML = """\
# Written by `mediaembed ingest` because this DAGSTER_HOME had none; yours to edit, never rewritten.
# One submitter, one ingester and one LanceDB writer at a time (docs/deployment.md).
concurrency:
  pools:
    default_limit: 1
# For the daemon serving this home (the one `mediaembed` starts, or `dagster dev`'s): fail runs whose worker
# died, and free the pool slots they held.
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 120
  free_slots_after_run_end_seconds: 300
# Usage telemetry off, as in the local harness's instance; turn it on here if you like.
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
    except KeyboardInterrupt:  # before the runs were followed (those it follows say what is in flight)
        progress.close()
        print(
            "mediaembed ingest: interrupted; run the same command again: nothing it submitted is submitted "
            "or billed twice",
            file=err,
        )
        return EXIT_INTERRUPTED
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
    from mediaembed.ingest_runs import follow
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
                summary = follow(engine, prefix, model, built, wait, out, progress)
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
