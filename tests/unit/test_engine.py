"""Whether a daemon serves the instance, from its heartbeats: the choice `mediaembed ingest` and `serving`
make before they start one of their own."""

from dataclasses import dataclass

from mediaembed.engine import HEARTBEAT_FRESH_SEC, serving_daemon, workspace_yaml

NOW = 1_000_000.0


@dataclass(frozen=True)
class Beat:
    timestamp: float


def test_a_recent_heartbeat_means_a_daemon_serves() -> None:
    assert serving_daemon({"SENSOR": Beat(NOW - 5)}, NOW)
    assert not serving_daemon({}, NOW)


def test_a_heartbeat_older_than_the_tolerance_means_none_does() -> None:
    assert not serving_daemon({"SENSOR": Beat(NOW - HEARTBEAT_FRESH_SEC - 1)}, NOW)


def test_the_last_beats_of_a_daemon_a_command_stopped_do_not_count() -> None:
    beats = {"SENSOR": Beat(NOW - 10), "SCHEDULER": Beat(NOW - 12)}
    assert not serving_daemon(beats, NOW, stopped_at=NOW - 8)
    assert serving_daemon(
        {**beats, "ASSET": Beat(NOW - 2)}, NOW, stopped_at=NOW - 8
    )  # another one beat since


def test_the_workspace_names_the_code_location_of_dg_dev() -> None:
    assert "module_name: pipelines.definitions" in workspace_yaml()
    assert "location_name: mediaembed" in workspace_yaml()
