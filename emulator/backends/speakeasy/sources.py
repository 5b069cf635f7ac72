"""Data sources: the bytes Speakeasy's own API handlers put into guest memory, recorded.

Every decrypt, decode and copy API Speakeasy emulates, every resource it hands out and every
write into another process is wrapped: the handler runs unchanged, then its output (and, for
a transform, its input) is remembered as a :class:`~emulator.events.DataBuffer`, so the
lineage analysis can follow bytes through the call. Project-side handlers (emulator/apis)
record their own buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat
from emulator.events import FileAccess
from emulator.recorder import Recorder

# Copies shorter than this are bookkeeping (structures, strings), not payloads.
MIN_COPY_BYTES = 64
# Larger transfers are recorded only up to this many bytes.
MAX_SOURCE_BYTES = 16 * 1024 * 1024
CRYPT_STRING_BASE64 = 0x1
PAGE = 0x1000


@dataclass
class _Call:
    """What a wrapped call read before the handler ran."""

    input: bytes = b""
    out_address: int = 0


# Strings are read in chunks this long, so one near the end of a mapping is still read whole.
STRING_CHUNK = 64


def read_c_string(memory: GuestMemory, address: int, wide: bool, limit: int) -> bytes:
    """A NUL-terminated guest string's bytes (without the terminator), chunk by chunk."""
    unit = 2 if wide else 1
    out = bytearray()
    while address and len(out) < limit:
        try:
            chunk = memory.read(address + len(out), STRING_CHUNK)
        except Exception:
            chunk = b""
            # The last chunk of a mapping: read what is left of it byte by byte.
            for i in range(STRING_CHUNK):
                try:
                    chunk += memory.read(address + len(out) + i, 1)
                except Exception:
                    break
            if not chunk:
                break
        for i in range(0, len(chunk) - unit + 1, unit):
            if chunk[i : i + unit] == b"\0" * unit:
                return bytes(out + chunk[:i])
        out += chunk
        if len(chunk) < STRING_CHUNK:
            break
    return bytes(out[:limit])


class SourceTaps:
    def __init__(self, se: Any, emu: Any, memory: GuestMemory, recorder: Recorder) -> None:
        self.se = se
        self.emu = emu
        self.memory = memory
        self.recorder = recorder
        # Told (address, size) of the bytes a copy API is about to read (the flow watch records
        # how guest code wrote them, if it did).
        self.on_copy_from: Callable[[int, int], None] | None = None
        # Told the address of each view of a section the guest mapped (code may run from it).
        self.on_view_mapped: Callable[[int], None] | None = None

    def install(self) -> None:
        self._wrap("advapi32", ("CryptDecrypt",), self._crypt_decrypt)
        self._wrap("crypt32", ("CryptStringToBinaryA", "CryptStringToBinaryW"), self._string_to_binary)
        self._wrap("kernel32", ("RtlMoveMemory",), self._copy(0, 1, 2))
        self._wrap("ntdll", ("RtlMoveMemory", "RtlCopyMemory"), self._copy(0, 1, 2))
        self._wrap("msvcrt", ("memcpy", "memmove"), self._copy(0, 1, 2))
        self._wrap("kernel32", ("WriteProcessMemory",), self._write_process_memory)
        self._wrap("ntdll", ("NtWriteVirtualMemory", "ZwWriteVirtualMemory"), self._write_process_memory)
        self._wrap("kernel32", ("HeapReAlloc",), self._reallocate(2, 3))
        self._wrap("kernel32", ("LocalReAlloc",), self._reallocate(0, 1))
        self._wrap("kernel32", ("LoadResource",), self._load_resource)
        self._wrap("kernel32", ("MapViewOfFile", "MapViewOfFileEx"), self._map_view)
        self._wrap("kernel32", ("GetEnvironmentVariableA", "GetEnvironmentVariableW"), self._environment_variable)
        self._wrap("msvcrt", ("fread",), self._crt_read)

    def _wrap(self, module: str, names: tuple[str, ...], tap: Callable[[str, Any, list[int]], int]) -> None:
        for name in names:

            def hook(emu: Any, api_name: str, orig: Any, argv: list[int], _name: str = name) -> int:
                # What the tap records names this call's site, as a project handler's records do.
                self.recorder.call_pc = compat.call_site(emu)
                try:
                    return tap(_name, orig, list(argv))
                finally:
                    self.recorder.call_pc = None

            self.se.add_api_hook(hook, module, name)

    def _read(self, address: int, size: int) -> bytes:
        if not address or size <= 0:
            return b""
        try:
            return self.memory.read(address, min(size, MAX_SOURCE_BYTES))
        except Exception:
            return b""

    def _u32(self, address: int) -> int:
        return int.from_bytes(self._read(address, 4), "little") if address else 0

    # -- the taps --------------------------------------------------------------------------

    def _crypt_decrypt(self, name: str, orig: Any, argv: list[int]) -> int:
        # CryptDecrypt(hKey, hHash, Final, dwFlags, pbData, pdwDataLen): decrypts in place.
        data_ptr, len_ptr = argv[4], argv[5]
        before = self._read(data_ptr, self._u32(len_ptr))
        rv = int(orig(argv) or 0)
        if rv and before:
            after = self._read(data_ptr, self._u32(len_ptr))
            if after:
                self.recorder.remember_buffer("decrypt", data_ptr, after, ref=name, input_data=before, api=name)
        return rv

    def _string_to_binary(self, name: str, orig: Any, argv: list[int]) -> int:
        # CryptStringToBinary(pszString, cchString, dwFlags, pbBinary, pcbBinary, pdwSkip, pdwFlags)
        text_ptr, chars, flags, out_ptr, out_len_ptr = argv[:5]
        wide = name.endswith("W")
        if chars:
            text = self._read(text_ptr, chars * (2 if wide else 1))
        else:
            text = read_c_string(self.memory, text_ptr, wide, MAX_SOURCE_BYTES)
        rv = int(orig(argv) or 0)
        if rv and out_ptr and text:
            out = self._read(out_ptr, self._u32(out_len_ptr))
            if out:
                encoding = "base64" if flags & 0xFF in (CRYPT_STRING_BASE64, 0, 6) else f"flags {flags:#x}"
                self.recorder.remember_buffer(
                    "decode", out_ptr, out, ref=f"{name} ({encoding})", input_data=text, api=name
                )
        return rv

    def _copy(self, dst_index: int, src_index: int, len_index: int) -> Callable[[str, Any, list[int]], int]:
        def tap(name: str, orig: Any, argv: list[int]) -> int:
            size = argv[len_index]
            data = self._read(argv[src_index], size) if size >= MIN_COPY_BYTES else b""
            if data and self.on_copy_from is not None:
                self.on_copy_from(argv[src_index], len(data))
            rv = int(orig(argv) or 0)
            if data:
                self.recorder.remember_buffer(
                    "api_copy",
                    argv[dst_index],
                    data,
                    ref=name,
                    input_data=data,
                    input_address=argv[src_index],
                    api=name,
                )
            return rv

        return tap

    def _reallocate(self, old_index: int, size_index: int) -> Callable[[str, Any, list[int]], int]:
        """HeapReAlloc / LocalReAlloc: the new block holds the old one's bytes (an API copy)."""

        def tap(name: str, orig: Any, argv: list[int]) -> int:
            old, size = argv[old_index], argv[size_index]
            data = self._read_mapped(old, size) if old and size >= MIN_COPY_BYTES else b""
            if data and self.on_copy_from is not None:
                self.on_copy_from(old, len(data))
            rv = int(orig(argv) or 0)
            if rv and data:
                self.recorder.remember_buffer(
                    "api_copy", rv, data, ref=name, input_data=data, input_address=old, api=name
                )
            return rv

        return tap

    def _read_mapped(self, address: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``address``, as far as they are mapped (page by page)."""
        whole = self._read(address, size)
        if whole:
            return whole
        out = bytearray()
        while len(out) < min(size, MAX_SOURCE_BYTES):
            step = min(PAGE - (address + len(out)) % PAGE, size - len(out))
            chunk = self._read(address + len(out), step)
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def _write_process_memory(self, name: str, orig: Any, argv: list[int]) -> int:
        # WriteProcessMemory(hProcess, lpBaseAddress, lpBuffer, nSize, lpNumberOfBytesWritten), and
        # NtWriteVirtualMemory with the same arguments (an NTSTATUS: 0 is success, not a BOOL)
        process, address, buffer, size = argv[:4]
        data = self._read(buffer, size)
        if data and self.on_copy_from is not None:
            self.on_copy_from(buffer, len(data))
        rv = int(orig(argv) or 0)
        written = rv == 0 if name.startswith(("Nt", "Zw")) else rv != 0
        target = compat.process_path(self.emu, process)
        if written and data and target:
            self.recorder.remember_buffer("process_write", address, data, ref=target, input_address=buffer, api=name)
        return rv

    def _load_resource(self, name: str, orig: Any, argv: list[int]) -> int:
        # LoadResource(hModule, hResInfo): hResInfo is an IMAGE_RESOURCE_DATA_ENTRY (rva, size).
        rv = int(orig(argv) or 0)
        info = argv[1]
        size = self._u32(info + 4) if info else 0
        data = self._read(rv, size) if rv else b""
        if data:
            module = compat.module_name_at(self.emu, rv) or "image"
            rva = self._u32(info)
            self.recorder.remember_buffer("resource", rv, data, ref=f"{module} resource at rva {rva:#x}", api=name)
        return rv

    def _map_view(self, name: str, orig: Any, argv: list[int]) -> int:
        # MapViewOfFile(hMapping, access, offset high, offset low, size): a view of a file's
        # bytes is a read of that file (a mapping of the paging file is not).
        rv = int(orig(argv) or 0)
        if rv:
            compat.alias_section_views(self.emu, argv[0], rv)
        if rv and self.on_view_mapped is not None:
            self.on_view_mapped(rv)
        backing = compat.mapped_file(self.emu, argv[0]) if rv else None
        if backing is None:
            return rv
        path, image = backing
        contents = compat.guest_file_data(self.emu, path) or b""
        if not image:  # an image section (SEC_IMAGE) is laid out by sections: the file is the source
            offset = (argv[2] << 32) | argv[3]
            contents = contents[offset : offset + argv[4]] if argv[4] else contents[offset:]
        data = contents[:MAX_SOURCE_BYTES]
        if data:
            recorder = self.recorder
            digest = recorder.put_blob(data)
            recorder.emit(FileAccess, op="read", path=path, size=len(data), data_sha256=digest, address=rv)
            recorder.remember_buffer("file_read", rv, data, ref=path, api=name)
        return rv

    def _environment_variable(self, name: str, orig: Any, argv: list[int]) -> int:
        # GetEnvironmentVariable(lpName, lpBuffer, nSize): the value's length in characters, or
        # the size needed (with the terminator) when the buffer is too small.
        name_ptr, buffer, size = argv[:3]
        rv = int(orig(argv) or 0)
        unit = 2 if name.endswith("W") else 1
        if not buffer or not 0 < rv < size or rv < MIN_COPY_BYTES:
            return rv  # short values are settings (paths, flags), not payloads
        data = self._read(buffer, rv * unit)
        variable = read_c_string(self.memory, name_ptr, unit == 2, 4 * STRING_CHUNK)
        if data:
            label = variable.decode("utf-16-le" if unit == 2 else "latin-1", "replace")
            self.recorder.remember_buffer("environment_read", buffer, data, ref=f"%{label}%", api=f"kernel32.{name}")
        return rv

    def _crt_read(self, name: str, orig: Any, argv: list[int]) -> int:
        # fread(ptr, size, count, stream): the C runtime's file read (Speakeasy's handler records
        # no file access of its own), recorded as ReadFile's is.
        ptr, size, _count, stream = argv[:4]
        rv = int(orig(argv) or 0)
        path = compat.crt_stream_path(self.emu, stream) if rv and ptr and size else None
        data = self._read(ptr, rv * size) if path else b""
        if path and data:
            api = f"msvcrt.{name}"
            digest = self.recorder.put_blob(data)
            self.recorder.emit(FileAccess, op="read", path=path, size=len(data), data_sha256=digest, address=ptr)
            self.recorder.remember_buffer("file_read", ptr, data, ref=path, api=api)
        return rv
