"""Source the standard library compiles while the project's libraries import, compiled ahead.

Importing pydantic, Speakeasy and the output libraries creates ~250 dataclasses and builds ~1,000
forward references, and for each the standard library compiles a few lines of Python text it
generated: ``dataclasses._create_fn`` the text of ``__init__``, ``__repr__``, ``__eq__``...
(``exec(text, globals, ns)``), ``typing.ForwardRef`` a string annotation (``compile(arg,
'<string>', 'eval')``). Compiling that text was ~70 ms of CPU on the cold run's critical path
(half before the emulation child forks, half in the child's import of Speakeasy), and the text is
the same in every process: it depends only on the classes' declarations.

``emulator/data/compiled-sources.bin`` ships those texts with their code objects, built by
:func:`build` (``python -m emulator.precompiled``) from the project's own imports. While
:func:`serving` is active, ``dataclasses`` and ``typing`` (and only they) find ``exec`` and
``compile`` in their own namespace bound to functions that take the shipped code object of a text
they know and compile any other text exactly as before. The table is used only for the
interpreter's bytecode (``MAGIC_NUMBER``), its optimisation level, and the ``dataclasses.py`` and
``typing.py`` it was built with (their source digests: the callers' calling conventions and
compiler flags); otherwise nothing is served and every text compiles as before. A code object
compiled from the same text, file name, mode and flags is the one the caller would have built, so
every class and annotation is as before: tests/test_imports.py checks the shipped table equals
what the builder compiles now and that a served dataclass behaves as a compiled one.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import marshal
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "data" / "compiled-sources.bin"
FORMAT = 1
# The text's file name both callers use.
FILENAME = "<string>"
# The standard-library modules served, and the builtin each looks up in its namespace.
SERVED = (("dataclasses", "exec"), ("typing", "compile"))

# (mode, text) -> code
Table = dict[tuple[str, str], CodeType]

_lock = threading.RLock()
_depth = 0
_table: Table | None = None
_recording: Table | None = None  # the builder's: every text compiled while serving


def _header() -> tuple[bytes, int, tuple[str, ...]]:
    """What a table is valid for: the bytecode's magic number, the optimisation level, and the
    source digests of the served modules (their calls' arguments and compiler flags)."""
    from importlib.util import MAGIC_NUMBER

    digests = tuple(_source_digest(sys.modules.get(name) or __import__(name)) for name, _ in SERVED)
    return MAGIC_NUMBER, sys.flags.optimize, digests


def _source_digest(module: ModuleType) -> str:
    try:
        return hashlib.sha256(Path(str(module.__file__)).read_bytes()).hexdigest()
    except (OSError, TypeError):
        return ""


def shipped() -> Table:
    """The shipped table, read once per process; empty when it is missing, unreadable, or built
    for another interpreter or other ``dataclasses.py`` / ``typing.py``."""
    global _table
    if _table is None:
        try:
            header, fmt, table = marshal.loads(zlib.decompress(DATA_FILE.read_bytes()))
        except (OSError, ValueError, EOFError, TypeError, zlib.error):
            header, fmt, table = None, None, {}
        _table = table if fmt == FORMAT and header == _header() else {}
    return _table


def _compile(
    source: Any, filename: Any, mode: Any, flags: int = 0, dont_inherit: bool = False, optimize: int = -1
) -> Any:
    """``compile`` as the served modules call it: the shipped code of a known text, else compiled
    with the caller's flags (the served modules have no ``__future__`` imports: none inherited)."""
    if type(source) is str and filename == FILENAME and not flags and optimize == -1:
        code = _table.get((mode, source)) if _table else None
        if code is not None:
            return code
        code = builtins.compile(source, filename, mode, 0, True)
        if _recording is not None:
            _recording[(mode, source)] = code
        return code
    return builtins.compile(source, filename, mode, flags, True, optimize)


def _exec(source: Any, globals: Any = None, locals: Any = None, /, **kwargs: Any) -> None:  # noqa: A002
    """``exec`` as ``dataclasses`` calls it (a text, its globals and namespace): the text's
    shipped code, else compiled as ``exec`` compiles it."""
    if type(source) is str:
        source = _compile(source, FILENAME, "exec")
    if globals is None:  # as exec does: the caller's namespaces
        frame = sys._getframe(1)
        globals, locals = frame.f_globals, frame.f_locals if locals is None else locals
    builtins.exec(source, globals, locals, **kwargs)


_SHADOWS = {"exec": _exec, "compile": _compile}


@contextlib.contextmanager
def serving() -> Iterator[None]:
    """The shipped code served to ``dataclasses`` and ``typing`` while the block imports
    (re-entrant; nothing is served when the table does not fit this interpreter)."""
    global _depth
    with _lock:
        active = _depth > 0 or _recording is not None or bool(shipped())
        if active:
            if _depth == 0:
                for module_name, name in SERVED:
                    vars(__import__(module_name))[name] = _SHADOWS[name]
            _depth += 1
    if not active:
        yield
        return
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for module_name, name in SERVED:
                    vars(sys.modules[module_name]).pop(name, None)


def build() -> Table:
    """Every text compiled while the cold run's imports run in this (fresh) process: the modules
    both processes share, the engine the emulation child imports, and the output libraries the
    parent imports while the child emulates."""
    global _recording, _table
    _recording, _table = {}, {}
    try:
        with serving():
            from emulator import prestart

            prestart._import_shared()
            import emulator.analysis.pipeline
            import emulator.backends.speakeasy  # noqa: F401
            import emulator.document  # noqa: F401
            from emulator.export import prepare as prepare_exports
            from emulator.render import prepare as prepare_renderers
            from emulator.report import build_models

            build_models()
            prepare_renderers()
            prepare_exports()
        return dict(sorted(_recording.items()))
    finally:
        _recording, _table = None, None


def encode(table: Table) -> bytes:
    return zlib.compress(marshal.dumps((_header(), FORMAT, table)), 9)


def main() -> int:
    import argparse
    import os
    import subprocess

    parser = argparse.ArgumentParser(description="Rebuild emulator/data/compiled-sources.bin")
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)
    if parser.parse_args().here:
        from emulator import precompiled  # this module as the project imports it (not __main__)

        precompiled.DATA_FILE.write_bytes(precompiled.encode(precompiled.build()))
        return 0
    # In a fresh interpreter that has imported nothing of the project's but this module, with
    # pydantic's plugins off as the command line has them (emulator.cli.main).
    env = dict(os.environ, PYDANTIC_DISABLE_PLUGINS="__all__")
    return subprocess.run([sys.executable, "-m", "emulator.precompiled", "--here"], env=env, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
