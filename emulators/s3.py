"""S3 on 127.0.0.1 via moto's threaded server: boto3, pyarrow's S3FileSystem and lancedb all speak to it."""

from __future__ import annotations

import logging
import socket
import urllib.request
from typing import Any

import boto3
from botocore.config import Config
from moto.server import ThreadedMotoServer


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class S3Emulator:
    """moto's S3 server.

    moto keeps its state per process, so starting an emulator resets it: every emulator starts empty, as a
    fresh account would. Two emulators running at once in one process still see the same buckets.
    """

    def __init__(self, port: int = 0, region: str = "us-east-1", host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.region = region
        self._server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> S3Emulator:
        if self._server is None:
            logging.getLogger("werkzeug").setLevel(logging.ERROR)
            self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
            self._server.start()
            urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST"))
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this endpoint (path-style addressing, dummy credentials)."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, **config),
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def __enter__(self) -> S3Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
