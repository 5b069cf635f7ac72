"""Modules Speakeasy imports that a replay rarely uses, loaded when first used.

Speakeasy's advapi32 handler imports pycryptodome's ARC4 at import time (``from Crypto.Cipher
import ARC4``) for ``CryptDecrypt``/``CryptEncrypt`` with an RC4 key; pycryptodome binds its C
code through cffi, whose C-declaration parser (pycparser) is about 0.04 s of the engine's import
in the cold emulation child, for a cipher few guests use. :func:`lazily_imported` makes the
modules named in ``LAZY_MODULES`` import lazily while it is active: the name is bound to a module
object (with its ``__name__``, ``__spec__``, ``__file__``) that executes the module the first
time an attribute it does not have yet is read (``ARC4.new`` in the handler), in whatever
process reads it. Unlike the standard library's ``importlib.util.LazyLoader``, reading the
module's own dunder attributes does not load it: Speakeasy's handler discovery runs
``inspect.getmembers`` over its handler modules, whose ``isinstance`` checks read ``__class__``
of every member. Everything else imports as before; a module already imported is left as it
is.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

# Loaded on first use: pycryptodome's RC4, which Speakeasy's advapi32 handler imports.
LAZY_MODULES = ("Crypto.Cipher.ARC4",)


_loading = threading.RLock()


class LazyModule(ModuleType):
    """A module not executed yet: the first attribute it lacks executes it (then it is a plain
    module)."""

    def __getattr__(self, name: str) -> Any:
        with _loading:
            if type(self) is LazyModule:
                spec: Any = self.__spec__
                loader = spec.loader_state
                spec.loader = loader
                spec.loader_state = None
                self.__loader__ = loader
                self.__class__ = ModuleType  # type: ignore[assignment]
                loader.exec_module(self)
        return getattr(self, name)


class LazyExec(importlib.abc.Loader):
    """Creates the module as ``loader`` would, and leaves executing it to its first use."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        assert module.__spec__ is not None
        module.__spec__.loader_state = self.loader
        module.__class__ = LazyModule


class LazyFinder(importlib.abc.MetaPathFinder):
    """Finds ``names`` as the other finders do, and loads them lazily."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module") and spec.loader_state is None:
                spec.loader = LazyExec(spec.loader)
            return spec
        return None


@contextlib.contextmanager
def lazily_imported(names: Sequence[str] = LAZY_MODULES) -> Iterator[None]:
    """While active, a first import of one of ``names`` loads it when first used."""
    finder = LazyFinder(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
