"""`chainreplay run`: replay one target, then show the summary or the narration."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from emulator.cli.ci import _fail_on, _judge_run, _run_expectations
from emulator.cli.common import (
    DEFAULT_PACE,
    DEFAULT_REPORTS_DIR,
    E_CONTAINMENT,
    E_FAILED,
    E_OK,
    UsageError,
    _console,
    _limit_overrides,
    replay_or_exit_code,
)
from emulator.cli.guest import _apply_environment_flags
from emulator.cli.targets import _bare_plan
from emulator.inputs import NO_SUCH_FILE, file_problem
from emulator.limits import (
    default_limits_toml,
)
from emulator.precompiled import serving
from emulator.scenario import SCENARIO_FILE, ScenarioError, load_scenario

if TYPE_CHECKING:
    from rich.console import Console

    from emulator.plan import ReplayPlan
    from emulator.report import Report


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


def _run(args: argparse.Namespace) -> int:
    if args.dump_default_config:
        print(default_limits_toml(), end="")
        return E_OK
    if args.target is None:
        raise UsageError("run: the following arguments are required: target")

    _check_yara(args)
    target = Path(args.target)
    with serving():  # the plan's models are built here (emulator/precompiled.py)
        if target.is_dir():
            if file_problem(target / SCENARIO_FILE) == NO_SUCH_FILE:  # any other problem: load_scenario names it
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
            _tell_beside(args, plan, target)
        plan = _apply_environment_flags(plan, args)
        fail_on = _fail_on(args)
        expect = _run_expectations(args, target, bare=not target.is_dir())
    outdir = Path(args.output) if args.output else DEFAULT_REPORTS_DIR / plan.name
    result = replay_or_exit_code(
        plan,
        outdir,
        isolate=not args.in_process,
        force=args.force,
        yara_rules=args.yara,
        also_prepare=None if args.json or args.quiet else _import_summary,
    )
    if isinstance(result, int):
        return result
    _show(args, Path(result.report_path))
    failed = False
    if expect is not None or fail_on or args.junit:
        seconds = result.emulation_seconds
        failed = _judge_run(args, Path(result.report_path), str(target), result.outdir, seconds, expect, fail_on)
    if result.status == "containment":
        return E_CONTAINMENT
    return E_FAILED if failed else E_OK


def _tell_beside(args: argparse.Namespace, plan: ReplayPlan, target: Path) -> None:
    """Name the files the folder beside a bare sample gave its guest (none given with --file)."""
    given = {spec.partition("=")[0].lower() for spec in args.file}
    folder = target.resolve().parent
    beside = [
        Path(virtual.host_path).name
        for virtual in plan.files
        if virtual.emu_path.lower() not in given and Path(virtual.host_path).parent == folder
    ]
    if beside and not (args.quiet or args.json):
        print(f"chainreplay: from beside the sample (--alone leaves them out): {', '.join(beside)}", file=sys.stderr)


def _import_summary() -> None:
    """Import what :func:`_show` prints with (rich and the summary), while the replay emulates."""
    import rich.console  # noqa: F401

    import emulator.render.console  # noqa: F401


def _show(args: argparse.Namespace, report_path: Path) -> None:
    """Print the report written at ``report_path`` as --json / -q / -v / --narrate ask."""
    if args.json:
        print(report_path.read_text(encoding="utf-8"), end="")
        return
    if args.quiet:  # nothing to print: nothing to import (rich and the summary, ~50 ms of CPU)
        return
    from emulator.render.console import render_summary
    from emulator.report import Report, ReportError

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
