"""A faithful guest: regression tests for guest bugs found on unseen samples, the anti-evasion
catalogue (in both modes), fast-equals-faithful on exception handling, TLS, threads and
self-modifying code, and Speakeasy-CLI parity flags.

Every sample is a small benign C program in tests/bins/fidelity/ (``make -C tests/bins/fidelity``
rebuilds them byte for byte). Each emulation runs once per session (``_emulate`` caches).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import main
from emulator.environment import GuestEnvironment, command_line
from emulator.events import ApiCall, FileAccess, NetworkExchange
from emulator.limits import Limits
from emulator.plan import ExportCall, ReplayPlan
from emulator.replay import Recording, emulate

ROOT = Path(__file__).resolve().parent.parent
BINS = ROOT / "tests" / "bins" / "fidelity"
_CACHE: dict[tuple[str, str, str], tuple[Recording, float]] = {}


def _plan(sample: str, mode: str = "fast", **update: Any) -> ReplayPlan:
    plan = ReplayPlan(
        name=Path(sample).stem,
        target_path=str(BINS / sample),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
        mode=mode,  # type: ignore[arg-type]
    )
    return plan.model_copy(update=update) if update else plan


def _emulate(sample: str, mode: str = "fast", **update: Any) -> Recording:
    key = (sample, mode, repr(sorted(update.items())))
    if key not in _CACHE:
        started = time.monotonic()
        recording = emulate(_plan(sample, mode, **update))
        _CACHE[key] = (recording, time.monotonic() - started)
    return _CACHE[key][0]


def _calls(recording: Recording, api: str) -> list[ApiCall]:
    return [e for e in recording.events if isinstance(e, ApiCall) and e.api == api]


def _exit_code(recording: Recording) -> int:
    exits = _calls(recording, "kernel32.ExitProcess")
    assert exits, [e.api for e in recording.events if isinstance(e, ApiCall)]
    return int(exits[-1].args[0], 16)


def _verdicts(recording: Recording) -> dict[str, str]:
    out: dict[str, str] = {}
    for call in _calls(recording, "kernel32.OutputDebugStringA"):
        text = call.args[0] if call.args else ""
        if text.startswith("check "):
            name, _, rest = text[len("check ") :].partition(": ")
            out[name] = rest
    return out


# ---- guest bugs, each on a sample of its own -----------------------------------------------


def test_consecutive_performance_counter_readings_differ() -> None:
    recording = _emulate("qpc.exe")
    assert recording.status == "completed", recording.detail
    assert not any("caught" in (c.args or [""])[0] for c in _calls(recording, "kernel32.OutputDebugStringA"))
    assert _exit_code(recording) == 0


def test_temp_path_ends_with_a_backslash_ansi_and_wide() -> None:
    recording = _emulate("temppath.exe")
    created = [e.path for e in recording.events if isinstance(e, FileAccess) and e.op == "create"]
    assert created == [
        "C:\\Users\\analyst\\AppData\\Local\\Temp\\a.dll",
        "C:\\Users\\analyst\\AppData\\Local\\Temp\\w.dll",
    ]


def test_string_ending_near_the_end_of_its_region_is_read_whole() -> None:
    recording = _emulate("strend.exe")
    urls = [e.url for e in recording.events if isinstance(e, NetworkExchange)]
    assert urls == ["http://updates.example.test/stage/next.bin"]


def test_random_generators_with_a_huge_length_fail_like_windows() -> None:
    recording = _emulate("genrandom.exe")
    assert recording.status == "completed", recording.detail
    verdicts = _verdicts(recording)
    assert verdicts == {
        "CryptGenRandom_huge_returned": "pass 0",
        "RtlGenRandom_huge_returned": "pass 0",
        "BCryptGenRandom_huge_returned": f"pass {0xC000000D}",
        "CryptGenRandom_small_returned": "pass 1",
    }
