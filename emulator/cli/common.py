"""Exit codes, the parser class and helpers every command shares."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.limits import (
    LimitError,
    limit_overrides,
)

if TYPE_CHECKING:
    from rich.console import Console

    from emulator.plan import ReplayPlan
    from emulator.replay import ReplayResult


E_OK = 0
E_ERROR = 1
E_FAILED = 1  # drift, a failed expectation, or an outcome named by --fail-on
E_BAD_INPUT = 2
E_CONTAINMENT = 3
E_BUSY = 4
# A termination signal ends a run with 128 + its number (SIGINT 130, SIGTERM 143, SIGHUP 129).
E_SIGNAL_BASE = 128
E_INTERRUPTED = E_SIGNAL_BASE + 2

DEFAULT_REPORTS_DIR = Path("reports")


class UsageError(Exception):
    """Bad usage or input: one line, exit code 2."""


class OutputFileError(Exception):
    """A file named on the command line (--junit, schema -o, a baseline) could not be written:
    one line naming it, exit code 1 (the output could not be written)."""


def check_output_file(path: Path, option: str) -> None:
    """Refuse, before any work, an output file that cannot be created: an existing folder, or a
    path under something that is not a folder (UsageError, exit 2)."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: a folder, not a file")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {path}: {ancestor} is not a folder")


def write_output_file(path: Path, text: str, option: str) -> None:
    """``text`` written to ``path`` (its folders made); OutputFileError naming it if it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise OutputFileError(f"cannot write {option} {path}: {err.strerror or err}") from err


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


EXIT_CODES = f"""exit codes:
  {E_OK}    the replay ran; its outcome (completed, a limit that fired, a fault...) is in report.json
  {E_ERROR}    the output could not be written, a rendered file could not be drawn, or an internal error
       (one line; -d logs the traceback); with --expect / --fail-on / check: drift or a failed expectation
  {E_BAD_INPUT}    bad usage or bad input (one line on stderr names the file and the problem)
  {E_CONTAINMENT}    a containment violation ended the replay
  {E_BUSY}    another run holds the output folder
  128+N signal N ended the run (report.json partial, outcome interrupted): {E_INTERRUPTED} Ctrl-C (SIGINT),
       143 SIGTERM, 129 SIGHUP"""
COLOR_CHOICES = ("auto", "always", "never")
PACE_HELP = "narration: seconds between steps, or 'enter' to wait for the Enter key (default 1.5 on a terminal, else 0)"
DEFAULT_PACE = 1.5


def _pace(text: str) -> float | str:
    if text == "enter":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'enter', got {text!r}") from None
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError("seconds must be between 0 and 600")
    return value


def _output_options() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--color", choices=COLOR_CHOICES, default="auto", help="colour the terminal output (auto: only on a terminal)"
    )
    common.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    return common


def _console(color: str) -> Console:
    from rich.console import Console

    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140
    if color == "always":
        return Console(force_terminal=True, highlight=False, width=width)
    if color == "never":
        return Console(color_system=None, highlight=False, width=width, emoji=False)
    return Console(highlight=False, width=width)


def _limit_overrides(args: argparse.Namespace) -> dict[str, object]:
    try:
        return limit_overrides(args)
    except LimitError as err:
        raise UsageError(str(err)) from err


def output_refused(err: OSError) -> int:
    """The exit code of an output folder another run holds (busy) or that cannot be written,
    with its one line printed."""
    from emulator.output import OutputBusy

    if isinstance(err, OutputBusy):
        print(f"chainreplay: busy: {err.strerror}", file=sys.stderr)
        return E_BUSY
    print(f"chainreplay: error: cannot write the output: {err.strerror}", file=sys.stderr)
    return E_ERROR


def replay_or_exit_code(plan: ReplayPlan, outdir: Path, **options: Any) -> ReplayResult | int:
    """Replay ``plan`` into ``outdir``; the exit code instead when the replay could not run
    to the end (folder busy or not writable, a signal), with its one line already printed."""
    from emulator.output import OutputError, OutputNotOurs
    from emulator.replay import replay_target

    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"{outdir}: exists and is not a folder")
    try:
        result = replay_target(plan, outdir, **options)
    except OutputNotOurs as err:
        raise UsageError(str(err.strerror)) from err
    except OutputError as err:
        return output_refused(err)
    if result.signal is not None:
        print(f"chainreplay: {result.detail}; partial report in {result.report_path}", file=sys.stderr)
        return E_SIGNAL_BASE + result.signal
    return result
