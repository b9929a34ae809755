"""The Postgres dagster.yaml of docs/deployment.md, loaded through Dagster's own config validation on the
test server of tests/postgres.py, which runs unprivileged."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from mediaembed.ingest import INSTANCE_YAML
from tests.postgres import SQLALCHEMY_SCHEME, URL_VARIABLE, PostgresServer, documented_instance_yaml


def test_server_runs_unprivileged_on_loopback(postgres_server: PostgresServer) -> None:
    connection = psycopg2.connect(postgres_server.libpq_url())
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW data_directory")
            [data_directory] = cursor.fetchone() or [None]
            cursor.execute("SHOW listen_addresses")
            [listening] = cursor.fetchone() or [None]
    finally:
        connection.close()
    assert listening == "127.0.0.1"
    owner = Path(str(data_directory)).stat().st_uid
    assert owner != 0 and (os.geteuid() == 0 or owner == os.geteuid())


def test_documented_instance_loads_with_postgres_storage(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dagster.yaml").write_text(documented_instance_yaml())
    monkeypatch.setenv(URL_VARIABLE, postgres_url)

    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 180
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert list(instance.get_runs()) == []  # the schema was created and answers
    assert not (tmp_path / "history").exists()  # nothing went to SQLite


def test_a_url_without_the_driver_needs_psycopg3(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why docs/deployment.md names the driver: the locked SQLAlchemy (2.1) reads a bare postgresql:// as
    psycopg 3, which is not installed. Should this start to load, the docs can drop `+psycopg2`."""
    (tmp_path / "dagster.yaml").write_text(documented_instance_yaml())
    monkeypatch.setenv(URL_VARIABLE, postgres_url.replace(f"{SQLALCHEMY_SCHEME}://", "postgresql://", 1))
    with pytest.raises(ModuleNotFoundError, match="psycopg"):
        dg.DagsterInstance.from_config(str(tmp_path))


def test_documented_instance_keeps_the_commands_pools_and_monitoring() -> None:
    documented = yaml.safe_load(documented_instance_yaml())
    written = yaml.safe_load(INSTANCE_YAML)  # what `mediaembed ingest` writes where there is no dagster.yaml
    for key in ("concurrency", "run_monitoring"):
        assert documented[key] == written[key], key


def test_a_wrong_instance_config_is_refused_by_dagster(tmp_path: Path) -> None:
    config = yaml.safe_load(documented_instance_yaml())
    config["storage"]["postgres"]["postgres_uri"] = config["storage"]["postgres"].pop("postgres_url")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(dg.DagsterInvalidConfigError, match="postgres_uri"):
        dg.DagsterInstance.from_config(str(tmp_path))
