"""The x64 unwinding APIs over the image's unwind data, as ntdll has them.

Speakeasy's ``RtlCaptureContext`` zeroed the record, ``RtlLookupFunctionEntry`` found nothing,
and ``RtlVirtualUnwind`` / ``RtlUnwindEx`` had no handler. A C++ program built with mingw-w64
g++ (and any code using SEH tables to unwind: MSVC's ``longjmp`` and C++ ``catch``, Rust's
panics) throws through them: ``RaiseException`` with GCC's code, its personality routine called
by the exception dispatcher for each frame (exceptions.py), which, having found the ``catch``,
calls ``RtlUnwindEx`` to the catch's frame; a frame with destructors to run has its landing pad
installed (a ``RaiseException`` from the unwind handler, which the frame's own handler turns into
an ``RtlUnwindEx`` to that frame), and the landing pad goes on with ``_Unwind_Resume``
(``RtlCaptureContext`` + ``RtlUnwindEx``).

``RtlUnwindEx(TargetFrame, TargetIp, ExceptionRecord, ReturnValue, ContextRecord, History)``
here, as Windows does it: from its caller, unwind frame by frame through ``.pdata`` /
UNWIND_INFO; each frame whose unwind info has an unwind handler (``UNW_FLAG_UHANDLER``) has it
called as ``handler(record, establisher, context, dispatcher_context)`` with
``EXCEPTION_UNWINDING`` in the record's flags (``EXCEPTION_TARGET_UNWIND`` for the target
frame, ``EXCEPTION_EXIT_UNWIND`` with no target), the frame's own registers in the CONTEXT and
the DISPATCHER_CONTEXT filled (TargetIp included); at the target frame the CONTEXT (as the
handler left it) is installed with the pc ``TargetIp`` and rax ``ReturnValue``. The handlers are
guest code, called on the stack below the caller's and returning to Speakeasy's SEH trap as the
dispatcher's do. The walk passes through the handler calls in progress the way Windows'
stack would: a trap reached is the call of an exception handler (the walk goes on from where
that exception was raised) or of an unwind handler (a collided unwind: the walk takes over that
unwind where it was, its frame's handler called again with ``EXCEPTION_COLLIDED_UNWIND``).
Handler calls left behind by the new stack pointer are forgotten. An unwind that cannot reach its
target (unreadable unwind data, a frame beyond the target) returns to the caller, as before.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from unicorn import x86_const as x86

from emulator.backends.speakeasy import compat_guest
from emulator.backends.speakeasy.unwind import UNW_FLAG_EHANDLER, UNW_FLAG_UHANDLER, X64_GPRS

if TYPE_CHECKING:
    from emulator.backends.speakeasy.exceptions import Dispatch, ExceptionDispatcher

EXCEPTION_UNWINDING = 0x2
EXCEPTION_EXIT_UNWIND = 0x4
EXCEPTION_TARGET_UNWIND = 0x20
EXCEPTION_COLLIDED_UNWIND = 0x40
STATUS_UNWIND = 0xC0000027
X64_CONTEXT_SIZE = 0x4D0
X64_GPR_OFFSET = 0x78
X64_EFLAGS_OFFSET = 0x44
X64_MXCSR_OFFSET = 0x34
X64_FLTSAVE_MXCSR_OFFSET = 0x118  # XMM_SAVE_AREA32.MxCsr
X64_XMM0_OFFSET = 0x1A0
# CONTEXT_AMD64 | CONTROL | INTEGER | SEGMENTS | FLOATING_POINT: what RtlCaptureContext fills
X64_CAPTURE_FLAGS = 0x10000F
X64_SEGMENTS = ((x86.UC_X86_REG_CS, 0x38), (x86.UC_X86_REG_DS, 0x3A), (x86.UC_X86_REG_ES, 0x3C),
                (x86.UC_X86_REG_FS, 0x3E), (x86.UC_X86_REG_GS, 0x40), (x86.UC_X86_REG_SS, 0x42))  # fmt: skip
X64_XMMS = tuple(getattr(x86, f"UC_X86_REG_XMM{i}") for i in range(16))
# x86 CONTEXT (winnt.h): CONTEXT_i386 | CONTROL | INTEGER | SEGMENTS; the integer registers
X86_CONTEXT_SIZE = 0x2CC
X86_CAPTURE_FLAGS = 0x10007
X86_REGS = ((x86.UC_X86_REG_GS, 0x8C), (x86.UC_X86_REG_FS, 0x90), (x86.UC_X86_REG_ES, 0x94),
            (x86.UC_X86_REG_DS, 0x98), (x86.UC_X86_REG_EDI, 0x9C), (x86.UC_X86_REG_ESI, 0xA0),
            (x86.UC_X86_REG_EBX, 0xA4), (x86.UC_X86_REG_EDX, 0xA8), (x86.UC_X86_REG_ECX, 0xAC),
            (x86.UC_X86_REG_EAX, 0xB0), (x86.UC_X86_REG_EBP, 0xB4), (x86.UC_X86_REG_CS, 0xBC),
            (x86.UC_X86_REG_EFLAGS, 0xC0), (x86.UC_X86_REG_SS, 0xC8))  # fmt: skip
X86_EIP_OFFSET, X86_ESP_OFFSET = 0xB8, 0xC4
DISPATCHER_CONTEXT_SIZE = 0x50
# x64 DISPATCHER_CONTEXT: ControlPc, ImageBase, FunctionEntry, EstablisherFrame, TargetIp,
# ContextRecord, LanguageHandler, HandlerData, HistoryTable, ScopeIndex, Fill0.
_DISPATCHER_CONTEXT = struct.Struct("<QQQQQQQQQII")
EXCEPTION_RECORD_SIZE = 0x98
STACK_SLACK = 0x80
MAX_UNWIND_FRAMES = 256
RIP, RSP, RAX = x86.UC_X86_REG_RIP, x86.UC_X86_REG_RSP, x86.UC_X86_REG_RAX


def context_bytes(regs: dict[int, int], eflags: int, segments: dict[int, int], xmms: dict[int, int]) -> bytes:
    """An x64 CONTEXT record holding ``regs`` (the 16 integer registers and rip)."""
    out = bytearray(X64_CONTEXT_SIZE)
    struct.pack_into("<II", out, 0x30, X64_CAPTURE_FLAGS, 0x1F80)
    struct.pack_into("<I", out, X64_FLTSAVE_MXCSR_OFFSET, 0x1F80)
    for reg, offset in X64_SEGMENTS:
        struct.pack_into("<H", out, offset, segments.get(reg, 0) & 0xFFFF)
    struct.pack_into("<I", out, X64_EFLAGS_OFFSET, eflags & 0xFFFFFFFF)
    for index, reg in enumerate(X64_GPRS):
        struct.pack_into("<Q", out, X64_GPR_OFFSET + 8 * index, regs.get(reg, 0) & 0xFFFFFFFFFFFFFFFF)
    for index, reg in enumerate(X64_XMMS):
        at = X64_XMM0_OFFSET + 16 * index
        out[at : at + 16] = xmms.get(reg, 0).to_bytes(16, "little")
    return bytes(out)


def regs_of(context: bytes) -> dict[int, int]:
    """The integer registers and rip of an x64 CONTEXT record."""
    return {reg: struct.unpack_from("<Q", context, X64_GPR_OFFSET + 8 * i)[0] for i, reg in enumerate(X64_GPRS)}


def dispatcher_context(
    control_pc: int,
    image_base: int,
    entry: int,
    establisher: int,
    target_ip: int,
    context: int,
    handler: int,
    handler_data: int,
    history: int = 0,
) -> bytes:
    """An x64 DISPATCHER_CONTEXT as a language handler reads it (ScopeIndex 0)."""
    return _DISPATCHER_CONTEXT.pack(
        control_pc, image_base, entry, establisher, target_ip, context, handler, handler_data, history, 0, 0
    )


class RtlUnwinder:
    def __init__(self, dispatcher: ExceptionDispatcher) -> None:
        self.d = dispatcher
        self.emu = dispatcher.emu
        self.unicorn = dispatcher.unicorn
        self.x64 = dispatcher.x64

    def install(self, se: Any) -> None:
        for module in ("kernel32", "ntdll"):
            se.add_api_hook(self._capture_context, module, "RtlCaptureContext", argc=1)
            if not self.x64:
                continue
            se.add_api_hook(self._lookup_function_entry, module, "RtlLookupFunctionEntry", argc=3)
            se.add_api_hook(self._virtual_unwind, module, "RtlVirtualUnwind", argc=8)
            se.add_api_hook(self._unwind_ex, module, "RtlUnwindEx", argc=6)

    # -- the APIs ------------------------------------------------------------------------------

    def _capture_context(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """RtlCaptureContext(ContextRecord): the caller's registers as they are after the call
        returns (the pc its return address, the stack pointer above it)."""
        address = argv[0] if argv else 0
        if not address:
            return 0
        read = self.unicorn.reg_read
        if self.x64:
            regs = {reg: read(reg) for reg in X64_GPRS}
            sp = regs[RSP]
            regs[RIP] = self.d.unwinder.read_u64(sp)
            regs[RSP] = sp + 8
            data = context_bytes(regs, read(x86.UC_X86_REG_EFLAGS), self._segments(), self._xmms())
        else:
            sp = read(x86.UC_X86_REG_ESP)
            out = bytearray(X86_CONTEXT_SIZE)
            struct.pack_into("<I", out, 0, X86_CAPTURE_FLAGS)
            for reg, offset in X86_REGS:
                struct.pack_into("<I", out, offset, read(reg) & 0xFFFFFFFF)
            struct.pack_into("<I", out, X86_EIP_OFFSET, struct.unpack("<I", bytes(self.emu.mem_read(sp, 4)))[0])
            struct.pack_into("<I", out, X86_ESP_OFFSET, (sp + 8) & 0xFFFFFFFF)  # stdcall, one argument
            data = bytes(out)
        self.emu.mem_write(address, data)  # an unwritable record faults in the call, as on Windows
        return 0

    def _lookup_function_entry(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """RtlLookupFunctionEntry(ControlPc, *ImageBase, HistoryTable): the RUNTIME_FUNCTION
        covering the pc in its image's exception directory (NULL for a leaf or no image)."""
        pc, image_base_out = argv[0], argv[1]
        found = self.d.unwinder.function_entry(pc)
        if found is None or not found[3]:
            return 0
        if image_base_out:
            self.emu.mem_write(image_base_out, struct.pack("<Q", found[0]))
        return found[1]

    def _virtual_unwind(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """RtlVirtualUnwind(HandlerType, ImageBase, ControlPc, FunctionEntry, ContextRecord,
        *HandlerData, *EstablisherFrame, ContextPointers): one frame of the CONTEXT unwound in
        place; the frame's handler of that type, or NULL."""
        handler_type, _base, _pc, _entry, context, handler_data_out, establisher_out = argv[:7]
        data = bytes(self.emu.mem_read(context, X64_CONTEXT_SIZE))
        regs = regs_of(data)
        step = self.d.unwinder.unwind_frame(regs, handler_type & (UNW_FLAG_EHANDLER | UNW_FLAG_UHANDLER))
        if step is None:
            return 0
        handler, establisher, _image_base, _entry_address, handler_data = step
        out = bytearray(data)
        for index, reg in enumerate(X64_GPRS):
            struct.pack_into("<Q", out, X64_GPR_OFFSET + 8 * index, regs[reg])
        self.emu.mem_write(context, bytes(out))
        if establisher_out:
            self.emu.mem_write(establisher_out, struct.pack("<Q", establisher))
        if handler_data_out:
            self.emu.mem_write(handler_data_out, struct.pack("<Q", handler_data if handler is not None else 0))
        return handler or 0

    def _unwind_ex(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        from emulator.backends.speakeasy.exceptions import Dispatch

        target_frame, target_ip, record, retval, _context, history = (list(argv) + [0] * 6)[:6]
        read = self.unicorn.reg_read
        initial = {reg: read(reg) for reg in X64_GPRS}
        sp = initial[RSP]
        caller = dict(initial)
        caller[RIP] = self.d.unwinder.read_u64(sp)
        caller[RSP] = sp + 8
        base = (sp - STACK_SLACK - X64_CONTEXT_SIZE - DISPATCHER_CONTEXT_SIZE - EXCEPTION_RECORD_SIZE) & ~0xF
        context, dispatcher = base, base + X64_CONTEXT_SIZE
        if not record:  # Windows builds one: STATUS_UNWIND at the caller's pc
            record = dispatcher + DISPATCHER_CONTEXT_SIZE
            self.emu.mem_write(record, struct.pack("<IIQQI4x", STATUS_UNWIND, 0, 0, caller[RIP], 0) + bytes(120))
        code, flags = struct.unpack("<II", bytes(self.emu.mem_read(record, 8)))
        flags |= EXCEPTION_UNWINDING | (0 if target_frame else EXCEPTION_EXIT_UNWIND)
        self.emu.mem_write(record + 4, struct.pack("<I", flags))
        state = Dispatch(code, caller[RIP], (caller[RIP], None, b""), context, record, 0, dispatcher, base, b"", [])
        state.stage = "unwind"
        state.frames = caller
        state.extra.update(target_frame=target_frame, target_ip=target_ip, retval=retval, history=history,
                           chain=list(self.d.active), initial=initial, eflags=read(x86.UC_X86_REG_EFLAGS))  # fmt: skip
        self._walk(state)
        return 0

    # -- the walk ------------------------------------------------------------------------------

    def returned(self, state: Dispatch, _disposition: int) -> None:
        """A frame's unwind handler returned (its disposition: ExceptionContinueSearch, or what
        Windows would raise STATUS_INVALID_DISPOSITION for, taken as the same)."""
        extra = state.extra
        flags = struct.unpack("<I", bytes(self.emu.mem_read(state.record + 4, 4)))[0]
        flags &= ~(EXCEPTION_TARGET_UNWIND | EXCEPTION_COLLIDED_UNWIND)
        self.emu.mem_write(state.record + 4, struct.pack("<I", flags))
        if extra["target_frame"] and extra["establisher"] == extra["target_frame"]:
            self._finish(state, bytes(self.emu.mem_read(state.context, X64_CONTEXT_SIZE)))
            return
        self._walk(state)

    def _walk(self, state: Dispatch) -> None:
        extra = state.extra
        target = extra["target_frame"]
        trap = compat_guest.seh_return_address()
        while state.frame_count < MAX_UNWIND_FRAMES and state.frames is not None:
            regs = state.frames
            if regs[RIP] == trap:
                if not extra["chain"]:
                    break
                enclosing = extra["chain"].pop()
                if enclosing.stage == "unwind" and "after" in enclosing.extra:
                    # a collided unwind: this one goes on where that one was
                    taken = enclosing.extra
                    state.frames = dict(taken["after"])
                    again = (taken["handler"], taken["establisher"], taken["image_base"], taken["entry"],
                             taken["handler_data"])  # fmt: skip
                    self._call_handler(state, taken["body"], taken["control_pc"], again, EXCEPTION_COLLIDED_UNWIND)
                    return
                # an exception handler's call: the stack goes on where that exception was raised
                state.frames = regs_of(enclosing.saved)
                continue
            state.frame_count += 1
            body = dict(regs)
            step = self.d.unwinder.unwind_frame(regs, UNW_FLAG_UHANDLER)
            if step is None:
                break
            handler, establisher = step[0], step[1]
            if target and establisher > target:
                break  # beyond the target: Windows raises STATUS_INVALID_UNWIND_TARGET
            if handler is not None:
                self._call_handler(state, body, body[RIP], step, 0)
                return
            if target and establisher == target:
                self._finish(state, self._context(state, body))
                return
        self._give_up(state)

    def _call_handler(self, state: Dispatch, body: dict[int, int], control_pc: int, step: tuple[Any, ...],
                      flags: int) -> None:  # fmt: skip
        handler, establisher, image_base, entry, handler_data = step
        extra = state.extra
        extra.update(
            body=body,
            after=dict(state.frames or {}),
            control_pc=control_pc,
            handler=handler,
            establisher=establisher,
            image_base=image_base,
            entry=entry,
            handler_data=handler_data,
        )
        if extra["target_frame"] and establisher == extra["target_frame"]:
            flags |= EXCEPTION_TARGET_UNWIND
        current = struct.unpack("<I", bytes(self.emu.mem_read(state.record + 4, 4)))[0]
        self.emu.mem_write(state.record + 4, struct.pack("<I", current | flags))
        self.emu.mem_write(state.context, self._context(state, body))
        self.emu.mem_write(
            state.dispatcher,
            dispatcher_context(
                control_pc,
                image_base,
                entry,
                establisher,
                extra["target_ip"],
                state.context,
                handler,
                handler_data,
                extra["history"],
            ),  # fmt: skip
        )
        self.d._call(state, handler, [state.record, establisher, state.context, state.dispatcher])

    def _context(self, state: Dispatch, regs: dict[int, int]) -> bytes:
        return context_bytes(regs, state.extra["eflags"], self._segments(), self._xmms())

    def _finish(self, state: Dispatch, context: bytes) -> None:
        """The target frame reached: its CONTEXT installed, at TargetIp with rax ReturnValue."""
        from emulator.backends.speakeasy.exceptions import load_context

        extra = state.extra
        load_context(self.unicorn, True, context)
        self.unicorn.reg_write(RAX, extra["retval"])
        self.unicorn.reg_write(RIP, extra["target_ip"])
        sp = self.unicorn.reg_read(RSP)
        active = self.d.active
        while active and active[-1].stack < sp:
            active.pop()  # handler calls on the stack given up (the frames they ran in are gone)

    def _give_up(self, state: Dispatch) -> None:
        """The target cannot be reached: the call returns to its caller (who aborts)."""
        for reg, value in state.extra["initial"].items():
            self.unicorn.reg_write(reg, value)
        sp = state.extra["initial"][RSP]
        self.unicorn.reg_write(RIP, self.d.unwinder.read_u64(sp))
        self.unicorn.reg_write(RSP, sp + 8)

    def _segments(self) -> dict[int, int]:
        return {reg: self.unicorn.reg_read(reg) for reg, _ in X64_SEGMENTS}

    def _xmms(self) -> dict[int, int]:
        return {reg: self.unicorn.reg_read(reg) for reg in X64_XMMS}
