"""The code location loads, and its catalog stays what users and the UI rely on."""

import ast
from collections.abc import Iterable
from pathlib import Path

import dagster as dg

from assets_defs import keys
from assets_defs.marengo.invocations import HOLD_QUOTA_SEC
from assets_defs.migration.checks import WHOLE_VERSION_CHECKS
from pipelines.definitions import defs
from pipelines.jobs import SUBMITTING_JOBS

ROOT = Path(__file__).resolve().parents[1]
PRODUCTION = ("pipelines", "assets_defs", "resources")


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_catalog_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    catalog = {
        node.key.to_user_string(): (
            node.group_name,
            sorted(node.kinds),
            node.partitions_def.get_partition_keys() if node.partitions_def else None,
        )
        for node in graph.asset_nodes
    }
    models = ["marengo-2.7", "marengo-3.0", "marengo-3.5"]
    assert catalog == {
        "media/inventory": ("media", ["deltalake", "s3"], None),
        "migration/plan": ("migration", [], models),
        "marengo/invocations": ("marengo", ["bedrock", "twelvelabs"], models),
        "marengo/embeddings": ("marengo", ["deltalake", "s3"], models),
        "search/marengo_segments": ("search", ["lancedb"], models),
        "migration/checked_version": ("migration", [], models),
        "search/serving_version": ("serving", [], models),
        "pegasus/descriptions": ("pegasus", ["bedrock", "deltalake"], None),
        "pegasus/chapters": ("pegasus", ["deltalake"], None),
        "search/description_index": ("search", ["lancedb"], None),
    }
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert checks == {
        ("media/inventory", "all_media_readable"),
        ("marengo/invocations", "provider_accepts_requests"),
        ("marengo/invocations", "within_budget"),
        ("migration/plan", "estimate_within_budget"),
        ("marengo/embeddings", "finished_jobs_end"),
        ("marengo/embeddings", "no_job_running_too_long"),
        ("marengo/embeddings", "vectors_well_formed"),
        ("marengo/embeddings", "segments_within_media"),
        ("search/marengo_segments", "matches_embedding_table"),
        ("search/marengo_segments", "no_duplicate_segment_ids"),
        ("search/marengo_segments", "removals_confirmed"),
        ("pegasus/descriptions", "no_truncated_descriptions"),
        ("pegasus/descriptions", "calls_accepted"),
        ("search/description_index", "matches_description_tables"),
        *(("migration/checked_version", key.name) for c in WHOLE_VERSION_CHECKS for key in c.check_keys),
    }
    assert sum(len(c.check_keys) for c in WHOLE_VERSION_CHECKS) == 8
    cut_over = defs.resolve_job_def("cut_over_serving_version")
    selected = {key.name for key in cut_over.asset_layer.asset_graph.asset_check_keys}
    assert {key.name for c in WHOLE_VERSION_CHECKS for key in c.check_keys} <= selected, (
        "the cut-over runs every check"
    )
    pools = {node.key.to_user_string(): node.pools for node in graph.asset_nodes if node.pools}
    assert pools == {
        "marengo/invocations": {"marengo_submit"},
        "marengo/embeddings": {"marengo_ingest"},
        "search/marengo_segments": {"lancedb_writer"},
        "pegasus/descriptions": {"pegasus"},
        "search/description_index": {"lancedb_writer"},
    }


def test_every_asset_has_a_name_of_its_own_in_the_ui() -> None:
    """The UI lists an asset by its key's last component inside its group: no two assets may share it, and
    the serving pointer sits alone in a group named for it (not as `marengo` among the search indexes)."""
    graph = defs.resolve_asset_graph()
    names = [node.key.path[-1] for node in graph.asset_nodes]
    assert len(names) == len(set(names)), sorted(names)
    serving = graph.get(keys.SEARCH_SERVING_VERSION)
    assert serving.key.path[-1] == "serving_version"
    alone = [node.key for node in graph.asset_nodes if node.group_name == serving.group_name]
    assert alone == [keys.SEARCH_SERVING_VERSION] and serving.group_name == "serving"


def test_jobs_sensor_and_schedule_target_the_right_assets() -> None:
    ingest = defs.resolve_job_def("ingest_marengo_embeddings")
    submit = defs.resolve_job_def("embed_new_media")
    assert {k.to_user_string() for k in ingest.asset_layer.executable_asset_keys} == {
        "marengo/embeddings",
        "search/marengo_segments",
    }
    assert {k.to_user_string() for k in submit.asset_layer.executable_asset_keys} == {
        "media/inventory",
        "marengo/invocations",
    }
    # Submission without the bucket listing: only the invocations asset, planned from the inventory table.
    submit_only = defs.resolve_job_def("submit_marengo_invocations")
    assert {k.to_user_string() for k in submit_only.asset_layer.executable_asset_keys} == {
        "marengo/invocations"
    }
    sensor = defs.resolve_sensor_def("marengo_invocation_sensor")
    assert sorted(t.job_name for t in sensor.targets) == [
        "ingest_marengo_embeddings",
        "submit_marengo_invocations",
    ]
    assert defs.resolve_schedule_def("embed_new_media_schedule").job_name == "embed_new_media"
    assert defs.resolve_schedule_def("describe_new_media_schedule").job_name == "describe_media"
    describe = defs.resolve_job_def("describe_media")
    assert {k.to_user_string() for k in describe.asset_layer.executable_asset_keys} == {
        "pegasus/descriptions",
        "pegasus/chapters",
        "search/description_index",
    }


def _top_level_names(nodes: Iterable[ast.AST]) -> set[str]:
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _imports(package: str) -> set[str]:
    """Every package imported anywhere in `package`, lazily or not."""
    return {
        name
        for path in (ROOT / package).rglob("*.py")
        for name in _top_level_names(ast.walk(ast.parse(path.read_text())))
    }


def test_every_job_has_a_max_runtime_that_run_monitoring_enforces() -> None:
    hold = HOLD_QUOTA_SEC
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue  # Dagster's implicit asset job
        limit = int(job.tags.get("dagster/max_runtime", 0))
        assert limit > 0, f"{job.name} has no dagster/max_runtime: a hung run would hold its slot"
        if job.name in SUBMITTING_JOBS:
            assert limit > hold, f"{job.name}: max_runtime {limit} s would end the quota hold ({hold} s)"


def test_emulators_and_production_never_import_each_other() -> None:
    """The emulators are a second implementation of the contract; sharing code would test it with itself."""
    assert not _imports("emulators") & {*PRODUCTION, "mediaembed", "harness"}
    for package in PRODUCTION:
        assert not _imports(package) & {"emulators", "harness", "mediaembed", "tests"}, package


def test_imports_point_down() -> None:
    """pipelines -> assets_defs -> resources: nothing below imports what sits above it."""
    assert "pipelines" not in _imports("assets_defs") | _imports("resources")
    assert "assets_defs" not in _imports("resources")


def test_the_command_keeps_the_local_harness_at_arms_length() -> None:
    """`mediaembed` is production: it reaches the harness (demo, dev, emulators) only when asked to."""
    for path in (ROOT / "mediaembed").rglob("*.py"):
        module_level = _top_level_names(ast.parse(path.read_text()).body)
        assert not module_level & {"emulators", "harness", "tests"}, path


def test_every_workspace_names_the_code_location_mediaembed() -> None:
    """The UI shows the location by the name its workspace gives it (else the module path,
    `pipelines.definitions`): `dg dev`, `dagster dev`, the commands' own workspace and both deployments
    all name it `mediaembed`."""
    import tomllib

    import yaml

    from mediaembed.engine import LOCATION_NAME, workspace_yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    assert project["dg"]["project"]["code_location_name"] == "mediaembed"
    assert project["dagster"]["code_location_name"] == "mediaembed"
    assert LOCATION_NAME == "mediaembed"
    workspaces = {
        "the commands' workspace": workspace_yaml(),
        **{
            str(path.relative_to(ROOT)): path.read_text()
            for path in (
                ROOT / "workspace.yaml",
                ROOT / "deploy/workspace.yaml",
                ROOT / "deploy/local/workspace.yaml",
            )
        },
    }
    for name, text in workspaces.items():
        [entry] = yaml.safe_load(text)["load_from"]
        [target] = entry.values()
        assert target["location_name"] == "mediaembed", name
