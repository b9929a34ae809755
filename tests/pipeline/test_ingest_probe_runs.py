"""`mediaembed ingest` of a prefix holding more new objects than one probe batch: the listing leaves them
pending for probe_media runs, and the command waits for those and for the submissions that follow, instead
of ending at once with nothing seen (seen in bench/ingest_scale.py at 10,000 objects)."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

from tests.daemons import daemons_of
from tests.pipeline.own_media import BUCKET, SUMMARY, Emulated, emulate

PROBE_BATCH = 2  # own_files holds 4 objects: two probe runs of 2


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulated]:
    with emulate(tmp_path_factory.mktemp("probe-runs"), ["--latency", "0.05"]) as world:
        yield world


def test_ingest_waits_for_the_probe_runs_and_embeds_what_they_probed(emulated: Emulated) -> None:
    # Listing mode: with the emulated bucket's event queue bound, the media change sensor may take the
    # uploads' events first, and an event run probes its objects itself (seen in CI).
    done = emulated.ingest(
        f"s3://{BUCKET}/", MEDIAEMBED_PROBE_BATCH_OBJECTS=str(PROBE_BATCH), MEDIAEMBED_MEDIA_QUEUE_URL=""
    )

    assert done.returncode == 0, done.stderr[-3000:]
    summary = SUMMARY.search(done.stdout)
    assert summary, done.stdout
    counts = {k: int(v) for k, v in summary.groupdict().items()}
    assert counts["seen"] == len(emulated.files)
    assert (counts["embedded"], counts["skipped"], counts["failed"]) == (len(emulated.files) - 1, 1, 0)
    with dg.DagsterInstance.from_config(emulated.env["DAGSTER_HOME"]) as instance:
        runs = list(instance.get_runs())
    probes = [r for r in runs if r.job_name == "probe_media"]
    assert len(probes) == len(emulated.files) // PROBE_BATCH
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert not daemons_of(emulated.env["DAGSTER_HOME"]), "no daemon outlives the command that started it"


def test_a_probe_batch_that_is_not_a_count_is_one_line_naming_the_setting(emulated: Emulated) -> None:
    done = emulated.ingest(f"s3://{BUCKET}/", MEDIAEMBED_PROBE_BATCH_OBJECTS="many")

    assert done.returncode == 2  # refused before any run: nothing listed, probed or billed
    [line] = done.stderr.strip().splitlines()
    assert "MEDIAEMBED_PROBE_BATCH_OBJECTS='many' is not a whole number above 0" in line
