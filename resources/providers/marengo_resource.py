"""The `marengo` resource: every configured provider, and which one serves each Marengo version.

Assets, sensors and search ask it for "the provider of marengo-3.0" or "the provider named bedrock"
(jobs still open at a provider that no longer serves their model are finished by that provider), and never
name a provider themselves.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from resources.providers.base import MarengoProvider
from resources.providers.errors import SetupError
from resources.providers.marengo_models import MarengoModel
from resources.providers.model_routes import (
    PROVIDERS_ENV,
    ProviderName,
    parse_providers,
)

# The spending limits a submission run checks (assets_defs/migration/estimates.py parses them).
BUDGET_USD_ENV = "MEDIAEMBED_BUDGET_USD"
BUDGET_MEDIA_SECONDS_ENV = "MEDIAEMBED_BUDGET_MEDIA_SECONDS"


class MarengoProviders(dg.ConfigurableResource):
    bedrock: MarengoProvider | None = Field(default=None, description="Marengo on Amazon Bedrock.")
    twelvelabs: MarengoProvider | None = Field(default=None, description="Marengo on the TwelveLabs API.")
    providers: str | None = Field(
        default=None,
        description=(
            "Which provider serves which version, e.g. 'marengo-3.0=bedrock,marengo-3.5=twelvelabs', over "
            "the defaults (Bedrock for 2.7 and 3.0, the TwelveLabs API for 3.5, which only it offers); "
            f"bound from {PROVIDERS_ENV} where it is set. Unset or empty: the defaults."
        ),
    )

    # Texts, as the environment gives them (an EnvVar binds only a string); parsed where a run uses them.
    budget_usd: str | None = Field(
        default=None,
        description=(
            "A submission run sends nothing when what is left to embed for a version is estimated over "
            f"this many US dollars; bound from {BUDGET_USD_ENV} where it is set, and a run's `budget_usd` "
            "config overrides it. Unset or empty: no limit."
        ),
    )
    budget_media_seconds: str | None = Field(
        default=None,
        description=(
            f"The same limit in media seconds; bound from {BUDGET_MEDIA_SECONDS_ENV} where it is set, and "
            "a run's `budget_media_seconds` config overrides it. Unset or empty: no limit."
        ),
    )

    def routing(self) -> dict[str, ProviderName]:
        """Model key -> the provider that embeds new media with it."""
        return parse_providers(self.providers or "", f"providers ({PROVIDERS_ENV})")

    def named(self, name: str) -> MarengoProvider:
        """The provider called `name`; a SetupError says how to configure it when it is not."""
        provider = {"bedrock": self.bedrock, "twelvelabs": self.twelvelabs}.get(name)
        if provider is None:
            hint = {
                "bedrock": "set AWS_REGION and MEDIAEMBED_ASYNC_OUTPUT_URI",
                "twelvelabs": "set TWELVELABS_API_KEY",
            }.get(name, f"known providers: bedrock, twelvelabs; {PROVIDERS_ENV} picks one per version")
            raise SetupError(f"the {name} provider is not configured: {hint}")
        return provider

    def serving(self, model: MarengoModel) -> MarengoProvider:
        """The provider that embeds new media with `model`."""
        return self.named(self.routing()[model.key])

    def configured(self) -> list[MarengoProvider]:
        """Every provider that is set up, whether or not it serves a version now (it may hold open jobs)."""
        return [p for p in (self.bedrock, self.twelvelabs) if p is not None]
