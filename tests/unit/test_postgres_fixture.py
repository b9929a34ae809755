"""Where Postgres cannot be had its tests skip, saying why; in CI they fail instead (tests/postgres.py)."""

from __future__ import annotations

import pytest

from tests import postgres


def test_absent_binaries_are_one_line_saying_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "BIN_GLOB", "/nonexistent/postgresql/*/bin")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(postgres.PostgresUnavailable) as raised:
        postgres.postgres_bin()
    message = str(raised.value)
    assert "\n" not in message and "apt-get install postgresql" in message


def test_unavailable_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no postgres here"):
        postgres.unavailable("no postgres here")


def test_unavailable_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no postgres here \(CI is set"):
        postgres.unavailable("no postgres here")
