"""Modules a process imports on its way to something else, loaded when first used.

Some imports pull in modules that are never used: Speakeasy's advapi32 handler imports
pycryptodome's ARC4 (cffi's C parser behind it) for a cipher few guests use; pydantic's core
schema decorates functions with ``typing_extensions.deprecated``, whose first use imports
``asyncio.coroutines`` to check for coroutine functions, and with it the whole ``asyncio`` package
(``ssl``, ``socket``, ``concurrent.futures``: ~35 ms of CPU before a cold replay's child is
forked); pydantic's plugin loader imports ``importlib.metadata`` (~15-35 ms) to scan entry points
that nothing reads when plugins are off.

While :func:`lazily_imported` is active, a first import of a module it names binds a module
object (with its ``__name__``, ``__spec__``, ``__file__``, and a package's ``__path__``) that
executes the module the first time an attribute it does not have yet is read, in whatever process
reads it. Unlike the standard library's ``importlib.util.LazyLoader``, reading the module's own
dunder attributes does not load it (Speakeasy's handler discovery reads ``__class__`` of every
member of its handler modules). A module already imported is left as it is.

A lazy package stays correct when one of its submodules is imported before the package has run
(``import asyncio.events`` as the first use): a finder installed while such a package is waiting
runs the package first, as a normal import would have, and hands out the submodule the package
imported (never a second copy). The exception are submodules named ``independent`` (they import
nothing from their package, e.g. ``asyncio.coroutines``), which load on their own.
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

_loading = threading.RLock()
# Lazy packages not executed yet, by name.
_waiting: dict[str, LazyModule] = {}
# Submodules that may load while their lazy package waits (they import nothing from it).
_independent: set[str] = set()


class LazyModule(ModuleType):
    """A module not executed yet: the first attribute it lacks executes it (then it is a plain
    module)."""

    def __getattr__(self, name: str) -> Any:
        load(self)
        return getattr(self, name)


def load(module: ModuleType) -> None:
    """Execute ``module`` now if it is a lazy module still waiting (else nothing)."""
    with _loading:
        if type(module) is not LazyModule:
            return
        spec: Any = module.__spec__
        loader = spec.loader_state
        spec.loader = loader
        spec.loader_state = None
        module.__loader__ = loader
        module.__class__ = ModuleType  # type: ignore[assignment]
        _waiting.pop(spec.name, None)
        try:
            loader.exec_module(module)
        except BaseException:
            # As a failed import: the module is not left behind half-executed.
            if sys.modules.get(spec.name) is module:
                del sys.modules[spec.name]
            raise


def is_waiting(name: str) -> bool:
    """``name`` is imported lazily and has not been executed yet."""
    return type(sys.modules.get(name)) is LazyModule


class LazyExec(importlib.abc.Loader):
    """Creates the module as ``loader`` would, and leaves executing it to its first use."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        assert spec is not None
        spec.loader_state = self.loader
        with _loading:
            module.__class__ = LazyModule
            if spec.submodule_search_locations is not None:
                _waiting[spec.name] = module  # type: ignore[assignment]
                _install(_SubmoduleGuard())


def _other_spec(
    fullname: str, path: Sequence[str] | None, target: ModuleType | None
) -> importlib.machinery.ModuleSpec | None:
    """The spec the finders other than this module's would give ``fullname``."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if isinstance(finder, LazyFinder | _SubmoduleGuard) or find is None:
            continue
        spec = find(fullname, path, target)
        if spec is not None:
            return spec  # type: ignore[no-any-return]
    return None


class LazyFinder(importlib.abc.MetaPathFinder):
    """Finds ``names`` as the other finders do, and loads them lazily."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = _other_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        if hasattr(spec.loader, "exec_module") and spec.loader_state is None:
            spec.loader = LazyExec(spec.loader)
        return spec


class _PackageFirst(importlib.abc.Loader):
    """Loads a submodule of a waiting lazy package: the package runs first (as it would have on a
    normal import); if that imported the submodule, that module is the one handed out."""

    def __init__(self, loader: Any, package: ModuleType) -> None:
        self.loader = loader
        self.package = package
        self.existing: ModuleType | None = None
        self.existing_spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        load(self.package)
        existing = sys.modules.get(spec.name)
        if existing is not None:
            self.existing, self.existing_spec = existing, existing.__spec__
            return existing  # the import machinery then calls exec_module, which leaves it as it is
        spec.loader = self.loader  # the module is the plain loader's from here on
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        if module is self.existing:
            module.__spec__ = self.existing_spec  # the import machinery set this loader's spec
            return
        self.loader.exec_module(module)  # pragma: no cover - spec.loader is the plain loader by now


class _SubmoduleGuard(importlib.abc.MetaPathFinder):
    """Installed once a lazy package waits: a submodule of a waiting package runs the package first."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package = _waiting.get(fullname.rpartition(".")[0])
        if package is None or type(package) is not LazyModule or fullname in _independent:
            return None
        spec = _other_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            load(package)  # the import goes on as it would have after the package ran
            return None
        spec.loader = _PackageFirst(spec.loader, package)
        return spec


def _install(finder: importlib.abc.MetaPathFinder) -> None:
    # Installed for the process's life (a cheap no-op once nothing waits): never removed while
    # an import may be walking sys.meta_path.
    if not any(type(f) is type(finder) for f in sys.meta_path):
        sys.meta_path.insert(0, finder)


@contextlib.contextmanager
def lazily_imported(names: Sequence[str], independent: Sequence[str] = ()) -> Iterator[None]:
    """While active, a first import of one of ``names`` loads it when first used.

    ``independent`` names submodules of those packages that import nothing from their package:
    they may load while it waits (any other submodule runs the package first)."""
    finder = LazyFinder(names)
    with _loading:
        _independent.update(independent)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
