"""Implicit thread-local storage as the Windows loader sets it up (``__declspec(thread)``,
``thread_local``, Rust's ``thread_local!``).

Windows gives each module that has a TLS directory an index (the executable 0, then the DLLs
with one, in load order), writes it to the directory's ``AddressOfIndex``, and gives every
thread its own copy of each module's template (``StartAddressOfRawData`` ..
``EndAddressOfRawData``, then ``SizeOfZeroFill`` zero bytes), reached through the array at
``TEB.ThreadLocalStoragePointer``. Code reads ``[TEB+0x2c or 0x58][index]`` and then writes its
thread's variables there.

Bare Speakeasy points the array's only slot at the template itself, inside the image: a thread's
first write to a thread-local variable lands in the image's read-only data (an MSVC- or
Rust-built program ends there with ``invalid_protect_write``), the threads share one copy, and
the index is never written. Here each thread gets its own copies, made when its first run starts
(a module loaded later gets its copy in each thread when that thread's next run starts); a
directory that cannot be read or names an implausible template is left out, as its module's
thread-local variables then are.
"""

from __future__ import annotations

import contextlib
import ntpath
import struct
from dataclasses import dataclass
from typing import Any

from emulator.backends.speakeasy import compat_blocks

# A template larger than this is taken for a corrupt directory (real ones are bytes to kilobytes).
MAX_TLS_TEMPLATE_BYTES = 16 * 1024 * 1024
# Slots in each thread's pointer array (a page's worth; more TLS modules than this are left out).
TLS_ARRAY_SLOTS = 512


@dataclass(frozen=True)
class TlsTemplate:
    """One module's TLS directory, read from guest memory."""

    module: str
    index: int
    start: int
    size: int  # bytes copied from the template
    zero_fill: int


class ImplicitTls:
    """Each thread's copies of every TLS module's template (see the module's docstring)."""

    def __init__(self, emu: Any, x64: bool) -> None:
        self.emu = emu
        self.x64 = x64
        self.pointer_size = 8 if x64 else 4
        self._indexes: dict[int, int] = {}  # module base -> TLS index, in the order first seen
        self._templates: dict[int, TlsTemplate | None] = {}
        self._arrays: dict[int, tuple[int, dict[int, int]]] = {}  # thread -> (array, index -> block)

    def install(self) -> None:
        compat_blocks.on_thread_tls(self.emu, self.set_up)

    def set_up(self, thread: Any) -> bool:
        """Give ``thread`` its array and its copy of each template; False (nothing done) when no
        module has a TLS directory, so Speakeasy's own handling (none) stands."""
        templates = self._current_templates()
        if not templates:
            return False
        key = compat_blocks.thread_key(thread)
        array, blocks = self._arrays.get(key, (0, {}))
        if not array:
            array = self.emu.mem_map(TLS_ARRAY_SLOTS * self.pointer_size, tag="emu.tls.pointers")
            self._arrays[key] = (array, blocks)
        for template in templates:
            if template.index in blocks or template.index >= TLS_ARRAY_SLOTS:
                continue
            block = self._copy(template)
            if block is None:
                continue
            blocks[template.index] = block
            pack = "<Q" if self.x64 else "<I"
            self.emu.mem_write(array + template.index * self.pointer_size, struct.pack(pack, block))
        compat_blocks.set_fields(thread.teb, {"ThreadLocalStoragePointer": array})
        return True

    def _current_templates(self) -> list[TlsTemplate]:
        found = []
        for module in compat_blocks.modules_in_load_order(self.emu):
            base, directory, name = module
            if base not in self._templates:
                self._templates[base] = self._read(base, directory, name)
            template = self._templates[base]
            if template is not None:
                found.append(template)
        return found

    def _read(self, base: int, directory: int, name: str) -> TlsTemplate | None:
        word = "Q" if self.x64 else "I"
        layout = f"<4{word}2I"
        try:
            raw = bytes(self.emu.mem_read(directory, struct.calcsize(layout)))
            start, end, index_address, _callbacks, zero_fill, _ = struct.unpack(layout, raw)
        except Exception:  # noqa: BLE001 - an unreadable directory: the module has no TLS copy
            return None
        size = end - start
        if size < 0 or size + zero_fill > MAX_TLS_TEMPLATE_BYTES or (size and not start):
            return None
        index = self._indexes.setdefault(base, len(self._indexes))
        if index_address:
            # a directory whose index cannot be written: the copy is still made (index 0 code works)
            with contextlib.suppress(Exception):
                self.emu.mem_write(index_address, struct.pack("<I", index))
        return TlsTemplate(ntpath.basename(name), index, start, size, zero_fill)

    def _copy(self, template: TlsTemplate) -> int | None:
        try:
            data = bytes(self.emu.mem_read(template.start, template.size)) if template.size else b""
        except Exception:  # noqa: BLE001 - a template outside mapped memory: no copy
            return None
        total = max(1, template.size + template.zero_fill)
        stem = ntpath.splitext(template.module)[0] or "module"
        block: int = self.emu.mem_map(total, tag=f"emu.tls.{stem}")
        if data:
            self.emu.mem_write(block, data)
        return block
