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
_FOUNDATION_ARN = re.compile(r"arn:aws(-[^:]+)?:bedrock:[a-z0-9-]*::foundation-model/(?P<id>.+)")
_PROFILE_ARN = re.compile(r"arn:aws(-[^:]+)?:bedrock:[a-z0-9-]*:[0-9]{12}:inference-profile/(?P<id>.+)")


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


def resolve_model(model_id: str, *, sync: bool, region: str) -> ResolvedModel:
    """Map a base id, an inference profile id or the ARN of either to the model, where Bedrock takes it."""
    candidate = model_id
    for pattern in (_FOUNDATION_ARN, _PROFILE_ARN):
        match = pattern.fullmatch(candidate)
        if match:
            candidate = match.group("id")
    profile = next((p for p in PROFILE_PREFIXES if candidate.startswith(p)), None)
    base = candidate[len(profile) :] if profile else candidate
    if base not in BASE_MODELS:
        raise validation("The provided model identifier is invalid.")
    if profile and (not sync or profile not in PROFILES[base]):
        raise validation(
            f"The provided model identifier is invalid: {model_id} is not supported for this operation."
        )
    if not profile and sync and region not in SYNC_BASE_ID_REGIONS[base]:
        raise validation(
            f"Invocation of model ID {base} with on-demand throughput isn't supported. Retry your request "
            "with the ID or ARN of an inference profile that contains this model."
        )
    return ResolvedModel(model_id, base, BASE_MODELS[base])
