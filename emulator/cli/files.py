"""Commands over files, no emulation: render, analyse, schema."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from emulator.cli.common import (
    E_CONTAINMENT,
    E_ERROR,
    E_OK,
    E_SIGNAL_BASE,
    UsageError,
    _console,
    output_refused,
    write_output_file,
)
from emulator.cli.run import _show
from emulator.inputs import file_problem
from emulator.limits import (
    MAX_DRAWN_NODES,
    MAX_REPORT_FILE_SIZE,
    MAX_TIMEOUT_SECONDS,
    RENDER_TIMEOUT_SECONDS,
    WATCHDOG_GRACE_SECONDS,
)


def _render(args: argparse.Namespace) -> int:
    from emulator.render import render_files
    from emulator.report import Report, ReportError

    path = Path(args.report)
    if path.is_dir():
        path = path / "report.json"
    problem = file_problem(path)
    if problem is not None:
        raise UsageError(f"{path}: {problem}")
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
    from emulator.lifecycle import DeadlineReached, RunControl
    from emulator.output import OutputError, locked_folder, produce
    from emulator.trace import TRACE_FILE, TraceError, read_trace

    outdir = Path(args.outdir)
    if not outdir.is_dir():
        raise UsageError(f"{outdir}: not a folder")
    if not 0 < args.timeout <= MAX_TIMEOUT_SECONDS:  # the bounds of run's --timeout (Limits); refuses nan, inf
        raise UsageError(
            f"--timeout must be a positive number of seconds up to {MAX_TIMEOUT_SECONDS:g}, not {args.timeout:g}"
        )
    started = time.monotonic()
    control = RunControl(started + args.timeout)
    # Reading the trace gets the grace a replay's run gets past its timeout: what the timeout
    # cuts (and notes) is the analysis, and a trace unread leaves nothing to write.
    read_by = started + args.timeout + WATCHDOG_GRACE_SECONDS
    try:
        with locked_folder(outdir), control:
            try:
                # a signal meanwhile is answered once it is read (a partial report)
                with control.bounded(by_signals=False, deadline=read_by):
                    trace = read_trace(outdir, max_trace_size=args.max_trace_size, max_blobs_size=args.max_blobs_size)
            except TraceError as err:
                raise UsageError(str(err)) from err
            except DeadlineReached as err:
                raise UsageError(
                    f"{outdir / TRACE_FILE}: not read within --timeout {args.timeout:g} s plus "
                    f"{WATCHDOG_GRACE_SECONDS:g} s of grace (raise it with --timeout)"
                ) from err
            report = produce(outdir, trace, control=control)
    except OutputError as err:
        return output_refused(err)
    if control.signum is not None:
        name = signal.Signals(control.signum).name
        print(f"chainreplay: analysis interrupted by {name}; partial report in {outdir}", file=sys.stderr)
        return E_SIGNAL_BASE + control.signum
    _show(args, outdir.resolve() / "report.json")
    return E_CONTAINMENT if report.outcome.status == "containment" else E_OK


def _schema(args: argparse.Namespace) -> int:
    from emulator.report import Report

    text = json.dumps(Report.model_json_schema(by_alias=True), indent=2) + "\n"
    if args.output:
        write_output_file(Path(args.output), text, "-o")
    else:
        print(text, end="")
    return E_OK


# Loggers -d turns to DEBUG: chainreplay's own and the engine's. Everything else (matplotlib's
