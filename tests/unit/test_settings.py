"""Every MEDIAEMBED_* setting is known in one place, and a misspelled one is named with a fix."""

import re
from pathlib import Path

import pytest

from mediaembed.cli import main
from pipelines.settings import KNOWN_SETTINGS, unknown_setting_warnings

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("pipelines", "assets_defs", "resources", "mediaembed", "harness")


def test_every_setting_the_code_reads_is_known() -> None:
    read = {
        name
        for package in PRODUCTION
        for path in (ROOT / package).rglob("*.py")
        if path != ROOT / "pipelines" / "settings.py"
        for name in re.findall(r"MEDIAEMBED_[A-Z0-9_]*[A-Z0-9]", path.read_text())
    }
    assert read - set(KNOWN_SETTINGS) == set(), "add them to pipelines/settings.py"
    assert set(KNOWN_SETTINGS) - read == set(), "no code reads these any more"


def test_a_misspelled_setting_names_the_closest_known_one() -> None:
    environ = {"MEDIAEMBED_PROVIDER": "marengo-3.0=bedrock", "MEDIAEMBED_LAKE_URI": "/tmp/lake", "HOME": "/"}
    [line] = unknown_setting_warnings(environ)
    assert line.startswith("MEDIAEMBED_PROVIDER is not a mediaembed setting and is ignored: did you mean ")
    assert "MEDIAEMBED_PROVIDERS" in line and "\n" not in line


def test_a_setting_like_no_other_says_nothing_reads_it() -> None:
    assert unknown_setting_warnings({"MEDIAEMBED_COLOUR": "blue"}) == [
        "MEDIAEMBED_COLOUR is not a mediaembed setting and is ignored: nothing reads it"
    ]


def test_the_command_warns_before_anything_else(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDIAEMBED_QUOTA", "marengo-3.0=5")
    assert main(["search", ""]) != 0
    first, *_ = capsys.readouterr().err.splitlines()
    assert first.startswith("mediaembed: warning: MEDIAEMBED_QUOTA is not a mediaembed setting")
    assert "did you mean MEDIAEMBED_QUOTAS" in first
