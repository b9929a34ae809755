"""Wire-compatible TwelveLabs API emulator (embed v2 sync and tasks, legacy Marengo-retrieval-2.7 embed)."""

from emulators.twelvelabs_api.errors import ApiFault
from emulators.twelvelabs_api.server import INJECTED_FAILURE_MESSAGE, LOCAL_API_KEY, Task, TwelveLabsEmulator

__all__ = ["INJECTED_FAILURE_MESSAGE", "LOCAL_API_KEY", "ApiFault", "Task", "TwelveLabsEmulator"]
