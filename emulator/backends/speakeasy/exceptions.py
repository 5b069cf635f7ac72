"""Exception dispatch as Windows does it, in front of Speakeasy's.

Speakeasy dispatches a CPU exception to the first x86 frame-based handler (``fs:[0]``) and
then to the unhandled-exception filter; a handler passing the exception on resumes the fault.
Windows first calls the vectored handlers (``AddVectoredExceptionHandler``), and on x64 walks
the stack with the unwind data in ``.pdata``. The dispatcher here does, for each exception:

1. vectored handlers, first to last (x86 and x64); ``EXCEPTION_CONTINUE_EXECUTION`` resumes
   with the (possibly edited) CONTEXT, ``EXCEPTION_CONTINUE_SEARCH`` goes on;
2. frame-based handlers. x86: every ``fs:[0]`` registration in turn, called as
   ``handler(record, registration, context, dispatcher_context)``; when the handler is MSVC's
   (it calls ``msvcrt!_except_handler4_common``, which Speakeasy models by recording the scope
   table), Speakeasy runs the filter and the ``__except`` block as before. x64: a virtual
   unwind from the faulting frame through ``.pdata`` / UNWIND_INFO of the module each return
   address lies in; a frame with an exception handler (``UNW_FLAG_EHANDLER``) has it called
   the same way with its establisher frame. ``ExceptionContinueExecution`` resumes,
   ``ExceptionContinueSearch`` goes to the next registration / frame. A frame whose handler is
   the C runtime's ``__C_specific_handler`` (MSVC's x64 ``__try``, mingw's ``__try1``) has its
   scope table run here: each ``__except`` record covering the pc has its filter called;
   ``EXCEPTION_EXECUTE_HANDLER`` unwinds to the frame and runs the ``__except`` block
   (``__finally`` blocks of the frames unwound are not run);
3. the unhandled-exception filter (``SetUnhandledExceptionFilter``), called as Windows'
   ``UnhandledExceptionFilter`` calls it with no debugger attached: ``EXCEPTION_CONTINUE_EXECUTION``
   resumes with the (possibly edited) CONTEXT (the anti-debugging trick of raising an exception
   that only the filter repairs); anything else ends the run naming the fault, as Windows ends
   the process. Speakeasy called the filter and ended the run whatever it returned.

The EXCEPTION_RECORD, CONTEXT and EXCEPTION_POINTERS are built on the guest stack below the
faulting stack pointer, as Windows does, with Windows' layouts; a handler raising an exception
of its own is dispatched the same way (nested). A handler returns to Speakeasy's SEH trap
address, which comes back here. An exception nobody handles is handed back to Speakeasy (the
faulting instruction runs again and Speakeasy ends the run naming the fault), so an unhandled
fault reads the same as before. A handler that resumes at the faulting instruction without
repairing anything (the same fault in the same machine state) is given up on after a few, as
Speakeasy does.

Also: a read or a write the page protection forbids (``PAGE_NOACCESS``, ``PAGE_READONLY``, a
reserved page) is an access violation the handlers see (Speakeasy ended the run); breakpoints,
single steps and divisions by zero reach vectored and x64 handlers; an undefined opcode
(``ud2``) raises ``STATUS_ILLEGAL_INSTRUCTION``; and ``RaiseException`` raises.
``VirtualAlloc(MEM_COMMIT)`` over reserved pages applies the protection asked for (vmspace.py).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from unicorn import x86_const as x86

from emulator.backends.speakeasy import compat, compat_guest
from emulator.backends.speakeasy.rtlunwind import RtlUnwinder, dispatcher_context
from emulator.backends.speakeasy.unwind import X64_GPRS, Unwinder

STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_BREAKPOINT = 0x80000003
STATUS_SINGLE_STEP = 0x80000004
STATUS_INTEGER_DIVIDE_BY_ZERO = 0xC0000094
STATUS_ILLEGAL_INSTRUCTION = 0xC000001D
DBG_PRINTEXCEPTION_C = 0x40010006
DBG_PRINTEXCEPTION_WIDE_C = 0x4001000A
# Longest OutputDebugString text read to build its exception's parameters.
MAX_DEBUG_STRING = 0x10000
STATUS_PRIVILEGED_INSTRUCTION = 0xC0000096
GENERAL_PROTECTION = 13
# Unicorn delivers an exception without clearing QEMU's record of the last one, so a second
# contributory fault (#DE, #GP) after one the guest handled arrives as a double fault (#DF):
# the instruction at the pc says which it was.
DOUBLE_FAULT = 8
DIVIDE_ERROR = 0
# Instruction prefixes (legacy; REX on x64), then the opcodes user mode may not run: hlt, cli,
# sti, in, out, ins, outs; two-byte (0F xx): clts, invd, wbinvd, mov to/from CR/DR, wrmsr,
# rdmsr, sysexit; 0F 00 /2 /3 (lldt, ltr) and 0F 01 /2 /3 /6 /7 (lgdt, lidt, lmsw, invlpg).
PREFIXES = frozenset({0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65})
PRIVILEGED_ONE_BYTE = frozenset(
    {0xF4, 0xFA, 0xFB, 0xE4, 0xE5, 0xE6, 0xE7, 0xEC, 0xED, 0xEE, 0xEF, 0x6C, 0x6D, 0x6E, 0x6F}
)
PRIVILEGED_TWO_BYTE = frozenset({0x06, 0x08, 0x09, 0x20, 0x21, 0x22, 0x23, 0x30, 0x32, 0x35})
PRIVILEGED_GROUP = {0x00: (2, 3), 0x01: (2, 3, 6, 7)}  # 0F xx /reg
SYSTEM_CALL_INTERRUPT = 0x2E
ICEBP = b"\xf1"  # INT1: Unicorn raises an invalid instruction for it
INTERRUPT_CODES = {
    0: STATUS_INTEGER_DIVIDE_BY_ZERO,
    1: STATUS_SINGLE_STEP,
    3: STATUS_BREAKPOINT,
    # #GP (and #DF, below): what reaches user mode is a privileged instruction's exception or
    # an access violation (an instruction longer than 15 bytes, a non-canonical address);
    # Unicorn stopped the run on it
    8: STATUS_ACCESS_VIOLATION,
    13: STATUS_ACCESS_VIOLATION,
    0x2D: STATUS_BREAKPOINT,
}
TRAP_FLAG = 0x100
EXCEPTION_CONTINUE_EXECUTION = 0xFFFFFFFF  # a vectored handler's LONG -1
EXCEPTION_CONTINUE_SEARCH = 0
EXCEPTION_NONCONTINUABLE = 1
EXCEPTION_NESTED_CALL = 0x10
LANGUAGE_CONTINUE_EXECUTION = 0  # ExceptionContinueExecution, from a language handler
# A handler that resumes at the faulting instruction without repairing it is given up on
# after this many identical faults (Speakeasy's own guard is the same).
MAX_SAME_FAULT = 4
MAX_UNWIND_FRAMES = 64
MAX_EXCEPTION_PARAMETERS = 15
C_SPECIFIC_HANDLER = "__C_specific_handler"
EXCEPTION_EXECUTE_HANDLER = 1  # a scope record's filter that is this constant, not a function
MAX_SCOPE_RECORDS = 256
# Bytes left free below the faulting stack pointer before the exception structures.
STACK_SLACK = 0x80

# CONTEXT layouts (winnt.h): register -> offset, size; the CONTEXT sizes.
X64_CONTEXT_SIZE = 0x4D0
X64_CONTEXT_FLAGS = 0x10001F  # CONTEXT_AMD64 | CONTROL | INTEGER | SEGMENTS | FLOATING_POINT | DEBUG
X64_SEGMENTS = {x86.UC_X86_REG_CS: 0x38, x86.UC_X86_REG_DS: 0x3A, x86.UC_X86_REG_ES: 0x3C,
                x86.UC_X86_REG_FS: 0x3E, x86.UC_X86_REG_GS: 0x40, x86.UC_X86_REG_SS: 0x42}  # fmt: skip
X64_GPR_OFFSET = 0x78  # Rax; the 17 registers above follow at 8-byte steps (Rip at 0xF8)
X64_EFLAGS_OFFSET = 0x44
X86_CONTEXT_SIZE = 0x2CC
X86_CONTEXT_FLAGS = 0x1001F
X86_LAYOUT = {x86.UC_X86_REG_GS: 0x8C, x86.UC_X86_REG_FS: 0x90, x86.UC_X86_REG_ES: 0x94, x86.UC_X86_REG_DS: 0x98,
              x86.UC_X86_REG_EDI: 0x9C, x86.UC_X86_REG_ESI: 0xA0, x86.UC_X86_REG_EBX: 0xA4, x86.UC_X86_REG_EDX: 0xA8,
              x86.UC_X86_REG_ECX: 0xAC, x86.UC_X86_REG_EAX: 0xB0, x86.UC_X86_REG_EBP: 0xB4, x86.UC_X86_REG_EIP: 0xB8,
              x86.UC_X86_REG_CS: 0xBC, x86.UC_X86_REG_EFLAGS: 0xC0, x86.UC_X86_REG_ESP: 0xC4,
              x86.UC_X86_REG_SS: 0xC8}  # fmt: skip


FaultKey = tuple[int, int | None, bytes]


def context_size(x64: bool) -> int:
    """Bytes of a CONTEXT record (winnt.h) for the architecture."""
    return X64_CONTEXT_SIZE if x64 else X86_CONTEXT_SIZE


def load_context(unicorn: Any, x64: bool, data: bytes) -> None:
    """Set the CPU's registers from a CONTEXT record's bytes (``NtContinue``, a handler's
    ``EXCEPTION_CONTINUE_EXECUTION``): the integer registers, the pc, the stack pointer and the
    flags; x86 segments stay flat (nothing the guest writes there is taken)."""
    write = unicorn.reg_write
    if x64:
        for index, reg in enumerate(X64_GPRS):
            write(reg, struct.unpack_from("<Q", data, X64_GPR_OFFSET + 8 * index)[0])
        write(x86.UC_X86_REG_EFLAGS, struct.unpack_from("<I", data, X64_EFLAGS_OFFSET)[0])
        return
    for reg, offset in X86_LAYOUT.items():
        if reg in (x86.UC_X86_REG_CS, x86.UC_X86_REG_SS, x86.UC_X86_REG_DS, x86.UC_X86_REG_ES):
            continue  # flat segments; a handler has no business changing them
        if reg in (x86.UC_X86_REG_FS, x86.UC_X86_REG_GS):
            continue
        write(reg, struct.unpack_from("<I", data, offset)[0])


@dataclass
class Dispatch:
    """One exception on its way through the handlers."""

    code: int
    pc: int
    fault_key: FaultKey
    context: int  # guest address of the CONTEXT record
    record: int
    pointers: int
    dispatcher: int
    stack: int  # handlers are called below this
    saved: bytes  # the CONTEXT as the exception found it
    vectored: list[int]
    frames: dict[int, int] | None = None  # x64 virtual-unwind registers (None: not started)
    frame_count: int = 0
    stage: str = "vectored"
    extra: dict[str, Any] = field(default_factory=dict)


class ExceptionDispatcher:
    def __init__(self, emu: Any, x64: bool) -> None:
        self.emu = emu
        self.x64 = x64
        self.unicorn = compat.unicorn_of(emu)
        self.unwinder = Unwinder(lambda address, size: bytes(emu.mem_read(address, size)),
                                 lambda address: compat_guest.module_base_at(emu, address))  # fmt: skip
        self.ptr = 8 if x64 else 4
        self.active: list[Dispatch] = []
        self.repeats: dict[FaultKey, int] = {}
        self.pending_pc: int | None = None
        self.pending_parameters: list[int] = []
        # The next dispatch is of a raised (software) exception: resuming goes past the call, so
        # the same-fault guard does not apply (a loop may raise from one site any number of times).
        self.pending_software = False
        # The next dispatch is OutputDebugString's: (code, parameters) of the exception raised
        # when it falls through the vectored handlers (the A exception after the W one), or None.
        self.pending_vectored_only: tuple[tuple[int, list[int]] | None] | None = None
        self.scratch, self.scratch_size = 0, 0
        # Told the pc a handler resumed a faulting thread at, when it is not the faulting one.
        self.on_redirected: Callable[[int], None] | None = None
        self.original: dict[str, Any] = {}
        # ``int 2Eh``, the older way into the kernel: the system call it makes (syscalls.py), or
        # False (then the interrupt is what it was: a fault the guest may handle)
        self.on_system_call_interrupt: Callable[[], bool] | None = None
        # RtlUnwindEx and the other unwinding APIs (rtlunwind.py): its unwind handlers return here
        self.unwinds = RtlUnwinder(self)
        # x86: the handler of each thread's final registration (guest.ProcessBlocks), whose
        # turn is the unhandled-exception filter's, as Windows' _except_handler4 of
        # RtlUserThreadStart calls it; 0: none
        self.final_handler = 0

    def install(self, se: Any) -> None:
        self.original = compat_guest.replace_exception_methods(
            self.emu,
            {
                "dispatch_seh": self.dispatch,
                "continue_seh": self.resume,
                "_hook_interrupt": self.interrupt,
                "_handle_prot_write": self.protection_write,
            },
        )
        se.add_api_hook(self._raise_exception, "kernel32", "RaiseException")
        self.unwinds.install(se)
        if not self.x64:
            se.add_api_hook(self._except_handler4_common, "msvcrt", "_except_handler4_common")
        for name in ("OutputDebugStringA", "OutputDebugStringW"):
            se.add_api_hook(self._output_debug_string, "kernel32", name)
        compat_guest.add_invalid_instruction_hook(self.unicorn, self._invalid_instruction)
        compat_guest.intercept_read_protection(self.emu, self._protection_read)

    # -- entry points (Speakeasy calls these) --------------------------------------------------

    def dispatch(self, code: int, faulting_address: int | None = None) -> bool:
        """A CPU exception at the current pc: True when a handler will run."""
        vectored = compat_guest.vectored_handlers(self.emu)
        pc = self.pending_pc if self.pending_pc is not None else int(self.emu.get_pc())
        self.pending_pc = None
        key = self._fault_key(pc, faulting_address)
        software, self.pending_software = self.pending_software, False
        vectored_only, self.pending_vectored_only = self.pending_vectored_only, None
        count = 1 if software else self.repeats.get(key, 0) + 1
        self.repeats = {} if software else {key: count}
        if count >= MAX_SAME_FAULT:
            return False
        parent = self.active[-1] if self.active else None
        nested = parent is not None and parent.stage == "frame"
        state = self._build(code, pc, key, faulting_address, vectored, EXCEPTION_NESTED_CALL if nested else 0)
        if vectored_only is not None:
            state.extra["vectored_only"] = vectored_only[0]
        if nested and parent is not None:
            # An exception raised inside a frame-based handler: the search skips the frames up
            # to that handler's own (Windows' ExceptionNestedException).
            if self.x64:
                state.extra["skip_until"] = parent.extra["establisher"]
                state.extra["parent_frames"] = dict(parent.frames or {})
            elif parent.frames is not None:
                state.frames = {0: parent.frames[0]}
        elif parent is not None and parent.stage == "unwind" and self.x64:
            # Raised inside an unwind handler (GCC's personality installing a landing pad): the
            # search goes on, past that handler's call, with the frame being unwound (the frames
            # below it are unwound already; Windows' unwind handler lets the search through).
            state.extra["parent_frames"] = dict(parent.extra["body"])
        if not self._next_handler(state):
            return False
        if faulting_address is not None:
            self.original["_map_faulting_page_for_exception"](faulting_address)
        return True

    def resume(self) -> None:
        """A handler returned to the SEH trap address."""
        if not self.active:
            self.original["continue_seh"]()
            return
        state = self.active[-1]
        value = self.unicorn.reg_read(x86.UC_X86_REG_EAX) & 0xFFFFFFFF
        if state.stage == "unwind":
            self.active.pop()
            self.unwinds.returned(state, value)
            return
        if not self.x64 and state.stage == "frame" and compat_guest.msvc_scope_frames_pending(self.emu):
            # msvcrt!_except_handler4_common recorded the scope table: Speakeasy runs the filter
            # and the __except block (GetExceptionInformation reads the pointers at ms_exc).
            self.active.pop()
            self.emu.mem_write(state.extra["registration"] - 4, struct.pack("<I", state.pointers))
            self.original["continue_seh"]()
            return
        if state.stage == "vectored" and value == EXCEPTION_CONTINUE_EXECUTION:
            self._continue(state)
            return
        if state.stage == "filter":
            if value == EXCEPTION_CONTINUE_EXECUTION:
                self._continue(state)
            else:
                self.active.pop()
                self._unhandled(state)
            return
        if state.stage == "frame" and value == LANGUAGE_CONTINUE_EXECUTION:
            self._continue(state)
            return
        if state.stage == "scope" and value == EXCEPTION_CONTINUE_EXECUTION:
            self._continue(state)
            return
        if state.stage == "scope":
            self.active.pop()
            if value == EXCEPTION_CONTINUE_SEARCH:
                state.extra["scope_index"] += 1
                if not self._next_scope(state):
                    state.stage = "frame"
                    if not self._next_handler(state):
                        self._unhandled(state)
            else:
                self._execute_handler(state)
            return
        self.active.pop()
        if "vectored_only" in state.extra and not state.vectored:
            self._fall_through(state)
            return
        if not self._next_handler(state):
            self._unhandled(state)

    def interrupt(self, emu: Any, intnum: int) -> Any:
        system_call = self.on_system_call_interrupt
        if intnum == SYSTEM_CALL_INTERRUPT and system_call is not None and system_call():
            return True
        code = INTERRUPT_CODES.get(intnum)
        pc = int(self.emu.get_pc())
        if intnum in (GENERAL_PROTECTION, DOUBLE_FAULT):
            code = self._protection_fault_code(pc, intnum)
        if intnum == 3 and bytes(self.emu.mem_read(pc - 1, 1)) == b"\xcc":
            pc -= 1  # the exception address and the CONTEXT's pc are the int3 itself
        wanted = code is not None and self.repeats.get(self._fault_key(pc, None), 0) < MAX_SAME_FAULT
        if self.x64:
            frame_handler = self._has_frame_handler()
        else:
            frame_handler = compat_guest.x86_exception_list(self.emu) not in (0, 0xFFFFFFFF)
        handled = compat_guest.vectored_handlers(self.emu) or frame_handler or compat_guest.unhandled_filter(self.emu)
        if code is not None and wanted and handled:
            if intnum == 1:
                self.unicorn.reg_write(x86.UC_X86_REG_EFLAGS, self.unicorn.reg_read(x86.UC_X86_REG_EFLAGS) & ~TRAP_FLAG)
            compat_guest.raise_on_next_instruction(self.emu, code)
            self.pending_pc = pc
            return True
        return self.original["_hook_interrupt"](emu, intnum)

    def _protection_fault_code(self, pc: int, intnum: int) -> int:
        """What Windows raises for a #GP (or the #DF Unicorn turns a second #DE or #GP into) at
        ``pc``: STATUS_PRIVILEGED_INSTRUCTION for an instruction user mode may not run, the
        divide error for a division, else STATUS_ACCESS_VIOLATION."""
        try:
            code = bytes(self.emu.mem_read(pc, 16))
        except Exception:
            return STATUS_ACCESS_VIOLATION
        at = 0
        while at < len(code) - 3 and (code[at] in PREFIXES or (self.x64 and 0x40 <= code[at] <= 0x4F)):
            at += 1
        opcode = code[at]
        if intnum == DOUBLE_FAULT and opcode in (0xF6, 0xF7) and (code[at + 1] >> 3) & 7 in (6, 7):
            return STATUS_INTEGER_DIVIDE_BY_ZERO
        if opcode in PRIVILEGED_ONE_BYTE:
            return STATUS_PRIVILEGED_INSTRUCTION
        if opcode == 0x0F:
            second, reg = code[at + 1], (code[at + 2] >> 3) & 7
            if second in PRIVILEGED_TWO_BYTE or reg in PRIVILEGED_GROUP.get(second, ()):
                return STATUS_PRIVILEGED_INSTRUCTION
        return STATUS_ACCESS_VIOLATION

    def _fault_key(self, pc: int, address: int | None) -> FaultKey:
        """The same fault in the same machine state: a handler that resumed without changing
        anything (no register moved) brings it back; a loop whose body faults does not."""
        return pc, address, self._context_bytes(pc)

    def illegal_instruction_at(self, pc: int) -> bool:
        """STATUS_ILLEGAL_INSTRUCTION at ``pc`` for an instruction Unicorn would run but the
        guest's CPU lacks (guest.py, rdseed): True when a handler will run."""
        self.pending_pc = pc
        return self.dispatch(STATUS_ILLEGAL_INSTRUCTION, None)

    def _invalid_instruction(self, _engine: Any, _user: Any) -> bool:
        """An undefined opcode (ud2, a bad encoding): STATUS_ILLEGAL_INSTRUCTION to the handlers;
        unhandled, Unicorn stops with the error it always gave. ``icebp`` (F1, INT1), which
        Unicorn does not decode, is a single-step trap as on a CPU: the exception address and
        the context's pc are the next instruction."""
        pc = int(self.emu.get_pc())
        try:
            icebp = bytes(self.emu.mem_read(pc, 1)) == ICEBP
        except Exception:
            icebp = False
        if icebp:
            self.pending_pc = pc + 1
            self.emu.set_pc(pc + 1)
            return self.dispatch(STATUS_SINGLE_STEP, None)
        return self.dispatch(STATUS_ILLEGAL_INSTRUCTION, None)

    def _protection_read(self, address: int) -> bool:
        """A read the page's protection forbids (PAGE_NOACCESS) is an access violation the
        handlers see; unhandled, the run ends as before (Speakeasy does not handle it)."""
        compat_guest.enable_deferred_work(self.emu)
        self.pending_parameters = [0, address]
        if self.dispatch(STATUS_ACCESS_VIOLATION, address):
            return True
        self.pending_parameters = []
        return False

    def protection_write(self, emu: Any, address: int, size: int, value: int) -> Any:
        """A write the page's protection forbids is an access violation the handlers see."""
        self.pending_parameters = [1, address]
        if self.dispatch(STATUS_ACCESS_VIOLATION, address):
            return True
        self.pending_parameters = []
        return self.original["_handle_prot_write"](emu, address, size, value)

    def _except_handler4_common(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """Speakeasy's msvcrt!_except_handler4_common reads every fs:[0] record from the frame
        it is given on as an EH4 registration, until a NULL next: the thread's final
        registration (next -1) ends the walk during the call, its predecessor's next read as
        NULL, and is put back after."""
        restore: tuple[int, bytes] | None = None
        if self.final_handler and len(argv) >= 4:
            registration = argv[3]
            for _ in range(MAX_UNWIND_FRAMES):
                try:
                    (following,) = struct.unpack("<I", bytes(self.emu.mem_read(registration, 4)))
                    if following in (0, 0xFFFFFFFF):
                        break
                    after = struct.unpack("<II", bytes(self.emu.mem_read(following, 8)))
                except Exception:
                    break
                if after == (0xFFFFFFFF, self.final_handler):
                    restore = (registration, struct.pack("<I", following))
                    self.emu.mem_write(registration, b"\0\0\0\0")
                    break
                registration = following
        try:
            return orig(argv)
        finally:
            if restore is not None:
                self.emu.mem_write(*restore)

    def _raise_exception(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """RaiseException(code, flags, count, arguments): the handlers see it on return."""
        rv = orig(argv)
        code, _flags, count, arguments = (list(argv) + [0, 0, 0, 0])[:4]
        params: list[int] = []
        if arguments and count:
            count = min(count, MAX_EXCEPTION_PARAMETERS)
            data = bytes(self.emu.mem_read(arguments, count * self.ptr))
            params = list(struct.unpack(f"<{count}{'Q' if self.x64 else 'I'}", data))
        self.pending_parameters = params
        self.pending_software = True
        compat_guest.raise_on_next_instruction(self.emu, code & 0xFFFFFFFF)
        return rv

    def _output_debug_string(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """OutputDebugStringA/W raise DBG_PRINTEXCEPTION_C (W: DBG_PRINTEXCEPTION_WIDE_C, then
        the A one unless a handler continued it) inside their own ``__try``: with no debugger the
        process's vectored handlers see it first (an anti-debug check registers one and counts on
        it), then the function's own ``__except`` swallows it and it returns as usual."""
        rv = orig(argv)
        address = argv[0] if argv else 0
        if not address or not compat_guest.vectored_handlers(self.emu):
            return rv  # nobody can see it: the function's own handler takes it
        wide = api_name.endswith("W")
        raw = self._terminated(address, 2 if wide else 1)
        if raw is None:
            return rv  # unreadable: Windows faults inside the function, its handler takes it
        if not wide:
            self._raise_vectored_only(DBG_PRINTEXCEPTION_C, [len(raw) + 1, address], None)
            return rv
        ansi = raw.decode("utf-16le", errors="replace").encode("cp1252", errors="replace") + b"\0"
        copy = self._scratch(ansi)
        printed = (DBG_PRINTEXCEPTION_C, [len(ansi), copy])
        self._raise_vectored_only(DBG_PRINTEXCEPTION_WIDE_C, [len(raw) // 2 + 1, address, len(ansi), copy], printed)
        return rv

    def _terminated(self, address: int, unit: int) -> bytes | None:
        """The string at ``address`` without its terminator (at most MAX_DEBUG_STRING units);
        None when it cannot be read."""
        out = bytearray()
        try:
            while len(out) < MAX_DEBUG_STRING * unit:
                size = 0x100 - (address + len(out)) % 0x100
                size = max(size - size % unit, unit)  # whole characters: each chunk is scanned alone
                chunk = bytes(self.emu.mem_read(address + len(out), size))
                for at in range(0, len(chunk) - unit + 1, unit):
                    if chunk[at : at + unit] == bytes(unit):
                        return bytes(out + chunk[:at])
                out += chunk
        except Exception:
            return None
        return bytes(out[: MAX_DEBUG_STRING * unit])

    def _scratch(self, data: bytes) -> int:
        """A guest buffer holding ``data`` (Windows' RtlUnicodeStringToAnsiString heap copy),
        one reused by every call (grown when needed)."""
        if self.scratch_size < len(data):
            self.scratch_size = -(-len(data) // 0x1000) * 0x1000
            self.scratch = int(self.emu.mem_map(self.scratch_size, tag="emu.OutputDebugStringW.ansi"))
        self.emu.mem_write(self.scratch, data)
        return self.scratch

    def _raise_vectored_only(self, code: int, params: list[int], then: tuple[int, list[int]] | None) -> None:
        self.pending_parameters = params
        self.pending_software = True
        self.pending_vectored_only = (then,)
        compat_guest.raise_on_next_instruction(self.emu, code)

    def _fall_through(self, state: Dispatch) -> None:
        """No vectored handler continued OutputDebugString's exception: its own handler takes it
        and the call returns (or raises the next one, the A exception after the W one)."""
        self._load_context(state.saved)
        self.unicorn.reg_write(self._pc_reg(), state.pc)
        then = state.extra["vectored_only"]
        if then is None:
            return
        code, params = then
        vectored = compat_guest.vectored_handlers(self.emu)
        if not vectored:
            return
        self.pending_parameters = params
        following = self._build(code, state.pc, state.fault_key, None, vectored, 0)
        following.extra["vectored_only"] = None
        self._next_handler(following)

    # -- the chain -----------------------------------------------------------------------------

    def _next_handler(self, state: Dispatch) -> bool:
        """Call the next handler of ``state``; False when none is left."""
        if state.stage == "vectored" and state.vectored:
            self._call(state, state.vectored.pop(0), [state.pointers])
            return True
        if state.stage == "vectored":
            state.stage = "frame"
        if state.stage == "frame":
            found = self._next_frame_handler(state) if self.x64 else self._next_registration(state)
            if found is not None and self.x64 and self._is_c_specific_handler(found[0]):
                state.stage, state.extra["scope_index"] = "scope", 0
                if self._next_scope(state):
                    return True
                state.stage = "frame"
                return self._next_handler(state)
            if found is not None:
                handler, establisher = found
                if not self.x64:
                    compat_guest.clear_msvc_scope_frames(self.emu)
                self._call(state, handler, [state.record, establisher, state.context, state.dispatcher])
                return True
            state.stage = "filter"
        if state.stage == "filter" and not state.extra.get("filter_called"):
            state.extra["filter_called"] = True
            handler = compat_guest.unhandled_filter(self.emu)
            if handler:
                self._call(state, handler, [state.pointers])
                return True
        return False

    def _next_registration(self, state: Dispatch) -> tuple[int, int] | None:
        """x86: the next fs:[0] registration (handler, registration address), None at the end."""
        if state.frames is None:
            state.frames = {0: compat_guest.x86_exception_list(self.emu)}
        registration = state.frames[0]
        if state.frame_count >= MAX_UNWIND_FRAMES or registration in (0, 0xFFFFFFFF):
            return None
        try:
            following, handler = struct.unpack("<II", bytes(self.emu.mem_read(registration, 8)))
        except Exception:
            return None
        if handler and handler == self.final_handler and following == 0xFFFFFFFF:
            return None  # the thread's final registration: the unhandled-exception filter's turn
        state.frame_count += 1
        state.frames[0] = following
        state.extra["registration"] = registration
        return handler, registration

    def _call(self, state: Dispatch, function: int, args: list[int]) -> None:
        self.active.append(state)
        compat_guest.call_guest_function(self.emu, state.stack, function, args)

    def _continue(self, state: Dispatch) -> None:
        self.active.pop()
        self._load_context(bytes(self.emu.mem_read(state.context, len(state.saved))))
        pc = int(self.emu.get_pc())
        if pc != state.pc:
            self.repeats.pop(state.fault_key, None)
            if self.on_redirected is not None:
                self.on_redirected(pc)

    def _unhandled(self, state: Dispatch) -> None:
        """Nobody handled it: back to the faulting instruction, for Speakeasy to end the run."""
        self._load_context(state.saved)
        self.unicorn.reg_write(self._pc_reg(), state.pc)
        self.repeats[state.fault_key] = MAX_SAME_FAULT

    # -- building the records ------------------------------------------------------------------

    def _build(
        self, code: int, pc: int, key: FaultKey, address: int | None, vectored: list[int], flags: int
    ) -> Dispatch:
        context = self._context_bytes(pc)
        sp = self.unicorn.reg_read(x86.UC_X86_REG_RSP if self.x64 else x86.UC_X86_REG_ESP)
        params = self.pending_parameters or ([0, address] if address is not None else [])
        self.pending_parameters = []
        record = self._record_bytes(code, flags, pc, params)
        base = (sp - STACK_SLACK - len(context) - len(record) - 2 * self.ptr - 0x50) & ~0xF
        addr_context = base
        addr_record = addr_context + len(context)
        addr_pointers = addr_record + len(record)
        addr_dispatcher = addr_pointers + 2 * self.ptr
        pack = "<QQ" if self.x64 else "<II"
        self.emu.mem_write(addr_context, context)
        self.emu.mem_write(addr_record, record)
        self.emu.mem_write(addr_pointers, struct.pack(pack, addr_record, addr_context))
        self.emu.mem_write(addr_dispatcher, bytes(0x50))
        return Dispatch(code, pc, key, addr_context, addr_record, addr_pointers, addr_dispatcher,
                        base, context, list(vectored))  # fmt: skip

    def _record_bytes(self, code: int, flags: int, pc: int, params: list[int]) -> bytes:
        params = params[:MAX_EXCEPTION_PARAMETERS]
        values = params + [0] * (MAX_EXCEPTION_PARAMETERS - len(params))
        if self.x64:
            return struct.pack("<IIQQI4x15Q", code, flags, 0, pc, len(params), *values)
        return struct.pack("<IIIII15I", code, flags, 0, pc, len(params), *[v & 0xFFFFFFFF for v in values])

    def _context_bytes(self, pc: int) -> bytes:
        read = self.unicorn.reg_read
        if self.x64:
            out = bytearray(X64_CONTEXT_SIZE)
            struct.pack_into("<I", out, 0x30, X64_CONTEXT_FLAGS)
            for reg, offset in X64_SEGMENTS.items():
                struct.pack_into("<H", out, offset, read(reg) & 0xFFFF)
            struct.pack_into("<I", out, X64_EFLAGS_OFFSET, read(x86.UC_X86_REG_EFLAGS) & 0xFFFFFFFF)
            for index, reg in enumerate(X64_GPRS):
                value = pc if reg == x86.UC_X86_REG_RIP else read(reg)
                struct.pack_into("<Q", out, X64_GPR_OFFSET + 8 * index, value)
            return bytes(out)
        out = bytearray(X86_CONTEXT_SIZE)
        struct.pack_into("<I", out, 0, X86_CONTEXT_FLAGS)
        for reg, offset in X86_LAYOUT.items():
            value = pc if reg == x86.UC_X86_REG_EIP else read(reg)
            struct.pack_into("<I", out, offset, value & 0xFFFFFFFF)
        return bytes(out)

    def _load_context(self, data: bytes) -> None:
        load_context(self.unicorn, self.x64, data)

    def _pc_reg(self) -> int:
        return x86.UC_X86_REG_RIP if self.x64 else x86.UC_X86_REG_EIP

    # -- x64 table-based handlers --------------------------------------------------------------

    def _is_c_specific_handler(self, handler: int) -> bool:
        """Is ``handler`` the C runtime's ``__C_specific_handler`` (directly, or through the
        image's ``jmp [import]`` thunk)? Its scope table is run here: it has no Speakeasy handler."""
        target = handler
        try:
            code = bytes(self.emu.mem_read(handler, 6))
            if code[:2] == b"\xff\x25":  # jmp qword ptr [rip + disp32]
                slot = handler + 6 + struct.unpack("<i", code[2:])[0]
                target = self.unwinder.read_u64(slot)
        except Exception:
            return False
        name = compat_guest.api_symbol_at(self.emu, target) or ""
        return name.rpartition(".")[2] == C_SPECIFIC_HANDLER

    def _next_scope(self, state: Dispatch) -> bool:
        """The next __except scope record covering the frame's pc: call its filter, or take an
        EXCEPTION_EXECUTE_HANDLER constant filter at once. False when no record is left."""
        extra = state.extra
        base, pc = extra["image_base"], extra["control_pc"]
        try:
            count = struct.unpack("<I", bytes(self.emu.mem_read(extra["handler_data"], 4)))[0]
            while extra["scope_index"] < min(count, MAX_SCOPE_RECORDS):
                begin, end, filter_rva, target = struct.unpack(
                    "<IIII", bytes(self.emu.mem_read(extra["handler_data"] + 4 + 16 * extra["scope_index"], 16))
                )
                if target and begin <= pc - base < end:
                    if filter_rva == EXCEPTION_EXECUTE_HANDLER:
                        self._execute_handler(state)
                        return True
                    self._call(state, base + filter_rva, [state.pointers, extra["establisher"]])
                    return True
                extra["scope_index"] += 1
        except Exception:
            return False
        return False

    def _execute_handler(self, state: Dispatch) -> None:
        """EXCEPTION_EXECUTE_HANDLER: unwind to the frame and run its __except block (the
        registers the frame's code had, rax the exception code, as RtlUnwindEx leaves them)."""
        extra = state.extra
        record = bytes(self.emu.mem_read(state.extra["handler_data"] + 4 + 16 * extra["scope_index"], 16))
        target = extra["image_base"] + struct.unpack_from("<I", record, 12)[0]
        for reg, value in extra["body"].items():
            self.unicorn.reg_write(reg, value)
        self.unicorn.reg_write(x86.UC_X86_REG_RAX, state.code)
        self.unicorn.reg_write(x86.UC_X86_REG_RIP, target)
        self.repeats.pop(state.fault_key, None)

    def _has_frame_handler(self) -> bool:
        regs = {reg: self.unicorn.reg_read(reg) for reg in X64_GPRS}
        for _ in range(MAX_UNWIND_FRAMES):
            step = self.unwinder.unwind_frame(regs)
            if step is None:
                return False
            if step[0] is not None:
                return True
        return False

    def _next_frame_handler(self, state: Dispatch) -> tuple[int, int] | None:
        if state.frames is None:
            data = state.saved
            state.frames = {
                reg: struct.unpack_from("<Q", data, X64_GPR_OFFSET + 8 * i)[0] for i, reg in enumerate(X64_GPRS)
            }
        while state.frame_count < MAX_UNWIND_FRAMES:
            state.frame_count += 1
            control_pc = state.frames[x86.UC_X86_REG_RIP]
            body = dict(state.frames)  # the registers as the frame's own code has them
            if control_pc == compat_guest.seh_return_address() and state.extra.get("parent_frames"):
                # The walk reached the dispatcher's call of the handler that raised this nested
                # exception: it goes on with the frames beyond that handler's own.
                state.frames = state.extra.pop("parent_frames")
                continue
            step = self.unwinder.unwind_frame(state.frames)
            if step is None:
                return None
            handler, establisher, image_base, entry, handler_data = step
            if handler is not None and establisher <= state.extra.get("skip_until", -1):
                continue  # a frame up to the one whose handler raised this nested exception
            if handler is not None:
                state.extra.update(establisher=establisher, body=body, control_pc=control_pc,
                                   image_base=image_base, handler_data=handler_data)  # fmt: skip
                self.emu.mem_write(
                    state.dispatcher,
                    dispatcher_context(
                        control_pc, image_base, entry, establisher, 0, state.context, handler, handler_data
                    ),
                )
                return handler, establisher
        return None
