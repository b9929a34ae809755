"""deploy/dagster.yaml and deploy/workspace.yaml, loaded by Dagster itself and driven as an ECS deployment
drives them: a code server serves the code location with its image, `dagster job launch` queues a run in
Postgres, and the EcsRunLauncher the instance builds from the file starts it as a task on moto's ECS, inside
the daemon's own network, with the secrets named by ARN only. The test process plays the daemon (world.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import dagster as dg
import pytest
import yaml
from dagster._core.launcher import LaunchRunContext, WorkerStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import deserialize_value
from dagster_aws.ecs import EcsRunLauncher
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from mediaembed.ingest import INSTANCE_YAML
from tests.deploy.world import (
    DEPLOY,
    IMAGE,
    REPO,
    Aws,
    MetadataEndpoint,
    aws_with_daemon_task,
    code_server,
    deployment_env,
    instance_home,
)
from tests.postgres import PostgresServer

JOB = "submit_marengo_invocations"
PARTITION = "marengo-3.0"
SECRET_VALUES = {  # what Secrets Manager holds; none of it may appear in a task definition or an override
    "TWELVELABS_API_KEY": "tlk_secret_value_never_in_a_task",
    "DAGSTER_POSTGRES_PASSWORD": "pg-p@ss/w:rd-never-in-a-task",
}
PROJECT_JOBS = {
    "embed_new_media",
    "submit_marengo_invocations",
    "ingest_marengo_embeddings",
    "cut_over_serving_version",
    "describe_media",
}


@dataclass
class Deployment:
    aws: Aws
    home: Path
    env: dict[str, str]
    instance: dg.DagsterInstance


@dataclass(frozen=True)
class Launched:
    run_id: str
    queued_status: dg.DagsterRunStatus
    task: dict[str, Any]
    task_definition: dict[str, Any]


@pytest.fixture(scope="module")
def deployment(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    home = instance_home(tmp_path_factory.mktemp("dagster-home"))
    url = postgres_server.create_database(f"deploy_{uuid4().hex[:12]}")
    with (
        aws_with_daemon_task(SECRET_VALUES) as aws,
        MetadataEndpoint(aws.cluster_arn, aws.daemon_task_arn) as metadata,
        pytest.MonkeyPatch.context() as patch,
    ):
        env = deployment_env(aws, home, url, metadata.uri)
        for name, value in env.items():
            patch.setenv(name, value)
        aws.client("s3").create_bucket(Bucket=env["DAGSTER_COMPUTE_LOGS_BUCKET"])
        with code_server(env) as port:
            env |= {"DAGSTER_CODE_SERVER_HOST": "127.0.0.1", "DAGSTER_CODE_SERVER_PORT": str(port)}
            for name in ("DAGSTER_CODE_SERVER_HOST", "DAGSTER_CODE_SERVER_PORT"):
                patch.setenv(name, env[name])
            with dg.DagsterInstance.from_config(str(home)) as instance:
                yield Deployment(aws, home, env, instance)


@pytest.fixture(scope="module")
def launched(deployment: Deployment) -> Launched:
    """One run queued as the UI's launchpad does, then dequeued as the daemon does, by the instance's
    launcher."""
    run_id = str(uuid4())
    done = dagster(
        deployment.env,
        "job",
        "launch",
        "-w",
        str(DEPLOY / "workspace.yaml"),
        "-j",
        JOB,
        "--run-id",
        run_id,
        "--tags",
        json.dumps({"dagster/partition": PARTITION}),
    )
    assert done.returncode == 0, done.stdout[-2000:]
    instance = deployment.instance
    run = instance.get_run_by_id(run_id)
    assert run is not None
    queued_status = run.status
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
    run = instance.get_run_by_id(run_id)
    assert run is not None
    ecs = deployment.aws.client("ecs")
    [task] = ecs.describe_tasks(
        cluster=run.tags["ecs/cluster"], tasks=[run.tags["ecs/task_arn"]], include=["TAGS"]
    )["tasks"]
    definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
    return Launched(run_id, queued_status, task, definition)


def dagster(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("dagster")), *args]
    return subprocess.run(
        command,
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


# --- the instance ------------------------------------------------------------------------------------------


def test_the_instance_is_postgres_the_queue_ecs_and_s3_logs(deployment: Deployment) -> None:
    instance = deployment.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
    assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
    launcher = instance.run_launcher
    assert isinstance(launcher, EcsRunLauncher)
    assert launcher.supports_check_run_worker_health  # what run monitoring asks the launcher
    assert instance.run_monitoring_enabled
    assert instance.run_monitoring_max_resume_run_attempts == 0
    concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.default_pool_limit == 1
    queue = concurrency.run_queue_config
    assert queue is not None and queue.max_concurrent_runs == 6
    assert [(limit["key"], limit["limit"]) for limit in queue.tag_concurrency_limits] == [
        ("dagster/backfill", 2)
    ]


def test_the_deployed_instance_keeps_the_commands_pools_and_monitoring() -> None:
    deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    written = yaml.safe_load(INSTANCE_YAML)  # what `mediaembed ingest` writes where there is no dagster.yaml
    assert deployed["concurrency"]["pools"] == written["concurrency"]["pools"]
    assert {k: v for k, v in deployed["run_monitoring"].items() if k in written["run_monitoring"]} == written[
        "run_monitoring"
    ]


def test_compute_logs_go_to_the_bucket(deployment: Deployment) -> None:
    manager = deployment.instance.compute_log_manager
    key = ["deploy-test", uuid4().hex[:8], "step"]
    with manager.capture_logs(key):
        print("a line from a step", flush=True)
    s3 = deployment.aws.client("s3")
    listed = s3.list_objects_v2(Bucket=deployment.env["DAGSTER_COMPUTE_LOGS_BUCKET"], Prefix="compute-logs/")
    written = [item["Key"] for item in listed.get("Contents", []) if key[1] in item["Key"]]
    assert written, "no compute log reached the bucket"
    body = s3.get_object(Bucket=deployment.env["DAGSTER_COMPUTE_LOGS_BUCKET"], Key=sorted(written)[0])["Body"]
    assert b"a line from a step" in body.read()


# --- the code server's workspace ---------------------------------------------------------------------------


def test_the_workspace_reaches_the_code_server(deployment: Deployment) -> None:
    done = dagster(deployment.env, "job", "list", "-w", str(DEPLOY / "workspace.yaml"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(done.stdout.split()) >= PROJECT_JOBS, done.stdout


def test_a_wrong_workspace_key_is_refused_by_dagster(deployment: Deployment, tmp_path: Path) -> None:
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"]["hostname"] = workspace["load_from"][0]["grpc_server"].pop(
        "host"
    )
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    done = dagster(deployment.env, "job", "list", "-w", str(tmp_path / "workspace.yaml"))
    assert done.returncode != 0
    assert "hostname" in done.stdout + done.stderr


# --- a run launched on ECS ---------------------------------------------------------------------------------


def test_a_launched_run_waits_in_the_queue_first(launched: Launched) -> None:
    assert launched.queued_status == dg.DagsterRunStatus.QUEUED


def test_the_task_runs_dagsters_run_worker_for_the_run(launched: Launched) -> None:
    [override] = launched.task["overrides"]["containerOverrides"]
    assert override["name"] == "run"
    assert override["command"][:3] == ["dagster", "api", "execute_run"]
    args = deserialize_value(override["command"][3], ExecuteRunArgs)
    assert args.run_id == launched.run_id
    # The run's cpu and memory besides; no environment or secrets: those are in the task definition.
    assert set(override) == {"name", "command", "cpu", "memory"}
    assert (override["cpu"], override["memory"]) == (1024, 4096)


def test_the_task_definition_carries_what_the_config_says(deployment: Deployment, launched: Launched) -> None:
    definition, env = launched.task_definition, deployment.env
    [container] = definition["containerDefinitions"]
    assert container["name"] == "run"
    assert container["image"] == IMAGE  # the code server's DAGSTER_CURRENT_IMAGE
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert (definition["cpu"], definition["memory"]) == ("1024", "4096")
    assert definition["taskRoleArn"] == env["DAGSTER_ECS_TASK_ROLE_ARN"]
    assert definition["executionRoleArn"] == env["DAGSTER_ECS_EXECUTION_ROLE_ARN"]
    assert container["logConfiguration"]["options"]["awslogs-group"] == env["DAGSTER_ECS_LOG_GROUP"]
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())["run_launcher"]["config"]
    environment = {item["name"]: item["value"] for item in container["environment"]}
    assert environment == {
        **{name: env[name] for name in config["env_vars"]},
        "DAGSTER_RUN_JOB_NAME": JOB,
    }
    assert sorted((s["name"], s["valueFrom"]) for s in container["secrets"]) == sorted(
        (name, arn) for name, (arn, _) in deployment.aws.secrets.items()
    )  # the named ones only: the secret tagged `dagster` is not mounted


def test_the_task_runs_in_the_daemons_network(deployment: Deployment, launched: Launched) -> None:
    task, aws = launched.task, deployment.aws
    assert task["clusterArn"] == aws.cluster_arn
    assert task["launchType"] == "FARGATE"
    [eni] = [a for a in task["attachments"] if a["type"] == "ElasticNetworkInterface"]
    assert {d["name"]: d["value"] for d in eni["details"]}["subnetId"] == aws.subnet
    interface = {d["name"]: d["value"] for d in eni["details"]}["networkInterfaceId"]
    [described] = aws.client("ec2").describe_network_interfaces(NetworkInterfaceIds=[interface])[
        "NetworkInterfaces"
    ]
    assert [group["GroupId"] for group in described["Groups"]] == [aws.security_group]
    tags = {tag["key"]: tag.get("value") for tag in task["tags"]}
    assert tags["dagster/run_id"] == launched.run_id and tags["app"] == "mediaembed"


def test_no_secret_value_leaves_secrets_manager(deployment: Deployment, launched: Launched) -> None:
    run = deployment.instance.get_run_by_id(launched.run_id)
    assert run is not None
    seen = json.dumps([launched.task, launched.task_definition, dict(run.tags), run.run_config], default=str)
    for name, value in [
        *SECRET_VALUES.items(),
        ("the daemon's AWS secret key", deployment.env["AWS_SECRET_ACCESS_KEY"]),
    ]:
        assert value not in seen, name
    [container] = launched.task_definition["containerDefinitions"]
    names = {item["name"] for item in container["environment"]}
    assert not names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "TWELVELABS_API_KEY"}


def test_the_run_worker_finds_its_run_with_the_tasks_environment(
    deployment: Deployment, launched: Launched
) -> None:
    """What `dagster api execute_run` does first in the task: open the instance from the command's ref, with
    only the task definition's environment and the secrets ECS injects (here: AWS pointed at moto)."""
    [container] = launched.task_definition["containerDefinitions"]
    [override] = launched.task["overrides"]["containerOverrides"]
    secrets = {s["name"]: dict(deployment.aws.secrets.values())[s["valueFrom"]] for s in container["secrets"]}
    env = {
        "PATH": "/usr/bin:/bin",
        **{item["name"]: item["value"] for item in container["environment"]},
        **secrets,
        **{k: deployment.env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
    }
    probe = (
        "import sys\n"
        "import dagster as dg\n"
        "import dagster._grpc.types  # registers ExecuteRunArgs, as `dagster api execute_run` does\n"
        "from dagster._serdes import deserialize_value\n"
        "args = deserialize_value(sys.argv[1])\n"
        "with dg.DagsterInstance.from_ref(args.instance_ref) as instance:\n"
        "    print(instance.get_run_by_id(args.run_id).job_name)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, override["command"][3]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == [JOB]


def test_run_monitoring_sees_the_task_stop(deployment: Deployment, launched: Launched) -> None:
    """The daemon's run monitoring asks the launcher for the worker's health: a task ECS stopped is a failed
    worker, whose run it then fails and whose pool slots it frees."""
    launcher, instance = deployment.instance.run_launcher, deployment.instance
    run = instance.get_run_by_id(launched.run_id)
    assert run is not None
    assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
    deployment.aws.client("ecs").stop_task(
        cluster=run.tags["ecs/cluster"], task=run.tags["ecs/task_arn"], reason="OutOfMemoryError: killed"
    )
    deployment.aws.report_exit(run.tags["ecs/cluster"], run.tags["ecs/task_arn"], 137)
    health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED
    assert "OutOfMemoryError" in (health.msg or "")


# --- what Dagster refuses ----------------------------------------------------------------------------------


def test_a_wrong_instance_key_is_refused_by_dagster(tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    config["run_monitoring"]["poll_interval_secs"] = config["run_monitoring"].pop("poll_interval_seconds")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(dg.DagsterInvalidConfigError, match="poll_interval_secs"):
        dg.DagsterInstance.from_config(str(tmp_path))


def test_a_wrong_launcher_key_is_refused_by_dagster(deployment: Deployment, tmp_path: Path) -> None:
    """The launcher's own config is checked when the launcher is built (lazily: by the daemon, the runs)."""
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    config["run_launcher"]["config"]["secret_tag"] = config["run_launcher"]["config"].pop("secrets_tag")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with (
        dg.DagsterInstance.from_config(str(tmp_path)) as instance,
        pytest.raises(dg.DagsterInvalidConfigError, match="secret_tag"),
    ):
        _ = instance.run_launcher
