"""What the Windows loader and kernel do natively, on samples in tests/bins/native/.

**Implicit TLS** (emulator/backends/speakeasy/tls.py): threadlocal.c reaches its thread-local
variable as MSVC- and Rust-built code does (TEB.ThreadLocalStoragePointer[_tls_index]); its main
thread exits with one bit per check: the loader wrote the module's index; the thread has its own
copy of the template (data, then zero fill), writable, apart from the template in the image's
read-only data. Its second thread says whether it has a copy of its own, made from the template,
apart from the main thread's. Bare Speakeasy points the slot at the template itself: the first
write faults.

**System calls** (syscalls.py, ntmemory.py): syscalls.c reads NtAllocateVirtualMemory's system
service number from its stub (Hell's Gate), ranks ZwAllocateVirtualMemory among ntdll's Zw*
exports by address (SysWhispers2), allocates writable memory with a direct system call from its
own code, with an indirect one (x64: a jump to the stub's syscall instruction; x86: into the stub
past its number; noted ``indirect_system_call``) and through the stub called as a function (not
noted) and with ``int 2Eh``, and gets
STATUS_INVALID_SYSTEM_SERVICE for an unknown number; it exits with one bit per check. Bare
Speakeasy's stubs are jumps to its API traps (no number to read) and its NtAllocateVirtualMemory
maps memory with no access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulator.backends.speakeasy.syscalls import number_stubs
from emulator.events import ApiCall, Note
from emulator.plan import ReplayPlan
from emulator.replay import emulate

BINS = Path(__file__).resolve().parent / "bins" / "native"
MODES = pytest.mark.parametrize("mode", ["fast", "faithful"])


def _events(stem: str, x86: bool, mode: str) -> list[Any]:
    """The events of a whole emulation of ``stem``'s x64 or x86 build, which must complete."""
    sample = f"{stem}32.exe" if x86 else f"{stem}.exe"
    plan = ReplayPlan(
        name=stem,
        target_path=str(BINS / sample),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
        mode=mode,  # type: ignore[arg-type]
    )
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    events = list(recording.events)
    assert any(isinstance(e, ApiCall) and e.api == "kernel32.ExitProcess" for e in events), events[-3:]
    return events


def _calls(stem: str, x86: bool, mode: str) -> list[ApiCall]:
    return [e for e in _events(stem, x86, mode) if isinstance(e, ApiCall)]


def _exit_code(calls: list[ApiCall]) -> int:
    return int([c for c in calls if c.api == "kernel32.ExitProcess"][-1].args[0], 16)


@MODES
@pytest.mark.parametrize("x86", [False, True])
def test_each_thread_has_its_own_copy_of_the_tls_template(x86: bool, mode: str) -> None:
    calls = _calls("threadlocal", x86, mode)
    assert _exit_code(calls) == 0x5F  # every check of the main thread
    said = [c.args[0] for c in calls if c.api == "kernel32.OutputDebugStringA"]
    assert said == ["check thread-tls-copy: pass"], said


@MODES
@pytest.mark.parametrize("x86", [False, True])
def test_system_calls_by_number_direct_and_indirect_reach_the_api(x86: bool, mode: str) -> None:
    events = _events("syscalls", x86, mode)
    calls = [e for e in events if isinstance(e, ApiCall)]
    assert _exit_code(calls) == 0x7F  # every check
    # each system call that reached the kernel is in the report as the API it stands for
    allocations = [c for c in calls if c.api == "ntdll.NtAllocateVirtualMemory"]
    assert len(allocations) == 4 and all(c.ret == "0x0" for c in allocations), allocations
    # the two made from the sample's own code (direct, int 2Eh) are noted, once each, before
    # their call; the jump into the stub past its start (its own number) is noted as indirect;
    # the stub called as a function is not noted
    direct = [e for e in events if isinstance(e, Note) and e.what == "direct_system_call"]
    assert len(direct) == 2 and len({e.pc for e in direct}) == 2, direct
    assert all("NtAllocateVirtualMemory" in e.detail for e in direct), direct
    indirect = [e for e in events if isinstance(e, Note) and e.what == "indirect_system_call"]
    assert len(indirect) == 1, indirect
    assert "ntdll's NtAllocateVirtualMemory stub" in indirect[0].detail and "; its own number)" in indirect[0].detail
    noted = direct + indirect
    after = {e.seq: next(c for c in allocations if c.seq > e.seq).seq for e in noted}
    assert all(call == seq + 1 for seq, call in after.items()), after
    assert len(allocations) - len(noted) == 1  # the stub's own call


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
