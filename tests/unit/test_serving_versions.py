"""The serving pointer: a record per change, created only if its sequence is free, on disk and on S3."""

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emulators.s3 import S3Emulator
from resources.storage.location import BotoAccess, location
from resources.tables.serving_versions import (
    AlreadyServing,
    RecordFolder,
    ServingChangeRefused,
    ServingConflict,
    ServingVersions,
    record_folder,
)


@pytest.fixture(scope="module")
def s3_client() -> Iterator[object]:
    emulator = S3Emulator().start()
    try:
        client = emulator.client()
        client.create_bucket(Bucket="lake")
        yield client
    finally:
        emulator.stop()


@pytest.fixture(params=["local", "s3"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> RecordFolder:
    if request.param == "local":
        return record_folder(location(str(tmp_path / "lake")))
    client = request.getfixturevalue("s3_client")
    return record_folder(location(f"s3://lake/{tmp_path.name}", BotoAccess(lambda: client)))


def test_a_new_lake_serves_the_configured_initial_version(folder: RecordFolder) -> None:
    assert ServingVersions(folder).current().serving == "marengo-3.0"
    state = ServingVersions(folder, initial="marengo-2.7").current()
    assert (state.serving, state.previous, state.since, state.sequence) == ("marengo-2.7", None, None, 0)
    with pytest.raises(ServingChangeRefused, match="MEDIAEMBED_SERVING_VERSION='marengo-9'"):
        ServingVersions(folder, initial="marengo-9").current()


def test_cut_over_then_roll_back_is_one_step_each_and_keeps_history(folder: RecordFolder) -> None:
    versions = ServingVersions(folder, initial="marengo-2.7")
    cut = versions.cut_over("marengo-3.0", by="ana", run_id="r1")
    assert (cut.serving, cut.previous, cut.action, cut.by, cut.sequence) == (
        "marengo-3.0",
        "marengo-2.7",
        "cut_over",
        "ana",
        1,
    )
    # Another reader (another process) sees the same record: it lives in the folder, not in this object.
    assert ServingVersions(folder).current() == cut
    back = versions.roll_back(by="bo", run_id="r2")
    assert (back.serving, back.previous, back.action) == ("marengo-2.7", "marengo-3.0", "rollback")
    assert [h.action for h in versions.history()] == ["cut_over", "rollback"]
    assert "rollback returns to marengo-3.0" in back.describe()


class FolderWithAnotherChange:
    """A record folder where `meanwhile` runs once, just before the first record is created through it:
    another process changing the pointer between this one's read and its write."""

    def __init__(self, folder: RecordFolder, meanwhile: Callable[[], object]) -> None:
        self.folder = folder
        self.meanwhile = [meanwhile]

    def names(self) -> list[str]:
        return self.folder.names()

    def read(self, name: str) -> bytes:
        return self.folder.read(name)

    def create(self, name: str, body: bytes) -> bool:
        if self.meanwhile:
            self.meanwhile.pop()()
        return self.folder.create(name, body)


def test_a_change_based_on_a_stale_read_loses_and_nothing_is_overwritten(folder: RecordFolder) -> None:
    first = ServingVersions(folder)
    racing = FolderWithAnotherChange(folder, lambda: first.cut_over("marengo-2.7", by="a"))
    second = ServingVersions(racing)
    # `second` read before `first` wrote: its write targets the same sequence and must lose, told who won.
    with pytest.raises(ServingConflict, match="changed while") as lost:
        second.cut_over("marengo-2.7", by="b")
    assert [h.by for h in second.history()] == ["a"]
    [won] = second.history()
    assert lost.value.winner == won
    assert won.since is not None and won.describe_change() in str(lost.value)
    assert f"cut over to marengo-2.7 by a at {won.since:%Y-%m-%d %H:%M:%S} UTC" in str(lost.value)


def test_refusals_name_the_reason(folder: RecordFolder) -> None:
    versions = ServingVersions(folder)
    with pytest.raises(ServingChangeRefused, match="nothing to roll back to"):
        versions.roll_back(by="a")
    with pytest.raises(AlreadyServing, match="already serves") as served:
        versions.cut_over("marengo-3.0", by="a")
    assert served.value.state == versions.current()
    with pytest.raises(ValueError, match="unknown Marengo model"):
        versions.cut_over("marengo-9", by="a")
    with pytest.raises(ServingChangeRefused, match="cut over to another version before retiring"):
        versions.retire("marengo-3.0", by="a")
    versions.cut_over("marengo-2.7", by="a")
    retired = versions.retire("marengo-3.0", by="a")
    assert (retired.serving, retired.previous, retired.retired) == ("marengo-2.7", None, ("marengo-3.0",))
    with pytest.raises(ServingChangeRefused, match="is retired"):
        versions.cut_over("marengo-3.0", by="a")


def test_record_folders_create_only_once(tmp_path: Path, s3_client: object) -> None:
    on_s3 = location("s3://lake", BotoAccess(lambda: s3_client))
    for folder in (RecordFolder(location(str(tmp_path)), "f"), RecordFolder(on_s3, "once")):
        assert folder.create("00000001.json", b"{}")
        assert not folder.create("00000001.json", b'{"other": 1}')
        assert folder.read("00000001.json") == b"{}"
        assert folder.names() == ["00000001.json"]
    assert not list((tmp_path / "f").glob(".*.tmp")), "no temporary file is left behind"


def test_the_serving_asset_alone_never_moves_the_pointer(tmp_path: Path) -> None:
    """Materializing search/serving_version without its checks in the run (the asset alone from the UI)
    fails."""
    import dagster as dg

    from assets_defs.search.serving import serving_version
    from resources.storage.lake import Lake
    from resources.storage.s3_storage import S3Storage

    lake = Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))
    result = dg.materialize(
        [serving_version],
        partition_key="marengo-2.7",
        resources={"lake": lake},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    data = failure.step_failure_data.user_failure_data
    assert data is not None and "did not pass in this run" in str(data.description)
    assert "covers_every_eligible_object" in str(data.description)
    assert lake.serving_versions().history() == [], "the pointer did not move"


def test_a_rollback_names_the_version_it_means_to_return_to(folder: RecordFolder) -> None:
    versions = ServingVersions(folder)
    versions.cut_over("marengo-2.7", by="ana")
    refusal = "not rolled back to marengo-3.5: a rollback returns to marengo-3.0"
    with pytest.raises(ServingChangeRefused, match=re.escape(refusal)):
        versions.roll_back(by="bo", to="marengo-3.5")
    assert versions.roll_back(by="bo", to="marengo-3.0").serving == "marengo-3.0"


LOCAL_SETTINGS = {
    "AWS_REGION": "us-east-1",
    "MEDIAEMBED_MEDIA_URI": "s3://media/",
    "MEDIAEMBED_ASYNC_OUTPUT_URI": "s3://outputs/marengo-async",
}


def test_cut_over_and_rollback_are_launched_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both are a run of the serving asset's partition of the version to serve, with the same config: the
    launchpad, `mediaembed serving` and a test launch them alike. The rollback materializes that partition
    on a real instance; a partition other than the one a rollback returns to is refused in one line."""
    import dagster as dg

    from assets_defs import keys
    from assets_defs.search.serving import CUT_OVER_JOB, ROLL_BACK_JOB
    from mediaembed import serving as command
    from pipelines.definitions import defs
    from resources.storage.lake import Lake
    from resources.storage.s3_storage import S3Storage

    for name, value in {**LOCAL_SETTINGS, "MEDIAEMBED_LAKE_URI": str(tmp_path / "lake")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MEDIAEMBED_INDEX_URI", str(tmp_path / "index"))
    assert (command.CUT_OVER_JOB, command.ROLL_BACK_JOB) == (CUT_OVER_JOB, ROLL_BACK_JOB)
    launch = {"ops": {command.SERVING_STEP: {"config": {"by": "bo"}}}}
    for name in (CUT_OVER_JOB, ROLL_BACK_JOB):
        job = defs.resolve_job_def(name)
        assert job.partitions_def is not None and job.partitions_def.get_partition_keys() == [
            "marengo-2.7",
            "marengo-3.0",
            "marengo-3.5",
        ]
        assert dg.validate_run_config(job, launch)
        assert keys.SEARCH_SERVING_VERSION in job.asset_layer.executable_asset_keys

    lake = Lake(root=str(tmp_path / "lake"), storage=S3Storage(region_name="us-east-1"))
    lake.serving_versions().cut_over("marengo-2.7", by="ana")
    job = defs.resolve_job_def(ROLL_BACK_JOB)  # with the definitions' resources, bound from the settings
    with dg.instance_for_test() as instance:
        wrong = job.execute_in_process(
            run_config=launch, partition_key="marengo-3.5", instance=instance, raise_on_error=False
        )
        [failure] = [e for e in wrong.all_events if e.is_step_failure]
        data = failure.step_failure_data.user_failure_data
        assert data is not None and "\n" not in str(data.description)
        assert str(data.description).startswith(
            "not rolled back to marengo-3.5: a rollback returns to marengo-3.0"
        )
        assert lake.serving_versions().current().serving == "marengo-2.7"

        back = job.execute_in_process(run_config=launch, partition_key="marengo-3.0", instance=instance)
        [done] = back.asset_materializations_for_node(command.SERVING_STEP)
        shown = {k: getattr(v, "value", v) for k, v in done.metadata.items()}
        assert (done.partition, shown["action"], shown["from"], shown["by"]) == (
            "marengo-3.0",
            "rollback",
            "marengo-2.7",
            "bo",
        )
        latest = instance.get_latest_materialization_event(keys.SEARCH_SERVING_VERSION)
        assert latest is not None and latest.run_id == back.run_id
    assert lake.serving_versions().current().serving == "marengo-3.0"
