"""`mediaembed ingest` on a Postgres-backed instance: the dagster.yaml of docs/deployment.md in DAGSTER_HOME,
the test server of tests/postgres.py behind it, the emulators of `mediaembed emulate` in front.

The command submits its run to the instance's queue and starts the daemon, whose sensor requests the
submission and ingest runs; every one of them, the sensor's cursor and the daemon's heartbeats live in
Postgres. What the summary says is checked against the instance and against what the Bedrock emulator
itself kept of each invocation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_postgres import PostgresRunStorage

from emulators.bedrock_runtime.invocations import Invocation
from emulators.bedrock_runtime.state import InvocationStore
from tests.daemons import daemons_of
from tests.pipeline.own_media import BUCKET, INVOCATIONS, SUMMARY, Emulated, emulate, emulator_statuses
from tests.postgres import URL_VARIABLE, documented_instance_yaml

SENSOR = "marengo_invocation_sensor"


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulated]:
    with emulate(tmp_path_factory.mktemp("own"), ["--latency", "0.05"]) as world:  # no injected failures
        yield world


def invocations_per_object(emulated: Emulated) -> Counter[str]:
    """How many async invocations the Bedrock emulator created for each media object (its own records)."""
    store = InvocationStore(emulated.workdir / "bedrock")
    try:
        documents, _ = store.load()
    finally:
        store.close()
    requests = [Invocation.from_document(doc, emulated.env["AWS_REGION"]).request for doc in documents]
    return Counter(request.media.uri if request.media else "<no media>" for request in requests)


def test_ingest_runs_on_a_postgres_instance(
    emulated: Emulated, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(documented_instance_yaml())

    done = emulated.ingest(f"s3://{BUCKET}/", DAGSTER_HOME=str(home), **{URL_VARIABLE: postgres_url})

    assert done.returncode == 0, done.stderr[-3000:]
    summary, invocations = SUMMARY.search(done.stdout), INVOCATIONS.search(done.stdout)
    assert summary and invocations, done.stdout
    assert summary.groupdict() == {"seen": "4", "embedded": "3", "skipped": "1", "failed": "0"}
    assert "wrote " not in done.stderr  # the documented dagster.yaml was kept as it was
    assert (home / "dagster.yaml").read_text() == documented_instance_yaml()

    # Bedrock billed each embedded object once: invocations = embedded objects, one per object.
    embedded = int(summary["embedded"])
    assert emulator_statuses(emulated.bedrock()) == Counter({"Completed": embedded})
    assert int(invocations["submitted"]) == int(invocations["completed"]) == embedded
    per_object = invocations_per_object(emulated)
    assert sum(per_object.values()) == embedded
    assert set(per_object.values()) == {1}, per_object

    # The runs live in Postgres, all ended in success, and the sensor requested the ingest runs.
    monkeypatch.setenv(URL_VARIABLE, postgres_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        runs = list(instance.get_runs())
    assert not (home / "history" / "runs.db").exists()  # nothing went to SQLite
    assert {r.run_id: r.status for r in runs} == {r.run_id: dg.DagsterRunStatus.SUCCESS for r in runs}
    by_command = [r for r in runs if r.tags.get("mediaembed/command") == "ingest"]
    assert [r.job_name for r in by_command] == ["embed_new_media"]
    # Nothing failed, so the command's run submitted every invocation; the sensor requested the ingests.
    ingest_runs = [r for r in runs if r.job_name == "ingest_marengo_embeddings"]
    assert ingest_runs and all(r.tags.get("dagster/sensor_name") == SENSOR for r in ingest_runs)
    assert not daemons_of(str(home)), "no daemon outlives the command that started it"
