"""Every MEDIAEMBED_* setting is known in one place and bound in one place (pipelines/definitions.py, as a
resource field), and a misspelled one is named with a fix."""

import re
from pathlib import Path

import dagster as dg
import pytest

from mediaembed.cli import main
from pipelines.settings import (
    KNOWN_SETTINGS,
    OPTIONAL_SETTINGS,
    check_definition_settings,
    schedule_cron,
    sensor_interval_sec,
    unknown_setting_warnings,
    use_model_settings,
)
from resources.providers.marengo_models import (
    MARENGO_3_5,
    MARENGO_3_5_DIMENSION_ENV,
    MARENGO_MODELS,
    marengo_model,
)
from resources.providers.model_routes import route

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = ("pipelines", "assets_defs", "resources", "mediaembed", "harness")


def _code(path: Path) -> str:
    """The file's text; of pipelines/settings.py, all but its docstring and the list of settings itself."""
    text = path.read_text()
    if path == ROOT / "pipelines" / "settings.py":
        head, rest = text.split('"""', 2)[2].split("KNOWN_SETTINGS: dict[str, Setting] = {", 1)
        text = head + rest.split("\n}\n", 1)[1]
    return text


def test_every_setting_the_code_reads_is_known() -> None:
    read = {
        name
        for package in PRODUCTION
        for path in (ROOT / package).rglob("*.py")
        for name in re.findall(r"MEDIAEMBED_[A-Z0-9_]*[A-Z0-9]", _code(path))
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


# Each optional setting, a value it accepts, and the resource fields the code location binds it to.
BOUND: dict[str, tuple[str, tuple[str, ...]]] = {
    "MEDIAEMBED_BUCKET_OWNER": ("111122223333", ("pegasus.bucket_owner",)),
    "MEDIAEMBED_PROVIDERS": ("marengo-3.0=twelvelabs", ("marengo.providers",)),
    "MEDIAEMBED_QUOTAS": (
        "marengo-3.0=7",
        ("marengo.bedrock.async_quotas", "marengo.twelvelabs.async_quotas"),
    ),
    "MEDIAEMBED_PRICES": (
        "bedrock/marengo-3.0:video=0.001",
        ("marengo.bedrock.prices", "marengo.twelvelabs.prices"),
    ),
    "MEDIAEMBED_BUDGET_USD": ("250", ("marengo.budget_usd",)),
    "MEDIAEMBED_BUDGET_MEDIA_SECONDS": ("360000", ("marengo.budget_media_seconds",)),
    "MEDIAEMBED_SERVING_VERSION": ("marengo-2.7", ("lake.serving_version",)),
    "MEDIAEMBED_MIGRATION_EXCLUDE": ("s3://media/corrupt.mp4", ("version_checks.exclude_setting",)),
    "MEDIAEMBED_PROBE_SET": ("probes.yaml", ("version_checks.probe_set",)),
    "MEDIAEMBED_PEGASUS_PROMPTS": ("prompts.yaml", ("pegasus.prompts_file",)),
    "MEDIAEMBED_PEGASUS_TRANSPORT": ("base64", ("pegasus.transport",)),
    "MEDIAEMBED_PEGASUS_PROFILE": ("global", ("pegasus.profile_scope",)),
    "MEDIAEMBED_PROBE_BATCH_OBJECTS": ("5000", ("media.probe_batch",)),
    "MEDIAEMBED_MEDIA_QUEUE_URL": (
        "https://sqs.us-east-1.amazonaws.com/111122223333/media-events",
        ("media_events.queue_url",),
    ),
}


def _field(resources: object, path: str) -> object:
    value = resources
    for name in path.split("."):
        value = getattr(value, name)
    return value


def test_every_optional_setting_is_a_resource_field_the_code_location_binds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Bound where set as the definitions load (tests/conftest.py sets each, empty), read as a run starts."""
    from pipelines.definitions import pipeline_resources

    assert set(BOUND) == set(OPTIONAL_SETTINGS) and set(OPTIONAL_SETTINGS) <= set(KNOWN_SETTINGS)
    required = {
        "AWS_REGION": "us-east-1",
        "MEDIAEMBED_MEDIA_URI": "s3://media/",
        "MEDIAEMBED_ASYNC_OUTPUT_URI": "s3://lake/marengo-async",
        "MEDIAEMBED_LAKE_URI": str(tmp_path / "lake"),
        "MEDIAEMBED_INDEX_URI": str(tmp_path / "index"),
    }
    for name, value in required.items():
        monkeypatch.setenv(name, value)
    for name in OPTIONAL_SETTINGS:
        monkeypatch.setenv(name, "")
    with dg.build_resources(pipeline_resources) as built:
        for name, (_, fields) in BOUND.items():
            assert [_field(built, f) for f in fields] == [""] * len(fields), name
    for name, (value, _) in BOUND.items():
        monkeypatch.setenv(name, value)
    with dg.build_resources(pipeline_resources) as built:
        for name, (value, fields) in BOUND.items():
            assert [_field(built, f) for f in fields] == [value] * len(fields), name


def test_marengo_3_5s_length_is_chosen_once_for_the_process() -> None:
    try:
        assert use_model_settings({MARENGO_3_5_DIMENSION_ENV: " 256 "}) == 256
        model = marengo_model(MARENGO_3_5.key)
        assert (model.dimension, model.job_identity) == (256, "marengo3.5@256")
        assert route("twelvelabs", MARENGO_3_5.key).model is model, "the route carries the configured model"
        assert MARENGO_MODELS[MARENGO_3_5.key] is model
    finally:
        assert use_model_settings({}) == 512
    assert marengo_model(MARENGO_3_5.key) is MARENGO_3_5, "back at the default, the one model object"
    for bad in ("0", "513", "two"):
        with pytest.raises(ValueError) as error:
            use_model_settings({MARENGO_3_5_DIMENSION_ENV: bad})
        message = str(error.value)
        assert (
            message.startswith(f"{MARENGO_3_5_DIMENSION_ENV}={bad!r}: give a whole number")
            and "\n" not in message
        )
    assert marengo_model(MARENGO_3_5.key) == MARENGO_3_5, "a bad value changes nothing"


def test_the_command_refuses_a_bad_sensor_interval_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDIAEMBED_SENSOR_INTERVAL_SEC", "abc")
    assert main(["search", "red circle"]) == 2
    assert capsys.readouterr().err == (
        "mediaembed: MEDIAEMBED_SENSOR_INTERVAL_SEC='abc' is not a whole number of seconds: set 1 or more\n"
    )
    assert sensor_interval_sec({}) == 30 and sensor_interval_sec({"MEDIAEMBED_SENSOR_INTERVAL_SEC": "2"}) == 2


def test_the_command_refuses_a_bad_length_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(MARENGO_3_5_DIMENSION_ENV, "1024")
    assert main(["search", "red circle"]) == 2
    assert capsys.readouterr().err == (
        f"mediaembed: {MARENGO_3_5_DIMENSION_ENV}='1024': give a whole number from 1 to 512, as 256\n"
    )


def test_the_schedules_take_their_crons_from_the_settings() -> None:
    assert schedule_cron("MEDIAEMBED_EMBED_SCHEDULE", {}) == "*/15 * * * *"
    assert schedule_cron("MEDIAEMBED_DESCRIBE_SCHEDULE", {"MEDIAEMBED_DESCRIBE_SCHEDULE": ""}) == (
        "7,22,37,52 * * * *"
    )
    every_minute = {"MEDIAEMBED_EMBED_SCHEDULE": " *  * * * * "}
    assert schedule_cron("MEDIAEMBED_EMBED_SCHEDULE", every_minute) == "* * * * *"
    for cron in ("0 */2 1-15 1,6 0-5", "0-59/5 23 31 12 7", "@hourly", "0 6 * * MON-FRI"):
        assert schedule_cron("MEDIAEMBED_EMBED_SCHEDULE", {"MEDIAEMBED_EMBED_SCHEDULE": cron}) == cron
        assert dg.ScheduleDefinition(name="s", cron_schedule=cron, target="*").cron_schedule == cron


@pytest.mark.parametrize(
    "cron", ["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "0 0 31 2 *", "every hour", "* * * * * * *"]
)
def test_the_command_refuses_a_bad_schedule_in_one_line(
    cron: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MEDIAEMBED_EMBED_SCHEDULE", cron)
    assert main(["search", "red circle"]) == 2
    assert capsys.readouterr().err == (
        f"mediaembed: MEDIAEMBED_EMBED_SCHEDULE={cron!r} is not a cron schedule Dagster accepts: give minute "
        "(0-59), hour (0-23), day (1-31), month (1-12) and weekday (0-7), as '*/15 * * * *'\n"
    )


def test_the_probe_batch_is_a_count_above_zero_or_the_default() -> None:
    from resources.media.probe_batch import PROBE_BATCH_OBJECTS, parse_probe_batch

    assert parse_probe_batch(None) == parse_probe_batch(" ") == PROBE_BATCH_OBJECTS
    assert parse_probe_batch("5000") == 5000
    for bad in ("0", "-1", "2.5", "many"):
        with pytest.raises(
            ValueError, match=rf"MEDIAEMBED_PROBE_BATCH_OBJECTS='{re.escape(bad)}' is not a whole"
        ):
            check_definition_settings({"MEDIAEMBED_PROBE_BATCH_OBJECTS": bad})
