"""Source the standard library compiles while the project's libraries import, compiled ahead.

Importing pydantic, Speakeasy and the output libraries creates ~250 dataclasses, builds ~1,000
forward references and compiles ~170 regular expressions, and for each the standard library
compiles text: ``dataclasses._create_fn`` the source it generated for ``__init__``, ``__repr__``,
``__eq__``... (``exec(text, globals, ns)``), ``typing.ForwardRef`` a string annotation
(``compile(arg, '<string>', 'eval')``), ``re`` a pattern (its parser and compiler, in Python).
That was ~0.1 s of CPU on the cold run's critical path (before the emulation child forks, in the
child's import of Speakeasy, and in the parent's import of the output libraries beside it), and
the result is the same in every process: it depends only on the text.

``emulator/data/compiled-sources.bin`` ships those texts with their code objects (and each
pattern with the program ``re`` hands ``_sre.compile``), built by :func:`build_file`
(``python -m emulator.precompiled``) from the cold run's own imports. While :func:`serving` is
active, ``dataclasses`` and ``typing`` (and only they) find ``exec`` and ``compile`` in their own
namespace bound to functions that take the shipped code object of a text they know and compile
any other text exactly as before, and ``re._compiler.compile`` builds a known pattern from its
shipped program. The table is used only for the interpreter's bytecode (``MAGIC_NUMBER``), its
optimisation level, ``_sre``'s magic and code size, and the ``dataclasses.py``, ``typing.py`` and
``re`` compiler sources it was built with (their digests: the callers' calling conventions and
compiler flags); otherwise nothing is served. A code object compiled from the same text, file
name, mode and flags is the one the caller would have built, and a pattern built from the same
program the one ``re`` would have built, so every class, annotation and pattern is as before:
tests/test_imports.py checks each shipped entry against what ``compile`` and ``re`` build now,
and the file against what the builder builds now (rebuild it when a dataclass, annotation or
pattern a cold run imports changes: a stale entry is never used, never wrong).
"""

from __future__ import annotations

import _sre
import builtins
import contextlib
import hashlib
import importlib
import marshal
import re
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

DATA_FILE = Path(__file__).resolve().parent / "data" / "compiled-sources.bin"
FORMAT = 2
# The text's file name both callers use.
FILENAME = "<string>"
# The standard-library modules served, and the builtin each looks up in its namespace.
SERVED = (("dataclasses", "exec"), ("typing", "compile"))
# The regular expression compiler's modules: what a pattern compiles to depends on them.
REGEX_MODULES = ("re._compiler", "re._parser", "re._constants")
REGEX = "regex"

# ("exec" | "eval", text) -> code; (REGEX, pattern, flags) -> what _sre.compile is given
Table = dict[tuple[Any, ...], Any]

_ORIGINAL_REGEX_COMPILE = re._compiler.compile  # type: ignore[attr-defined]

_lock = threading.RLock()
_depth = 0
_table: Table | None = None
_recording: Table | None = None  # the builder's: every text compiled while serving


def _header() -> tuple[bytes, int, tuple[str, ...]]:
    """What a table is valid for: the bytecode's magic number, the optimisation level, and the
    source digests of the served modules (their calls' arguments and compiler flags)."""
    from importlib.util import MAGIC_NUMBER

    names = (*(name for name, _ in SERVED), *REGEX_MODULES)
    digests = tuple(_source_digest(sys.modules.get(name) or importlib.import_module(name)) for name in names)
    return MAGIC_NUMBER, sys.flags.optimize, (*digests, str(_sre.MAGIC), str(_sre.CODESIZE))


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


def _compile_regex(pattern: Any, flags: int = 0) -> Any:
    """``re._compiler.compile`` as ``re`` calls it for a pattern it has not cached: a known
    pattern's shipped program handed to ``_sre.compile`` (as the compiler would hand it), any
    other compiled as before."""
    if type(pattern) in (str, bytes) and not flags & re.DEBUG:
        found = _table.get((REGEX, pattern, flags)) if _table else None
        if found is not None:
            final_flags, code, groups, groupindex, indexgroup = found
            return _sre.compile(pattern, final_flags, code, groups, dict(groupindex), indexgroup)
        if _recording is not None:
            _record_regex(pattern, flags)
    return _ORIGINAL_REGEX_COMPILE(pattern, flags)


def _record_regex(pattern: str | bytes, flags: int) -> None:
    """The builder's: what ``re._compiler.compile`` hands ``_sre.compile`` for ``pattern``,
    when its parse warns of nothing and the program compiles to the same pattern."""
    import warnings

    compiler, parser = sys.modules["re._compiler"], sys.modules["re._parser"]
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        parsed = parser.parse(pattern, flags)
        code = compiler._code(parsed, flags)
    groupindex = dict(parsed.state.groupdict)
    indexgroup: list[str | None] = [None] * parsed.state.groups
    for name, index in groupindex.items():
        indexgroup[index] = name
    # the compiler's opcodes are int subclasses (named constants): plain ints, as _sre keeps them
    program = [int(word) for word in code]
    entry = (int(flags | parsed.state.flags), program, int(parsed.state.groups - 1), groupindex, tuple(indexgroup))
    if not warned and _sre.compile(pattern, *entry) == _ORIGINAL_REGEX_COMPILE(pattern, flags):
        assert _recording is not None
        _recording[(REGEX, pattern, flags)] = entry


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
                re._compiler.compile = _compile_regex  # type: ignore[attr-defined]
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
                re._compiler.compile = _ORIGINAL_REGEX_COMPILE  # type: ignore[attr-defined]


def build() -> Table:
    """Every text compiled while the cold run's imports run in this (fresh) process: the modules
    both processes share, the command line and the plan's models the parent builds after the
    fork, the engine the emulation child imports, and the output libraries the parent imports
    while the child emulates."""
    global _recording, _table
    _recording, _table = {}, {}
    try:
        with serving():
            from emulator import prestart

            prestart._import_shared()
            from pydantic import BaseModel

            import emulator.cli.app  # noqa: F401 - the parent's, after the fork: the command line...
            from emulator import environment, limits, plan

            for module in (plan, limits, environment):  # ... and the plan's models, built reading it
                for value in vars(module).values():
                    if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__:
                        value.model_rebuild()
            import emulator.analysis.pipeline
            import emulator.backends.speakeasy  # noqa: F401
            import emulator.document  # noqa: F401
            from emulator.export import prepare as prepare_exports
            from emulator.render import prepare as prepare_renderers
            from emulator.report import build_models

            build_models()
            prepare_renderers()
            prepare_exports()
        return dict(sorted(_recording.items(), key=repr))
    finally:
        _recording, _table = None, None


def encode(table: Table) -> bytes:
    return zlib.compress(marshal.dumps((_header(), FORMAT, table)), 9)


# Two builds with these string hash seeds; the file keeps what both compiled the same. A text
# made from a set's iteration order (tokenize's pattern of string prefixes) differs between
# processes: it could never be served, and it would make the file differ between two builds.
BUILD_SEEDS = ("1", "2")


def build_file() -> bytes:
    """The file's bytes, built now: :func:`build` in a fresh interpreter per seed (which has
    imported nothing of the project's but this module, pydantic's plugins off as the command
    line has them), the texts both compiled alike."""
    import os
    import subprocess

    tables = []
    for seed in BUILD_SEEDS:
        env = dict(os.environ, PYDANTIC_DISABLE_PLUGINS="__all__", PYTHONHASHSEED=seed)
        done = subprocess.run(
            [sys.executable, "-m", "emulator.precompiled", "--one"], env=env, capture_output=True, check=True
        )
        tables.append(marshal.loads(done.stdout))
    first, *others = tables
    common = {key: value for key, value in first.items() if all(other.get(key) == value for other in others)}
    return encode(common)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Rebuild emulator/data/compiled-sources.bin")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    if parser.parse_args().one:
        from emulator import precompiled  # this module as the project imports it (not __main__)

        sys.stdout.buffer.write(marshal.dumps(precompiled.build()))
        return 0
    DATA_FILE.write_bytes(build_file())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
