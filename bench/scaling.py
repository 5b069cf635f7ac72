"""Compute without a cliff (issue 18): RC4 at 1, 16 and 64 MiB, raw Unicorn against chainreplay fast.

    python bench/scaling.py [--sizes 1,16,64] [--bare MIB] [--json PATH]

One process, one run, the two engines side by side for each size (the machine is shared: only
ratios measured together mean anything, and they are taken on CPU time, which the load of other
processes distorts least; wall times are kept in the JSON). Raw Unicorn runs ``RunRc4Size(n)``
with its imports stubbed (bench/run.py's ``RawImage``); chainreplay runs the same export with
``emulate()`` in fast mode, ``RunRc4Size(0)`` timed alongside and subtracted (Speakeasy's
set-up). Sizes up to 4 MiB are best of 3, larger ones a single run. ``--bare MIB`` also runs
bare Speakeasy (bench/run.py's ``run_bare``) at that size, set-up subtracted the same way. The
instruction limit is 10^10 for every size (above the work, so it never fires, but enforced).
Instructions are RC4's measured 31 instructions a byte (32,510,806 for 1 MiB, counted by
faithful mode), scaled: Minstr/s is comparable across sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import (  # noqa: E402
    BENCH,
    RAW_BUF,
    RC4_KEY,
    SAMPLE,
    RawImage,
    fnv_words,
    plaintext,
    rc4_reference,
    run_bare,
)
from emulator.events import ApiCall  # noqa: E402
from emulator.plan import ExportCall  # noqa: E402
from emulator.replay import emulate  # noqa: E402
from emulator.scenario import load_scenario  # noqa: E402

MIB = 1024 * 1024
INSTRUCTIONS_PER_MIB = 32_510_806  # RunRc4Size(1 MiB), counted by faithful mode (docs/performance.md)
TARGET_VS_RAW = 1.25
# Sizes up to this many MiB are timed best of REPEATS_SMALL; larger ones once.
SMALL_MIB = 4
REPEATS_SMALL = 3
T = TypeVar("T")
# One limit for every size, above 64 MiB's 2.1 billion instructions: fast mode runs a stretch on
# its native byte budget (limit bytes of code entered) before Unicorn's counter would take over,
# and 64 MiB of RC4 enters about 7.3 billion bytes of code.
INSTRUCTION_LIMIT = 10_000_000_000


def _cpu(fn: Callable[[], T]) -> tuple[float, float, T]:
    """Wall and CPU seconds of ``fn()`` (CPU time is what load on a shared machine distorts least)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def _best(fn: Callable[[], T], repeats: int) -> tuple[float, float, T]:
    runs = [_cpu(fn) for _ in range(repeats)]
    best = min(runs, key=lambda r: r[1])
    return best


def run(sizes: list[int], bare_mib: int | None = None) -> dict[str, Any]:
    raw = RawImage(SAMPLE)
    base = load_scenario(BENCH / "scenarios" / "rc4")
    rows: list[dict[str, Any]] = []
    limits = base.limits.model_copy(update={"max_instructions": INSTRUCTION_LIMIT, "timeout": 3600})
    empty = base.model_copy(update={"exports": [ExportCall(name="RunRc4Size", args=[0])], "limits": limits})
    emulate(empty)  # warm: imports and Speakeasy's once-per-process tables
    for mib in sizes:
        size = mib * MIB
        repeats = REPEATS_SMALL if mib <= SMALL_MIB else 1
        checksum = fnv_words(rc4_reference(plaintext(size), RC4_KEY))
        instructions = INSTRUCTIONS_PER_MIB * mib
        plan = empty.model_copy(update={"exports": [ExportCall(name="RunRc4Size", args=[size])]})
        _, setup_cpu, _ = _best(lambda: emulate(empty), repeats)
        chain_wall, chain_cpu, recording = _best(lambda p=plan: emulate(p), repeats)  # type: ignore[misc]
        expected = f"{checksum:#010x}"
        chain_ok = any(
            isinstance(e, ApiCall) and e.api.endswith("OutputDebugStringA") and any(expected in a for a in e.args)
            for e in recording.events
        )

        def raw_call(n: int = size) -> Any:
            raw.debug_strings.clear()
            return raw.call("RunRc4Size", (n,), {RAW_BUF: bytes(n)})

        raw_wall, raw_cpu, _ = _best(raw_call, repeats)
        raw_ok = raw.debug_strings == [f"benchwork: rc4 checksum {checksum:#010x}"]
        net = max(chain_cpu - setup_cpu, 1e-9)
        rows.append(
            {
                "mib": mib,
                "instructions": instructions,
                "raw_wall_s": round(raw_wall, 3),
                "raw_cpu_s": round(raw_cpu, 3),
                "raw_minstr_s": round(instructions / raw_cpu / 1e6, 1),
                "raw_checksum_ok": raw_ok,
                "chainreplay_wall_s": round(chain_wall, 3),
                "chainreplay_cpu_s": round(chain_cpu, 3),
                "chainreplay_setup_cpu_s": round(setup_cpu, 3),
                "chainreplay_net_cpu_s": round(net, 3),
                "chainreplay_minstr_s": round(instructions / net / 1e6, 1),
                "chainreplay_outcome": recording.outcome.status.value if recording.outcome else None,
                "chainreplay_checksum_ok": chain_ok,
                "vs_raw": round(net / raw_cpu, 3),
            }
        )
    result: dict[str, Any] = {"rows": rows, "target_vs_raw": TARGET_VS_RAW, "load_average": os.getloadavg()}
    at_16 = [row for row in rows if row["mib"] == 16]
    result["vs_raw_16_mib"] = at_16[0]["vs_raw"] if at_16 else None
    rates = [float(row["chainreplay_minstr_s"]) for row in rows if row["mib"] >= 1]
    result["flatness"] = round(max(rates) / min(rates), 3) if rates else None
    if bare_mib:
        result["bare"] = _bare(bare_mib, rows)
    return result


def _bare(mib: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Bare Speakeasy on the same export, set-up (RunRc4Size(0)) subtracted, CPU seconds."""
    base = load_scenario(BENCH / "scenarios" / "rc4")

    def bare(size: int) -> Any:
        return run_bare(base.model_copy(update={"exports": [ExportCall(name="RunRc4Size", args=[size])]}))

    _, empty_cpu, _ = _cpu(lambda: bare(0))
    _, full_cpu, result = _cpu(lambda: bare(mib * MIB))
    net = max(full_cpu - empty_cpu, 1e-9)
    fast = [row for row in rows if row["mib"] == mib]
    speedup = round(net / float(fast[0]["chainreplay_net_cpu_s"]), 1) if fast else None
    return {"mib": mib, "net_cpu_s": round(net, 3), "call_wall_s": round(result.call_s, 3), "fast_speedup": speedup}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,16,64", help="MiB, comma-separated (default 1,16,64)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    parser.add_argument("--bare", type=int, default=None, metavar="MIB", help="also run bare Speakeasy at MIB")
    args = parser.parse_args()
    result = run([int(x) for x in args.sizes.split(",")], args.bare)
    header = f"{'MiB':>4}  {'raw cpu s':>9}  {'raw Mi/s':>8}  {'fast net cpu s':>14}  {'fast Mi/s':>9}  {'vs raw':>6}"
    print(header)  # noqa: T201
    for row in result["rows"]:
        print(  # noqa: T201
            f"{row['mib']:>4}  {row['raw_cpu_s']:>9.3f}  {row['raw_minstr_s']:>8.1f}"
            f"  {row['chainreplay_net_cpu_s']:>14.3f}  {row['chainreplay_minstr_s']:>9.1f}"
            f"  {row['vs_raw']:>5.2f}x  {row['chainreplay_outcome']}"
            f" checksums ok: raw {row['raw_checksum_ok']}, fast {row['chainreplay_checksum_ok']}"
        )
    print(json.dumps(result))  # noqa: T201
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
