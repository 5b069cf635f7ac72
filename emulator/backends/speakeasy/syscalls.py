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

Which code made the call is told from what ran: a system call made outside the stubs is direct
(``on_direct``); one made by a stub's instruction is the stub's own when the stub's first
instruction ran since the last system call and the number is the stub's, and otherwise indirect
(``on_indirect``: the guest set the number and jumped to the stub's ``syscall``, often another
function's, or into the x86 stub past its number). One code hook over the span of the stubs sees
their starts (nothing else runs there). x86 code also enters with ``sysenter`` (KiFastSystemCall's
``mov edx, esp; sysenter``) and through the WoW64 gate ``call dword ptr fs:[0xC0]``:
TEB.WOW32Reserved holds the gate the stubs call, as it holds the 64-bit transition under WoW64.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from unicorn import x86_const as x86

from emulator.backends.speakeasy import compat, compat_blocks

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
# ntdll exports whose whole body on Windows is ``int3; ret`` (both architectures): anti-attach
# checks read their first byte (0xCC, or a debugger's patch), and a call raises a breakpoint
# the guest's handlers see, as without a debugger.
BREAKPOINT_FUNCTIONS = frozenset({"DbgBreakPoint", "DbgUserBreakPoint"})
BREAKPOINT_BODY = b"\xcc\xc3"


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

    def __init__(
        self,
        emu: Any,
        x64: bool,
        on_direct: Callable[[int, int, str], None] | None = None,
        on_indirect: Callable[[IndirectCall], None] | None = None,
    ) -> None:
        self.emu = emu
        self.x64 = x64
        # told (pc, number, name) of each system call made from outside ntdll's stubs
        self.on_direct = on_direct
        # told of each system call made by a stub's instruction that the stub's own start did not lead to
        self.on_indirect = on_indirect
        self.table = SystemCallTable()
        # where a stub's own system call is made (x64: its syscall instruction; x86: the return
        # address of its call of the gate) -> that export's trap: a call through ZwX's stub is
        # ZwX in the report, through NtX's NtX; a system call from elsewhere is the Nt* name
        self.stub_sites: dict[int, tuple[int, int]] = {}  # site -> (SSN, trap)
        self.stub_names: dict[int, str] = {}  # site -> the export whose stub it is in
        self.site_offset = X64_SYSCALL_OFFSET if x64 else X86_GATE_RETURN_OFFSET
        # the stub whose first instruction ran last since the last system call (its address)
        self.entered: int | None = None
        self._starts: frozenset[int] = frozenset()
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
        for name, address, _trap in exports:
            if name in BREAKPOINT_FUNCTIONS:
                self.emu.mem_write(address, BREAKPOINT_BODY)
        traps = {name: trap for name, _, trap in exports}
        site = self.site_offset
        self.stub_sites = {address + site: (number, traps[name]) for name, address, number in stubs}
        self.stub_names = {address + site: name for name, address, _ in stubs}
        self._starts = frozenset(address for _, address, _ in stubs)
        unicorn = compat.unicorn_of(self.emu)
        # which stub's start ran before its system call (one hook over the span of the stubs:
        # Unicorn checks a hook's range when it translates, so code elsewhere has no callback)
        low = min(self._starts)
        high = max(self._starts) + (len(X64_STUB_HEAD) + 4 + len(X64_STUB_TAIL) if self.x64 else X86_STUB_SIZE)
        compat.add_code_hook_over(unicorn, low, high - 1, self._on_stub_code)
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
            compat.add_sysenter_hook(unicorn, self._on_sysenter)
            self._wow32_reserved()
        return True

    def _wow32_reserved(self) -> None:
        """TEB.WOW32Reserved (``fs:[0xC0]``) holds the gate, as it holds the 64-bit transition
        under WoW64: SysWhispers-style x86 code calls it with the number in eax. Speakeasy
        writes each thread's TEB when its run starts: the gate is set there each time."""
        gate = self.gate

        def fill(thread: Any) -> None:
            compat_blocks.set_fields(thread.teb, {"WOW32Reserved": gate})

        compat_blocks.on_new_teb(self.emu, fill)

    def _on_stub_code(self, _unicorn: Any, address: int, _size: int, _user: Any) -> None:
        if address in self._starts:
            self.entered = address

    def _write_stubs(self, stubs: Iterable[tuple[int, bytes]]) -> None:
        """The stubs in one write of the span they lie in (a thousand writes of 24 bytes cost
        ~70 ms of a replay: each is a Unicorn call and a flush of translated code)."""
        placed = sorted(stubs)
        low, high = placed[0][0], max(address + len(code) for address, code in placed)
        span = bytearray(self.emu.mem_read(low, high - low))
        for address, code in placed:
            span[address - low : address - low + len(code)] = code
        self.emu.mem_write(low, bytes(span))

    def _trap(self, number: int, site: int, pc: int, returns_to: int = 0) -> int | None:
        """The trap of the API the system call of ``number`` made at ``site`` stands for; tells
        ``on_direct`` of one made outside the stubs and ``on_indirect`` of one made by a stub's
        instruction that its own start did not lead to (another number, or a jump to it)."""
        entered, self.entered = self.entered, None
        stub = self.stub_sites.get(site)
        if stub is not None and stub[0] == number and entered == site - self.site_offset:
            return stub[1]
        trap = self.table.by_number.get(number)
        if trap is None:
            return None
        name = self.table.names[number]
        if stub is not None:
            if self.on_indirect is not None:
                self.on_indirect(IndirectCall(pc, number, name, self.stub_names[site], stub[0], returns_to))
        elif self.on_direct is not None:
            self.on_direct(pc, number, name)
        return trap

    def _on_syscall(self, unicorn: Any, _user: Any) -> None:
        number = unicorn.reg_read(x86.UC_X86_REG_EAX) & 0xFFFFFFFF
        pc = unicorn.reg_read(x86.UC_X86_REG_RIP)
        returns_to = int.from_bytes(bytes(unicorn.mem_read(unicorn.reg_read(x86.UC_X86_REG_RSP), 8)), "little")
        trap = self._trap(number, pc, pc, returns_to)
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
        # an indirect call through a stub returns, after the stub's ret, to the guest's code
        caller = int.from_bytes(bytes(unicorn.mem_read(esp + 4, 4)), "little")
        trap = self._trap(number, returns_to, returns_to, caller)
        if trap is None:
            unicorn.reg_write(x86.UC_X86_REG_EAX, STATUS_INVALID_SYSTEM_SERVICE)
            return  # the gate's ret returns into the stub
        # drop the gate's return address into the stub: the handler returns to the stub's caller
        unicorn.reg_write(x86.UC_X86_REG_ESP, esp + 4)
        unicorn.reg_write(x86.UC_X86_REG_EIP, trap)

    def _on_sysenter(self, unicorn: Any, _user: Any) -> None:
        """x86 ``sysenter`` (the number in eax, edx the stack the wrapper's caller left: the
        return address into the wrapper, then the wrapper's return address, then the arguments,
        as KiFastSystemCall's ``mov edx, esp; sysenter`` leaves it): the API call of that number,
        returning to the wrapper's caller (the kernel returns to KiFastSystemCallRet's ``ret``,
        then the wrapper's ``ret N``)."""
        number = unicorn.reg_read(x86.UC_X86_REG_EAX) & 0xFFFFFFFF
        pc = unicorn.reg_read(x86.UC_X86_REG_EIP)
        trap = self._trap(number, -1, pc)
        if trap is None:
            unicorn.reg_write(x86.UC_X86_REG_EAX, STATUS_INVALID_SYSTEM_SERVICE)
            return  # on after the sysenter, as after KiFastSystemCallRet
        unicorn.reg_write(x86.UC_X86_REG_ESP, (unicorn.reg_read(x86.UC_X86_REG_EDX) + 4) & 0xFFFFFFFF)
        unicorn.reg_write(x86.UC_X86_REG_EIP, trap - SYSCALL_INSTRUCTION_SIZE)


@dataclass(frozen=True)
class IndirectCall:
    """A system call made by a stub's system-call instruction that the stub's own start did not
    lead to: the guest set the number itself and jumped there (or into the stub past its start)."""

    pc: int  # the instruction that made it (x64: the stub's syscall; x86: where the stub's call of the gate returns)
    number: int
    name: str  # the API of the number
    stub: str  # the export whose stub's instruction made it
    stub_number: int  # that stub's own number
    returns_to: int  # where the call returns: the guest's code that made it
