"""CI: run --expect / --fail-on / --junit, and `chainreplay check`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emulator.check import BASELINE_FILE
from emulator.cli.common import (
    DEFAULT_REPORTS_DIR,
    E_CONTAINMENT,
    E_FAILED,
    E_OK,
    UsageError,
    check_output_file,
    replay_or_exit_code,
    write_output_file,
)
from emulator.cli.targets import _plan_for_target, expand_targets
from emulator.scenario import SCENARIO_FILE, ScenarioError, read_scenario_file


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
    """The --fail-on categories; also refuses a --junit FILE that could not be written, before
    anything is replayed (every command that takes one reads --fail-on first)."""
    from emulator.check import parse_fail_on

    if getattr(args, "junit", None):
        check_output_file(Path(args.junit), "--junit")
    try:
        return parse_fail_on(getattr(args, "fail_on", "") or "")
    except ValueError as err:
        raise UsageError(f"--fail-on: {err}") from err


def _write_junit(results: list[Any], path: Path, *, command: str) -> None:
    from emulator.junit import junit_xml

    write_output_file(path, junit_xml(results, command=command), "--junit")


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


# Characters of one printed line of a verdict (the drift, an expectation's evidence).
MAX_VERDICT_LINE = 2000


def _print_result_lines(result: Any, *, stream: Any = None, verbose: bool = False) -> None:
    """The verdict on one target; what it quotes of the sample (paths, hosts, values, names)
    with control and format characters escaped, as every other terminal output."""
    from emulator.check import render_drift
    from emulator.expect import format_results
    from emulator.sanitize import lines_for_display

    out = stream or sys.stdout

    def say(text: str) -> None:
        print(lines_for_display(text, MAX_VERDICT_LINE), file=out)

    for reason in result.fail_reasons:
        say(f"{result.name}: FAIL {reason}")
    for line in format_results(result.expectations, verbose=verbose):
        say(f"{result.name}: {line}")
    if result.drift is not None:
        title = f"{result.name} (against {result.baseline})"
        say(render_drift(result.drift, title=title))


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
        _write_junit([result], Path(args.junit), command="run")
    return result.failed


def _add_check_parser(sub: Any) -> None:
    check = sub.add_parser(
        "check",
        allow_abbrev=False,
        help="replay, compare with the baseline and evaluate [expect]; exit 1 on drift",
    )
    check.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="scenario folders, a folder of them (scenarios), or samples with --baseline",
    )
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


def _baseline_path(args: argparse.Namespace, target: Path) -> Path:
    if args.baseline:
        return Path(args.baseline)
    if not target.is_dir():
        raise UsageError(f"{target}: a bare sample has no scenario folder: give --baseline FILE")
    return target / BASELINE_FILE


def _check(args: argparse.Namespace) -> int:
    from emulator.check import BaselineError, dumps_baseline, judge, load_baseline, normalise
    from emulator.report import Report

    fail_on = _fail_on(args)
    targets = expand_targets(args.targets)
    if args.baseline and len(targets) > 1:
        raise UsageError("--baseline applies to one target; give one target or none")
    jobs = []
    for target in targets:
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
        replay = replay_or_exit_code(plan, outdir)
        if isinstance(replay, int):
            return replay
        report = Report.from_file(Path(replay.report_path))
        contained = contained or replay.status == "containment"
        if args.update:
            write_output_file(baseline_path, dumps_baseline(normalise(report)), "baseline")
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
        _write_junit(results, Path(args.junit), command="check")
    if contained:
        return E_CONTAINMENT
    return E_FAILED if any(r.failed for r in results) else E_OK
