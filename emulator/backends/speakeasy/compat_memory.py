"""Private Speakeasy names the emulation phase's host-side memory work relies on: API handlers'
string reads a page at a time, and the end of a run without the memory-layout capture only
Speakeasy's own report reads.

A part of compat.py kept in a module of its own, under the same rules: every name is checked
when this module is imported, and each replacement is installed only on an emulator whose
Speakeasy method is still the one it was written from (its code, compared by digest).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

import speakeasy.binemu as se_binemu
import speakeasy.windows.win32 as se_win32
import unicorn as uc

from emulator.backends.speakeasy.compat import _incompatible, _require_params

# The most bytes one string read takes at once (never past the end of a page: a page is mapped
# or not as a whole, so a read that stays inside one faults exactly when its first byte does).
STRING_CHUNK_BYTES = 256
PAGE_SIZE = 0x1000


def _check_installed() -> None:
    _require_params(se_binemu.BinaryEmulator, "read_mem_string", ("address", "width", "max_chars"))
    _require_params(se_binemu.BinaryEmulator, "mem_string_len", ("address", "width"))
    _require_params(se_win32.Win32Emulator, "_capture_memory_layout", ())
    _require_params(se_win32.Win32Emulator, "on_run_complete", ())
    if "_capture_memory_layout" not in se_win32.Win32Emulator.on_run_complete.__code__.co_names:
        raise _incompatible("Win32Emulator.on_run_complete no longer captures the memory layout")


_check_installed()


def code_digest(function: Callable[..., Any]) -> str:
    """The SHA-256 of what ``function`` does (its bytecode, constants and names, nested code
    objects alike; not where it sits in its file)."""
    digest = hashlib.sha256()

    def add(code: Any) -> None:
        digest.update(code.co_code)
        for const in code.co_consts:
            if hasattr(const, "co_code"):
                add(const)
            else:
                digest.update(repr(const).encode())
        digest.update(repr((code.co_names, code.co_varnames)).encode())

    add(function.__code__)
    return digest.hexdigest()


# The code of BinaryEmulator.read_mem_string / mem_string_len that read_strings_by_page does
# the work of (speakeasy-emulator 2.0.0b9), and of Win32Emulator._capture_memory_layout.
READ_MEM_STRING_DIGEST = "8ff2400e9297cbdec551037675b9a7e3ebd1b4ce5962e4e50c7633d3f137d5e8"
MEM_STRING_LEN_DIGEST = "3bfc0382bfc93ef0570fae26cae59ae920deac8abe3a6a02fc7763644d185706"
CAPTURE_MEMORY_LAYOUT_DIGEST = "011820687f9c6a6f784e8c5e9b497a56893db13f1e329fa145b0c7a51378ea8a"


@functools.cache
def strings_match() -> bool:
    """Whether Speakeasy reads strings as :func:`read_strings_by_page` does."""
    return (
        code_digest(se_binemu.BinaryEmulator.read_mem_string) == READ_MEM_STRING_DIGEST
        and code_digest(se_binemu.BinaryEmulator.mem_string_len) == MEM_STRING_LEN_DIGEST
    )


def _terminator(data: bytes | bytearray, width: int) -> int:
    """The index of the first character that is zero in ``data`` (``width`` bytes each), or -1."""
    if width == 1:
        return data.find(0)
    at = data.find(b"\0\0")
    while at >= 0 and at % 2:
        at = data.find(b"\0\0", at + 1)
    return at // 2 if at >= 0 else -1


def read_strings_by_page(emu: Any) -> bool:
    """``emu.read_mem_string`` and ``emu.mem_string_len`` reading up to a page at a time.

    Speakeasy reads a string one character per memory read (a string argument of an API call:
    ~30 host reads through four Python layers, ~5 us each). Here each read takes up to
    :data:`STRING_CHUNK_BYTES`, never past the end of a page, straight from the engine (what
    ``emu.mem_read`` returns when it succeeds: the memory manager's read, and chainreplay's
    fault reporter, which acts only on a failure); the same bytes are kept (up to and including
    the first zero character, or ``max_chars`` characters), so the same string comes back. A
    character that straddles two pages, and a chunk that cannot be read, are read Speakeasy's
    way (through ``emu.mem_read``) from that character on: the same fault, reported once, at
    the same address. False (nothing installed) when Speakeasy's methods are not the ones this
    was written from."""
    if not strings_match():
        return False
    original_read = se_binemu.BinaryEmulator.read_mem_string.__get__(emu)
    original_len = se_binemu.BinaryEmulator.mem_string_len.__get__(emu)
    engine = emu.emu_eng

    def chunks(address: int, width: int, max_chars: int) -> tuple[bytearray, int, bool]:
        """(bytes read, the address after them, whether a zero character or max_chars ended
        them); stops early, not ended, where Speakeasy's own loop must take over."""
        out = bytearray()
        count = 0
        while not (max_chars and count >= max_chars):
            room = (PAGE_SIZE - (address & (PAGE_SIZE - 1))) // width
            if room == 0:
                return out, address, False  # a character across two pages
            n = min(room, STRING_CHUNK_BYTES // width)
            if max_chars:
                n = min(n, max_chars - count)
            try:
                data = engine.mem_read(address, n * width)
            except uc.UcError:
                return out, address, False
            end = _terminator(data, width)
            if end >= 0:
                out += data[: (end + 1) * width]
                return out, address + (end + 1) * width, True
            out += data
            address += n * width
            count += n
        return out, address, True

    def read_mem_string(address: int, width: int = 1, max_chars: int = 0) -> Any:
        if width == 1:
            decode = "utf-8"
        elif width == 2:
            decode = "utf-16le"
        else:
            return original_read(address, width=width, max_chars=max_chars)  # its ValueError
        data, after, ended = chunks(address, width, max_chars)
        if not ended:
            data += _raw_rest(after, width, max_chars - len(data) // width if max_chars else 0)
        string = bytes(data)
        try:
            return string.decode(decode, "ignore").replace("\x00", "")
        except Exception:  # noqa: BLE001 - Speakeasy's own fallback
            return string.replace(b"\x00", b"")

    def _raw_rest(address: int, width: int, max_chars: int) -> bytes:
        """Speakeasy's loop over the rest, keeping the bytes (the same reads, the same fault)."""
        string = b""
        char = b"\xff"
        i = 0
        while int.from_bytes(char, "little") != 0:
            if max_chars and i >= max_chars:
                break
            char = emu.mem_read(address, width)
            string += char
            address += width
            i += 1
        return string

    def mem_string_len(address: int, width: int = 1) -> Any:
        if width not in (1, 2):
            return original_len(address, width)
        data, after, ended = chunks(address, width, 0)
        if not ended:
            data += _raw_rest(after, width, 0)
        return len(data) // width - 1

    emu.read_mem_string = read_mem_string
    emu.mem_string_len = mem_string_len
    return True


@functools.cache
def layout_capture_matches() -> bool:
    """Whether Speakeasy's ``_capture_memory_layout`` is the one :func:`without_memory_layout_capture` leaves out."""
    return code_digest(se_win32.Win32Emulator._capture_memory_layout) == CAPTURE_MEMORY_LAYOUT_DIGEST


def without_memory_layout_capture(emu: Any) -> bool:
    """Runs end without ``_capture_memory_layout`` on ``emu``.

    At the end of every run (three in a 3CX replay) Speakeasy lists every memory map, module
    section and loaded module into the run's ``memory_regions`` and ``loaded_modules`` (~2 ms a
    run with the ~55 decoy modules), which only its own report (``Profiler.get_report``) reads;
    chainreplay never builds that report. The capture reads memory only when
    ``snapshot_memory_regions`` is configured (never here) and changes nothing else. False
    (nothing changed) when that configuration is set or the method is not the one this was
    written from."""
    if getattr(emu.config, "snapshot_memory_regions", False):
        return False
    if not layout_capture_matches():
        return False
    emu._capture_memory_layout = _no_capture
    return True


def _no_capture() -> None:
    return None
