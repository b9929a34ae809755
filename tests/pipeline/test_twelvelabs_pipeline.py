"""The same pipeline with the TwelveLabs API serving Marengo: the same tables and the same answers as on
Bedrock, both providers at once in one instance, and a kill between a task create and the ledger write that
never leads to a second billed task."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout
from pathlib import Path

import dagster as dg
import pytest

from harness.local_env import prepare_dagster_home
from harness.runner import SensorDriver, materialization_metadata, run_job
from mediaembed.cli import main as cli
from resources.providers.marengo_models import MARENGO_3_0, MARENGO_3_5
from resources.tables.submission_ledger import SubmissionLedger
from tests.faults.child import fork_server, work
from tests.faults.world import Child, gated
from tests.pipeline.conftest import World, build_world

USABLE = 7
QUERIES = ("yellow triangle", "a red circle", "blue square", "low hum", "green triangle")


def search_json(text: str, model: str = MARENGO_3_0.key, top_k: int = 3) -> list[dict]:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["search", text, "--top-k", str(top_k), "--json", "--model", model]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def embed_all(world: World, model: str = MARENGO_3_0.key) -> dict:
    """Submit every object for `model`, then ingest once the providers are idle; the submission's metadata,
    with the ingest's embeddings metadata under "ingest"."""
    submitted = materialization_metadata(
        run_job(world.instance, "embed_new_media", model), ["marengo", "invocations"]
    )
    world.stack.bedrock.wait_until_idle(timeout=60)
    world.stack.twelvelabs.wait_until_idle(timeout=60)
    driver = SensorDriver(world.instance)
    driver.tick()
    [ingest] = driver.ingest_results
    return {**submitted, "ingest": materialization_metadata(ingest, ["marengo", "embeddings"])}


def answers(model: str = MARENGO_3_0.key) -> list[list[tuple[str, float | None, float | None, str, float]]]:
    return [
        [
            (h["media_uri"], h["start_sec"], h["end_sec"], h["embedding_option"], round(h["score"], 4))
            for h in hits
        ]
        for hits in (search_json(q, model) for q in QUERIES)
    ]


def test_twelvelabs_gives_the_same_tables_and_answers_as_bedrock(tmp_path: Path) -> None:
    results = {}
    for provider in ("bedrock", "twelvelabs"):
        with (
            pytest.MonkeyPatch.context() as env,
            build_world(
                tmp_path / provider, env, {"MEDIAEMBED_PROVIDERS": f"marengo-3.0={provider}"}
            ) as world,
        ):
            submitted = embed_all(world)
            assert submitted["provider"] == provider and submitted["submitted"] == USABLE
            jobs = SubmissionLedger(world.lake, provider).jobs(MARENGO_3_0.key)
            assert (jobs["status"] == "completed").sum() == USABLE
            results[provider] = answers()
            other = world.stack.twelvelabs if provider == "bedrock" else world.stack.bedrock
            assert sum(other.calls.values()) == 0, f"{provider} alone served the run"
    assert results["twelvelabs"] == results["bedrock"]
    assert results["twelvelabs"][0][0][:3] == ("s3://media/videos/shapes_a.mp4", 4.0, 9.0)


def test_3_0_on_bedrock_and_3_5_on_twelvelabs_in_one_instance(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIAEMBED_PROVIDERS", "marengo-3.0=bedrock,marengo-3.5=twelvelabs")
    on_bedrock = embed_all(world, MARENGO_3_0.key)
    on_twelvelabs = embed_all(world, MARENGO_3_5.key)
    assert (on_bedrock["provider"], on_bedrock["submitted"]) == ("bedrock", USABLE)
    assert (on_twelvelabs["provider"], on_twelvelabs["submitted"]) == ("twelvelabs", USABLE)
    # TwelveLabs publishes no price in the route tables: its cost reads "unpriced", never a free-looking 0.
    assert isinstance(on_bedrock["estimated_cost_usd"], float) and on_bedrock["estimated_cost_usd"] > 0
    assert on_twelvelabs["estimated_cost_usd"] == "unpriced" and on_twelvelabs["priced"] is False
    # Each version's embeddings say who made them, and plot what the version has: all of it, at its cost.
    for done, provider in ((on_bedrock["ingest"], "bedrock"), (on_twelvelabs["ingest"], "twelvelabs")):
        assert done["provider"] == provider and done["objects_embedded"] == USABLE
        assert (done["coverage_fraction"], done["embedded_objects"]) == (1.0, USABLE)
        assert isinstance(done["dimension"], str), "a setting is text: it would plot as a flat line"
    bedrock_cost = on_bedrock["ingest"]["cost_so_far_usd"]
    assert isinstance(bedrock_cost, float) and bedrock_cost > 0
    assert on_twelvelabs["ingest"]["cost_so_far_usd"] == "unpriced"
    assert on_bedrock["coverage_fraction"] == 0.0, "the submission run's figures are from before ingest"
    assert world.stack.bedrock.created_invocations == USABLE
    assert world.stack.twelvelabs.created_tasks == USABLE  # 3.5 embeds images as tasks too
    assert SubmissionLedger(world.lake, None).in_progress().empty
    for model in (MARENGO_3_0.key, MARENGO_3_5.key):
        [top] = search_json("yellow triangle", model, top_k=1)
        assert (top["media_uri"], top["start_sec"], top["end_sec"], top["model"]) == (
            "s3://media/videos/shapes_a.mp4",
            4.0,
            9.0,
            model,
        )


def test_a_kill_between_task_create_and_ledger_write_bills_one_task(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIAEMBED_PROVIDERS", "marengo-3.0=twelvelabs")
    settings = dict(os.environ)
    prepare_dagster_home(settings)
    api = world.stack.twelvelabs

    def creates(environ: dict) -> bool:
        return environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"] == "/v1.3/embed-v2/tasks"

    with gated(api, creates, allow=2) as gate:
        log = Path(settings["DAGSTER_HOME"]) / "worker-submit.log"
        process = fork_server().Process(target=work, args=("submit", {}, settings, str(log)), daemon=True)
        process.start()
        child = Child(process, log)
        gate.wait_held(1, child.alive)
        assert gate.passed == 2
        # The creates after the second are on the wire (sent together once one was accepted): the API
        # makes their tasks, nobody records them.
        child.kill()
        gate.release()
        on_the_wire = gate.held
    assert api.created_tasks == 2 + on_the_wire
    with dg.DagsterInstance.from_config(settings["DAGSTER_HOME"]) as instance:
        again = materialization_metadata(
            run_job(instance, "embed_new_media", MARENGO_3_0.key), ["marengo", "invocations"]
        )
        assert again["recovered_after_crash"] >= 1
        api.wait_until_idle(timeout=60)
        SensorDriver(instance).tick()
    tasks_per_object: dict[str, int] = {}
    for task in api.tasks.values():
        url = task.request.source.url if task.request.source else ""
        key = url.split("?", 1)[0].split("/media/", 1)[1]
        tasks_per_object[key] = tasks_per_object.get(key, 0) + 1
    assert set(tasks_per_object.values()) == {1}, tasks_per_object
    jobs = SubmissionLedger(world.lake, "twelvelabs").jobs(MARENGO_3_0.key)
    assert (jobs["status"] == "completed").sum() == USABLE
    assert api.created_tasks + sum(1 for t in jobs["invocation_id"] if str(t).startswith("sync-")) == USABLE
