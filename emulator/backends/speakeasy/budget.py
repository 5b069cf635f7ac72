"""A native per-block byte budget: stops guest code synchronously, with no Python per block.

Fast mode must be able to stop a stretch of guest code to enforce ``max_instructions`` and
resume it later. The only stops that can be resumed safely are synchronous ones, taken at an
instruction boundary on the emulating thread: Unicorn 2.1 checks for a pending stop after every
guest memory access (``check_exit_request`` after each ``tcg_gen_qemu_ld/st``) and unwinds to
the start of the *current* instruction although its store has already reached memory, so an
``emu_stop`` from another thread lands mid-instruction and resuming at the reported pc runs a
read-modify-write (``inc [m]``, ``xor [m], r``, ``xchg``) twice (docs/performance.md).

A block hook fires before a translation block's first instruction, and Unicorn checks for a
stop right after it, before anything of the block has run: a stop requested there is exact. A
Python block hook would cost a Python call per block; this one is eleven bytes of machine code
(x86-64, System V calling convention) that adds the block's size in bytes to a counter and
tail-calls ``uc_emu_stop`` once the counter reaches the budget::

    ; rdi = uc, rsi = address, edx = block size in bytes, rcx = user data (struct _Budget)
    mov  eax, edx            ; 89 d0
    add  rax, [rcx]          ; 48 03 01      spent += size
    mov  [rcx], rax          ; 48 89 01
    cmp  rax, [rcx+8]        ; 48 3b 41 08   spent >= limit ?
    jae  stop                ; 73 01
    ret                      ; c3
  stop:
    jmp  [rcx+16]            ; ff 61 10      uc_emu_stop(uc)

Every instruction is at least one byte, so the bytes of the blocks entered bound the
instructions run from above: a stretch stopped by its budget of N bytes has run at most N
instructions. On another host architecture or calling convention :func:`install` returns None
and the runner counts with Unicorn's own (slower) counter from the first instruction.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import sys
from typing import Any

from emulator.backends.speakeasy import compat_fast

_CODE = bytes.fromhex("89d0 480301 488901 483b4108 7301 c3 ff6110".replace(" ", ""))
UNLIMITED = (1 << 64) - 1


class _Budget(ctypes.Structure):
    _fields_ = [("spent", ctypes.c_uint64), ("limit", ctypes.c_uint64), ("stop", ctypes.c_void_p)]


_code_page: mmap.mmap | None = None
_code_address = 0


def _host_supported() -> bool:
    return sys.platform.startswith("linux") and platform.machine().lower() in ("x86_64", "amd64")


def _callback_address() -> int:
    """The stub's address, written once per process into an executable page that is never freed."""
    global _code_page, _code_address
    if _code_page is None:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(_CODE)
        _code_address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        _code_page = page
    return _code_address


class BlockBudget:
    """The byte budget of one Unicorn instance (see the module docstring)."""

    def __init__(self, unicorn: Any, state: _Budget, handle: int) -> None:
        self.unicorn = unicorn
        self._state = state
        self._handle = handle
        self._limit = UNLIMITED

    def reset(self, limit: int) -> None:
        """Start a new budget of ``limit`` bytes (0: unlimited)."""
        self._limit = limit if limit > 0 else UNLIMITED
        self._state.spent = 0
        self._state.limit = self._limit

    def suspend(self) -> None:
        """No further budget stop until the next :meth:`reset`."""
        self._limit = UNLIMITED
        self._state.limit = UNLIMITED

    def preempt(self) -> None:
        """Stop at the next block boundary; safe to call from another thread (one aligned store)."""
        self._state.limit = 0

    @property
    def preempted(self) -> bool:
        """A :meth:`preempt` is in force (no other call sets a limit of 0 bytes)."""
        return self._state.limit == 0

    def restore(self) -> None:
        """Undo :meth:`preempt` and :meth:`cap`: the budget continues where it was."""
        self._state.limit = self._limit

    def cap(self, at: int) -> None:
        """Also stop once ``at`` bytes have been spent (until :meth:`restore`)."""
        self._state.limit = min(self._limit, at)

    @property
    def spent(self) -> int:
        return int(self._state.spent)

    @property
    def exhausted(self) -> bool:
        return self._state.spent >= self._limit

    def remove(self) -> None:
        compat_fast.remove_native_block_hook(self.unicorn, self._handle)


def install(unicorn: Any) -> BlockBudget | None:
    """Install the budget hook on ``unicorn`` (before code is translated, or flush afterwards)."""
    if not _host_supported():
        return None
    try:
        callback = _callback_address()
    except (OSError, ValueError):  # no executable anonymous mapping allowed on this host
        return None
    state = _Budget(0, UNLIMITED, compat_fast.native_stop_function())
    handle = compat_fast.add_native_block_hook(unicorn, callback, ctypes.addressof(state))
    # The hook reads ``state`` for as long as the engine lives, which may outlast the runner.
    unicorn._chainreplay_budget = state
    return BlockBudget(unicorn, state, handle)
