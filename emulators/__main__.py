"""`python -m emulators` / `mediaembed emulate`: run the local stack until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from emulators.sample_media import upload_sample_media
from emulators.stack import start_local_stack


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mediaembed emulate", description="Run local S3 + Bedrock runtime emulators."
    )
    p.add_argument("--s3-port", type=int, default=4566)
    p.add_argument("--bedrock-port", type=int, default=4567)
    p.add_argument("--region", default="us-east-1")
    p.add_argument(
        "--latency", type=float, default=0.0, help="seconds each async invocation stays InProgress"
    )
    p.add_argument("--max-concurrent", type=int, default=50, help="quota on in-flight async invocations")
    p.add_argument("--throttle-rate", type=float, default=0.0, help="probability of ThrottlingException")
    p.add_argument("--failure-rate", type=float, default=0.0, help="probability an invocation ends Failed")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible fault injection")
    p.add_argument(
        "--seed-sample-media", action="store_true", help="upload the sample media to bucket 'media'"
    )
    p.add_argument(
        "--workdir", default=None, help="keep Bedrock's async invocations in this folder across restarts"
    )
    return p


def serve(argv: list[str] | None = None) -> int:
    """Start the stack, print `export` lines for its env, block until interrupted, stop cleanly."""
    args = _parser().parse_args(argv)
    uploaded: list[object] = []
    stack = start_local_stack(
        s3_port=args.s3_port,
        bedrock_port=args.bedrock_port,
        region=args.region,
        latency_sec=args.latency,
        max_concurrent_invocations=args.max_concurrent,
        throttle_rate=args.throttle_rate,
        failure_rate=args.failure_rate,
        seed=args.seed,
        workdir=args.workdir,
        prepare_s3=(
            (lambda client: uploaded.extend(upload_sample_media(client, "media")))
            if args.seed_sample_media
            else None
        ),
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, _on_signal)
    try:
        if args.seed_sample_media:
            print(f"# uploaded {len(uploaded)} sample objects to s3://media/", file=sys.stderr)
        for name, value in stack.env().items():
            print(f"export {name}={value}")
        print("# emulators running; Ctrl-C to stop", file=sys.stderr, flush=True)
        sys.stdout.flush()
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
