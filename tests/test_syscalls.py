"""System calls as hook-avoiding loaders make them (emulator/backends/speakeasy/syscalls.py,
ntmemory.py).

tests/bins/syscalls/syscalls.c reads NtAllocateVirtualMemory's system service number from its
stub (Hell's Gate), ranks ZwAllocateVirtualMemory among ntdll's Zw* exports by address
(SysWhispers2), allocates writable memory with a direct system call from its own code, with an
indirect one (x64: a jump to the stub's syscall instruction; x86: WoW64's gate at fs:[0xC0]) and
through the stub called as a function, and gets STATUS_INVALID_SYSTEM_SERVICE for an unknown
number; it exits with one bit per check. Bare Speakeasy's stubs are jumps to its API traps (no
number to read) and its NtAllocateVirtualMemory maps memory with no access.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.backends.speakeasy.syscalls import number_stubs
from emulator.events import ApiCall
from emulator.plan import ReplayPlan
from emulator.replay import emulate

BINS = Path(__file__).resolve().parent / "bins" / "syscalls"
ALL_CHECKS = 0x3F


@pytest.mark.parametrize("mode", ["fast", "faithful"])
@pytest.mark.parametrize("sample", ["syscalls.exe", "syscalls32.exe"])
def test_system_calls_by_number_direct_and_indirect_reach_the_api(sample: str, mode: str) -> None:
    plan = ReplayPlan(
        name=Path(sample).stem,
        target_path=str(BINS / sample),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
        mode=mode,  # type: ignore[arg-type]
    )
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    calls = [e for e in recording.events if isinstance(e, ApiCall)]
    assert calls and calls[-1].api == "kernel32.ExitProcess", [c.api for c in calls]
    assert int(calls[-1].args[0], 16) == ALL_CHECKS, calls[-1].args
    # each system call that reached the kernel is in the report as the API it stands for
    allocations = [c for c in calls if c.api == "ntdll.NtAllocateVirtualMemory"]
    assert len(allocations) == 3 and all(c.ret == "0x0" for c in allocations), allocations


def test_numbers_follow_the_zw_names_address_order_and_nt_names_share_them() -> None:
    exports = [
        ("ZwClose", 0x3000, 0xF0),
        ("NtClose", 0x1000, 0xF1),
        ("ZwAllocateVirtualMemory", 0x2000, 0xF2),
        ("NtAllocateVirtualMemory", 0x5000, 0xF3),
        ("NtdllDefWindowProc_A", 0x4000, 0xF4),
        ("NtGetTickCount", 0x4100, 0xF5),
        ("RtlAllocateHeap", 0x4200, 0xF6),
    ]
    table, stubs = number_stubs(exports)
    assert table.by_name == {
        "ZwAllocateVirtualMemory": 0,
        "NtAllocateVirtualMemory": 0,
        "ZwClose": 1,
        "NtClose": 1,
    }
    assert table.by_number == {0: 0xF3, 1: 0xF1}  # the Nt name's trap: its handler's name
    assert sorted(stubs) == [
        ("NtAllocateVirtualMemory", 0x5000, 0),
        ("NtClose", 0x1000, 1),
        ("ZwAllocateVirtualMemory", 0x2000, 0),
        ("ZwClose", 0x3000, 1),
    ]
