"""x64 virtual unwinding (emulator/backends/speakeasy/unwind.py) over a synthetic image: the
RUNTIME_FUNCTION lookup, the prolog codes done at a pc, the handler and the establisher frame."""

from __future__ import annotations

import struct

from unicorn import x86_const as x86

from emulator.backends.speakeasy.unwind import Unwinder

BASE = 0x10000
STACK = 0x8000


def _memory() -> dict[int, int]:
    memory: dict[int, int] = {}

    def put(address: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            memory[address + i] = byte

    put(BASE + 0x3C, struct.pack("<I", 0x40))
    put(BASE + 0x40 + 24, struct.pack("<H", 0x20B))  # PE32+
    put(BASE + 0x40 + 24 + 112 + 3 * 8, struct.pack("<II", 0x1000, 12))  # exception directory
    put(BASE + 0x1000, struct.pack("<III", 0x2000, 0x2100, 0x3000))  # one RUNTIME_FUNCTION
    # UNWIND_INFO: version 1, UNW_FLAG_EHANDLER, prolog 6 bytes, 3 codes, no frame register:
    # push rbx (ends at 1), push rsi (ends at 2), sub rsp, 40 (ends at 6); handler rva 0x2500.
    codes = bytes([6, 0x42, 2, 0x60, 1, 0x30, 0, 0])
    put(BASE + 0x3000, bytes([0x09, 6, 3, 0]) + codes + struct.pack("<I", 0x2500))
    put(STACK + 40, struct.pack("<Q", 0x5151))  # saved rsi
    put(STACK + 48, struct.pack("<Q", 0xB0B0))  # saved rbx
    put(STACK + 56, struct.pack("<Q", BASE + 0x2F00))  # return address
    return memory


def _unwinder(memory: dict[int, int]) -> Unwinder:
    def read(address: int, size: int) -> bytes:
        return bytes(memory[address + i] for i in range(size))

    return Unwinder(read, lambda address: BASE if BASE <= address < BASE + 0x10000 else None)


def test_unwinding_a_frame_in_its_body_restores_saved_registers_and_finds_the_handler() -> None:
    regs = {x86.UC_X86_REG_RIP: BASE + 0x2010, x86.UC_X86_REG_RSP: STACK, x86.UC_X86_REG_RBX: 1, x86.UC_X86_REG_RSI: 2}
    step = _unwinder(_memory()).unwind_frame(regs)
    assert step is not None
    handler, establisher, image_base, entry, handler_data = step
    assert (handler, establisher, image_base, entry) == (BASE + 0x2500, STACK, BASE, BASE + 0x1000)
    assert handler_data == BASE + 0x3000 + 4 + 8 + 4
    assert regs[x86.UC_X86_REG_RSI] == 0x5151 and regs[x86.UC_X86_REG_RBX] == 0xB0B0
    assert (regs[x86.UC_X86_REG_RIP], regs[x86.UC_X86_REG_RSP]) == (BASE + 0x2F00, STACK + 64)


def test_inside_the_prolog_only_the_operations_done_are_undone() -> None:
    memory = _memory()
    # At offset 2 rbx and rsi are pushed, the stack not yet allocated: rsp points at saved rsi.
    regs = {x86.UC_X86_REG_RIP: BASE + 0x2002, x86.UC_X86_REG_RSP: STACK + 40, x86.UC_X86_REG_RBX: 1}
    assert _unwinder(memory).unwind_frame(regs) is not None
    assert regs[x86.UC_X86_REG_RBX] == 0xB0B0
    assert (regs[x86.UC_X86_REG_RIP], regs[x86.UC_X86_REG_RSP]) == (BASE + 0x2F00, STACK + 64)


def test_a_leaf_pops_the_return_address_and_code_outside_images_stops_the_walk() -> None:
    memory = _memory()
    regs = {x86.UC_X86_REG_RIP: BASE + 0x2800, x86.UC_X86_REG_RSP: STACK + 56}  # no entry: a leaf
    step = _unwinder(memory).unwind_frame(regs)
    assert step is not None and step[0] is None
    assert (regs[x86.UC_X86_REG_RIP], regs[x86.UC_X86_REG_RSP]) == (BASE + 0x2F00, STACK + 64)
    assert _unwinder(memory).unwind_frame({x86.UC_X86_REG_RIP: 0x1234, x86.UC_X86_REG_RSP: STACK}) is None
