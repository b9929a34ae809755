"""A model version's backfill as a person launches it: `mediaembed dev`, the Dagster UI in Debian's chromium
(driven by Playwright's Python package, never its own browser download), the target version's partition
chosen in the asset's Partitions view, and the embeddings of that version in the lake at the end.

Dagster's partition dialog launches one chosen partition as one run (several partitions: a backfill with a
run each), so the test follows that run, then the ingest runs the invocation sensor starts as jobs finish.
Screenshots and the page-load figures go to `test-artifacts/` (git-ignored) for CI to keep; the figures
are recorded, never asserted (timing lives in bench/).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from resources.providers.marengo_models import marengo_model
from resources.tables.embedding_table import EmbeddingTable
from resources.tables.submission_ledger import SubmissionLedger
from tests.dev_stack import DevStack, dev_stack, wait_for

__all__ = ["dev_stack"]  # the fixture, for this module's tests and the catalog's

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is absent: `apt-get install chromium` as root (make test does it where it can)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is absent: `make .venv/.installed` installs the dev extra"
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TARGET = "marengo-2.7"
# Every wait is bounded: the stack's start, each page, the run, and the ingest that follows.
PAGE_MS = 60_000
RUN_SEC = 600
INGEST_SEC = 600
ACTIVE = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING", "MANAGED"}

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status jobName } }
  }
}
"""
LATEST = """
query Latest($path: [String!]!, $partitions: [String!]) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(limit: 1, partitions: $partitions) { runId partition } }
  }
}
"""


def _runs(stack: DevStack, partition: str) -> list[dict[str, Any]]:
    tags = [{"key": "dagster/partition", "value": partition}]
    return list(stack.graphql(RUNS, {"filter": {"tags": tags}})["runsOrError"]["results"])


def _materialized(stack: DevStack, path: list[str], partition: str | None = None) -> str | None:
    """The run id of the asset's (partition's) latest materialization, None before the first."""
    variables = {"path": path, "partitions": [partition] if partition else None}
    found = stack.graphql(LATEST, variables)["assetOrError"].get("assetMaterializations") or []
    return str(found[0]["runId"]) if found else None


def _run_ended(stack: DevStack, run_id: str) -> str | None:
    found = stack.graphql(RUNS, {"filter": {"runIds": [run_id]}})["runsOrError"]["results"]
    return None if not found or found[0]["status"] in ACTIVE else str(found[0]["status"])


def _ingested(stack: DevStack) -> tuple[int, set[str]] | None:
    """(rows, media) of the target's embedding table once no job of the version is open, else None."""
    jobs = SubmissionLedger(stack.lake, None).jobs(TARGET)
    if jobs.empty or (jobs["status"] == "in_progress").any():
        return None
    table = EmbeddingTable(stack.lake, marengo_model(TARGET)).read(columns=["media_uri", "model_key"])
    if table.num_rows == 0:
        return None
    return table.num_rows, set(table.column("media_uri").to_pylist())


def test_a_version_backfilled_from_the_ui_ends_in_its_embedding_table(dev_stack: DevStack) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "ui_backfill_failure.png").unlink(missing_ok=True)  # a failure of an earlier run
    figures: dict[str, float] = {}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(PAGE_MS)
        try:
            partitions_view = f"{dev_stack.url}/assets/marengo/invocations?view=partitions"

            started = time.monotonic()
            page.goto(partitions_view)
            page.get_by_role("button", name="Skip").click()  # "Join the Dagster community", first visit
            page.get_by_role("button", name="Materialize…").wait_for()
            page.get_by_text(TARGET, exact=True).first.wait_for()
            figures["partitions_view_first_load_sec"] = time.monotonic() - started

            # The inventory the version's submissions plan from: once, from its own asset page.
            page.goto(f"{dev_stack.url}/assets/media/inventory")
            page.get_by_role("button", name=re.compile(r"Materialize$")).click()
            inventory_run = wait_for(
                "a materialization of media/inventory",
                RUN_SEC,
                lambda: _materialized(dev_stack, ["media", "inventory"]),
            )
            ended = wait_for("the inventory run's end", RUN_SEC, lambda: _run_ended(dev_stack, inventory_run))
            assert ended == "SUCCESS", dev_stack.log_tail()

            started = time.monotonic()
            page.goto(partitions_view)
            page.get_by_role("button", name="Materialize…").wait_for()
            page.get_by_text(TARGET, exact=True).first.wait_for()
            figures["partitions_view_load_sec"] = time.monotonic() - started

            before = {run["runId"] for run in _runs(dev_stack, TARGET)}
            page.get_by_role("button", name="Materialize…").click()
            dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize")
            dialog.get_by_text("Select a partition or create one").click()
            page.get_by_role("menuitem", name=TARGET).click()
            dialog.get_by_text("Launch runs to materialize").click()  # closes the partition list
            assert "1 partition" in dialog.inner_text()
            dialog.get_by_role("button", name="Launch 1 run").click()

            def launched() -> str | None:
                new = [r for r in _runs(dev_stack, TARGET) if r["runId"] not in before]
                return str(new[0]["runId"]) if new else None

            run_id = wait_for(f"a run of {TARGET} launched from the dialog", 60, launched)
            page.screenshot(path=str(ARTIFACTS / "ui_backfill_launched.png"))
            status = wait_for(f"the end of run {run_id}", RUN_SEC, lambda: _run_ended(dev_stack, run_id))
            assert status == "SUCCESS", dev_stack.log_tail()
            assert _materialized(dev_stack, ["marengo", "invocations"], TARGET) == run_id

            # The sensor hands finished jobs to ingest runs: the version's table fills with no one acting.
            rows, media = wait_for(
                f"every {TARGET} job ingested", INGEST_SEC, lambda: _ingested(dev_stack), 5
            )
            assert _materialized(dev_stack, ["marengo", "embeddings"], TARGET) is not None
            jobs = SubmissionLedger(dev_stack.lake, None).jobs(TARGET)
            completed = set(jobs.loc[jobs["status"] == "completed", "media_uri"])
            assert completed and completed <= media, f"completed jobs without rows: {completed - media}"
            model = marengo_model(TARGET)
            table = EmbeddingTable(dev_stack.lake, model).read(columns=["model_key", "vector"])
            assert set(table.column("model_key").to_pylist()) == {TARGET}
            assert {len(vector) for vector in table.column("vector").to_pylist()} == {model.dimension}

            started = time.monotonic()
            page.goto(f"{dev_stack.url}/assets/marengo/embeddings?view=partitions")
            page.get_by_text(TARGET, exact=True).first.wait_for()
            figures["embeddings_partitions_view_load_sec"] = time.monotonic() - started
            page.screenshot(path=str(ARTIFACTS / "ui_backfill_ingested.png"))
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "ui_backfill_failure.png"))
            raise
        finally:
            browser.close()
    figures["rows"] = rows
    (ARTIFACTS / "ui_backfill.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"UI backfill of {TARGET}: {json.dumps(figures)}; screenshots in {ARTIFACTS}")
