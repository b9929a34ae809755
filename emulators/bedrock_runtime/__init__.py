"""Wire-compatible Bedrock runtime emulator for TwelveLabs Marengo 2.7 / 3.0 embeddings and Pegasus 1.2."""

from emulators.bedrock_runtime.authorization import IamCheck, Identity
from emulators.bedrock_runtime.errors import ServiceError
from emulators.bedrock_runtime.models import MARENGO_2_7, MARENGO_3_0, PEGASUS_1_2, resolve_model
from emulators.bedrock_runtime.server import (
    ANY_MEDIA,
    INJECTED_FAILURE_MESSAGE,
    INJECTED_MODEL_ERROR_MESSAGE,
    BedrockRuntimeEmulator,
    Invocation,
    PegasusCall,
    PegasusFault,
)

__all__ = [
    "ANY_MEDIA",
    "INJECTED_FAILURE_MESSAGE",
    "INJECTED_MODEL_ERROR_MESSAGE",
    "MARENGO_2_7",
    "MARENGO_3_0",
    "PEGASUS_1_2",
    "BedrockRuntimeEmulator",
    "IamCheck",
    "Identity",
    "Invocation",
    "PegasusCall",
    "PegasusFault",
    "ServiceError",
    "resolve_model",
]
