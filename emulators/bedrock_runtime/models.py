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


def resolve_model(model_id: str) -> ResolvedModel:
    """Accept a base id, a `us.`/`eu.`/`apac.` inference profile id, or the ARN of either."""
    candidate = model_id
    for pattern in (_FOUNDATION_ARN, _PROFILE_ARN):
        match = pattern.fullmatch(candidate)
        if match:
            candidate = match.group("id")
    for prefix in PROFILE_PREFIXES:
        if candidate.startswith(prefix) and candidate[len(prefix) :] in BASE_MODELS:
            candidate = candidate[len(prefix) :]
    if candidate not in BASE_MODELS:
        raise validation("The provided model identifier is invalid.")
    return ResolvedModel(model_id, candidate, BASE_MODELS[candidate])
