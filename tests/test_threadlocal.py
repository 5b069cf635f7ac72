"""Implicit thread-local storage as the Windows loader sets it up (emulator/backends/speakeasy/tls.py).

tests/bins/threadlocal/threadlocal.c reaches its thread-local variable as MSVC- and Rust-built
code does (TEB.ThreadLocalStoragePointer[_tls_index]); its main thread exits with one bit per
check: the loader wrote the module's index; the thread has its own copy of the template (data,
then zero fill), writable, apart from the template in the image's read-only data. Its second
thread says whether it has a copy of its own, made from the template, apart from the main
thread's. Bare Speakeasy points the slot at the template itself: the first write faults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.events import ApiCall
from emulator.plan import ReplayPlan
from emulator.replay import emulate

BINS = Path(__file__).resolve().parent / "bins" / "threadlocal"
MAIN_THREAD_CHECKS = 0x5F


@pytest.mark.parametrize("mode", ["fast", "faithful"])
@pytest.mark.parametrize("sample", ["threadlocal.exe", "threadlocal32.exe"])
def test_each_thread_has_its_own_copy_of_the_tls_template(sample: str, mode: str) -> None:
    plan = ReplayPlan(
        name=Path(sample).stem,
        target_path=str(BINS / sample),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
        mode=mode,  # type: ignore[arg-type]
    )
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    exits = [e for e in recording.events if isinstance(e, ApiCall) and e.api == "kernel32.ExitProcess"]
    assert exits, recording.detail
    assert int(exits[-1].args[0], 16) == MAIN_THREAD_CHECKS, exits[-1].args
    said = [e.args[0] for e in recording.events if isinstance(e, ApiCall) and e.api == "kernel32.OutputDebugStringA"]
    assert said == ["check thread-tls-copy: pass"], said
