"""The command line (the only package that prints).

:func:`main` is the entry point. Before it imports the parser and the commands
(:mod:`emulator.cli.app`), a ``run`` or ``check`` forks its emulation child (:mod:`emulator.prestart`), which
imports the engine and reads its tables while this process loads the command line and the
scenario. Every name of :mod:`emulator.cli.app` is reachable here (``from emulator.cli import
E_OK``), imported on first use.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

# Options under which no emulation child is forked (a usage message, the defaults, or
# an emulation in this process).
NO_CHILD_OPTIONS = frozenset({"-h", "--help", "--dump-default-config", "--in-process"})


# Commands that replay in an isolated child (check: its first target uses the pre-started one).
REPLAYING_COMMANDS = frozenset({"run", "check"})


def will_fork_a_replay(args: list[str]) -> bool:
    """``args`` (the command line after the program name) ask for an isolated replay."""
    return bool(args) and args[0] in REPLAYING_COMMANDS and not NO_CHILD_OPTIONS & set(args[1:])


# pydantic's documented switch for its plugins (entry points of the group "pydantic"). The
# command line turns them off, unless the user set the variable (empty: every plugin loads):
# looking for them imports importlib.metadata and reads the entry points of every installed
# distribution (~30 ms of CPU before the emulation child is forked), and chainreplay's models are
# its own business.
PYDANTIC_PLUGINS_ENV = "PYDANTIC_DISABLE_PLUGINS"


def main(argv: list[str] | None = None) -> int:
    """The command line. Only a process's own command line (``argv`` None) pre-starts a child
    and turns pydantic's plugins off: a caller passing ``argv`` (a test) replays as before,
    forking when the replay starts."""
    if argv is None:
        from emulator.lifecycle import hold_signals

        hold_signals()  # first: a signal from now on is answered (exit 128 + N, one line)
        os.environ.setdefault(PYDANTIC_PLUGINS_ENV, "__all__")
    if argv is None and will_fork_a_replay(sys.argv[1:]):
        try:
            from emulator import prestart
            from emulator.cli.logs import _configure_logging

            prestart.start(_configure_logging)
        except Exception:  # noqa: BLE001 - no pre-start (no fork, an import failing): the replay
            pass  # forks its child when it starts, and reports what fails then, in one line
        from emulator.precompiled import serving

        with serving():  # beside the child, on the way to the plan (emulator/precompiled.py)
            from emulator.cli.app import main as run
    else:
        from emulator.cli.app import main as run

    code = run(argv)
    if argv is None:
        code = answer_held_signal(code)
        end_process(code)  # returns only where the interpreter must end the process itself
    return code


def answer_held_signal(code: int) -> int:
    """The exit code of a command a termination signal reached while nothing took it (before
    a replay or an analysis started, or after it ended): 128 + the signal, with one line; a
    command that already answered a signal keeps its code."""
    from emulator.cli.common import E_SIGNAL_BASE
    from emulator.lifecycle import take_held_signal

    signum = take_held_signal()
    if signum is None or code >= E_SIGNAL_BASE:
        return code
    import signal

    print(f"chainreplay: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
    return E_SIGNAL_BASE + signum


def end_process(code: int) -> None:
    """End this process now with ``code``, as the interpreter would but without tearing it down.

    Once a command is over, what is left is freeing every object of the libraries it imported
    (analysis, drawing, exports: ~0.05-0.1 s for a replay). The exit handlers run and the
    standard streams are flushed first, as at a normal exit. Returns (the interpreter then ends
    the process as usual) where that cannot be done safely: another thread still runs (the
    interpreter waits for it), or a stream cannot be flushed (the interpreter reports it).
    """
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() != 1:
        return
    if not _flushed():
        return
    import atexit

    atexit._run_exitfuncs()
    os._exit(code if _flushed() else EXIT_FLUSH_FAILED)


# The interpreter's own exit status when it cannot flush standard output at exit.
EXIT_FLUSH_FAILED = 120


def _flushed() -> bool:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            return False
    return True


def __getattr__(name: str) -> Any:
    if name.startswith("__"):  # not a command-line name (import machinery, copy, pickle)
        raise AttributeError(f"module 'emulator.cli' has no attribute {name!r}")
    app = importlib.import_module("emulator.cli.app")
    try:
        return getattr(app, name)
    except AttributeError:
        raise AttributeError(f"module 'emulator.cli' has no attribute {name!r}") from None
