"""ntdll's system-call stubs as Windows lays them out, and system calls made by the guest's own code.

On Windows each ``Nt*`` / ``Zw*`` export of ntdll (the two names share one stub) loads its
system service number into ``eax`` and enters the kernel: on x64 ``mov r10, rcx; mov eax, SSN;
test byte [KUSER_SHARED_DATA+0x308], 1; jne +3; syscall; ret; int 2Eh; ret``, 32 bytes apart in
the order of their numbers; on x86 ``mov eax, SSN; mov edx, KiFastSystemCall; call edx; ret N``
(under WoW64 the same, calling Wow64SystemServiceCall; the x86 guest is a 32-bit Windows).
Loaders that avoid user-mode hooks rely on exactly that: they read the number from the stub
(Hell's Gate, Halo's Gate), or rank the ``Zw*`` exports by address (SysWhispers2, FreshyCalls),
and then make the system call themselves, from their own code (direct) or by jumping to the
stub's ``syscall`` (indirect; on x86, by calling the stub's ``edx`` target). Speakeasy's stubs
are jumps to its API traps, so such a loader finds no number, or takes the stubs for hooked,
and its ``syscall`` ends the run.

Here each system-call export gets Windows' stub, numbered by the rank of its ``Zw*`` name's
address (what both kinds of loader derive), and a system call from anywhere (the stub, or the
guest's own code) is the API call of that number: the emulation continues in the API's handler,
with ``r10`` as its first argument, and returns to the code that called the stub (the address
on top of the stack, as after ``syscall; ret``). An unknown number returns
STATUS_INVALID_SYSTEM_SERVICE to the instruction after the ``syscall``, as the kernel does.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from unicorn import x86_const as x86

from emulator.backends.speakeasy import compat

STATUS_INVALID_SYSTEM_SERVICE = 0xC000001C
# Nt*/Zw* exports of ntdll that are not system-call stubs on Windows.
NOT_SYSTEM_CALLS = frozenset({"NtGetTickCount", "NtCurrentTeb", "NtdllDefWindowProc_A", "NtdllDefWindowProc_W"})
NOT_SYSTEM_CALL_PREFIXES = ("Ntdll", "NtWow64", "ZwWow64")
# Windows 10's x64 stub: mov r10, rcx; mov eax, SSN; test byte ptr [0x7FFE0308], 1; jne +3;
# syscall; ret; int 2Eh; ret (24 bytes; stubs are 32 bytes apart).
X64_STUB_HEAD = b"\x4c\x8b\xd1\xb8"  # then the number (4 bytes), then the tail
X64_STUB_TAIL = b"\xf6\x04\x25\x08\x03\xfe\x7f\x01\x75\x03\x0f\x05\xc3\xcd\x2e\xc3"
X64_SYSCALL_OFFSET = 18  # of the syscall instruction in the stub
# Unicorn moves the program counter past the syscall instruction after its hook returns, from
# wherever the hook left it: the hook sets it this much before where execution is to go on.
SYSCALL_INSTRUCTION_SIZE = 2
# The x86 stub: mov eax, SSN; mov edx, KiFastSystemCall; call edx; ret N (15 bytes).
X86_STUB_SIZE = 15
X86_GATE_RETURN_OFFSET = 12  # the stub's ret, where its call of the gate returns


@dataclass
class SystemCallTable:
    """System service numbers of ntdll's stubs and the API trap each stands for."""

    by_number: dict[int, int] = field(default_factory=dict)  # SSN -> API trap address (the Nt* name's)
    by_name: dict[str, int] = field(default_factory=dict)  # export name -> SSN
    names: dict[int, str] = field(default_factory=dict)  # SSN -> the name its trap stands for


def number_stubs(exports: list[tuple[str, int, int]]) -> tuple[SystemCallTable, list[tuple[str, int, int]]]:
    """From ntdll's function exports ``(name, address, trap)``: the table, and the stubs to write
    ``(name, address, SSN)``. Numbers follow the ``Zw*`` names' address order; an ``Nt*`` name
    takes its ``Zw*`` twin's number (Windows gives both names one stub)."""
    usable = {
        name: (address, trap)
        for name, address, trap in exports
        if name[:2] in ("Nt", "Zw")
        and name not in NOT_SYSTEM_CALLS
        and not name.startswith(NOT_SYSTEM_CALL_PREFIXES)
        and trap
    }
    zw = sorted((address, name) for name, (address, _) in usable.items() if name.startswith("Zw"))
    table = SystemCallTable()
    stubs: list[tuple[str, int, int]] = []
    for number, (_address, name) in enumerate(zw):
        nt = "Nt" + name[2:]
        table.by_number[number] = usable[nt][1] if nt in usable else usable[name][1]
        table.names[number] = nt if nt in usable else name
        for alias in (name, nt):
            if alias in usable:
                table.by_name[alias] = number
                stubs.append((alias, usable[alias][0], number))
    return table, stubs


class SystemCalls:
    """Windows' system-call stubs in ntdll and a handler for the guest's system calls."""

    def __init__(self, emu: Any, x64: bool, on_direct: Callable[[int, int, str], None] | None = None) -> None:
        self.emu = emu
        self.x64 = x64
        # told (pc, number, name) of each system call made from outside ntdll's stubs
        self.on_direct = on_direct
        self.table = SystemCallTable()
        # where a stub's own system call is made (x64: its syscall instruction; x86: the return
        # address of its call of the gate) -> that export's trap: a call through ZwX's stub is
        # ZwX in the report, through NtX's NtX; a system call from elsewhere is the Nt* name
        self.stub_sites: dict[int, tuple[int, int]] = {}  # site -> (SSN, trap)
        self.gate = 0  # x86: KiFastSystemCall's stand-in, which every stub calls

    def install(self) -> bool:
        """Write the stubs and hook the system-call instruction; False (nothing done) when the
        guest has no ntdll with API traps."""
        exports = compat.ntdll_function_exports(self.emu)
        if not exports:
            return False
        self.table, stubs = number_stubs(exports)
        if not stubs:
            return False
        traps = {name: trap for name, _, trap in exports}
        site = X64_SYSCALL_OFFSET if self.x64 else X86_GATE_RETURN_OFFSET
        self.stub_sites = {address + site: (number, traps[name]) for name, address, number in stubs}
        unicorn = compat.unicorn_of(self.emu)
        if self.x64:
            self._write_stubs(
                (address, X64_STUB_HEAD + struct.pack("<I", number) + X64_STUB_TAIL) for _, address, number in stubs
            )
            compat.add_syscall_hook(unicorn, self._on_syscall)
        else:
            self.gate = self.emu.mem_map(0x1000, tag="emu.ntdll.KiFastSystemCall")
            self.emu.mem_write(self.gate, b"\xc3")  # never runs: the hook below takes the call
            call_gate = b"\xba" + struct.pack("<I", self.gate) + b"\xff\xd2\xc3"  # mov edx, gate; call edx; ret
            self._write_stubs(
                (address, (b"\xb8" + struct.pack("<I", number) + call_gate).ljust(X86_STUB_SIZE, b"\x90"))
                for _, address, number in stubs
            )
            compat.add_code_hook_at(unicorn, self.gate, self._on_gate_call)
        return True

    def _write_stubs(self, stubs: Iterable[tuple[int, bytes]]) -> None:
        """The stubs in one write of the span they lie in (a thousand writes of 24 bytes cost
        ~70 ms of a replay: each is a Unicorn call and a flush of translated code)."""
        placed = sorted(stubs)
        low, high = placed[0][0], max(address + len(code) for address, code in placed)
        span = bytearray(self.emu.mem_read(low, high - low))
        for address, code in placed:
            span[address - low : address - low + len(code)] = code
        self.emu.mem_write(low, bytes(span))

    def _trap(self, number: int, site: int, pc: int) -> int | None:
        stub = self.stub_sites.get(site)
        if stub is not None and stub[0] == number:
            return stub[1]
        trap = self.table.by_number.get(number)
        if trap is not None and self.on_direct is not None:
            self.on_direct(pc, number, self.table.names[number])
        return trap

    def _on_syscall(self, unicorn: Any, _user: Any) -> None:
        number = unicorn.reg_read(x86.UC_X86_REG_EAX) & 0xFFFFFFFF
        pc = unicorn.reg_read(x86.UC_X86_REG_RIP)
        trap = self._trap(number, pc, pc)
        if trap is None:
            unicorn.reg_write(x86.UC_X86_REG_RAX, STATUS_INVALID_SYSTEM_SERVICE)
            return
        # the handler reads its first argument from rcx (the kernel from r10, which the stub set)
        unicorn.reg_write(x86.UC_X86_REG_RCX, unicorn.reg_read(x86.UC_X86_REG_R10))
        unicorn.reg_write(x86.UC_X86_REG_RIP, trap - SYSCALL_INSTRUCTION_SIZE)

    def on_interrupt(self) -> bool:
        """``int 2Eh`` (the number in eax; x64: the first argument in r10, the rest where
        ``syscall`` has them; x86: the arguments above the return address, at edx): the API call
        of that number, returning to the address on top of the stack; True if it was one."""
        unicorn = compat.unicorn_of(self.emu)
        number = unicorn.reg_read(x86.UC_X86_REG_EAX) & 0xFFFFFFFF
        pc = unicorn.reg_read(x86.UC_X86_REG_RIP if self.x64 else x86.UC_X86_REG_EIP)
        trap = self._trap(number, -1, pc)
        if trap is None:
            unicorn.reg_write(x86.UC_X86_REG_RAX if self.x64 else x86.UC_X86_REG_EAX, STATUS_INVALID_SYSTEM_SERVICE)
            return bool(self.table.by_number)
        if self.x64:
            unicorn.reg_write(x86.UC_X86_REG_RCX, unicorn.reg_read(x86.UC_X86_REG_R10))
            unicorn.reg_write(x86.UC_X86_REG_RIP, trap)
        else:
            unicorn.reg_write(x86.UC_X86_REG_EIP, trap)
        return True

    def _on_gate_call(self, unicorn: Any, _address: int, _size: int, _user: Any) -> None:
        number = unicorn.reg_read(x86.UC_X86_REG_EAX) & 0xFFFFFFFF
        esp = unicorn.reg_read(x86.UC_X86_REG_ESP)
        returns_to = int.from_bytes(bytes(unicorn.mem_read(esp, 4)), "little")
        trap = self._trap(number, returns_to, returns_to)
        if trap is None:
            unicorn.reg_write(x86.UC_X86_REG_EAX, STATUS_INVALID_SYSTEM_SERVICE)
            return  # the gate's ret returns into the stub
        # drop the gate's return address into the stub: the handler returns to the stub's caller
        unicorn.reg_write(x86.UC_X86_REG_ESP, esp + 4)
        unicorn.reg_write(x86.UC_X86_REG_EIP, trap)
