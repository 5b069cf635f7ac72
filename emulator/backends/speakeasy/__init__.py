"""The Speakeasy backend: the only package that imports speakeasy or touches Unicorn.

Importing it imports Speakeasy and checks that the installed version still has every internal
chainreplay relies on (:mod:`.compat`); commands that do not emulate never import it.

- :mod:`.config`: Speakeasy's configuration from a replay plan.
- :mod:`.setup`: loading the target, the project's API handlers, the entry point and export runs.
- :mod:`.translate`: Speakeasy's API log and profiler records -> typed events.
- :mod:`.memwatch`: dynamic code -> new stages; the memory limits.
- :mod:`.runner`: fast mode's native runner and watchdog.
- :mod:`.compat`: every private Speakeasy / Unicorn name, checked at import.
- :mod:`.images`: the decoy DLL images, shipped as templates built by Speakeasy.
"""

import sys

# Speakeasy's CryptoAPI handlers import pycryptodome, which binds its C code through cffi when
# cffi is importable: cffi and pycparser then cost ~50 ms of the emulation child's start-up to
# declare functions pycryptodome can equally call through ctypes (its own fallback, the same C
# code and results). cffi is hidden while Speakeasy is imported; anything importing it later
# still can.
_cffi = sys.modules.get("cffi")
if _cffi is None and "Crypto.Util._raw_api" not in sys.modules:
    sys.modules["cffi"] = None  # type: ignore[assignment]
try:
    import speakeasy  # noqa: F401
finally:
    if _cffi is None and sys.modules.get("cffi", False) is None:
        del sys.modules["cffi"]

from emulator.backends.speakeasy.backend import SpeakeasyBackend  # noqa: E402
from emulator.backends.speakeasy.compat import ENGINE_NAME  # noqa: E402
from emulator.backends.speakeasy.config import build_speakeasy_config  # noqa: E402
from emulator.backends.speakeasy.setup import warm_steps  # noqa: E402

__all__ = ["ENGINE_NAME", "SpeakeasyBackend", "build_speakeasy_config", "warm_steps"]
