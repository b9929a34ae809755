"""`python -m emulators` / `mediaembed emulate`: run the local stack until Ctrl-C or SIGTERM.

It prints `export` lines for the endpoints and for the pipeline's settings (media in the first `--bucket`,
lake, index and Dagster instance under `--workdir`), so another shell can `eval` them and run
`mediaembed ingest`, `mediaembed search` or `dagster dev` against the emulators. `--upload DIR` puts a
directory of your own files in the first bucket first, keyed by their paths relative to DIR.
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from botocore.exceptions import ClientError

from emulators.iam_policy import Policy
from emulators.sample_media import upload_sample_media
from emulators.stack import start_local_stack


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mediaembed emulate", description="Run local S3, Bedrock runtime and TwelveLabs API emulators."
    )
    p.add_argument("--s3-port", type=int, default=4566)
    p.add_argument("--bedrock-port", type=int, default=4567)
    p.add_argument("--twelvelabs-port", type=int, default=4568)
    p.add_argument("--region", default="us-east-1")
    p.add_argument(
        "--latency", type=float, default=0.0, help="seconds each async invocation stays InProgress"
    )
    p.add_argument("--max-concurrent", type=int, default=50, help="quota on in-flight async invocations")
    p.add_argument("--throttle-rate", type=float, default=0.0, help="probability of ThrottlingException")
    p.add_argument("--failure-rate", type=float, default=0.0, help="probability an invocation ends Failed")
    p.add_argument(
        "--pegasus-length-rate",
        type=float,
        default=0.0,
        help='probability a Pegasus answer is cut short with finishReason "length"',
    )
    p.add_argument(
        "--pegasus-failure-rate", type=float, default=0.0, help="probability of Pegasus ModelErrorException"
    )
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible fault injection")
    p.add_argument(
        "--seed-sample-media", action="store_true", help="upload the sample media to bucket 'media'"
    )
    p.add_argument(
        "--bucket",
        action="append",
        default=None,
        metavar="NAME",
        help="create this bucket (repeatable); the first one is the media bucket (default: media)",
    )
    p.add_argument(
        "--upload", type=Path, default=None, metavar="DIR", help="upload DIR's files to the first bucket"
    )
    p.add_argument(
        "--iam-policy",
        type=Path,
        default=None,
        metavar="FILE",
        help=(
            "Bedrock checks every request against this IAM policy (deploy/iam-policy.json rendered, "
            "docs/deployment.md), as the user the exported keys belong to"
        ),
    )
    p.add_argument(
        "--workdir",
        default=".local/emulate",
        help=(
            "lake, index and Dagster instance live here; Bedrock keeps its invocations in <workdir>/bedrock, "
            "the TwelveLabs API its tasks in <workdir>/twelvelabs"
        ),
    )
    return p


def output_bucket(media_buckets: list[str]) -> str:
    """Where Bedrock writes results: never a media bucket, whose listing would then include them."""
    return "lake" if "lake" not in media_buckets else "mediaembed-outputs"


def settings(media_bucket: str, outputs: str, workdir: Path) -> dict[str, str]:
    """The pipeline's settings for this stack: the names the code location reads (docs/configuration.md)."""
    workdir = workdir.resolve()
    return {
        "MEDIAEMBED_MEDIA_URI": f"s3://{media_bucket}/",
        "MEDIAEMBED_ASYNC_OUTPUT_URI": f"s3://{outputs}/marengo-async",
        "MEDIAEMBED_LAKE_URI": str(workdir / "lake"),
        "MEDIAEMBED_INDEX_URI": str(workdir / "index"),
        "DAGSTER_HOME": str(workdir / "dagster"),
    }


def upload_directory(s3_client: Any, bucket: str, directory: Path) -> tuple[int, int]:
    """Every regular file under `directory` into `bucket`, keyed by its relative path; (files, bytes).

    The content type is guessed from the name, as a browser or `aws s3 cp` would; boto3's transfer manager
    switches to multipart for large files.
    """
    files, size = 0, 0
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if not path.is_file():
                continue
            key = path.relative_to(directory).as_posix()
            content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
            s3_client.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})
            files, size = files + 1, size + path.stat().st_size
    return files, size


def serve(argv: list[str] | None = None) -> int:
    """Start the stack, print `export` lines for its env, block until interrupted, stop cleanly."""
    args = _parser().parse_args(argv)
    if args.upload is not None and not args.upload.is_dir():
        print(f"mediaembed emulate: --upload {args.upload} is not a directory: name one", file=sys.stderr)
        return 2
    policy = None
    if args.iam_policy is not None:
        try:
            policy = Policy.load(args.iam_policy)
        except (OSError, ValueError) as error:  # unreadable, not JSON, placeholders left, unsupported
            reason = " ".join(str(error).split())
            print(
                f"mediaembed emulate: --iam-policy {args.iam_policy}: {reason}: fix the file", file=sys.stderr
            )
            return 2
    media_buckets = list(dict.fromkeys(args.bucket or ["media"]))
    outputs = output_bucket(media_buckets)
    workdir = Path(args.workdir)
    uploaded: list[object] = []
    own: list[tuple[int, int]] = []

    def prepare(client: Any) -> None:
        if args.seed_sample_media:
            uploaded.extend(upload_sample_media(client, "media"))
        if args.upload is not None:
            print(f"# uploading {args.upload} to s3://{media_buckets[0]}/ ...", file=sys.stderr, flush=True)
            own.append(upload_directory(client, media_buckets[0], args.upload))

    buckets = list(dict.fromkeys([*media_buckets, outputs, *(["media"] if args.seed_sample_media else [])]))
    try:
        stack = start_local_stack(
            s3_port=args.s3_port,
            bedrock_port=args.bedrock_port,
            region=args.region,
            latency_sec=args.latency,
            max_concurrent_invocations=args.max_concurrent,
            throttle_rate=args.throttle_rate,
            failure_rate=args.failure_rate,
            pegasus_length_rate=args.pegasus_length_rate,
            pegasus_failure_rate=args.pegasus_failure_rate,
            seed=args.seed,
            buckets=buckets,
            workdir=workdir / "bedrock",
            twelvelabs_workdir=workdir / "twelvelabs",
            prepare_s3=prepare,
            iam_policy=policy,
            media_event_buckets=media_buckets[:1],  # the media bucket's S3 events feed the inventory
        )
    except ClientError as error:  # a bucket name S3 refuses
        print(
            f"mediaembed emulate: cannot create the buckets {buckets}: {error}: fix the name", file=sys.stderr
        )
        return 2
    except OSError as error:  # a port in use, a file that cannot be read
        print(
            f"mediaembed emulate: cannot start: {error}: fix that "
            "(ports: --s3-port, --bedrock-port, --twelvelabs-port)",
            file=sys.stderr,
        )
        return 2
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        if args.seed_sample_media:
            print(f"# uploaded {len(uploaded)} sample objects to s3://media/", file=sys.stderr)
        if own:
            files, size = own[0]
            print(
                f"# uploaded {files} files ({size / 1e6:.1f} MB) from {args.upload} to s3://{media_buckets[0]}/",
                file=sys.stderr,
            )
        pipeline = settings(media_buckets[0], outputs, workdir)
        Path(pipeline["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)  # `dagster dev` needs it to exist
        for name, value in {**stack.env(), **pipeline}.items():
            print(f"export {name}={shlex.quote(value)}")
        sys.stdout.flush()  # all settings are out (in a file too) before we say we are up
        print("# emulators running; Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            while not done.wait(3600):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
