"""A pipeline step in a worker process of its own, as a separate run worker would execute it, so a test can
SIGKILL it at an exact point.

Workers are forked from a multiprocessing fork server that imported this module (and so Dagster and the
definitions) once: each worker then starts in milliseconds instead of re-importing for seconds, and is a
separate process with its own pid, environment and output file, killed like any other.
"""

import json
import multiprocessing
import os
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import dagster as dg

from harness.runner import SensorDriver, run_job
from mediaembed.cli import main as cli
from resources.providers.marengo_models import MARENGO_3_0


def fork_server() -> ForkServerContext:
    """The fork server context, preloading this module (process-wide: the first call decides)."""
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, ForkServerContext)
    context.set_forkserver_preload([__name__])
    return context


def work(step: str, config: dict[str, Any], env: dict[str, str], log: str) -> None:
    """Run `step` (submit: the embed_new_media job; ingest: one sensor tick and the runs it requests;
    ingest-run: the ingest job itself, as the UI's materialize button starts it; cut-over: the command
    `mediaembed serving cut-over <config key>`, its exit code in the .done file) with `env` as the whole
    environment, stdout and stderr going to `log`."""
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.environ.clear()
    os.environ.update(env)
    if step == "cut-over":
        code = cli(["serving", "cut-over", config["key"], "--by", config.get("by", "")])
        Path(log).with_suffix(".done").write_text(json.dumps({"step": step, "exit_code": code}))
        return
    with dg.DagsterInstance.get() as instance:
        if step == "submit":
            run_config = {"ops": {"marengo__invocations": {"config": config}}} if config else None
            run_job(instance, "embed_new_media", MARENGO_3_0.key, run_config=run_config)
        elif step == "ingest":
            SensorDriver(instance).tick()
        elif step == "ingest-run":
            run_job(instance, "ingest_marengo_embeddings", MARENGO_3_0.key)
        else:
            raise ValueError(f"unknown step {step!r}: submit, ingest, ingest-run or cut-over")
    Path(log).with_suffix(".done").write_text(json.dumps({"step": step}))
