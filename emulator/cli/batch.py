"""`chainreplay batch`: many targets on warm workers or a Dask cluster, with progress."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from emulator.check import BASELINE_FILE
from emulator.cli.ci import _fail_on, _print_result_lines, _scenario_expect, _write_junit
from emulator.cli.common import (
    DEFAULT_REPORTS_DIR,
    E_BAD_INPUT,
    E_FAILED,
    E_OK,
    E_SIGNAL_BASE,
    UsageError,
)
from emulator.cli.targets import _plan_for_target, expand_targets


def _add_batch_parser(sub: Any) -> None:
    batch = sub.add_parser(
        "batch",
        allow_abbrev=False,
        help="replay many targets on a pool of warm workers or a Dask cluster",
    )
    batch.add_argument(
        "targets", nargs="+", metavar="TARGET", help="scenario folders, a folder of them (scenarios), or bare samples"
    )
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
    from emulator.batch import BatchError, BatchTarget, refused_result, run_batch, summary_table
    from emulator.check import TargetResult

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("-j: expected a positive number of workers")
    if args.scheduler and not args.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        raise UsageError(f"--scheduler {args.scheduler!r}: expected an address like tcp://HOST:PORT")
    fail_on = _fail_on(args)
    targets = []
    seen: set[str] = set()
    refused: list[TargetResult] = []
    for path in expand_targets(args.targets):
        try:
            plan = _plan_for_target(path, allow_unverified=args.allow_unverified)
        except UsageError as err:
            # One target that cannot be replayed (not a PE, another architecture, a broken
            # scenario) is its own failed row, not the end of the others: the batch says so and
            # exits 2 once they have run.
            refused.append(refused_result(str(path), path.stem if path.is_file() else path.name, str(err)))
            continue
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
    progress = None if args.quiet else _progress_printer(len(targets) + len(refused))
    try:
        summary = run_batch(
            targets,
            out,
            jobs=args.jobs,
            scheduler=args.scheduler,
            force=args.force,
            fail_on=fail_on,
            on_result=progress.update if progress else None,
            on_started=progress.start if progress else None,
            fork_server_here=True,  # this process is the command line's own (emulator/batch_forkserver.py)
            refused=refused,
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
        _write_junit(summary.results, Path(args.junit), command="batch")
    if summary.signal is not None:
        return E_SIGNAL_BASE + summary.signal
    if refused:
        return E_BAD_INPUT
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
            self.task = self.bar.add_task("", total=total)  # its clock starts now
        self.started = False

    def start(self) -> None:
        """Show the bar (its refresh is a thread: started once the batch's workers are, see
        ``run_batch``'s ``on_started``)."""
        if self.bar is not None and not self.started:
            self.bar.start()
        self.started = True

    def update(self, result: Any) -> None:
        self.start()
        self.done += 1
        state = "resumed" if result.resumed else result.outcome
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"{result.name}: {state}")
        else:
            print(f"[{self.done}/{self.total}] {result.name}: {state} ({result.stages} stages, {result.seconds:.1f} s)")
            sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None and self.started:
            self.bar.stop()


def _progress_printer(total: int) -> _Progress:
    return _Progress(total)
