"""The Speakeasy backend: the only package that imports speakeasy or touches Unicorn.

Importing it imports Speakeasy and checks that the installed version still has every internal
chainreplay relies on (:mod:`.compat`); commands that do not emulate never import it.

- :mod:`.config`: Speakeasy's configuration from a replay plan.
- :mod:`.setup`: loading the target, the project's API handlers, the entry point and export runs.
- :mod:`.translate`: Speakeasy's API log and profiler records -> typed events.
- :mod:`.memwatch`: dynamic code -> new stages; the memory limits.
- :mod:`.runner`: fast mode's native runner and watchdog.
- :mod:`.compat`: every private Speakeasy / Unicorn name, checked at import.
- :mod:`.images`: the decoy DLL images, shipped as templates built by Speakeasy's own code.
- :mod:`.signatures`: Speakeasy's signature database, shipped as tables read an entry at a time.
- :mod:`.models`: Speakeasy's pydantic models a replay may never use, built when first used.
- :mod:`.lazyimport`: modules Speakeasy imports that a replay rarely uses, loaded when first used.
"""

from emulator.backends.speakeasy.lazyimport import lazily_imported
from emulator.backends.speakeasy.models import deferred

# Speakeasy's models a replay may never use are built, and the modules named in lazyimport.py
# loaded, when first used.
with deferred(), lazily_imported():
    from emulator.backends.speakeasy.backend import SpeakeasyBackend
    from emulator.backends.speakeasy.compat import ENGINE_NAME
    from emulator.backends.speakeasy.config import build_speakeasy_config
    from emulator.backends.speakeasy.setup import warm_steps

__all__ = ["ENGINE_NAME", "SpeakeasyBackend", "build_speakeasy_config", "warm_steps"]
