"""The command line's parser and dispatch (``emulator.cli.main`` starts here once the emulation
child of a ``run`` is pre-started; every name here is also reachable as ``emulator.cli.NAME``)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from emulator import __version__
from emulator.cli.batch import _add_batch_parser, _batch, _Progress, _progress_printer
from emulator.cli.ci import (
    _add_check_parser,
    _add_ci_run_flags,
    _baseline_path,
    _check,
    _fail_on,
    _judge_run,
    _print_result_lines,
    _run_expectations,
    _scenario_expect,
)
from emulator.cli.common import (
    COLOR_CHOICES,
    DEFAULT_PACE,
    DEFAULT_REPORTS_DIR,
    E_BAD_INPUT,
    E_BUSY,
    E_CONTAINMENT,
    E_ERROR,
    E_FAILED,
    E_INTERRUPTED,
    E_OK,
    E_SIGNAL_BASE,
    EXIT_CODES,
    PACE_HELP,
    OutputFileError,
    UsageError,
    _console,
    _limit_overrides,
    _output_options,
    _pace,
    _Parser,
)
from emulator.cli.files import _analyse, _render, _schema
from emulator.cli.guest import ENVIRONMENT_FLAGS, _add_environment_flags, _apply_environment_flags
from emulator.cli.logs import DEBUG_LOGGERS, _configure_logging
from emulator.cli.run import _add_export_options, _check_yara, _narrate, _run, _show
from emulator.cli.targets import _bare_plan, _parse_arg, _plan_for_target
from emulator.cli.variant import _add_variant_parser, _variant
from emulator.lifecycle import Interrupted, SignalWatch
from emulator.limits import (
    ANALYSE_TIMEOUT_SECONDS,
    MAX_BLOBS_SIZE,
    MAX_COUNT,
    MAX_TRACE_FILE_SIZE,
    add_limit_arguments,
)

# Reachable as emulator.cli.NAME (tests, bench/ and emulator/__main__.py import them from there).
__all__ = [
    "E_OK",
    "E_ERROR",
    "E_FAILED",
    "E_BAD_INPUT",
    "E_CONTAINMENT",
    "E_BUSY",
    "E_SIGNAL_BASE",
    "E_INTERRUPTED",
    "DEFAULT_REPORTS_DIR",
    "UsageError",
    "EXIT_CODES",
    "COLOR_CHOICES",
    "PACE_HELP",
    "DEFAULT_PACE",
    "ENVIRONMENT_FLAGS",
    "DEBUG_LOGGERS",
    "build_parser",
    "main",
    "_Parser",
    "_pace",
    "_output_options",
    "_console",
    "_limit_overrides",
    "_add_batch_parser",
    "_batch",
    "_Progress",
    "_progress_printer",
    "_add_check_parser",
    "_add_ci_run_flags",
    "_baseline_path",
    "_check",
    "_fail_on",
    "_judge_run",
    "_print_result_lines",
    "_run_expectations",
    "_scenario_expect",
    "_analyse",
    "_render",
    "_schema",
    "_add_environment_flags",
    "_apply_environment_flags",
    "_configure_logging",
    "_add_export_options",
    "_check_yara",
    "_narrate",
    "_run",
    "_show",
    "_bare_plan",
    "_parse_arg",
    "_plan_for_target",
    "_add_variant_parser",
    "_variant",
]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="chainreplay",
        allow_abbrev=False,
        description="Replay multi-stage Windows attack chains in a sandboxed emulator.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"chainreplay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    common = _output_options()
    run = sub.add_parser(
        "run",
        allow_abbrev=False,
        parents=[common],
        help="replay a scenario folder or a bare sample",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("target", nargs="?", help="scenario folder (with scenario.toml) or a sample file")
    run.add_argument(
        "--dump-default-config",
        action="store_true",
        help="print the default limits as a scenario.toml [limits] table and exit",
    )
    run.add_argument("-o", "--output", metavar="OUTDIR", help="output folder (default: reports/<name>/)")
    run.add_argument("-j", "--json", action="store_true", help="print only the report, as JSON, on stdout")
    run.add_argument("-v", "--verbose", action="store_true", help="also list every API call")
    run.add_argument("-d", "--debug", action="store_true", help="log chainreplay's own steps and timings to stderr")
    run.add_argument("--narrate", action="store_true", help="tell the chain step by step (also in OUTDIR/narration.md)")
    run.add_argument("--pace", type=_pace, metavar="SECONDS|enter", help=PACE_HELP)
    run.add_argument(
        "--export",
        action="append",
        default=[],
        metavar="NAME",
        help="bare DLL: export to call after DllMain (repeatable; --arg applies to the last one)",
    )
    run.add_argument(
        "--arg",
        action="append",
        default=[],
        metavar="VALUE",
        help="argument for the export: an integer, str:TEXT, wstr:TEXT or plain text",
    )
    run.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="EMU_PATH=HOST_PATH",
        help="map a host file into the guest (repeatable)",
    )
    run.add_argument(
        "--alone",
        action="store_true",
        help="bare sample: leave out the DLLs beside it that it imports (mapped into its guest folder by default)",
    )
    run.add_argument(
        "--arch", choices=["x86", "x64", "amd64"], help="bare shellcode: its architecture (amd64 = x64, as Speakeasy)"
    )
    run.add_argument("--shellcode", action="store_true", help="treat the bare sample as raw shellcode")
    run.add_argument("--seed", type=_seed, help="seed for the guest's randomness (default: the scenario's)")
    run.add_argument(
        "--allow-unverified", action="store_true", help="replay scenario files whose sha256 does not match SHA256SUMS"
    )
    run.add_argument(
        "--in-process", action="store_true", help="emulate in this process instead of a watched child (debugging only)"
    )
    run.add_argument("--faithful", action="store_true", help="keep Speakeasy's own hooks (slower, for comparison)")
    run.add_argument(
        "--force", action="store_true", help="replace the content of an OUTDIR that no chainreplay run wrote"
    )
    _add_environment_flags(run)
    add_limit_arguments(run)

    _add_ci_run_flags(run)
    _add_check_parser(sub)
    _add_batch_parser(sub)
    _add_variant_parser(sub)

    _add_export_options(run)

    render = sub.add_parser(
        "render",
        allow_abbrev=False,
        parents=[common],
        help="redraw the graph, report.html and narration.md of a report without emulating",
    )
    render.add_argument("report", help="a replay's output folder, or its report.json")
    render.add_argument("-o", "--output", metavar="OUTDIR", help="folder for the drawings (default: the report's)")

    analyse = sub.add_parser(
        "analyse",
        allow_abbrev=False,
        parents=[common],
        help="rebuild report.json and the rendered files of an output folder from its trace, without emulating",
    )
    analyse.add_argument("outdir", help="a replay's output folder (with trace.jsonl)")
    analyse.add_argument("-j", "--json", action="store_true", help="print only the report, as JSON, on stdout")
    analyse.add_argument("-v", "--verbose", action="store_true", help="also list every API call")
    analyse.add_argument(
        "--timeout",
        type=float,
        default=ANALYSE_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help=f"analysis, drawing and exports end by then; what is cut is noted (default {ANALYSE_TIMEOUT_SECONDS:g})",
    )
    analyse.add_argument(
        "--max-trace-size",
        type=_byte_count,
        default=MAX_TRACE_FILE_SIZE,
        metavar="BYTES",
        help=f"refuse a trace.jsonl larger than this, unread (default {MAX_TRACE_FILE_SIZE})",
    )
    analyse.add_argument(
        "--max-blobs-size",
        type=_byte_count,
        default=MAX_BLOBS_SIZE,
        metavar="BYTES",
        help=f"refuse blobs larger than this together, unread (default {MAX_BLOBS_SIZE})",
    )

    schema = sub.add_parser("schema", allow_abbrev=False, help="print the JSON Schema of report.json")
    schema.add_argument("-o", "--output", metavar="FILE")
    return parser


def _byte_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bytes, got {text!r}") from None
    if not 0 < value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected a number of bytes from 1 to {MAX_COUNT}, got {text}")
    return value


def _seed(text: str) -> int:
    from emulator.plan import MAX_SEED

    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text}: out of range (0 to 2**64 - 1)")
    return value


# A path named in a one-line error is cut to this many characters (a name can be 4096 bytes).
MAX_PATH_IN_ERROR = 160


def os_error_line(err: OSError) -> str:
    """``PATH: reason`` (and ``-> OTHER`` for a rename or link) rather than Python's
    ``[Errno N] reason: 'PATH'``; an error without a path keeps its text."""
    if err.filename is None or not err.strerror:
        return " ".join(str(err).split())

    from emulator.sanitize import for_display

    def shown(name: object) -> str:
        # the project's one escaper for names shown (control and format characters as \uXXXX),
        # then cut in the middle: a path's end names the file
        text = for_display(os.fsdecode(name) if isinstance(name, str | bytes) else str(name), limit=1 << 20)
        return text if len(text) <= MAX_PATH_IN_ERROR else text[: MAX_PATH_IN_ERROR // 2] + "..." + text[-40:]

    other = f" -> {shown(err.filename2)}" if err.filename2 is not None else ""
    return f"{shown(err.filename)}{other}: {err.strerror}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _configure_logging(getattr(args, "debug", False))
        if args.command == "run":
            return _run(args)
        if args.command == "render":
            return _render(args)
        if args.command == "analyse":
            return _analyse(args)
        if args.command == "check":
            return _check(args)
        if args.command == "batch":
            return _batch(args)
        # Commands that take no signal themselves: one ends them at once (exit 128 + N).
        with SignalWatch() as watch, watch.waiting():
            return _variant(args) if args.command == "variant" else _schema(args)
    except Interrupted as stop:
        print(f"chainreplay: interrupted by {signal.Signals(stop.signum).name}", file=sys.stderr)
        return E_SIGNAL_BASE + stop.signum
    except UsageError as err:
        print(f"chainreplay: error: {err}", file=sys.stderr)
        return E_BAD_INPUT
    except OutputFileError as err:
        print(f"chainreplay: error: {err}", file=sys.stderr)
        return E_ERROR
    except KeyboardInterrupt:
        print("chainreplay: interrupted", file=sys.stderr)
        return E_INTERRUPTED
    except OSError as err:
        print(f"chainreplay: error: {os_error_line(err)}", file=sys.stderr)
        return E_BAD_INPUT
    except Exception as err:  # noqa: BLE001 - never a traceback: one line, the traceback with -d
        logging.getLogger("emulator.cli").debug("internal error", exc_info=True)
        text = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        print(f"chainreplay: internal error: {text} (-d logs the traceback)", file=sys.stderr)
        return E_ERROR
