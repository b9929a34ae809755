"""Every test runs in the local world: the code location binds the TwelveLabs provider only when a key
is set when it is loaded, so the local key is set before any test module imports the definitions (each
test's world then points TWELVELABS_BASE_URL at its own emulator)."""

from harness.local_env import bind_local_twelvelabs

bind_local_twelvelabs()
