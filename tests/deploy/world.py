"""What the deployment configs of deploy/ are loaded against: AWS on moto (ECS, EC2, Secrets Manager, S3,
one server on 127.0.0.1), the ECS task metadata endpoint of the daemon's task, and the code location's code
server.

The daemon of deploy/dagster.yaml runs as an ECS task and launches each run as another; here the test process
plays that daemon. moto holds its task (in a cluster, a subnet and a security group) and the metadata endpoint
tells the launcher which task it is, as ECS's agent does inside a real task.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from moto.core import DEFAULT_ACCOUNT_ID as ACCOUNT
from moto.ecs.models import EC2ContainerServiceBackend, TaskDefinition, ecs_backends

from emulators.s3 import S3Emulator, free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
REGION = "us-east-1"
CLUSTER = "mediaembed"
DAEMON_CONTAINER = "dagster-daemon"
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/mediaembed:2026-10-01"
CODE_SERVER_START_TIMEOUT_SEC = 180.0
STOP_TIMEOUT_SEC = 30.0
BASE_PATH = "/v4/daemon-task"  # where the metadata endpoint answers, as ECS_CONTAINER_METADATA_URI_V4 says


def postgres_parts(url: str) -> dict[str, str]:
    """The DAGSTER_POSTGRES_* variables deploy/dagster.yaml reads, from a test server's URL."""
    parts = urlsplit(url)
    return {
        "DAGSTER_POSTGRES_HOST": parts.hostname or "",
        "DAGSTER_POSTGRES_PORT": str(parts.port),
        "DAGSTER_POSTGRES_USER": parts.username or "",
        "DAGSTER_POSTGRES_DB": parts.path.lstrip("/"),
    }


def instance_home(folder: Path) -> Path:
    """A DAGSTER_HOME holding deploy/dagster.yaml as it is."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY / "dagster.yaml", folder / "dagster.yaml")
    return folder


@contextmanager
def fargate_in_moto() -> Iterator[None]:
    """moto 5.2 fails RunTask with a 500 when a container definition has no memory of its own, which ECS
    accepts for Fargate (the task's cpu and memory place it; the launcher's task definitions set only those).
    Count such containers as zero, as Fargate does: what moto checks for EC2 placement is unchanged."""
    original = EC2ContainerServiceBackend._calculate_task_resource_requirements

    def calculate(task_definition: TaskDefinition) -> dict[str, Any]:
        if "FARGATE" in (task_definition.requires_compatibilities or []):
            containers = [
                {"memory": 0, **c} if c.get("memory") is None and c.get("memoryReservation") is None else c
                for c in task_definition.container_definitions
            ]
            task_definition = copy.copy(task_definition)
            task_definition.container_definitions = containers
        return original(task_definition)

    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(calculate)  # type: ignore[method-assign]
    try:
        yield
    finally:
        EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(original)  # type: ignore[method-assign]


class MetadataEndpoint:
    """ECS's task metadata endpoint (v4) of the daemon's task: `/task` names its cluster and task ARN, `/` its
    container, as ECS_CONTAINER_METADATA_URI_V4 serves them inside a task."""

    def __init__(self, cluster_arn: str, task_arn: str) -> None:
        task = {"Cluster": cluster_arn, "TaskARN": task_arn}
        container = {"Name": DAEMON_CONTAINER}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.rstrip("/").removeprefix(BASE_PATH)
                body = {"/task": task, "": container}.get(path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body or {}).encode())

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{BASE_PATH}"

    def __enter__(self) -> MetadataEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(STOP_TIMEOUT_SEC)


@dataclass(frozen=True)
class Aws:
    """moto's AWS, with the daemon's task running in it."""

    endpoint: str
    cluster_arn: str
    subnet: str
    security_group: str
    daemon_task_arn: str
    secrets: Mapping[str, tuple[str, str]]  # variable -> (ARN, value)

    def report_exit(self, cluster_arn: str, task_arn: str, exit_code: int) -> None:
        """Record the run container's exit code as ECS's agent reports it when the container ends (the OOM
        killer's 137, say): moto's StopTask leaves every container at 0 and has no agent to report one."""
        backend = ecs_backends[ACCOUNT][REGION]
        task = backend.tasks[cluster_arn.split("/")[-1]][task_arn]
        for container in task.containers:
            container.exitCode = exit_code

    def client(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@contextmanager
def aws_with_daemon_task(secret_values: Mapping[str, str]) -> Iterator[Aws]:
    """moto on 127.0.0.1 with a Fargate cluster whose daemon task runs in a subnet and security group, and one
    Secrets Manager secret per entry of `secret_values`, plus one tagged `dagster` that nothing names."""
    with fargate_in_moto(), S3Emulator(region=REGION) as moto:
        session = boto3.session.Session()
        kwargs: dict[str, Any] = {
            "endpoint_url": moto.endpoint,
            "region_name": REGION,
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
        }
        ec2, ecs = session.client("ec2", **kwargs), session.client("ecs", **kwargs)
        secretsmanager = session.client("secretsmanager", **kwargs)
        vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
        # As ECS's VPCs usually are (and moto 5.2 needs it for a Fargate task's network interface).
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="dagster", Description="dagster", VpcId=vpc)["GroupId"]
        cluster_arn = ecs.create_cluster(clusterName=CLUSTER)["cluster"]["clusterArn"]
        daemon_definition = ecs.register_task_definition(
            family="dagster-daemon",
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="512",
            memory="1024",
            containerDefinitions=[{"name": DAEMON_CONTAINER, "image": IMAGE, "memory": 1024}],
        )["taskDefinition"]["taskDefinitionArn"]
        [daemon_task] = ecs.run_task(
            cluster=CLUSTER,
            taskDefinition=daemon_definition,
            launchType="FARGATE",
            networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}},
        )["tasks"]
        secrets = {
            name: (secretsmanager.create_secret(Name=f"mediaembed/{name}", SecretString=value)["ARN"], value)
            for name, value in secret_values.items()
        }
        secretsmanager.create_secret(
            Name="UNRELATED_TAGGED_SECRET",
            SecretString="tagged-not-named",
            Tags=[{"Key": "dagster", "Value": ""}],
        )
        yield Aws(moto.endpoint, cluster_arn, subnet, group, daemon_task["taskArn"], secrets)


def deployment_env(aws: Aws, home: Path, postgres_url: str, metadata_uri: str) -> dict[str, str]:
    """The environment deploy/dagster.yaml, deploy/workspace.yaml and the launcher read, as a daemon's task
    definition would set it (here pointing every AWS client at moto, as AWS_ENDPOINT_URL does)."""
    return {
        "DAGSTER_HOME": str(home),
        **postgres_parts(postgres_url),
        # Injected by ECS from Secrets Manager into the daemon's task; trust auth ignores it, the URL quotes
        # it.
        "DAGSTER_POSTGRES_PASSWORD": aws.secrets["DAGSTER_POSTGRES_PASSWORD"][1],
        "DAGSTER_ECS_TASK_ROLE_ARN": "arn:aws:iam::111122223333:role/mediaembed-run",
        "DAGSTER_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::111122223333:role/mediaembed-ecs-execution",
        "DAGSTER_ECS_LOG_GROUP": "/ecs/mediaembed-runs",
        "DAGSTER_ECS_TWELVELABS_API_KEY_SECRET_ARN": aws.secrets["TWELVELABS_API_KEY"][0],
        "DAGSTER_ECS_POSTGRES_PASSWORD_SECRET_ARN": aws.secrets["DAGSTER_POSTGRES_PASSWORD"][0],
        "DAGSTER_COMPUTE_LOGS_BUCKET": "mediaembed-dagster-logs",
        "DAGSTER_COMPUTE_LOGS_PREFIX": "compute-logs",
        "MEDIAEMBED_MEDIA_URI": "s3://media/",
        "MEDIAEMBED_ASYNC_OUTPUT_URI": "s3://outputs/marengo-async",
        "MEDIAEMBED_LAKE_URI": "s3://lake/tables",
        "MEDIAEMBED_INDEX_URI": "s3://lake/index",
        "ECS_CONTAINER_METADATA_URI_V4": metadata_uri,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_ENDPOINT_URL_S3": aws.endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "daemon-only-secret-access-key",  # the daemon's; a run takes its task role's
    }


@contextmanager
def code_server(env: Mapping[str, str], host: str = "127.0.0.1") -> Iterator[int]:
    """`dagster code-server start` for pipelines.definitions on a free port, as deploy/Dockerfile runs it (its
    host, port and image from DAGSTER_CODE_SERVER_HOST, _PORT and DAGSTER_CURRENT_IMAGE); waits until it
    serves, stops it and the server process it spawned afterwards. Yields the port."""
    port = free_port()
    env = {
        **os.environ,
        **env,
        "DAGSTER_CODE_SERVER_HOST": host,
        "DAGSTER_CODE_SERVER_PORT": str(port),
        "DAGSTER_CURRENT_IMAGE": IMAGE,
    }
    dagster = str(Path(sys.executable).with_name("dagster"))
    command = [
        dagster,
        "code-server",
        "start",
        "-m",
        "pipelines.definitions",
        "--location-name",
        "mediaembed",
    ]
    log = (Path(env["DAGSTER_HOME"]) / f"code-server-{port}.log").open("w")
    server = subprocess.Popen(
        command,
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_serving(dagster, host, port, server, env)
        yield port
    finally:
        _stop_group(server)
        log.close()


def _wait_serving(
    dagster: str, host: str, port: int, server: subprocess.Popen[bytes], env: Mapping[str, str]
) -> None:
    deadline = time.monotonic() + CODE_SERVER_START_TIMEOUT_SEC
    while True:
        if server.poll() is not None:
            pytest.fail(f"the code server exited ({server.returncode}): see its log in {env['DAGSTER_HOME']}")
        check = subprocess.run(
            [dagster, "api", "grpc-health-check", "-h", host, "-p", str(port)],
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if check.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"the code server on port {port} did not serve in {CODE_SERVER_START_TIMEOUT_SEC:.0f} s"
            )
        time.sleep(0.5)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the code server's process group (it and the gRPC server it spawned), SIGKILL what remains."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_SEC)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(STOP_TIMEOUT_SEC)
