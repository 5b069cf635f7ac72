"""The command line (the only package that prints).

:func:`main` is the entry point. Before it imports the parser and the commands
(:mod:`emulator.cli.app`), a ``run`` or ``check`` forks its emulation child (:mod:`emulator.prestart`), which
imports the engine and reads its tables while this process loads the command line and the
scenario. Every name of :mod:`emulator.cli.app` is reachable here (``from emulator.cli import
E_OK``), imported on first use.
"""

from __future__ import annotations

import importlib
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


def main(argv: list[str] | None = None) -> int:
    """The command line. Only a process's own command line (``argv`` None) pre-starts a child:
    a caller passing ``argv`` (a test) replays as before, forking when the replay starts."""
    if argv is None and will_fork_a_replay(sys.argv[1:]):
        try:
            from emulator import prestart
            from emulator.cli.logs import _configure_logging

            prestart.start(_configure_logging)
        except Exception:  # noqa: BLE001 - no pre-start (no fork, an import failing): the replay
            pass  # forks its child when it starts, and reports what fails then, in one line
    from emulator.cli.app import main as run

    return run(argv)


def __getattr__(name: str) -> Any:
    if name.startswith("__"):  # not a command-line name (import machinery, copy, pickle)
        raise AttributeError(f"module 'emulator.cli' has no attribute {name!r}")
    app = importlib.import_module("emulator.cli.app")
    try:
        return getattr(app, name)
    except AttributeError:
        raise AttributeError(f"module 'emulator.cli' has no attribute {name!r}") from None
