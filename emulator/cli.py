"""The command line. The only module that prints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from emulator import __version__
from emulator.limits import (
    MAX_SAMPLE_FILE_SIZE,
    LimitError,
    Limits,
    add_limit_arguments,
    default_limits_toml,
    limit_overrides,
)
from emulator.plan import ExportCall, ReplayPlan, StringArg, VirtualFile
from emulator.scenario import SCENARIO_FILE, ScenarioError, load_scenario

if TYPE_CHECKING:
    from rich.console import Console

    from emulator.report import Report

E_OK = 0
E_ERROR = 1
E_BAD_INPUT = 2
E_CONTAINMENT = 3
E_INTERRUPTED = 130

DEFAULT_REPORTS_DIR = Path("reports")


class UsageError(Exception):
    """Bad usage or input: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


EXIT_CODES = f"""exit codes:
  {E_OK}    the replay ran; its outcome (completed, a limit that fired, a fault...) is in report.json
  {E_ERROR}    render: a rendered file could not be drawn (named on stderr)
  {E_BAD_INPUT}    bad usage or bad input (one line on stderr names the file and the problem)
  {E_CONTAINMENT}    a containment violation ended the replay
  {E_INTERRUPTED}  interrupted (Ctrl-C)"""
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
    run.add_argument("--arch", choices=["x86", "x64"], help="bare shellcode: its architecture")
    run.add_argument("--shellcode", action="store_true", help="treat the bare sample as raw shellcode")
    run.add_argument("--seed", type=int, help="seed for the guest's randomness (default: the scenario's)")
    run.add_argument(
        "--allow-unverified", action="store_true", help="replay scenario files whose sha256 does not match SHA256SUMS"
    )
    run.add_argument(
        "--in-process", action="store_true", help="emulate in this process instead of a watched child (debugging only)"
    )
    run.add_argument("--faithful", action="store_true", help="keep Speakeasy's own hooks (slower, for comparison)")
    add_limit_arguments(run)

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

    schema = sub.add_parser("schema", allow_abbrev=False, help="print the JSON Schema of report.json")
    schema.add_argument("-o", "--output", metavar="FILE")
    return parser


def _parse_arg(text: str) -> int | StringArg:
    if text.startswith("wstr:"):
        return StringArg(text=text[5:], wide=True)
    if text.startswith("str:"):
        return StringArg(text=text[4:])
    try:
        return int(text, 0)
    except ValueError:
        return StringArg(text=text)


def _limit_overrides(args: argparse.Namespace) -> dict[str, object]:
    try:
        return limit_overrides(args)
    except LimitError as err:
        raise UsageError(str(err)) from err


def _bare_plan(args: argparse.Namespace, path: Path) -> ReplayPlan:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_SAMPLE_FILE_SIZE:  # refused before it is read, shellcode or PE
        raise UsageError(f"{path}: file is {size} bytes, larger than the {MAX_SAMPLE_FILE_SIZE}-byte limit")
    data = path.read_bytes()
    if not data:
        raise UsageError(f"{path}: empty file")
    shellcode = args.shellcode or (args.arch is not None and data[:2] != b"MZ")
    if not shellcode:
        from emulator.pe import PeError, check_file

        try:
            check_file(data, list(args.export))
        except PeError as err:
            raise UsageError(f"{path}: {err}") from err
    elif args.arch is None:
        raise UsageError(f"{path}: raw shellcode needs --arch x86|x64")
    exports: list[ExportCall] = [ExportCall(name=name) for name in args.export]
    if args.arg and not exports:
        raise UsageError("--arg needs an --export to apply to")
    if exports:
        exports[-1] = ExportCall(name=exports[-1].name, args=[_parse_arg(a) for a in args.arg])
    files = []
    for spec in args.file:
        emu_path, sep, host = spec.partition("=")
        if not sep or not emu_path or not host:
            raise UsageError(f"--file {spec!r}: expected EMU_PATH=HOST_PATH")
        if not Path(host).is_file():
            raise UsageError(f"--file {spec!r}: {host}: no such file")
        files.append(VirtualFile(emu_path=emu_path, host_path=str(Path(host).resolve())))
    limits = Limits.model_validate(_limit_overrides(args))
    return ReplayPlan(
        name=path.stem,
        target_path=str(path.resolve()),
        target_kind="shellcode" if shellcode else "pe",
        arch=args.arch,
        emu_path=f"C:\\Users\\analyst\\Desktop\\{path.name}",
        exports=exports,
        files=files,
        seed=args.seed if args.seed is not None else 1,
        limits=limits,
        mode="faithful" if args.faithful else "fast",
    )


def _run(args: argparse.Namespace) -> int:
    if args.dump_default_config:
        print(default_limits_toml(), end="")
        return E_OK
    if args.target is None:
        raise UsageError("run: the following arguments are required: target")
    from emulator.replay import replay_target

    target = Path(args.target)
    if target.is_dir():
        if not (target / SCENARIO_FILE).is_file():
            raise UsageError(f"{target}: not a scenario folder (no {SCENARIO_FILE})")
        try:
            plan = load_scenario(
                target,
                verify=not args.allow_unverified,
                seed=args.seed,
                limit_overrides=_limit_overrides(args),
                mode="faithful" if args.faithful else "fast",
            )
        except ScenarioError as err:
            raise UsageError(str(err)) from err
    else:
        plan = _bare_plan(args, target)
    outdir = Path(args.output) if args.output else DEFAULT_REPORTS_DIR / plan.name
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"{outdir}: exists and is not a folder")
    result = replay_target(plan, outdir, isolate=not args.in_process)
    _show(args, Path(result.report_path))
    return E_CONTAINMENT if result.status == "containment" else E_OK


def _show(args: argparse.Namespace, report_path: Path) -> None:
    """Print the report written at ``report_path`` as --json / -q / -v / --narrate ask."""
    from emulator.render.console import render_summary
    from emulator.report import Report, ReportError

    if args.json:
        print(report_path.read_text(encoding="utf-8"), end="")
        return
    if args.quiet:
        return
    try:
        report = Report.from_file(report_path)
    except ReportError as err:
        raise UsageError(str(err)) from err
    console = _console(args.color)
    if getattr(args, "narrate", False):
        _narrate(console, report, report_path.parent, args.pace)
    console.print(render_summary(report, outdir=report_path.parent, verbose=args.verbose))


def _console(color: str) -> Console:
    from rich.console import Console

    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 140
    if color == "always":
        return Console(force_terminal=True, highlight=False, width=width)
    if color == "never":
        return Console(color_system=None, highlight=False, width=width, emoji=False)
    return Console(highlight=False, width=width)


def _narrate(console: Console, report: Report, outdir: Path, pace: float | str | None) -> None:
    """Print the narration one step at a time, pausing between steps."""
    from rich.text import Text

    from emulator.render.files import saved_bodies
    from emulator.render.narrate import is_header, narrate

    if pace is None:
        pace = DEFAULT_PACE if sys.stdout.isatty() else 0.0
    waiting = pace == "enter" and sys.stdin is not None and sys.stdin.isatty()
    steps = narrate(report, saved_bodies(report, outdir))
    for i, step in enumerate(steps):
        if is_header(step):
            console.print(Text(step.title, style="bold cyan"))
            for line in step.lines:
                console.print(Text(line), soft_wrap=True)
        else:
            console.print(Text(f"{step.stage} > ", style="bold") + Text(step.lines[0] if step.lines else step.title))
            for line in step.lines[1:]:
                console.print(Text(line, style="dim"), soft_wrap=True)
        console.print()
        if i + 1 == len(steps):
            break
        if waiting:
            console.print(Text("[Enter for the next step]", style="dim"), end="")
            if not sys.stdin.readline():
                waiting = False
        elif isinstance(pace, float) and pace > 0:
            time.sleep(pace)
    console.print(Text(f"the same story as a handout: {outdir / 'narration.md'}", style="dim"))


def _render(args: argparse.Namespace) -> int:
    from emulator.render import render_files
    from emulator.report import Report, ReportError

    path = Path(args.report)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        report = Report.from_file(path)
    except ReportError as err:
        raise UsageError(str(err)) from err
    out = Path(args.output) if args.output else path.parent
    out.mkdir(parents=True, exist_ok=True)
    errors = render_files(report, out, source=path.parent)
    for error in errors:
        print(f"chainreplay: error: {error}", file=sys.stderr)
    if not errors and not args.quiet:
        from emulator.render import RENDERED_FILES

        _console(args.color).print(f"wrote {', '.join(RENDERED_FILES)} in {out}")
    return E_ERROR if errors else E_OK


def _analyse(args: argparse.Namespace) -> int:
    from emulator.output import produce
    from emulator.trace import TraceError, read_trace

    outdir = Path(args.outdir)
    if not outdir.is_dir():
        raise UsageError(f"{outdir}: not a folder")
    try:
        trace = read_trace(outdir)
    except TraceError as err:
        raise UsageError(str(err)) from err
    report = produce(outdir, trace)
    _show(args, outdir.resolve() / "report.json")
    return E_CONTAINMENT if report.outcome.status == "containment" else E_OK


def _schema(args: argparse.Namespace) -> int:
    from emulator.report import Report

    text = json.dumps(Report.model_json_schema(by_alias=True), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return E_OK


def _logging(debug: bool) -> None:
    """-d: chainreplay's own debug log on stderr; other libraries stay at warnings."""
    logging.basicConfig(level=logging.WARNING if debug else logging.CRITICAL, format="%(name)s: %(message)s")
    logging.getLogger("emulator").setLevel(logging.DEBUG if debug else logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _logging(getattr(args, "debug", False))
        if args.command == "run":
            return _run(args)
        if args.command == "render":
            return _render(args)
        if args.command == "analyse":
            return _analyse(args)
        return _schema(args)
    except UsageError as err:
        print(f"chainreplay: error: {err}", file=sys.stderr)
        return E_BAD_INPUT
    except KeyboardInterrupt:
        print("chainreplay: interrupted", file=sys.stderr)
        return E_INTERRUPTED
    except OSError as err:
        print(f"chainreplay: error: {err}", file=sys.stderr)
        return E_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
