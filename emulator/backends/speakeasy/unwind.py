"""x64 virtual unwinding through an image's exception directory (.pdata / UNWIND_INFO).

What ``RtlLookupFunctionEntry`` and ``RtlVirtualUnwind`` do, over any memory reader: find the
RUNTIME_FUNCTION covering a pc, undo the prolog operations its unwind codes describe (the ones
already done at that pc), follow chained unwind info, and pop the return address; a pc in an
image with no entry for it is a leaf function. Registers are a dict keyed by Unicorn's x86
register ids. No engine here: the exception dispatcher gives it the guest's memory.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from unicorn import x86_const as x86

X64_GPRS = (x86.UC_X86_REG_RAX, x86.UC_X86_REG_RCX, x86.UC_X86_REG_RDX, x86.UC_X86_REG_RBX,
            x86.UC_X86_REG_RSP, x86.UC_X86_REG_RBP, x86.UC_X86_REG_RSI, x86.UC_X86_REG_RDI,
            x86.UC_X86_REG_R8, x86.UC_X86_REG_R9, x86.UC_X86_REG_R10, x86.UC_X86_REG_R11,
            x86.UC_X86_REG_R12, x86.UC_X86_REG_R13, x86.UC_X86_REG_R14, x86.UC_X86_REG_R15,
            x86.UC_X86_REG_RIP)  # fmt: skip
# UNWIND_CODE register numbers -> Unicorn registers.
UNWIND_REGS = X64_GPRS[:16]
UNW_FLAG_EHANDLER = 1
UNW_FLAG_UHANDLER = 2  # the handler is also (or only) called while unwinding (RtlUnwindEx)
UNW_FLAG_CHAININFO = 4
PE32_PLUS_MAGIC = 0x20B
EXCEPTION_DIRECTORY = 3


class Unwinder:
    def __init__(self, read: Callable[[int, int], bytes], image_base_of: Callable[[int], int | None]) -> None:
        self.read = read
        self.image_base_of = image_base_of

    def unwind_frame(
        self, regs: dict[int, int], handler_type: int = UNW_FLAG_EHANDLER
    ) -> tuple[Any, int, int, int, int] | None:
        """Unwind one frame of ``regs`` in place: (handler or None, establisher frame, image base,
        function entry address, handler data address); None when the walk must stop. The handler
        is the frame's when its unwind info has one of the ``handler_type`` flags (the exception
        search asks for UNW_FLAG_EHANDLER, an unwind for UNW_FLAG_UHANDLER), as
        ``RtlVirtualUnwind``'s HandlerType."""
        pc = regs[x86.UC_X86_REG_RIP]
        found = self.function_entry(pc)
        if found is None:
            return None
        image_base, entry_address, begin, unwind_rva = found
        establisher = regs[x86.UC_X86_REG_RSP]
        if not unwind_rva:  # a leaf function: the return address is on top of the stack
            try:
                regs[x86.UC_X86_REG_RIP] = self.read_u64(establisher)
            except Exception:
                return None
            regs[x86.UC_X86_REG_RSP] = establisher + 8
            return None, establisher, image_base, 0, 0
        handler: int | None = None
        handler_data = 0
        first = True
        try:
            while True:
                header = bytes(self.read(image_base + unwind_rva, 4))
                flags, prolog, count, frame = header[0] >> 3, header[1], header[2], header[3]
                codes = bytes(self.read(image_base + unwind_rva + 4, 2 * count))
                frame_reg, frame_offset = frame & 0xF, frame >> 4
                if first and frame_reg:
                    establisher = regs[UNWIND_REGS[frame_reg]] - 16 * frame_offset
                if first and flags & handler_type & (UNW_FLAG_EHANDLER | UNW_FLAG_UHANDLER):
                    at = image_base + unwind_rva + 4 + 2 * (count + (count & 1))
                    handler = image_base + struct.unpack("<I", bytes(self.read(at, 4)))[0]
                    handler_data = at + 4
                offset = pc - image_base - begin if first else 0x10000
                machine_frame = self._apply_codes(regs, codes, offset, prolog, frame_reg, frame_offset)
                first = False
                if machine_frame:
                    return handler, establisher, image_base, entry_address, handler_data
                if not flags & UNW_FLAG_CHAININFO:
                    break
                chained = image_base + unwind_rva + 4 + 2 * (count + (count & 1))
                begin, _end, unwind_rva = struct.unpack("<III", bytes(self.read(chained, 12)))
            sp = regs[x86.UC_X86_REG_RSP]
            regs[x86.UC_X86_REG_RIP] = int.from_bytes(self.read(sp, 8), "little")
            regs[x86.UC_X86_REG_RSP] = sp + 8
        except Exception:
            return None  # unreadable unwind data or stack: the walk ends here
        return handler, establisher, image_base, entry_address, handler_data

    def _apply_codes(self, regs: dict[int, int], codes: bytes, offset: int, prolog: int, frame_reg: int,
                     frame_offset: int) -> bool:  # fmt: skip
        """Undo the prolog operations already done at ``offset``; True after a machine frame."""
        read = self.read_u64
        rsp = x86.UC_X86_REG_RSP
        i = 0
        while i + 1 < len(codes):
            code_offset, op_info = codes[i], codes[i + 1]
            op, info = op_info & 0xF, op_info >> 4
            slots = {1: 2 if info else 1, 4: 1, 5: 2, 8: 1, 9: 2}.get(op, 0) + 1
            done = code_offset <= offset or offset >= prolog
            if done:
                if op == 0:  # PUSH_NONVOL
                    regs[UNWIND_REGS[info]] = read(regs[rsp])
                    regs[rsp] += 8
                elif op == 1:  # ALLOC_LARGE
                    size = (
                        struct.unpack_from("<H", codes, i + 2)[0] * 8
                        if info == 0
                        else struct.unpack_from("<I", codes, i + 2)[0]
                    )
                    regs[rsp] += size
                elif op == 2:  # ALLOC_SMALL
                    regs[rsp] += info * 8 + 8
                elif op == 3:  # SET_FPREG
                    regs[rsp] = regs[UNWIND_REGS[frame_reg]] - 16 * frame_offset
                elif op == 4:  # SAVE_NONVOL
                    regs[UNWIND_REGS[info]] = read(regs[rsp] + struct.unpack_from("<H", codes, i + 2)[0] * 8)
                elif op == 5:  # SAVE_NONVOL_FAR
                    regs[UNWIND_REGS[info]] = read(regs[rsp] + struct.unpack_from("<I", codes, i + 2)[0])
                elif op == 10:  # PUSH_MACHFRAME
                    base = regs[rsp] + (8 if info else 0)
                    regs[x86.UC_X86_REG_RIP] = read(base)
                    regs[rsp] = read(base + 24)
                    return True
            i += 2 * slots
        return False

    def read_u64(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")

    def function_entry(self, pc: int) -> tuple[int, int, int, int] | None:
        """(image base, RUNTIME_FUNCTION address, begin rva, unwind rva) for ``pc``, from the
        exception directory of the image ``pc`` lies in; a leaf function gets unwind rva 0."""
        base = self.image_base_of(pc)
        if base is None:
            return None
        try:
            lfanew = struct.unpack("<I", bytes(self.read(base + 0x3C, 4)))[0]
            if struct.unpack("<H", bytes(self.read(base + lfanew + 24, 2)))[0] != PE32_PLUS_MAGIC:
                return None
            rva, size = struct.unpack("<II", bytes(self.read(base + lfanew + 24 + 112 + 3 * 8, 8)))
            if not rva or not size:
                return None
            table = bytes(self.read(base + rva, size - size % 12))
        except Exception:
            return None
        target = pc - base
        low, high = 0, len(table) // 12 - 1
        while low <= high:
            mid = (low + high) // 2
            begin, end, unwind = struct.unpack_from("<III", table, mid * 12)
            if target < begin:
                high = mid - 1
            elif target >= end:
                low = mid + 1
            else:
                return base, base + rva + mid * 12, begin, unwind
        return base, 0, 0, 0
