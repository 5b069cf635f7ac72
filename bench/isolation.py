#!/usr/bin/env python3
"""chainreplay isolation benchmark (issue 6): many replays in one process, no state leaked, memory bounded.

    python bench/isolation.py [--count 200] [--every 20] [--scenario DIR] [--child] [--json PATH]

Replays one scenario (default scenarios/winhttp-downloader: a WinHTTP download answered by a
responder, a second stage run from fetched bytes, a dropped file) ``--count`` times in this
process with ``replay_target(plan, outdir, isolate=False)``, so emulation, recording, analysis,
graph drawing and the report all run here and anything one replay leaves behind is seen by the
next. ``--child`` replays as the CLI does instead (emulation in a forked, watched child): then
only the parent's share (analysis, drawing, report) stays in this process.

After every ``--every`` replays it prints the resident set size (VmRSS), the live Python objects
after a full collection and the seconds per replay. Every report.json is compared with the
first, apart from ``generated_at``: any difference is state
leaked from one replay to the next and the exit status is 1. Writes every figure as JSON
(default reports/bench/isolation.json). See docs/containment.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Measure the checkout this file belongs to, not an installed copy of the package.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from emulator import __version__ as chainreplay_version  # noqa: E402
from emulator.replay import replay_target  # noqa: E402
from emulator.scenario import load_scenario  # noqa: E402

DEFAULT_SCENARIO = ROOT / "scenarios" / "winhttp-downloader"
DEFAULT_JSON = ROOT / "reports" / "bench" / "isolation.json"
SCHEMA = "chainreplay/bench-isolation/1"
MIB = 1024 * 1024


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak, which only grows)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def normalised(report_text: str) -> str:
    """The report without the fields that may differ between two replays of the same plan."""
    report = json.loads(report_text)
    report.pop("generated_at", None)
    return json.dumps(report, sort_keys=True)


def measure(scenario: Path, count: int, every: int, child: bool) -> dict[str, Any]:
    plan = load_scenario(scenario)
    checkpoints: list[dict[str, Any]] = []
    digests: dict[str, int] = {}
    first_report: str | None = None
    first_difference: int | None = None
    statuses: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="chainreplay-isolation-") as tmp:
        outdir = Path(tmp) / "out"
        gc.collect()
        rss_start = rss_bytes()
        print(f"{'replays':>8} {'RSS MiB':>9} {'growth MiB':>11} {'objects':>9} {'s/replay':>9}")
        print(f"{0:>8} {rss_start / MIB:>9.1f} {0.0:>11.1f} {len(gc.get_objects()):>9} {'':>9}")
        window_start = time.perf_counter()
        for index in range(1, count + 1):
            result = replay_target(plan, outdir, isolate=child)
            statuses.add(result.status)
            text = normalised(Path(result.report_path).read_text(encoding="utf-8"))
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            digests[digest] = digests.get(digest, 0) + 1
            if first_report is None:
                first_report = text
            elif text != first_report and first_difference is None:
                first_difference = index
            if index % every == 0 or index == count:
                seconds = (time.perf_counter() - window_start) / (
                    index - (checkpoints[-1]["replays"] if checkpoints else 0)
                )
                gc.collect()
                rss = rss_bytes()
                objects = len(gc.get_objects())
                checkpoints.append(
                    {
                        "replays": index,
                        "rss_mib": round(rss / MIB, 2),
                        "objects": objects,
                        "seconds_per_replay": round(seconds, 3),
                    }
                )
                print(
                    f"{index:>8} {rss / MIB:>9.1f} {(rss - rss_start) / MIB:>11.1f} {objects:>9} {seconds:>9.3f}",
                    flush=True,
                )
                window_start = time.perf_counter()
    first, last = checkpoints[0], checkpoints[-1]
    middle = checkpoints[len(checkpoints) // 2]
    second_half_replays = last["replays"] - middle["replays"]
    second_half_growth = last["rss_mib"] - middle["rss_mib"]
    return {
        "scenario": str(scenario.relative_to(ROOT) if scenario.is_relative_to(ROOT) else scenario),
        "isolation": "child process" if child else "in-process",
        "mode": plan.mode,
        "count": count,
        "every": every,
        "rss_start_mib": round(rss_start / MIB, 2),
        "rss_first_checkpoint_mib": first["rss_mib"],
        "rss_last_mib": last["rss_mib"],
        "growth_mib": round(last["rss_mib"] - rss_start / MIB, 2),
        "growth_after_first_checkpoint_mib": round(last["rss_mib"] - first["rss_mib"], 2),
        "growth_second_half_mib": round(second_half_growth, 2),
        "growth_second_half_kib_per_replay": round(second_half_growth * 1024 / second_half_replays, 2)
        if second_half_replays
        else 0.0,
        "objects_first_checkpoint": first["objects"],
        "objects_last": last["objects"],
        "peak_rss_mib": round(peak_rss_bytes() / MIB, 2),
        "statuses": sorted(statuses),
        "distinct_reports": len(digests),
        "identical": len(digests) == 1,
        "first_difference_at": first_difference,
        "checkpoints": checkpoints,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/isolation.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, metavar="N", help="replays (default 200)")
    parser.add_argument("--every", type=int, default=20, metavar="N", help="print after every N replays (default 20)")
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, metavar="DIR", help="scenario folder")
    parser.add_argument("--child", action="store_true", help="emulate in a forked child, as the CLI does")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH", help=f"default {DEFAULT_JSON}")
    args = parser.parse_args(argv)
    if args.count < 1 or args.every < 1:
        parser.error("--count and --every must be positive")
    started = time.perf_counter()
    figures = measure(args.scenario.resolve(), args.count, args.every, args.child)
    document = {
        "schema": SCHEMA,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "chainreplay": chainreplay_version,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        **figures,
    }
    print(
        f"{figures['count']} replays ({figures['isolation']}): RSS {figures['rss_start_mib']:.1f} -> "
        f"{figures['rss_last_mib']:.1f} MiB ({figures['growth_mib']:+.1f}; "
        f"{figures['growth_after_first_checkpoint_mib']:+.1f} after the first {figures['every']}, "
        f"{figures['growth_second_half_kib_per_replay']:+.1f} KiB/replay over the second half); "
        f"{figures['distinct_reports']} distinct report(s)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0 if figures["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
