"""Compute without a cliff (issue 18): RC4 at 1, 16 and 64 MiB, raw Unicorn against chainreplay fast.

    python bench/scaling.py [--sizes 1,16,64] [--json PATH]

One process, one run, the two engines side by side for each size (the machine is shared: only
ratios measured together mean anything). Raw Unicorn runs ``RunRc4Size(n)`` with its imports
stubbed (bench/run.py's ``RawImage``); chainreplay runs the same export with ``emulate()`` in
fast mode, ``RunRc4Size(0)`` timed alongside and subtracted (Speakeasy's set-up). The
instruction limit is 10^10 for every size (above the work, so it never fires, but enforced).
Instructions are RC4's measured 31 instructions a byte (32,510,806 for 1 MiB, counted by
faithful mode), scaled: Minstr/s is comparable across sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import BENCH, RAW_BUF, RC4_KEY, SAMPLE, RawImage, fnv_words, plaintext, rc4_reference  # noqa: E402
from emulator.events import ApiCall  # noqa: E402
from emulator.plan import ExportCall  # noqa: E402
from emulator.replay import emulate  # noqa: E402
from emulator.scenario import load_scenario  # noqa: E402

MIB = 1024 * 1024
INSTRUCTIONS_PER_MIB = 32_510_806  # RunRc4Size(1 MiB), counted by faithful mode (docs/performance.md)
TARGET_VS_RAW = 1.25
# One limit for every size, above 64 MiB's 2.1 billion instructions: fast mode runs a stretch
# uncounted for limit / 1e9 seconds (10 s here), then on Unicorn's counter.
INSTRUCTION_LIMIT = 10_000_000_000


def run(sizes: list[int]) -> dict[str, Any]:
    raw = RawImage(SAMPLE)
    base = load_scenario(BENCH / "scenarios" / "rc4")
    rows: list[dict[str, Any]] = []
    for mib in sizes:
        size = mib * MIB
        checksum = fnv_words(rc4_reference(plaintext(size), RC4_KEY))
        instructions = INSTRUCTIONS_PER_MIB * mib
        limits = base.limits.model_copy(update={"max_instructions": INSTRUCTION_LIMIT, "timeout": 3600})
        plan = base.model_copy(update={"exports": [ExportCall(name="RunRc4Size", args=[size])], "limits": limits})
        empty = plan.model_copy(update={"exports": [ExportCall(name="RunRc4Size", args=[0])]})
        emulate(empty)  # warm: imports and Speakeasy's once-per-process tables
        started = time.perf_counter()
        emulate(empty)
        setup = time.perf_counter() - started
        started = time.perf_counter()
        recording = emulate(plan)
        chain_wall = time.perf_counter() - started
        expected = f"{checksum:#010x}"
        chain_ok = any(
            isinstance(e, ApiCall) and e.api.endswith("OutputDebugStringA") and any(expected in a for a in e.args)
            for e in recording.events
        )
        raw.debug_strings.clear()
        raw_wall, mu, _ = raw.call("RunRc4Size", (size,), {RAW_BUF: bytes(size)})
        raw_ok = raw.debug_strings == [f"benchwork: rc4 checksum {checksum:#010x}"]
        net = max(chain_wall - setup, 1e-9)
        rows.append(
            {
                "mib": mib,
                "instructions": instructions,
                "raw_wall_s": round(raw_wall, 3),
                "raw_minstr_s": round(instructions / raw_wall / 1e6, 1),
                "raw_checksum_ok": raw_ok,
                "chainreplay_wall_s": round(chain_wall, 3),
                "chainreplay_setup_s": round(setup, 3),
                "chainreplay_net_s": round(net, 3),
                "chainreplay_minstr_s": round(instructions / net / 1e6, 1),
                "chainreplay_outcome": recording.outcome.status.value if recording.outcome else None,
                "chainreplay_checksum_ok": chain_ok,
                "vs_raw": round(net / raw_wall, 3),
            }
        )
    worst = max(float(row["vs_raw"]) for row in rows)
    return {"rows": rows, "worst_vs_raw": worst, "target_vs_raw": TARGET_VS_RAW, "met": worst <= TARGET_VS_RAW}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,16,64", help="MiB, comma-separated (default 1,16,64)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args()
    result = run([int(x) for x in args.sizes.split(",")])
    header = f"{'MiB':>4}  {'raw s':>7}  {'raw Mi/s':>8}  {'fast net s':>10}  {'fast Mi/s':>9}  {'vs raw':>6}  outcome"
    print(header)  # noqa: T201
    for row in result["rows"]:
        print(  # noqa: T201
            f"{row['mib']:>4}  {row['raw_wall_s']:>7.3f}  {row['raw_minstr_s']:>8.1f}"
            f"  {row['chainreplay_net_s']:>10.3f}  {row['chainreplay_minstr_s']:>9.1f}"
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
