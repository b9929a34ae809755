"""The provider's quota per model: from the resource, else MEDIAEMBED_QUOTAS, else the provider's default."""

import pytest

from resources.providers.base import QUOTAS_ENV, parse_quotas
from resources.providers.bedrock.marengo import DEFAULT_ASYNC_QUOTA, BedrockMarengo
from resources.providers.marengo_models import MARENGO_2_7, MARENGO_3_0
from resources.storage.s3_storage import S3Storage


def bedrock(**fields: object) -> BedrockMarengo:
    storage = S3Storage(region_name="us-east-1")
    return BedrockMarengo(region_name="us-east-1", output_s3_uri="s3://out/x", storage=storage, **fields)  # type: ignore[arg-type]


def test_quotas_come_from_the_resource_then_the_environment_then_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(QUOTAS_ENV, raising=False)
    assert bedrock().max_in_flight(MARENGO_3_0) == DEFAULT_ASYNC_QUOTA
    monkeypatch.setenv(QUOTAS_ENV, " marengo-3.0 = 120 ,")
    assert bedrock().max_in_flight(MARENGO_3_0) == 120
    assert bedrock().max_in_flight(MARENGO_2_7) == DEFAULT_ASYNC_QUOTA, "an unnamed model keeps the default"
    configured = bedrock(async_quotas="marengo-2.7=5,marengo-3.0=7")
    assert (configured.max_in_flight(MARENGO_2_7), configured.max_in_flight(MARENGO_3_0)) == (5, 7)


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
