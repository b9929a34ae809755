"""Which model ids the emulator serves and how ids, inference profiles and ARNs map onto them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from emulators.bedrock_runtime.errors import validation

MARENGO_3_0 = "twelvelabs.marengo-embed-3-0-v1:0"
MARENGO_2_7 = "twelvelabs.marengo-embed-2-7-v1:0"
BASE_MODELS: dict[str, str] = {MARENGO_3_0: "3.0", MARENGO_2_7: "2.7"}
PROFILE_PREFIXES: tuple[str, ...] = ("us.", "eu.", "apac.")
ACCOUNT_ID = "123456789012"
_FOUNDATION_ARN = re.compile(r"arn:aws(-[^:]+)?:bedrock:(?P<region>[a-z0-9-]*)::foundation-model/(?P<id>.+)")
_PROFILE_ARN = re.compile(
    r"arn:aws(-[^:]+)?:bedrock:(?P<region>[a-z0-9-]*):[0-9]{12}:inference-profile/(?P<id>.+)"
)


@dataclass(frozen=True)
class ResolvedModel:
    """A request's model id resolved to the base foundation model and its Marengo version."""

    requested: str
    base_id: str
    version: str

    def arn(self, region: str) -> str:
        return f"arn:aws:bedrock:{region}::foundation-model/{self.base_id}"


# Per the Bedrock model pages: which geographic profiles each model has, and where InvokeModel also
# takes the base id. StartAsyncInvoke takes the base id only.
PROFILES: dict[str, tuple[str, ...]] = {MARENGO_3_0: ("us.", "eu."), MARENGO_2_7: ("us.", "eu.", "apac.")}
SYNC_BASE_ID_REGIONS: dict[str, tuple[str, ...]] = {
    MARENGO_3_0: ("us-east-1", "ap-northeast-2"),
    MARENGO_2_7: (),
}


# Seed 000: "Marengo is available in the following regions: US East (N. Virginia), Europe (Ireland), Asia
# Pacific (Seoul)". A geographic profile routes inside its geography, so a client may call one only from a
# region of it (as for Pegasus): `eu.` from us-east-1 is an id that region does not offer.
MARENGO_REGIONS: tuple[str, ...] = ("us-east-1", "eu-west-1", "ap-northeast-2")
GEOGRAPHIES: dict[str, str] = {"us.": "us-", "eu.": "eu-", "apac.": "ap-"}
INVALID_MODEL = "The provided model identifier is invalid."


def _unwrap(model_id: str) -> tuple[str | None, str]:
    """(the region an ARN names, the id inside it) of a foundation-model or inference-profile ARN, or
    (None, `model_id`) for a plain id."""
    for pattern in (_FOUNDATION_ARN, _PROFILE_ARN):
        match = pattern.fullmatch(model_id)
        if match:
            return match.group("region"), match.group("id")
    return None, model_id


def _strip_arn(model_id: str, region: str) -> str | None:
    """The id `model_id` names, or None when it is the ARN of a resource in another region than `region`."""
    arn_region, candidate = _unwrap(model_id)
    return None if arn_region not in (None, region) else candidate


def resolve_model(model_id: str, *, sync: bool, region: str) -> ResolvedModel:
    """Map a base id, an inference profile id or the ARN of either to the model, where Bedrock takes it from
    a client in `region` (the region its request was signed for)."""
    if not sync and pegasus_base(model_id) is not None:
        raise validation(f"The provided model identifier is invalid: {PEGASUS_1_2} takes InvokeModel only.")
    candidate = _strip_arn(model_id, region)
    if candidate is None:
        raise validation(INVALID_MODEL)
    profile = next((p for p in PROFILE_PREFIXES if candidate.startswith(p)), None)
    base = candidate[len(profile) :] if profile else candidate
    if base not in BASE_MODELS or region not in MARENGO_REGIONS:
        raise validation(INVALID_MODEL)
    if profile and not sync:
        raise validation(
            f"The provided model identifier is invalid: {model_id} is not supported for this operation."
        )
    if profile and (profile not in PROFILES[base] or not region.startswith(GEOGRAPHIES[profile])):
        raise validation(INVALID_MODEL)
    if not profile and sync and region not in SYNC_BASE_ID_REGIONS[base]:
        raise validation(
            f"Invocation of model ID {base} with on-demand throughput isn't supported. Retry your request "
            "with the ID or ARN of an inference profile that contains this model."
        )
    return ResolvedModel(model_id, base, BASE_MODELS[base])


# --- Pegasus 1.2 (seed 003): InvokeModel only, through an inference profile -------------------------------

PEGASUS_1_2 = "twelvelabs.pegasus-1-2-v1:0"
# The regions seed 003 lists Pegasus 1.2 in, by their codes.
PEGASUS_REGIONS: tuple[str, ...] = (
    *("us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "ca-west-1", "mx-central-1"),
    *("sa-east-1", "eu-central-1", "eu-central-2", "eu-north-1", "eu-south-1", "eu-south-2", "eu-west-1"),
    *("eu-west-2", "eu-west-3", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-east-2"),
    *("ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4"),
    *("ap-southeast-5", "ap-southeast-7", "af-south-1", "il-central-1", "me-south-1", "me-central-1"),
)
# Geographic profiles as for Marengo (GEOGRAPHIES); the global profile works from every region the model
# is in.
PEGASUS_PROFILES: tuple[str, ...] = ("global.", *GEOGRAPHIES)


def pegasus_base(model_id: str) -> str | None:
    """The Pegasus base id `model_id` names (plain, profile or ARN of either), or None for another model."""
    candidate = _unwrap(model_id)[1]
    profile = next((p for p in PEGASUS_PROFILES if candidate.startswith(p)), "")
    return PEGASUS_1_2 if candidate[len(profile) :] == PEGASUS_1_2 else None


def resolve_pegasus(model_id: str, *, region: str) -> str:
    """Check that InvokeModel may call Pegasus by `model_id` from `region`; returns the profile prefix used.

    Bedrock takes Pegasus through an inference profile only (seed 003: "modelId: the inference profile ID"),
    and a geographic profile only from a region of its geography.
    """
    candidate = _strip_arn(model_id, region)
    if candidate is None:
        raise validation(INVALID_MODEL)
    profile = next((p for p in PEGASUS_PROFILES if candidate.startswith(p)), None)
    if region not in PEGASUS_REGIONS:
        raise validation(
            f"The provided model identifier is invalid: {PEGASUS_1_2} is not offered in {region}."
        )
    if profile is None:
        raise validation(
            f"Invocation of model ID {PEGASUS_1_2} with on-demand throughput isn't supported. Retry your "
            "request with the ID or ARN of an inference profile that contains this model."
        )
    geography = GEOGRAPHIES.get(profile)
    if geography is not None and not region.startswith(geography):
        raise validation(
            f"The provided model identifier is invalid: inference profile {candidate} is not available in "
            f"{region}; use {_profile_for(region)}{PEGASUS_1_2} or global.{PEGASUS_1_2}."
        )
    return profile


def _profile_for(region: str) -> str:
    return next((p for p, prefix in GEOGRAPHIES.items() if region.startswith(prefix)), "global.")


def base_model_id(model_id: str) -> str:
    """The base model a request names (profile prefix and ARN stripped), or `model_id` itself if unknown;
    used to count calls per model without validating."""
    if pegasus_base(model_id) is not None:
        return PEGASUS_1_2
    candidate = _unwrap(model_id)[1]
    profile = next((p for p in PROFILE_PREFIXES if candidate.startswith(p)), "")
    base = candidate[len(profile) :]
    return base if base in BASE_MODELS else model_id
