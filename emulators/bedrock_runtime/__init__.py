"""Wire-compatible Bedrock runtime emulator for TwelveLabs Marengo 2.7 / 3.0 embeddings."""

from emulators.bedrock_runtime.errors import ServiceError
from emulators.bedrock_runtime.models import MARENGO_2_7, MARENGO_3_0, resolve_model
from emulators.bedrock_runtime.server import INJECTED_FAILURE_MESSAGE, BedrockRuntimeEmulator, Invocation

__all__ = [
    "INJECTED_FAILURE_MESSAGE",
    "MARENGO_2_7",
    "MARENGO_3_0",
    "BedrockRuntimeEmulator",
    "Invocation",
    "ServiceError",
    "resolve_model",
]
