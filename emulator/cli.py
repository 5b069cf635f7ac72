"""The command line. The only module that prints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator import __version__
from emulator.check import BASELINE_FILE
from emulator.limits import (
    MAX_DRAWN_NODES,
    MAX_REPORT_FILE_SIZE,
    MAX_SAMPLE_FILE_SIZE,
    RENDER_TIMEOUT_SECONDS,
    LimitError,
    Limits,
    add_limit_arguments,
    default_limits_toml,
    limit_overrides,
)
from emulator.plan import ExportCall, ReplayPlan, StringArg, VirtualFile
from emulator.scenario import SCENARIO_FILE, ScenarioError, load_scenario, read_scenario_file

if TYPE_CHECKING:
    from rich.console import Console

    from emulator.report import Report

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
        "--arch", choices=["x86", "x64", "amd64"], help="bare shellcode: its architecture (amd64 = x64, as Speakeasy)"
    )
    run.add_argument("--shellcode", action="store_true", help="treat the bare sample as raw shellcode")
    run.add_argument("--seed", type=int, help="seed for the guest's randomness (default: the scenario's)")
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

    schema = sub.add_parser("schema", allow_abbrev=False, help="print the JSON Schema of report.json")
    schema.add_argument("-o", "--output", metavar="FILE")
    return parser


# ---- the guest machine ([environment] settings as flags, like Speakeasy's CLI) ------------

ENVIRONMENT_FLAGS = {
    "processors": int,
    "memory_mb": int,
    "disk_gb": int,
    "disk_free_gb": int,
    "uptime_ms": int,
    "cpu_vendor": str,
    "cpu_brand": str,
}


def _add_environment_flags(run: argparse.ArgumentParser) -> None:
    group = run.add_argument_group("guest machine (override the scenario's [environment])")
    group.add_argument(
        "--argv",
        metavar="ARGS",
        help='arguments for the sample, split like a shell, backslashes kept: --argv="-o \\"C:\\out dir\\""',
    )
    group.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="guest environment variable (repeatable)"
    )
    group.add_argument("--hostname", metavar="NAME", help="the guest's computer name")
    group.add_argument("--user", metavar="NAME", help="the guest's user name")
    group.add_argument("--domain", metavar="NAME", help="the guest's DNS domain")
    group.add_argument("--screen", metavar="WxH", help="screen size, e.g. 1920x1080")
    group.add_argument("--hypervisor", action="store_true", help="set the CPUID hypervisor bit (look like a VM)")
    group.add_argument(
        "--missing-files",
        choices=["not_found", "default_content"],
        help="a file the scenario does not provide: not found (default, as Windows) or Speakeasy's default content",
    )
    for name, kind in ENVIRONMENT_FLAGS.items():
        from emulator.environment import GuestEnvironment

        field = GuestEnvironment.model_fields[name]
        group.add_argument(
            f"--{name.replace('_', '-')}",
            type=kind,
            dest=f"guest_{name}",
            metavar="N" if kind is int else "TEXT",
            help=f"{field.description} (default {field.default})",
        )


def _apply_environment_flags(plan: ReplayPlan, args: argparse.Namespace) -> ReplayPlan:
    """The plan with the guest-machine flags applied on top of the scenario's (or the defaults)."""
    from pydantic import ValidationError

    from emulator.environment import split_arguments

    update: dict[str, object] = {}
    guest: dict[str, object] = {}
    if args.argv is not None:
        try:
            guest["argv"] = split_arguments(args.argv)
        except ValueError as err:
            raise UsageError(f"--argv {args.argv!r}: {err}") from err
    if args.env:
        env = dict(plan.env)
        for spec in args.env:
            name, sep, value = spec.partition("=")
            if not sep or not name:
                raise UsageError(f"--env {spec!r}: expected NAME=VALUE")
            env[name] = value
        update["env"] = env
    for name in ("hostname", "user", "domain"):
        value = getattr(args, name)
        if value is not None:
            if not value or any(c in value for c in '\\/:*?"<>|\0'):
                raise UsageError(f"--{name} {value!r}: not a valid name")
            update[name] = value
    if "user" in update:  # a bare sample sits on the user's desktop: follow the new user
        prefix = f"C:\\Users\\{plan.user}\\"
        if plan.emu_path.startswith(prefix):
            update["emu_path"] = f"C:\\Users\\{update['user']}\\" + plan.emu_path[len(prefix) :]
    if args.screen is not None:
        width, sep, height = args.screen.lower().partition("x")
        if not sep or not width.isdigit() or not height.isdigit():
            raise UsageError(f"--screen {args.screen!r}: expected WIDTHxHEIGHT, e.g. 1920x1080")
        guest["screen"] = (int(width), int(height))
    if args.hypervisor:
        guest["hypervisor"] = True
    if args.missing_files is not None:
        guest["missing_files"] = args.missing_files
    for name in ENVIRONMENT_FLAGS:
        value = getattr(args, f"guest_{name}")
        if value is not None:
            guest[name] = value
    if guest:
        try:
            update["guest"] = plan.guest.model_validate({**plan.guest.model_dump(), **guest})
        except ValidationError as err:
            first = err.errors()[0]
            raise UsageError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from err
    return plan.model_copy(update=update) if update else plan


def _add_export_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--yara",
        metavar="RULES",
        help="scan every stage, dropped file and request/response body with these YARA rules "
        "(a .yar file or a folder of them); matches go into report.json",
    )


def _check_yara(args: argparse.Namespace) -> None:
    """A rule that does not compile stops the run before the replay starts."""
    if args.yara is None:
        return
    from emulator.export.yara_scan import YaraError, compile_rules

    try:
        compile_rules(args.yara)
    except YaraError as err:
        raise UsageError(f"--yara {err}") from err


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
        raise UsageError(f"{path}: raw shellcode needs --arch x86|x64|amd64")
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
        size = Path(host).stat().st_size
        if size > MAX_SAMPLE_FILE_SIZE:
            raise UsageError(
                f"--file {spec!r}: file is {size} bytes, larger than the {MAX_SAMPLE_FILE_SIZE}-byte limit"
            )
        files.append(VirtualFile(emu_path=emu_path, host_path=str(Path(host).resolve())))
    limits = Limits.model_validate(_limit_overrides(args))
    return ReplayPlan(
        name=path.stem,
        target_path=str(path.resolve()),
        target_kind="shellcode" if shellcode else "pe",
        arch="x64" if args.arch == "amd64" else args.arch,
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

    _check_yara(args)
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
    plan = _apply_environment_flags(plan, args)
    fail_on = _fail_on(args)
    expect = _run_expectations(args, target, bare=not target.is_dir())
    outdir = Path(args.output) if args.output else DEFAULT_REPORTS_DIR / plan.name
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"{outdir}: exists and is not a folder")
    from emulator.output import OutputBusy, OutputError, OutputNotOurs

    try:
        result = replay_target(plan, outdir, isolate=not args.in_process, force=args.force, yara_rules=args.yara)
    except OutputBusy as err:
        print(f"chainreplay: busy: {err.strerror}", file=sys.stderr)
        return E_BUSY
    except OutputNotOurs as err:
        raise UsageError(str(err.strerror)) from err
    except OutputError as err:
        print(f"chainreplay: error: cannot write the output: {err.strerror}", file=sys.stderr)
        return E_ERROR
    if result.signal is not None:
        print(f"chainreplay: {result.detail}; partial report in {result.report_path}", file=sys.stderr)
        return E_SIGNAL_BASE + result.signal
    _show(args, Path(result.report_path))
    failed = False
    if expect is not None or fail_on or args.junit:
        seconds = result.emulation_seconds
        failed = _judge_run(args, Path(result.report_path), str(target), result.outdir, seconds, expect, fail_on)
    if result.status == "containment":
        return E_CONTAINMENT
    return E_FAILED if failed else E_OK


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
    if report.yara is not None:
        from emulator.export.yara_scan import summary_line

        console.print(summary_line(report), highlight=False)


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


# ---- CI: run --expect / --fail-on / --junit, check, batch, variant ----------------------------


def _add_ci_run_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--expect",
        action="store_true",
        help="evaluate the scenario's [expect] table; exit 1 if an expectation fails",
    )
    run.add_argument(
        "--fail-on",
        metavar="LIST",
        default="",
        help="exit 1 when the outcome is in one of these comma-separated categories: "
        "unsupported_api, limit, fault, error, containment",
    )
    run.add_argument("--junit", metavar="FILE", help="write the result as JUnit XML")


def _fail_on(args: argparse.Namespace) -> tuple[str, ...]:
    from emulator.check import parse_fail_on

    try:
        return parse_fail_on(getattr(args, "fail_on", "") or "")
    except ValueError as err:
        raise UsageError(f"--fail-on: {err}") from err


def _scenario_expect(folder: Path) -> Any:
    try:
        return read_scenario_file(folder).expect
    except ScenarioError as err:
        raise UsageError(str(err)) from err


def _run_expectations(args: argparse.Namespace, target: Path, *, bare: bool) -> Any:
    if not args.expect:
        return None
    if bare:
        raise UsageError("--expect needs a scenario folder (its scenario.toml holds the [expect] table)")
    expect = _scenario_expect(target)
    if expect is None:
        raise UsageError(f"{target / SCENARIO_FILE}: --expect: the scenario has no [expect] table")
    return expect


def _print_result_lines(result: Any, *, stream: Any = None, verbose: bool = False) -> None:
    from emulator.check import render_drift
    from emulator.expect import format_results

    out = stream or sys.stdout
    for reason in result.fail_reasons:
        print(f"{result.name}: FAIL {reason}", file=out)
    for line in format_results(result.expectations, verbose=verbose):
        print(f"{result.name}: {line}", file=out)
    if result.drift is not None:
        title = f"{result.name} (against {result.baseline})"
        print(render_drift(result.drift, title=title), file=out)


def _judge_run(
    args: argparse.Namespace,
    report_path: Path,
    target: str,
    outdir: str,
    seconds: float,
    expect: Any,
    fail_on: tuple[str, ...],
) -> bool:
    from emulator.check import judge
    from emulator.report import Report

    report = Report.from_file(report_path)
    result = judge(report, target=target, outdir=outdir, seconds=seconds, expect=expect, fail_on=fail_on)
    if not args.quiet or result.failed:
        _print_result_lines(result, stream=sys.stderr if args.json else None)
    if args.junit:
        from emulator.junit import write_junit

        write_junit([result], Path(args.junit), command="run")
    return result.failed


def _add_check_parser(sub: Any) -> None:
    check = sub.add_parser(
        "check",
        allow_abbrev=False,
        help="replay, compare with the baseline and evaluate [expect]; exit 1 on drift",
    )
    check.add_argument("targets", nargs="+", metavar="TARGET", help="scenario folders (or samples with --baseline)")
    check.add_argument(
        "--baseline", metavar="FILE", help=f"baseline to compare with (default: TARGET/{BASELINE_FILE}); one target"
    )
    check.add_argument("--update", action="store_true", help="write the baseline from this replay instead of comparing")
    check.add_argument("-o", "--output", metavar="OUTDIR", help="parent of the output folders (default: reports/)")
    check.add_argument("--junit", metavar="FILE", help="write the results as JUnit XML")
    check.add_argument("--fail-on", metavar="LIST", default="", help="as for run: outcome categories that fail")
    check.add_argument("--allow-unverified", action="store_true", help="replay files that do not match SHA256SUMS")
    check.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    check.add_argument("-v", "--verbose", action="store_true", help="also list the expectations that hold")


def _plan_for_target(path: Path, *, allow_unverified: bool = False) -> ReplayPlan:
    """The plan of a scenario folder, or of a bare sample with `run`'s defaults."""
    if path.is_dir():
        if not (path / SCENARIO_FILE).is_file():
            raise UsageError(f"{path}: not a scenario folder (no {SCENARIO_FILE})")
        try:
            return load_scenario(path, verify=not allow_unverified)
        except ScenarioError as err:
            raise UsageError(str(err)) from err
    defaults = build_parser().parse_args(["run", "--", str(path)])
    return _bare_plan(defaults, path)


def _baseline_path(args: argparse.Namespace, target: Path) -> Path:
    if args.baseline:
        return Path(args.baseline)
    if not target.is_dir():
        raise UsageError(f"{target}: a bare sample has no scenario folder: give --baseline FILE")
    return target / BASELINE_FILE


def _check(args: argparse.Namespace) -> int:
    from emulator.check import BaselineError, judge, load_baseline, normalise, write_baseline
    from emulator.replay import replay_target
    from emulator.report import Report

    if args.baseline and len(args.targets) > 1:
        raise UsageError("--baseline applies to one target; give one target or none")
    fail_on = _fail_on(args)
    jobs = []
    for text in args.targets:
        target = Path(text)
        if not target.exists():
            raise UsageError(f"{target}: no such file or folder")
        plan = _plan_for_target(target, allow_unverified=args.allow_unverified)
        baseline_path = _baseline_path(args, target)
        baseline = None
        if not args.update:
            try:
                baseline = load_baseline(baseline_path)
            except BaselineError as err:
                raise UsageError(str(err)) from err
        expect = _scenario_expect(target) if target.is_dir() else None
        jobs.append((target, plan, baseline_path, baseline, expect))
    parent = Path(args.output) if args.output else DEFAULT_REPORTS_DIR
    results = []
    contained = False
    for target, plan, baseline_path, baseline, expect in jobs:
        outdir = parent / plan.name
        if outdir.exists() and not outdir.is_dir():
            raise UsageError(f"{outdir}: exists and is not a folder")
        from emulator.output import OutputBusy, OutputError, OutputNotOurs

        try:
            replay = replay_target(plan, outdir)
        except OutputBusy as err:
            print(f"chainreplay: busy: {err.strerror}", file=sys.stderr)
            return E_BUSY
        except OutputNotOurs as err:
            raise UsageError(str(err.strerror)) from err
        except OutputError as err:
            print(f"chainreplay: error: cannot write the output: {err.strerror}", file=sys.stderr)
            return E_ERROR
        if replay.signal is not None:
            print(f"chainreplay: {replay.detail}; partial report in {replay.report_path}", file=sys.stderr)
            return E_SIGNAL_BASE + replay.signal
        report = Report.from_file(Path(replay.report_path))
        contained = contained or replay.status == "containment"
        if args.update:
            write_baseline(normalise(report), baseline_path)
            print(f"{plan.name}: wrote {baseline_path}")
        result = judge(
            report,
            target=str(target),
            outdir=replay.outdir,
            seconds=replay.emulation_seconds,
            expect=expect,
            baseline=baseline,
            baseline_path=str(baseline_path),
            fail_on=fail_on,
        )
        results.append(result)
        if result.failed or not args.quiet:
            _print_result_lines(result, verbose=args.verbose)
    if args.junit:
        from emulator.junit import write_junit

        write_junit(results, Path(args.junit), command="check")
    if contained:
        return E_CONTAINMENT
    return E_FAILED if any(r.failed for r in results) else E_OK


def _add_batch_parser(sub: Any) -> None:
    batch = sub.add_parser(
        "batch",
        allow_abbrev=False,
        help="replay many targets on a pool of warm workers or a Dask cluster",
    )
    batch.add_argument("targets", nargs="+", metavar="TARGET", help="scenario folders or bare samples")
    batch.add_argument("-j", "--jobs", type=int, default=None, metavar="N", help="local workers (default: CPU count)")
    batch.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask distributed scheduler")
    batch.add_argument("-o", "--output", metavar="OUTDIR", help="parent of the output folders (default: reports/)")
    batch.add_argument("--check", action="store_true", help="compare each scenario with its baseline; exit 1 on drift")
    batch.add_argument(
        "--force",
        action="store_true",
        help="replay targets whose report is up to date, and replace output folders no run wrote",
    )
    batch.add_argument("--junit", metavar="FILE", help="write the results as JUnit XML")
    batch.add_argument("--fail-on", metavar="LIST", default="", help="as for run: outcome categories that fail")
    batch.add_argument("--allow-unverified", action="store_true", help="replay files that do not match SHA256SUMS")
    batch.add_argument("-q", "--quiet", action="store_true", help="no progress, only the table and failures")


def _batch(args: argparse.Namespace) -> int:
    from emulator.batch import BatchError, BatchTarget, run_batch, summary_table

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("-j: expected a positive number of workers")
    if args.scheduler and not args.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise UsageError(f"--scheduler {args.scheduler!r}: expected an address like tcp://HOST:PORT")
    fail_on = _fail_on(args)
    targets = []
    seen: set[str] = set()
    for text in args.targets:
        path = Path(text)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        plan = _plan_for_target(path, allow_unverified=args.allow_unverified)
        if plan.name in seen:
            raise UsageError(f"{path}: a second target named {plan.name!r}; their output folders would collide")
        seen.add(plan.name)
        expect = _scenario_expect(path) if path.is_dir() else None
        baseline = None
        if args.check:
            from emulator.check import BaselineError, load_baseline

            baseline_file = path / BASELINE_FILE if path.is_dir() else None
            if baseline_file is None or not baseline_file.is_file():
                raise UsageError(
                    f"{path}: --check needs a baseline ({path}/{BASELINE_FILE}); write it with check --update"
                )
            try:
                baseline = (str(baseline_file), load_baseline(baseline_file))
            except BaselineError as err:
                raise UsageError(str(err)) from err
        targets.append(BatchTarget(target=str(path), plan=plan, expect=expect, baseline=baseline))
    out = Path(args.output) if args.output else DEFAULT_REPORTS_DIR
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    progress = None if args.quiet else _progress_printer(len(targets))
    try:
        summary = run_batch(
            targets,
            out,
            jobs=args.jobs,
            scheduler=args.scheduler,
            force=args.force,
            fail_on=fail_on,
            on_result=progress.update if progress else None,
        )
    except BatchError as err:
        raise UsageError(str(err)) from err
    finally:
        if progress:
            progress.close()
    print(summary_table(summary))
    for result in summary.results:
        if result.failed:
            _print_result_lines(result)
    print(f"summary: {summary.path}")
    if args.junit:
        from emulator.junit import write_junit

        write_junit(summary.results, Path(args.junit), command="batch")
    return E_FAILED if any(r.failed for r in summary.results) else E_OK


class _Progress:
    """A rich progress bar on a terminal; one plain line per finished target when piped."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.bar: Any = None
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("batch"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
            )
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def update(self, result: Any) -> None:
        self.done += 1
        state = "resumed" if result.resumed else result.outcome
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"{result.name}: {state}")
        else:
            print(f"[{self.done}/{self.total}] {result.name}: {state} ({result.stages} stages, {result.seconds:.1f} s)")
            sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _progress_printer(total: int) -> _Progress:
    return _Progress(total)


def _add_variant_parser(sub: Any) -> None:
    variant = sub.add_parser(
        "variant",
        allow_abbrev=False,
        help="build a variant of a scenario from parameters (mingw-w64)",
    )
    variant.add_argument("scenario", help="scenario folder that declares variant parameters (variant.toml)")
    variant.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a parameter (repeatable)")
    variant.add_argument("--transport", help="shorthand for --set transport=...")
    variant.add_argument("--arch", help="shorthand for --set arch=...")
    variant.add_argument("--name", help="name of the new scenario (default: the output folder's name)")
    variant.add_argument("-o", "--output", required=True, metavar="DIR", help="new scenario folder")
    variant.add_argument("--list", action="store_true", help="list the parameters and their defaults, build nothing")


def _variant(args: argparse.Namespace) -> int:
    from emulator.variant import VariantError, build_variant, describe_parameters, parse_settings

    folder = Path(args.scenario)
    settings_text = list(args.set)
    if args.transport:
        settings_text.append(f"transport={args.transport}")
    if args.arch:
        settings_text.append(f"arch={args.arch}")
    try:
        if args.list:
            print(describe_parameters(folder))
            return E_OK
        settings = parse_settings(settings_text)
        result = build_variant(folder, Path(args.output), settings, name=args.name)
    except VariantError as err:
        raise UsageError(str(err)) from err
    print(f"built {result.folder} ({result.name}): {', '.join(f'{k}={v}' for k, v in result.parameters.items())}")
    print(f"SHA256SUMS: {result.manifest_sha256}")
    return E_OK


def _render(args: argparse.Namespace) -> int:
    from emulator.render import render_files
    from emulator.report import Report, ReportError

    path = Path(args.report)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_REPORT_FILE_SIZE:
        raise UsageError(f"{path}: file is {size} bytes, larger than the {MAX_REPORT_FILE_SIZE}-byte limit")
    try:
        report = Report.from_file(path)
    except ReportError as err:
        raise UsageError(str(err)) from err
    nodes = len(report.graph.nodes)
    if nodes > MAX_DRAWN_NODES:
        raise UsageError(f"{path}: graph has {nodes} nodes, more than the {MAX_DRAWN_NODES} drawn")
    out = Path(args.output) if args.output else path.parent
    out.mkdir(parents=True, exist_ok=True)
    from emulator.lifecycle import DeadlineReached, RunControl

    control = RunControl(time.monotonic() + RENDER_TIMEOUT_SECONDS)
    try:
        with control, control.bounded():
            errors = render_files(report, out, source=path.parent)
    except DeadlineReached as err:
        raise UsageError(f"{path}: drawing the graph took more than {RENDER_TIMEOUT_SECONDS:g} s") from err
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


# Loggers -d turns to DEBUG: chainreplay's own and the engine's. Everything else (matplotlib's
# font manager, ...) stays at WARNING.
DEBUG_LOGGERS = ("emulator", "speakeasy")


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is when a record is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never end the run
            self.handleError(record)


_HANDLER = _StderrHandler()


def _configure_logging(debug: bool) -> None:
    """Logging is configured here only (no module changes it at import): without ``-d`` nothing
    below CRITICAL is shown; with it, chainreplay's and Speakeasy's debug logs."""
    root = logging.getLogger()
    if _HANDLER not in root.handlers:
        root.addHandler(_HANDLER)
    root.setLevel(logging.WARNING if debug else logging.CRITICAL)
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.NOTSET)


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
        if args.command == "variant":
            return _variant(args)
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
    except Exception as err:  # noqa: BLE001 - never a traceback: one line, the traceback with -d
        logging.getLogger("emulator.cli").debug("internal error", exc_info=True)
        text = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        print(f"chainreplay: internal error: {text} (-d logs the traceback)", file=sys.stderr)
        return E_ERROR


if __name__ == "__main__":
    sys.exit(main())
