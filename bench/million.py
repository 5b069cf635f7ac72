#!/usr/bin/env python3
"""A million-call replay in bounded memory (issue 18, target 3): the API flood
(``benchwork.dll!RunApiFloodCount(n)``: ``GetEnvironmentVariableA``, then ``GetCurrentThreadId``
n times) replayed by ``replay_target`` (what ``chainreplay run`` does: emulation in a forked child,
events streamed to the parent, trace, analysis, report.json, drawings, exports) at each size, each
in a fresh interpreter so that its peak RSS is its own.

Per size it prints and writes as JSON: wall time, the emulation's own time, the parent's peak RSS
(and the emulation child's), bytes per call, the size of trace.jsonl and report.json, and the
time of each step after the emulation: writing the trace, analysis, building + writing
report.json ("report building"), drawings and HTML, exports.

    python bench/million.py                            # 10k, 100k, 1M calls; reports/bench/million.json
    python bench/million.py --sizes 10000,100000       # other sizes
    python bench/million.py --checkout /work/main      # the same measurement of another checkout
    python bench/million.py --analyse OUTDIR           # `chainreplay analyse` of a kept output folder

The figures of a run are in docs/performance.md ("A million API calls").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = ROOT / "reports" / "bench" / "million.json"
SIZES = (10_000, 100_000, 1_000_000)
TARGET_PEAK_RSS_MB = 1024.0
TARGET_REPORT_S = 3.0

# Runs in a fresh interpreter with the measured checkout first on sys.path: times every step
# after the emulation by wrapping the functions produce() calls, then prints one JSON line.
_ONE_RUN = r"""
import json, resource, sys, time
from pathlib import Path
n, out = int(sys.argv[1]), Path(sys.argv[2])
import emulator.document as document
import emulator.output as output
from emulator.plan import ExportCall
from emulator.replay import replay_target
from emulator.scenario import load_scenario

spent = {}

def timed(module, name, key, only=None):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if only is None or only(args):
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - started
    setattr(module, name, wrapper)

timed(output, "write_trace", "write_trace_s")
timed(output, "_analyse_bounded", "analysis_s")
timed(document, "build_report", "report_build_s")
timed(output, "write_atomically", "report_write_s", only=lambda a: Path(a[0]).name == "report.json")
import emulator.render as render
timed(render, "render_files", "drawings_html_s")
import emulator.export as export
timed(export, "write_exports", "exports_s")
# Exports written by a forked copy beside the drawing: what the parent waits for them after drawing.
timed(export.BackgroundExports, "finish", "exports_s")
timed(output, "produce", "after_emulation_s")
import emulator.replay as replay
replay.produce = output.produce

plan = load_scenario(Path(sys.argv[3]))
limits = plan.limits.model_copy(update={"max_api_calls": n + 100, "timeout": 7200})
plan = plan.model_copy(update={"exports": [ExportCall(name="RunApiFloodCount", args=[n])], "limits": limits})
started = time.perf_counter()
result = replay_target(plan, out)
wall = time.perf_counter() - started
spent["report_s"] = spent.get("report_build_s", 0.0) + spent.get("report_write_s", 0.0)
print(json.dumps({
    "calls": n,
    "status": str(result.status),
    "api_calls": result.api_calls,
    "wall_s": round(wall, 3),
    "emulation_s": result.emulation_seconds,
    "parent_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "child_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    "trace_mb": round((out / "trace.jsonl").stat().st_size / 2**20, 1),
    "report_mb": round((out / "report.json").stat().st_size / 2**20, 1),
    **{k: round(v, 3) for k, v in spent.items()},
}))
"""

_ANALYSE = r"""
import json, resource, sys, time
from pathlib import Path
from emulator.output import produce
from emulator.trace import read_trace
out = Path(sys.argv[1])
started = time.perf_counter()
trace = read_trace(out)
read_s = time.perf_counter() - started
report = produce(out, trace)
print(json.dumps({
    "events": len(trace.events),
    "read_trace_s": round(read_s, 3),
    "wall_s": round(time.perf_counter() - started, 3),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "status": str(report.outcome.status),
}))
"""


def run_one(code: str, args: list[str], checkout: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, cwd=checkout, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _seconds(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.2f}" if key in row else "-"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "calls", "wall s", "emulation s", "parent peak MB", "bytes/call", "child peak MB", "trace MB",
        "report MB", "trace write s", "analysis s", "report.json s", "drawings s", "exports s",
    )  # fmt: skip
    # "-": the parent did not do that step (the exports' forked copy writes the trace and the
    # exports beside the drawing; "exports s" is then what the parent waited for the copy).
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['calls']:,} | error: {r['error']}")
            continue
        lines.append(
            " | ".join(
                [
                    f"{r['calls']:,}",
                    f"{r['wall_s']:.1f}",
                    f"{r['emulation_s']:.1f}",
                    f"{r['parent_peak_rss_mb']:.0f}",
                    f"{r['bytes_per_call']:.0f}",
                    f"{r['child_peak_rss_mb']:.0f}",
                    f"{r['trace_mb']:.1f}",
                    f"{r['report_mb']:.1f}",
                    _seconds(r, "write_trace_s"),
                    _seconds(r, "analysis_s"),
                    _seconds(r, "report_s"),
                    _seconds(r, "drawings_html_s"),
                    _seconds(r, "exports_s"),
                ]
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="API calls per replay, comma-separated")
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the chainreplay checkout to measure")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the figures")
    parser.add_argument("--keep", type=Path, help="keep each output folder under this folder")
    parser.add_argument("--analyse", type=Path, help="time `chainreplay analyse` of this output folder instead")
    args = parser.parse_args(argv)
    checkout = args.checkout.resolve()
    say = print  # noqa: T202 - a benchmark script prints its figures
    if args.analyse:
        result = run_one(_ANALYSE, [str(args.analyse.resolve())], checkout)
        say(json.dumps(result, indent=2))
        return 0
    scenario = ROOT / "bench" / "scenarios" / "apiflood"
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="chainreplay-million-") as tmp:
        base = args.keep.resolve() if args.keep else Path(tmp)
        for n in (int(s) for s in args.sizes.split(",")):
            out = base / f"flood-{n}"
            say(f"replaying {n:,} calls ...", flush=True)
            started = time.perf_counter()
            row = {"calls": n, **run_one(_ONE_RUN, [str(n), str(out), str(scenario)], checkout)}
            if "error" not in row:
                row["bytes_per_call"] = row["parent_peak_rss_mb"] * 2**20 / max(n, 1)
            say(f"  {json.dumps(row)} ({time.perf_counter() - started:.0f} s)", flush=True)
            rows.append(row)
    largest = max((r for r in rows if "error" not in r), key=lambda r: r["calls"], default=None)
    targets = {}
    if largest is not None and largest["calls"] >= 1_000_000:
        targets = {
            "parent_peak_rss_under_1GB": largest["parent_peak_rss_mb"] < TARGET_PEAK_RSS_MB,
            "report_building_under_3s": largest["report_s"] < TARGET_REPORT_S,
        }
    result = {
        "schema": 1,
        "checkout": str(checkout),
        "commit": subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "rows": rows,
        "targets": targets,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    say("")
    say(table(rows))
    say(f"\ntargets: {targets or 'need a 1,000,000-call row'}; JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
