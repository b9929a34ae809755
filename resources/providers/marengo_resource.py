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
    configured_providers,
    parse_providers,
)


class MarengoProviders(dg.ConfigurableResource):
    bedrock: MarengoProvider | None = Field(default=None, description="Marengo on Amazon Bedrock.")
    twelvelabs: MarengoProvider | None = Field(default=None, description="Marengo on the TwelveLabs API.")
    providers: str | None = Field(
        default=None,
        description=(
            "Which provider serves which version, e.g. 'marengo-3.0=bedrock,marengo-3.5=twelvelabs'. "
            f"Unset: the {PROVIDERS_ENV} environment variable over the defaults (Bedrock for 2.7 and "
            "3.0, the TwelveLabs API for 3.5, which only it offers)."
        ),
    )

    def routing(self) -> dict[str, ProviderName]:
        """Model key -> the provider that embeds new media with it."""
        if self.providers is not None:
            return parse_providers(self.providers, "providers")
        return configured_providers()

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
