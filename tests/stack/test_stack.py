"""The one-call local stack, the S3 emulator and the `python -m emulators` entry point.

A package of its own: starting a stack starts an S3 emulator, which resets moto's state for the whole
process, so these tests must not run while the emulators package's shared S3 and sample media are up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pyarrow.fs as pafs
import pytest
from botocore.exceptions import ClientError
from twelvelabs import TwelveLabs

from emulators.stack import start_local_stack


def test_stack_env_drives_unmodified_boto3(monkeypatch: Any) -> None:
    with start_local_stack(buckets=("stack-media", "stack-lake"), latency_sec=0.0) as stack:
        env = stack.env()
        assert set(env) == {
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "TWELVELABS_BASE_URL",
            "TWELVELABS_API_KEY",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        session = boto3.session.Session()  # no endpoint_url: picked up from the environment
        s3 = session.client("s3")
        s3.put_object(Bucket="stack-media", Key="hello.txt", Body=b"hi")
        assert s3.get_object(Bucket="stack-media", Key="hello.txt")["Body"].read() == b"hi"
        bedrock = session.client("bedrock-runtime")
        assert bedrock.list_async_invokes()["asyncInvokeSummaries"] == []
        twelvelabs = TwelveLabs(api_key=env["TWELVELABS_API_KEY"])  # the base URL from the environment
        assert list(twelvelabs.embed.v_2.tasks.list()) == []
        assert stack.twelvelabs.calls == {"ListTasks": 2}  # the SDK pager asks for one page past the last
        host, port = stack.s3_endpoint.removeprefix("http://").split(":")
        fs = pafs.S3FileSystem(
            endpoint_override=f"{host}:{port}",
            scheme="http",
            access_key="test",
            secret_key="test",
            region="us-east-1",
        )
        assert fs.get_file_info("stack-media/hello.txt").size == 2


def test_cli_prints_exports_and_stops_on_sigterm(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    ports = ["--s3-port", "0", "--bedrock-port", "0", "--twelvelabs-port", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators", *ports, "--latency", "0.5", "--workdir", str(tmp_path)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(10)]
        exports = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        assert exports["AWS_ACCESS_KEY_ID"] == "test"
        assert exports["MEDIAEMBED_MEDIA_QUEUE_URL"].endswith("/media-events")  # the media bucket notifies it
        assert exports["TWELVELABS_BASE_URL"].endswith("/v1.3")
        client = boto3.session.Session().client(
            "bedrock-runtime",
            endpoint_url=exports["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"],
            region_name=exports["AWS_REGION"],
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        assert client.list_async_invokes()["asyncInvokeSummaries"] == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_media_event_buckets_notify_the_queue_env_names(monkeypatch: Any) -> None:
    """`mediaembed emulate` and `make dev` ask for this: the media bucket's events reach the queue the
    pipeline reads (MEDIAEMBED_MEDIA_QUEUE_URL) through an unmodified boto3 client, and only its events."""
    from resources.media.event_queue import MediaEventQueue
    from resources.media.events import CREATED, REMOVED, parse_message

    with start_local_stack(
        buckets=("ev-media", "ev-lake"), media_event_buckets=["ev-media"], latency_sec=0.0
    ) as stack:
        env = stack.env()
        assert env["AWS_ENDPOINT_URL_SQS"] == stack.s3_endpoint
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.session.Session().client("s3")
        s3.put_object(Bucket="ev-media", Key="clips/a b#1.png", Body=b"png")
        s3.put_object(Bucket="ev-lake", Key="table/part-0.parquet", Body=b"not media")  # not notified
        s3.delete_object(Bucket="ev-media", Key="clips/a b#1.png")
        queue = MediaEventQueue(queue_url=env["MEDIAEMBED_MEDIA_QUEUE_URL"], region_name=env["AWS_REGION"])
        changes = [c for m in queue.receive(limit=10) for c in parse_message(m.body)]
        assert [(c.bucket, c.key, c.change) for c in changes] == [
            ("ev-media", "clips/a b#1.png", CREATED),
            ("ev-media", "clips/a b#1.png", REMOVED),
        ]
    with start_local_stack(buckets=("plain",), latency_sec=0.0) as plain:
        assert plain.media_queue_url is None and "MEDIAEMBED_MEDIA_QUEUE_URL" not in plain.env()


def test_stack_gives_pegasus_faults_to_bedrock_alone() -> None:
    faults = {"s3://stack-media/a.mp4": "length"}
    with start_local_stack(
        buckets=("stack-media",), pegasus_length_rate=0.25, pegasus_failure_rate=0.5, pegasus_faults=faults
    ) as stack:
        assert (stack.bedrock.pegasus_length_rate, stack.bedrock.pegasus_failure_rate) == (0.25, 0.5)
        assert dict(stack.bedrock.pegasus_faults) == {"s3://stack-media/a.mp4": ("length", None)}
        assert stack.twelvelabs.failure_rate == 0.0


def test_stack_gives_bedrock_its_account_keys_and_undecodable_media_mode(monkeypatch: Any) -> None:
    with start_local_stack(
        buckets=("stack-media",),
        account_id="111122223333",
        access_key_id="AKIDSTACK",
        secret_access_key="stack-secret",
        undecodable_media="fail",
    ) as stack:
        env = stack.env()
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("AKIDSTACK", "stack-secret")
        assert (stack.bedrock.account_id, stack.bedrock.undecodable_media) == ("111122223333", "fail")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert (
            boto3.session.Session().client("bedrock-runtime").list_async_invokes()["asyncInvokeSummaries"]
            == []
        )
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        with pytest.raises(ClientError) as exc:
            boto3.session.Session().client("bedrock-runtime").list_async_invokes()
        assert exc.value.response["Error"]["Code"] == "InvalidSignatureException"
