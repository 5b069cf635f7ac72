"""API dispatch cost per call (issue 18 target 4): the API flood in fast mode, CPU per call.

    python bench/dispatch.py [--calls 5000] [--mode fast|faithful] [--workload flood|args]
                             [--emulator CHECKOUT] [--json PATH]

``--workload flood`` (the default): ``benchwork.dll!RunApiFloodCount(n)`` (``GetCurrentThreadId``
n times, an API without parameters). ``--workload args``: ``benchargs.dll!RunArgFloodCount(n)``,
five API calls per round, four of them with parameters rendered for the trace (VirtualProtect's
protection enum and out pointer, a handle, an error-code enum; see bench/samples/src/benchargs.c);
``--calls`` counts API calls (rounds = calls / 5). Replayed in this process with ``emulate()``;
the same export with 0 (Speakeasy's set-up, DLL load, DllMain) is timed alongside and
subtracted. CPU time of the process (``time.process_time``), best of 3: what other
sessions' load on a shared machine distorts least. Lineage taps and the memory watch are on, as
in every replay. To compare two checkouts, run this file from each, alternating (it imports
``emulator`` from the checkout it sits in, or from ``--emulator CHECKOUT``: the same workloads
measured against another checkout's code, e.g. ``--emulator /work/main``).
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
if "--emulator" in sys.argv[:-1]:
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--emulator") + 1]).resolve()))
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from emulator.plan import ExportCall  # noqa: E402
from emulator.replay import emulate  # noqa: E402
from emulator.scenario import load_scenario  # noqa: E402

REPEATS = 3
# workload -> (bench scenario, export taking a count, API calls per count)
WORKLOADS = {"flood": ("apiflood", "RunApiFloodCount", 1), "args": ("argflood", "RunArgFloodCount", 5)}


def _cpu(workload: str, rounds: int, mode: str) -> float:
    scenario, export, _per_round = WORKLOADS[workload]
    base = load_scenario(ROOT / "bench" / "scenarios" / scenario)
    plan = base.model_copy(update={"exports": [ExportCall(name=export, args=[rounds])], "mode": mode})
    started = time.process_time()
    emulate(plan)
    return time.process_time() - started


def run(calls: int, mode: str, workload: str = "flood") -> dict[str, Any]:
    rounds = max(calls // WORKLOADS[workload][2], 1)
    calls = rounds * WORKLOADS[workload][2]
    _cpu(workload, 0, mode)  # warm: imports and Speakeasy's once-per-process tables
    setup = min(_cpu(workload, 0, mode) for _ in range(REPEATS))
    full = min(_cpu(workload, rounds, mode) for _ in range(REPEATS))
    return {
        "mode": mode,
        "workload": workload,
        "emulator": str(Path(sys.modules["emulator"].__file__ or "").parent.parent),
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
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="flood")
    parser.add_argument("--emulator", type=Path, default=None, metavar="CHECKOUT", help="import emulator from here")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args()
    result = run(args.calls, args.mode, args.workload)
    print(  # noqa: T201
        f"{result['mode']} {result['workload']}: {result['us_per_call']} us of CPU per API call "
        f"({result['calls']} calls, {result['emulator']})"
    )
    print(json.dumps(result))  # noqa: T201
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
