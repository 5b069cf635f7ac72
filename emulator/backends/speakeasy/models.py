"""Speakeasy's pydantic models that a replay may never use, built when first used.

Speakeasy defines about 80 pydantic models, and pydantic builds each one's validator when its
class is created: about 0.2 s of the engine's import, in the cold emulation child. Some are
used by every replay (the configuration, validated when the emulator starts; the API event
record), others only by some guests or never by chainreplay:

- every model of ``speakeasy.report`` (Speakeasy's own report, which chainreplay never asks
  for; ``ErrorInfo`` and ``DataArtifact`` are built when a replay first makes one);
- the export manifest models of ``speakeasy.windows.export_manifest`` (a decoy image comes from
  a shipped template, images.py; a manifest is read only for a module without one);
- every event record but the API call's (subclasses of ``speakeasy.profiler_events.Event``:
  a file write, a registry read, a thread...), each built when the guest first does that.

:func:`deferred` sets pydantic's documented ``defer_build`` option on those while Speakeasy is
imported (through pydantic's ``ConfigWrapper.for_model``, which reads a model's configuration
when its class is created; a subclass inherits it). A deferred model builds its validator the
first time it validates, exactly as it would have at import, so every record is the same. With
a pydantic whose ``for_model`` differs, nothing is deferred. The configuration models and
``ApiEvent``, ``TracePosition`` and ``ApiArg`` (used by every replay; building a model that
nests deferred ones would build those twice) are built at import as before.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

# Every model of these modules is deferred.
DEFERRED_MODULES = ("speakeasy.report", "speakeasy.windows.export_manifest")
# The subclasses of these models are deferred (the base itself is not, so that no subclass
# inherits the option), but for the ones named in KEPT.
DEFERRED_BASES = (("speakeasy.profiler_events", "Event"),)
# Built at import as before: every replay uses them.
KEPT = (("speakeasy.profiler_events", "ApiEvent"),)
FOR_MODEL_PARAMS = ("bases", "namespace", "raw_annotations", "kwargs")


def _config_wrapper() -> Any:
    try:
        from pydantic._internal._config import ConfigWrapper
    except ImportError:
        return None
    for_model = getattr(ConfigWrapper, "for_model", None)
    if for_model is None or tuple(inspect.signature(for_model).parameters) != FOR_MODEL_PARAMS:
        return None
    return ConfigWrapper


def should_defer(module: str, name: str, bases: tuple[type, ...]) -> bool:
    if (module, name) in KEPT:
        return False
    if module in DEFERRED_MODULES:
        return True
    return any(
        (getattr(cls, "__module__", ""), getattr(cls, "__qualname__", "")) in DEFERRED_BASES
        for base in bases
        for cls in getattr(base, "__mro__", ())
    )


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """While this is active, the models named above are created with ``defer_build``."""
    wrapper = _config_wrapper()
    if wrapper is None:
        yield
        return
    original = wrapper.__dict__["for_model"]
    original_func = original.__func__

    def for_model(
        cls: Any, bases: tuple[type, ...], namespace: dict[str, Any], raw_annotations: Any, kwargs: Any
    ) -> Any:
        config = original_func(cls, bases, namespace, raw_annotations, kwargs)
        if should_defer(str(namespace.get("__module__", "")), str(namespace.get("__qualname__", "")), bases):
            config.config_dict["defer_build"] = True
        return config

    wrapper.for_model = classmethod(for_model)
    try:
        yield
    finally:
        wrapper.for_model = original
