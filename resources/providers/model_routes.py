"""Which provider serves which Marengo version, and how it is reached there: configuration, not code.

A route is one provider's way to one model: the id or name it is called by, its request style, where its
inference profiles are, what it costs. `MEDIAEMBED_PROVIDERS` ("marengo-3.0=twelvelabs,...") picks the
provider per version; versions it does not name keep their default (Bedrock where Bedrock offers them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

from resources.providers.marengo_models import (
    MARENGO_2_7,
    MARENGO_3_0,
    MARENGO_3_5,
    MARENGO_MODELS,
    MarengoModel,
    Modality,
)

ProviderName = Literal["bedrock", "twelvelabs"]
PROVIDER_NAMES: tuple[ProviderName, ...] = ("bedrock", "twelvelabs")
RequestStyle = Literal["bedrock-flat", "bedrock-nested", "twelvelabs-embed-v2", "twelvelabs-embed-v1"]
PROVIDERS_ENV = "MEDIAEMBED_PROVIDERS"
# Your own prices (a negotiated rate, the TwelveLabs API's, a new list price) over the published ones:
# "bedrock/marengo-3.0:video=0.0007,audio=0.00014,image=0.0001;twelvelabs/marengo-3.5:video=0.0005".
PRICES_ENV = "MEDIAEMBED_PRICES"
PRICE_FIELDS = {"video": "usd_per_video_second", "audio": "usd_per_audio_second", "image": "usd_per_image"}
# How long one async job typically runs, for the plan's expected duration only: no provider publishes it
# (../shared/reference/bedrock-runtime.md has quotas and prices, no latency). Assumed: 30 s per job plus
# 0.25 s per media second (a 10-minute video in about 3 minutes). Measure yours; the plan's run config
# overrides both.
DEFAULT_JOB_OVERHEAD_SEC = 30.0
DEFAULT_SEC_PER_MEDIA_SEC = 0.25


@dataclass(frozen=True)
class ModelRoute:
    provider: ProviderName
    model: MarengoModel
    # Bedrock: the base model id (StartAsyncInvoke); TwelveLabs: the `model_name`.
    model_id: str
    request_style: RequestStyle
    # Bedrock InvokeModel takes a geographic inference profile, or the base id in a few regions.
    profile_geos: tuple[str, ...] = ()
    sync_base_id_regions: tuple[str, ...] = ()
    # The legacy TwelveLabs text call (2.7) is synchronous only; media go through another route.
    embeds_media: bool = True
    # USD from public price tables (../shared/reference/bedrock-runtime.md); None where none is published
    # there, and the cost estimate then says so instead of guessing.
    usd_per_video_second: float | None = None
    usd_per_audio_second: float | None = None
    usd_per_image: float | None = None
    typical_job_overhead_sec: float = DEFAULT_JOB_OVERHEAD_SEC
    typical_sec_per_media_sec: float = DEFAULT_SEC_PER_MEDIA_SEC

    def sync_model_id(self, region: str) -> str:
        """Bedrock InvokeModel takes a geographic inference profile (or, where offered, the base id);
        StartAsyncInvoke takes the base id. Other providers take their model name everywhere."""
        if self.provider != "bedrock":
            return self.model_id
        geo = {"us": "us", "eu": "eu", "ap": "apac"}.get(region.split("-", 1)[0])
        if geo is None or geo not in self.profile_geos:
            if region in self.sync_base_id_regions:
                return self.model_id
            raise ValueError(
                f"Marengo {self.model.version} has no inference profile for region {region!r} "
                f"(profiles: {', '.join(self.profile_geos)})"
            )
        return f"{geo}.{self.model_id}"

    @property
    def priced(self) -> bool:
        return None not in (self.usd_per_video_second, self.usd_per_audio_second, self.usd_per_image)

    def estimated_cost_usd(self, modality: Modality, media_seconds: float | None) -> float:
        """The list price of one job; 0 where the route has no published price (see `priced`)."""
        if modality == "image":
            return self.usd_per_image or 0.0
        rate = self.usd_per_video_second if modality == "video" else self.usd_per_audio_second
        return (rate or 0.0) * (media_seconds or 0.0)


UNPRICED = "unpriced"


def describe_cost(usd: float, priced: bool, label: str = "est.") -> str:
    """The estimate as a person reads it: never $0 for a provider whose price is not in the tables."""
    return f"{label} ${usd:.4f}" if priced else "cost not estimated: no published price for this provider"


def cost_metadata(usd: float, priced: bool) -> float | str:
    """A cost as a metadata value: US dollars (4 places) where the route has prices, else "unpriced", never
    a 0 that reads as free."""
    return round(usd, 4) if priced else UNPRICED


def cost_from_metadata(value: object) -> float | None:
    """The US dollars a `cost_metadata` value holds; None for "unpriced" (or anything else not a number)."""
    value = getattr(value, "value", value)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


ROUTES: dict[tuple[str, str], ModelRoute] = {
    ("bedrock", MARENGO_2_7.key): ModelRoute(
        "bedrock",
        MARENGO_2_7,
        "twelvelabs.marengo-embed-2-7-v1:0",
        "bedrock-flat",
        profile_geos=("us", "eu", "apac"),
        usd_per_video_second=0.0007,
        usd_per_audio_second=0.00014,
        usd_per_image=0.0001,
    ),
    ("bedrock", MARENGO_3_0.key): ModelRoute(
        "bedrock",
        MARENGO_3_0,
        "twelvelabs.marengo-embed-3-0-v1:0",
        "bedrock-nested",
        profile_geos=("us", "eu"),
        sync_base_id_regions=("us-east-1", "ap-northeast-2"),
        usd_per_video_second=0.0007,
        usd_per_audio_second=0.00014,
        usd_per_image=0.0001,
    ),
    ("twelvelabs", MARENGO_2_7.key): ModelRoute(
        "twelvelabs", MARENGO_2_7, "Marengo-retrieval-2.7", "twelvelabs-embed-v1", embeds_media=False
    ),
    ("twelvelabs", MARENGO_3_0.key): ModelRoute(
        "twelvelabs", MARENGO_3_0, "marengo3.0", "twelvelabs-embed-v2"
    ),
    ("twelvelabs", MARENGO_3_5.key): ModelRoute(
        "twelvelabs", MARENGO_3_5, "marengo3.5", "twelvelabs-embed-v2"
    ),
}

# Bedrock serves what it offers (today's behaviour); 3.5 is offered only by the TwelveLabs API.
DEFAULT_PROVIDERS: dict[str, ProviderName] = {
    MARENGO_2_7.key: "bedrock",
    MARENGO_3_0.key: "bedrock",
    MARENGO_3_5.key: "twelvelabs",
}


def parse_providers(text: str, source: str = PROVIDERS_ENV) -> dict[str, ProviderName]:
    """Model key -> provider from "marengo-3.0=twelvelabs,marengo-2.7=bedrock", over the defaults; a
    one-line error names the fault and the choices."""
    chosen: dict[str, ProviderName] = dict(DEFAULT_PROVIDERS)
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, _, provider = (s.strip() for s in part.partition("="))
        if key not in MARENGO_MODELS:
            raise ValueError(
                f"{source}: unknown model {key!r} in {part!r}; known: {', '.join(MARENGO_MODELS)}"
            )
        if provider not in PROVIDER_NAMES:
            raise ValueError(
                f"{source}: unknown provider {provider!r} in {part!r}; choose {' or '.join(PROVIDER_NAMES)}"
            )
        route = ROUTES.get((provider, key))
        if route is None or not route.embeds_media:
            offered = [p for p in PROVIDER_NAMES if (r := ROUTES.get((p, key))) and r.embeds_media]
            raise ValueError(
                f"{source}: {provider} does not embed media with {key}; it is offered by {', '.join(offered)}"
            )
        chosen[key] = provider
    return chosen


def configured_providers(environ: Mapping[str, str]) -> dict[str, ProviderName]:
    """The provider of every model version, from MEDIAEMBED_PROVIDERS in `environ` over the defaults."""
    return parse_providers(environ.get(PROVIDERS_ENV, ""))


@lru_cache(maxsize=8)
def parse_prices(text: str) -> dict[tuple[str, str], dict[str, float]]:
    """(provider, model key) -> route price fields, from MEDIAEMBED_PRICES; a one-line error names the
    fault."""
    prices: dict[tuple[str, str], dict[str, float]] = {}
    for entry in (e.strip() for e in text.split(";")):
        if not entry:
            continue
        target, _, rates = entry.partition(":")
        provider, _, key = target.strip().partition("/")
        if (provider, key) not in ROUTES:
            raise ValueError(
                f"{PRICES_ENV}: {target.strip()!r} is not a route; "
                "write provider/model, as bedrock/marengo-3.0"
            )
        fields: dict[str, float] = {}
        for rate in (r.strip() for r in rates.split(",") if r.strip()):
            kind, _, value = (x.strip() for x in rate.partition("="))
            try:
                usd = float(value)
            except ValueError:
                usd = -1.0
            if kind not in PRICE_FIELDS or usd < 0:
                raise ValueError(
                    f"{PRICES_ENV}: {rate!r} in {entry!r}: write video=, audio= (USD per second) or image= "
                    "(USD each) with a number of 0 or more"
                )
            fields[PRICE_FIELDS[kind]] = usd
        prices[(provider, key)] = fields
    return prices


def route(provider: ProviderName | str, model_key: str, prices: str = "") -> ModelRoute:
    """The route of a model at a provider, with `prices` (MEDIAEMBED_PRICES's form) over the published
    ones; no prices: the published ones."""
    found = ROUTES.get((provider, model_key))
    if found is None:
        raise ValueError(f"{provider} does not offer {model_key}")
    if found.model is not MARENGO_MODELS[model_key]:  # Marengo 3.5 at its configured length
        found = replace(found, model=MARENGO_MODELS[model_key])
    override = parse_prices(prices.strip()).get((provider, model_key))
    if not override:
        return found
    return replace(
        found,
        usd_per_video_second=override.get("usd_per_video_second", found.usd_per_video_second),
        usd_per_audio_second=override.get("usd_per_audio_second", found.usd_per_audio_second),
        usd_per_image=override.get("usd_per_image", found.usd_per_image),
    )
