"""Lineage cost: CPU time of in-process emulate() with the source taps and the guest-module loader
on and off (alternating runs in one warm process), and of the analysis over the frozen trace.

    PYTHONPATH=. python bench/lineage_cost.py [RUNS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import emulator.backends.speakeasy.loader as loader  # noqa: E402
import emulator.backends.speakeasy.sources as sources  # noqa: E402
from emulator.analysis.pipeline import analyse  # noqa: E402
from emulator.replay import emulate, freeze, warm_engine  # noqa: E402
from emulator.scenario import load_scenario  # noqa: E402

WORKLOADS = ("bench/scenarios/rc4", "scenarios/winhttp-downloader", "scenarios/3cx")


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    warm_engine()
    taps, modules = sources.SourceTaps.install, loader.GuestModuleLoader.install
    for name in WORKLOADS:
        plan = load_scenario(ROOT / name)
        times: dict[bool, list[float]] = {True: [], False: []}
        analysis: list[float] = []
        for i in range(runs):
            on = i % 2 == 0
            sources.SourceTaps.install = taps if on else (lambda self: None)  # type: ignore[method-assign]
            loader.GuestModuleLoader.install = modules if on else (lambda self: None)  # type: ignore[method-assign]
            start = time.process_time()
            recording = emulate(plan)
            times[on].append(time.process_time() - start)
            if on:
                trace = freeze(plan, recording, "0" * 64)
                start = time.process_time()
                analyse(trace)
                analysis.append(time.process_time() - start)
        sources.SourceTaps.install, loader.GuestModuleLoader.install = taps, modules  # type: ignore[method-assign]
        with_taps, without = sorted(times[True]), sorted(times[False])
        sys.stdout.write(
            f"{name}: on best {with_taps[0]:.3f} s median {with_taps[len(with_taps) // 2]:.3f} s | "
            f"off best {without[0]:.3f} s median {without[len(without) // 2]:.3f} s | "
            f"analyse {min(analysis) * 1000:.1f} ms\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
