"""API dispatch cost per call (issue 18 target 4): the API flood in fast mode, CPU per call.

    python bench/dispatch.py [--calls 5000] [--mode fast|faithful] [--json PATH]

``benchwork.dll!RunApiFloodCount(n)`` (``GetCurrentThreadId`` n times) replayed in this process
with ``emulate()``; ``RunApiFloodCount(0)`` (Speakeasy's set-up, DLL load, DllMain) is timed
alongside and subtracted. CPU time of the process (``time.process_time``), best of 3: what other
sessions' load on a shared machine distorts least. Lineage taps and the memory watch are on, as
in every replay. To compare two checkouts, run this file from each, alternating (it imports
``emulator`` from the checkout it sits in).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from emulator.plan import ExportCall  # noqa: E402
from emulator.replay import emulate  # noqa: E402
from emulator.scenario import load_scenario  # noqa: E402

REPEATS = 3


def _cpu(calls: int, mode: str) -> float:
    base = load_scenario(ROOT / "bench" / "scenarios" / "apiflood")
    plan = base.model_copy(update={"exports": [ExportCall(name="RunApiFloodCount", args=[calls])], "mode": mode})
    started = time.process_time()
    emulate(plan)
    return time.process_time() - started


def run(calls: int, mode: str) -> dict[str, Any]:
    _cpu(0, mode)  # warm: imports and Speakeasy's once-per-process tables
    setup = min(_cpu(0, mode) for _ in range(REPEATS))
    full = min(_cpu(calls, mode) for _ in range(REPEATS))
    return {
        "mode": mode,
        "calls": calls,
        "setup_cpu_s": round(setup, 3),
        "cpu_s": round(full, 3),
        "us_per_call": round((full - setup) / calls * 1e6, 1),
        "load_average": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--mode", choices=("fast", "faithful"), default="fast")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args()
    result = run(args.calls, args.mode)
    print(f"{result['mode']}: {result['us_per_call']} us of CPU per API call ({args.calls} calls)")  # noqa: T201
    print(json.dumps(result))  # noqa: T201
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
