"""The provider's quota per model: from the resource (which the code location binds from MEDIAEMBED_QUOTAS),
else the provider's default."""

import dagster as dg
import pytest

from resources.providers.base import QUOTAS_ENV, parse_quotas
from resources.providers.bedrock.marengo import DEFAULT_ASYNC_QUOTA, BedrockMarengo
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.storage.s3_storage import S3Storage


def bedrock(**fields: object) -> BedrockMarengo:
    storage = S3Storage(region_name="us-east-1")
    return BedrockMarengo(region_name="us-east-1", output_s3_uri="s3://out/x", storage=storage, **fields)  # type: ignore[arg-type]


def test_quotas_come_from_the_resource_then_the_default() -> None:
    assert bedrock().max_in_flight(MARENGO_3_0) == DEFAULT_ASYNC_QUOTA
    assert bedrock(async_quotas="").max_in_flight(MARENGO_3_0) == DEFAULT_ASYNC_QUOTA, "empty reads as unset"
    configured = bedrock(async_quotas=" marengo-3.0 = 120 ,")
    assert configured.max_in_flight(MARENGO_3_0) == 120
    assert configured.max_in_flight(MARENGO_2_7) == DEFAULT_ASYNC_QUOTA, "an unnamed model keeps the default"
    configured = bedrock(async_quotas="marengo-2.7=5,marengo-3.0=7")
    assert (configured.max_in_flight(MARENGO_2_7), configured.max_in_flight(MARENGO_3_0)) == (5, 7)


def test_the_code_location_binds_the_quotas_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.definitions import pipeline_resources

    for name, value in {"AWS_REGION": "us-east-1", "MEDIAEMBED_ASYNC_OUTPUT_URI": "s3://out/x"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(QUOTAS_ENV, " marengo-3.0 = 120 ,")
    with dg.build_resources({"marengo": pipeline_resources["marengo"]}) as built:
        assert [p.max_in_flight(MARENGO_3_0) for p in built.marengo.configured()] == [120, 120]
        assert built.marengo.bedrock.max_in_flight(MARENGO_2_7) == DEFAULT_ASYNC_QUOTA
    monkeypatch.setenv(QUOTAS_ENV, "marengo-3.0")
    with (
        dg.build_resources({"marengo": pipeline_resources["marengo"]}) as built,
        pytest.raises(ValueError, match=r"^async_quotas \(MEDIAEMBED_QUOTAS\): 'marengo-3.0' needs a whole"),
    ):
        built.marengo.bedrock.max_in_flight(MARENGO_3_0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("marengo-4.0=3", "MEDIAEMBED_QUOTAS: unknown model 'marengo-4.0' in 'marengo-4.0=3'; known: "),
        ("marengo-3.0=0", "MEDIAEMBED_QUOTAS: 'marengo-3.0=0' needs a whole number of jobs of at least 1"),
        ("marengo-3.0", "MEDIAEMBED_QUOTAS: 'marengo-3.0' needs a whole number of jobs of at least 1"),
    ],
)
def test_a_wrong_quota_setting_is_one_line_naming_it(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_quotas(text)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
