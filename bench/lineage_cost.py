"""Lineage cost: CPU time of in-process emulate() with the flow watch (guest-code write / read
hooks) on and off, alternating runs in one warm process, the ratio on / off, and the CPU time of
the analysis over the frozen trace. With --all the source taps and the guest-module loader are
switched with it (3CX then runs fewer stages when off). The API trace (names, arguments, return
values: RC4's checksum among them) must be the same either way.

    PYTHONPATH=. python bench/lineage_cost.py [--all] [RUNS [WORKLOAD...]]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import emulator.backends.speakeasy.flow as flow  # noqa: E402
import emulator.backends.speakeasy.loader as loader  # noqa: E402
import emulator.backends.speakeasy.sources as sources  # noqa: E402
from emulator.analysis.pipeline import analyse  # noqa: E402
from emulator.events import ApiCall  # noqa: E402
from emulator.replay import emulate, warm_engine  # noqa: E402
from emulator.scenario import load_scenario  # noqa: E402
from emulator.trace import freeze  # noqa: E402

WORKLOADS = ("bench/scenarios/rc4", "scenarios/winhttp-downloader", "scenarios/3cx")


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--all"]
    everything = len(args) != len(sys.argv) - 1
    runs = int(args[0]) if args else 8
    warm_engine()
    taps, modules, watch = sources.SourceTaps.install, loader.GuestModuleLoader.install, flow.FlowWatch.install
    names = args[1:] or WORKLOADS
    for name in names:
        plan = load_scenario(ROOT / name)
        times: dict[bool, list[float]] = {True: [], False: []}
        analysis: list[float] = []
        calls: dict[bool, list[tuple[str, tuple[str, ...], str | None]]] = {}
        for i in range(runs):
            on = i % 2 == 0
            if everything:
                sources.SourceTaps.install = taps if on else (lambda self: None)  # type: ignore[method-assign]
                loader.GuestModuleLoader.install = modules if on else (lambda self: None)  # type: ignore[method-assign]
            flow.FlowWatch.install = watch if on else (lambda self: None)  # type: ignore[method-assign]
            start = time.process_time()
            recording = emulate(plan)
            times[on].append(time.process_time() - start)
            calls[on] = [(e.api, tuple(e.args), e.ret) for e in recording.events if isinstance(e, ApiCall)]
            if on:
                trace = freeze(plan, recording, "0" * 64)
                start = time.process_time()
                analyse(trace)
                analysis.append(time.process_time() - start)
        sources.SourceTaps.install, loader.GuestModuleLoader.install = taps, modules  # type: ignore[method-assign]
        flow.FlowWatch.install = watch  # type: ignore[method-assign]
        with_taps, without = sorted(times[True]), sorted(times[False])
        on_median, off_median = with_taps[len(with_taps) // 2], without[len(without) // 2]
        same = "same API trace" if calls.get(True) == calls.get(False) else "API TRACE DIFFERS"
        sys.stdout.write(
            f"{name}: on best {with_taps[0]:.3f} s median {on_median:.3f} s | "
            f"off best {without[0]:.3f} s median {off_median:.3f} s | "
            f"on/off best {with_taps[0] / without[0]:.3f} median {on_median / off_median:.3f} | "
            f"analyse {min(analysis) * 1000:.1f} ms | {same}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
