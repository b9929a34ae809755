"""`make demo`: the whole pipeline on the local emulators and generated media, then sample searches."""

import os
import shlex
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from assets_defs import keys
from assets_defs.inventory.media_inventory import read_inventory
from assets_defs.migration.estimates import version_progress
from emulators.sample_media import SampleObject, upload_sample_media
from emulators.stack import start_local_stack
from harness.local_env import apply, local_settings, prepare_dagster_home
from harness.local_searcher import IDLE_SEC, LocalSearcherError, start_local_searcher
from harness.run_slots import PoolSlotTimeout
from harness.runner import SensorDriver, materialization_metadata, run_job
from mediaembed.progress import Progress
from mediaembed.search import print_hits, search
from pipelines.definitions import pipeline_resources
from resources.providers.embedding_jobs import EmbeddingOptions
from resources.providers.marengo_models import marengo_model
from resources.providers.model_routes import cost_from_metadata, describe_cost
from resources.tables.submission_ledger import SubmissionLedger

SAMPLE_QUERIES = ("yellow triangle", "a red circle", "low hum")
NEXT_QUERY = "red circle"


def next_step(workdir: Path) -> str:
    """The command that searches what the demo built after its emulators are gone, runnable as printed
    from the directory the demo ran in (the README quotes it)."""
    script = Path(sys.executable).parent / "mediaembed"
    if not script.exists():
        command = "mediaembed"
    elif script.is_relative_to(Path.cwd()):
        command = str(script.relative_to(Path.cwd()))
    else:
        command = str(script)
    line = f'{shlex.quote(command)} search --local "{NEXT_QUERY}"'
    return line if workdir == Path(".local") else f"{line} --workdir {shlex.quote(str(workdir))}"


def follow(bar: Progress, lake: Any, model_key: str) -> Callable[[pd.DataFrame], None]:
    """After each sensor tick: where the version stands (the pipeline's own progress counts, from the
    inventory and the ledger), as one redrawn line on a terminal and occasional plain lines otherwise."""
    model = marengo_model(model_key)
    inventory = read_inventory(lake)
    no_rows = pd.DataFrame({"media_id": [], "etag": []})

    def show(in_flight: pd.DataFrame) -> None:
        jobs = SubmissionLedger(lake, None).jobs(model.key)
        now = version_progress(inventory, jobs, no_rows, model, EmbeddingOptions())
        bar.update(now.done + now.failed, now.objects, f"{model.key}: {now.line()}")

    return show


def run_demo(
    workdir: Path, queries: tuple[str, ...] = SAMPLE_QUERIES, searcher_env: Mapping[str, str] | None = None
) -> int:
    """The demo; with `searcher_env` (the settings of the shell it was typed in), it ends by starting the
    work folder's local searcher with them, so the `search --local` it prints last answers warm."""
    try:
        return _run_demo(workdir, queries, searcher_env)
    except PoolSlotTimeout as error:
        print(f"mediaembed demo: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mediaembed demo: interrupted; run it again to carry on where it stopped", file=sys.stderr)
        return 130


def _run_demo(workdir: Path, queries: tuple[str, ...], searcher_env: Mapping[str, str] | None) -> int:
    settings = local_settings(workdir)
    samples: list[SampleObject] = []
    with start_local_stack(
        latency_sec=0.5,
        workdir=workdir / "bedrock",  # jobs of an earlier, interrupted demo are still known and finish
        twelvelabs_workdir=workdir / "twelvelabs",
        prepare_s3=lambda client: samples.extend(upload_sample_media(client, "media")),
    ) as stack:
        apply({**stack.env(), **settings})
        prepare_dagster_home(settings)
        print(
            f"local stack: S3 {stack.s3_endpoint}, Bedrock {stack.bedrock_endpoint}, "
            f"TwelveLabs {stack.twelvelabs_base_url}"
        )
        print(f"uploaded {len(samples)} sample objects to s3://media/; lake and index under {workdir}/")

        instance = dg.DagsterInstance.get()
        with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
            serving = built.lake.serving_versions().current()
        print(serving.describe())
        submit = run_job(instance, "embed_new_media", serving.serving)
        inventory = materialization_metadata(submit, keys.MEDIA_INVENTORY)
        invocations = materialization_metadata(submit, keys.MARENGO_INVOCATIONS)
        print(
            f"inventory: {inventory['dagster/row_count']} objects, {inventory['usable_objects']} usable, "
            f"{inventory['unusable_objects']} unusable, {inventory['media_seconds']:.1f} media seconds"
        )
        with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
            inventory_rows = read_inventory(built.lake)
        for problem in inventory_rows[inventory_rows["status"] != "ok"].itertuples():
            print(f"  skipped {problem.media_uri}: {problem.status}: {problem.reason}")
        usd = cost_from_metadata(invocations["estimated_cost_usd"]) or 0.0
        print(
            f"submitted {invocations['submitted']} new Marengo invocations "
            f"({invocations['already_handled']} already handled, {invocations['rejected']} rejected, "
            f"{describe_cost(usd, bool(invocations['priced']))})"
        )

        driver = SensorDriver(instance)
        with dg.build_resources({"lake": pipeline_resources["lake"]}) as built:
            bar = Progress(sys.stderr)
            try:
                driver.drain(built.lake, progress=follow(bar, built.lake, serving.serving))
            finally:
                bar.close()
        for result in driver.ingest_results:
            ingest = materialization_metadata(result, keys.MARENGO_EMBEDDINGS)
            index = materialization_metadata(result, keys.SEARCH_MARENGO_SEGMENTS)
            print(
                f"sensor run {result.run_id[:8]}: {ingest['objects_embedded']} embedded, "
                f"{ingest['objects_failed']} failed, {ingest['rows_written']} segments; "
                f"index {index['table']} now {index['dagster/row_count']} rows (v{index['table_version']})"
            )
        if not driver.ingest_results:
            print("sensor: nothing new to ingest")

        # Pegasus: a description, chapters and keywords per video, then the full-text index over them.
        described = run_job(instance, "describe_media", None)
        pegasus = materialization_metadata(described, keys.PEGASUS_DESCRIPTIONS)
        text_index = materialization_metadata(described, keys.SEARCH_DESCRIPTION_INDEX)
        print(
            f"\npegasus: {pegasus['calls_made']} calls, {pegasus['dagster/row_count']} descriptions; "
            f"full-text index {text_index['dagster/row_count']} rows"
        )

        for query in queries:
            print(f'\nsearch "{query}" (top 3):')
            # The serving version, read by search itself.
            print_hits(search(query, 3, env=os.environ), as_json=False)
        print(f'\nsearch "{queries[0]}" --mode hybrid (vectors and descriptions fused, top 3):')
        print_hits(search(queries[0], 3, mode="hybrid", env=os.environ), as_json=False)
    if searcher_env is not None:
        try:
            pid = start_local_searcher(workdir, searcher_env)
            print(
                f"\nlocal searcher started for `search --local` (pid {pid}): it keeps the query emulators "
                f"warm, and stops after {IDLE_SEC // 60} idle minutes or with `search --local --stop`"
            )
        except LocalSearcherError as error:
            print(f"\nmediaembed demo: {error}", file=sys.stderr)
    print("\nemulators stopped; search what the demo built with:")
    print(next_step(workdir))
    return 0
