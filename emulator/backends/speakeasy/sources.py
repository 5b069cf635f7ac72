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

from speakeasy.winenv import arch as se_arch

from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat, mailslots
from emulator.events import FileAccess
from emulator.recorder import Recorder

# Copies shorter than this are bookkeeping (structures, strings), not payloads.
MIN_COPY_BYTES = 64
# A copy-on-write page protection -> the one it is to the guest once written (a private copy).
PAGE_WRITECOPY, PAGE_EXECUTE_WRITECOPY, PAGE_READWRITE, PAGE_EXECUTE_READWRITE = 0x08, 0x80, 0x04, 0x40
WRITECOPY_AS = {PAGE_WRITECOPY: PAGE_READWRITE, PAGE_EXECUTE_WRITECOPY: PAGE_EXECUTE_READWRITE}
# Larger transfers are recorded only up to this many bytes.
MAX_SOURCE_BYTES = 16 * 1024 * 1024
CRYPT_STRING_BASE64 = 0x1
ERROR_SUCCESS = 0
ERROR_INVALID_HANDLE = 6
ERROR_HANDLE_EOF = 38
ERROR_INVALID_PARAMETER = 87
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
        # Asked first to answer a CryptDecrypt (a key the project's handlers made: AES); None
        # leaves it to Speakeasy's handler.
        self.decrypt_first: Callable[[str, list[int]], int | None] | None = None
        # Told (address, size) of a write into the guest's own process by WriteProcessMemory or
        # NtWriteVirtualMemory, before it is made (it may patch a module's code, which needs
        # no VirtualProtect then).
        self.on_own_process_write: Callable[[int, int], None] | None = None
        # Told the address of each view of a section the guest mapped (code may run from it).
        self.on_view_mapped: Callable[[int], None] | None = None
        # Bytes written into each pipe (compat.pipe_key) and not read yet: (where the writer had them, the bytes).
        self.pipes: dict[int, list[tuple[int, bytes]]] = {}
        # pipe -> (where the read after the last one remembered would land, and its source)
        self.pipe_reads: dict[int, tuple[int, int]] = {}
        # The replay's APCs pending per thread id (ReplayServices.pending_apcs): ReadFileEx's
        # completion routine is queued there.
        self.pending_apcs: dict[int, list[tuple[int, tuple[int, ...]]]] | None = None
        # The guest's variable names as the scenario spells them, by lower-cased name (Speakeasy
        # keeps them lower-cased; Windows keeps their case).
        self.variable_names: dict[str, str] = {}

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
        self._wrap("ntdll", ("NtMapViewOfSection", "ZwMapViewOfSection"), self._map_section_view)
        self._wrap("ntdll", ("NtCreateSection", "ZwCreateSection"), self._create_section)
        self._wrap("kernel32", ("GetEnvironmentVariableA", "GetEnvironmentVariableW"), self._environment_variable)
        self._wrap("kernel32", ("ExpandEnvironmentStringsA", "ExpandEnvironmentStringsW"), self._expand_environment)
        self._wrap(
            "kernel32",
            ("GetEnvironmentStrings", "GetEnvironmentStringsA", "GetEnvironmentStringsW"),
            self._environment_block,
        )
        for name in ("getenv", "_wgetenv"):
            # Speakeasy has no handler for the C runtime's getenv: answered here from the same
            # variables GetEnvironmentVariable reads.
            self.se.add_api_hook(self._crt_getenv_hook(name), "msvcrt", name, argc=1, call_conv=se_arch.CALL_CONV_CDECL)
        self._wrap("msvcrt", ("fread",), self._crt_read)
        self._wrap("kernel32", ("WriteFile",), self._pipe_write)
        self._wrap("kernel32", ("ReadFile",), self._pipe_read)
        # Speakeasy has no ReadFileEx: a loader handing its payload as the completion routine
        # ended the replay as an unsupported API.
        self.se.add_api_hook(self._read_file_ex, "kernel32", "ReadFileEx", argc=5, call_conv=se_arch.CALL_CONV_STDCALL)

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
        answered = self.decrypt_first(name, argv) if self.decrypt_first is not None else None
        rv = int(orig(argv) or 0) if answered is None else answered
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
        if self.on_own_process_write is not None and compat.is_current_process(self.emu, process):
            self.on_own_process_write(address, size)
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
            self._view_mapped(name, argv[0], rv, (argv[2] << 32) | argv[3], argv[4])
        return rv

    def _create_section(self, name: str, orig: Any, argv: list[int]) -> int:
        # NtCreateSection(*SectionHandle, access, attributes, *MaximumSize, SectionPageProtection,
        # AllocationAttributes, FileHandle): SEC_IMAGE in the allocation attributes makes it an
        # image section of the file (module overloading, doppelganging's section).
        rv = int(orig(argv) or 0)
        if rv == 0 and argv[0] and argv[5] & compat.SEC_IMAGE:
            handle = int.from_bytes(self._read(argv[0], self.memory.ptr_size), "little")
            compat.mark_image_section(self.emu, handle)
        return rv

    def _map_section_view(self, name: str, orig: Any, argv: list[int]) -> int:
        # NtMapViewOfSection(SectionHandle, ProcessHandle, *BaseAddress, ZeroBits, CommitSize,
        # *SectionOffset, *ViewSize, InheritDisposition, AllocationType, Win32Protect): the same,
        # in this process or another (mapping injection: the views share the section's bytes).
        # Speakeasy's handler gives a copy-on-write protection no access at all (it knows only
        # the READ / READWRITE / EXECUTE bits): the view of an image section mapped
        # PAGE_EXECUTE_WRITECOPY, as the loader maps one, could not even be read. A private copy
        # of the page on write is what the guest sees as writable: READWRITE, EXECUTE_READWRITE.
        argv[9] = WRITECOPY_AS.get(argv[9] & 0xFFFFFFFF, argv[9])
        rv = int(orig(argv) or 0)
        base_at, offset_at, size_at = argv[2], argv[5], argv[6]
        base = int.from_bytes(self._read(base_at, self.memory.ptr_size), "little") if base_at else 0
        if rv == 0 and base:
            offset = int.from_bytes(self._read(offset_at, 8), "little") if offset_at else 0
            size = int.from_bytes(self._read(size_at, self.memory.ptr_size), "little") if size_at else 0
            self._view_mapped(name, argv[0], base, offset, size)
        return rv

    def _view_mapped(self, name: str, section: int, view: int, offset: int, size: int) -> None:
        compat.alias_section_views(self.emu, section, view)
        if self.on_view_mapped is not None:
            self.on_view_mapped(view)
        backing = compat.mapped_file(self.emu, section)
        if backing is None:
            return
        path, image = backing
        contents = compat.guest_file_data(self.emu, path) or b""
        if not image:  # an image section (SEC_IMAGE) is laid out by sections: the file is the source
            contents = contents[offset : offset + size] if size else contents[offset:]
        data = contents[:MAX_SOURCE_BYTES]
        if data:
            recorder = self.recorder
            digest = recorder.put_blob(data)
            recorder.emit(FileAccess, op="read", path=path, size=len(data), data_sha256=digest, address=view)
            recorder.remember_buffer("file_read", view, data, ref=path, api=name)

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

    def _remember_variable(self, address: int, data: bytes, ref: str, api: str, wide: bool) -> None:
        """A variable's value the guest received at ``address``, if long enough to be a payload
        (shorter ones are settings: paths, flags)."""
        if address and data and len(data) // (2 if wide else 1) >= MIN_COPY_BYTES:
            self.recorder.remember_buffer("environment_read", address, data, ref=ref, api=api)

    def _variables(self) -> dict[str, str]:
        return dict(self.emu.get_env())  # names lower-cased, as Speakeasy stores them

    def _expand_environment(self, name: str, orig: Any, argv: list[int]) -> int:
        # ExpandEnvironmentStrings(lpSrc, lpDst, nSize): the characters written with the
        # terminator, or the size needed. The expansion is an environment read when it holds a
        # long variable's value; its ref is the template (%NAME%, or the text around the names).
        src_ptr, dst, size = argv[:3]
        rv = int(orig(argv) or 0)
        wide = name.endswith("W")
        if not dst or not 1 < rv <= size:
            return rv
        text = read_c_string(self.memory, src_ptr, wide, 4 * STRING_CHUNK).decode(
            "utf-16-le" if wide else "latin-1", "replace"
        )
        variables = self._variables()
        values = [variables[part.lower()] for part in text.split("%")[1:-1:2] if part.lower() in variables]
        if values and max(len(value) for value in values) >= MIN_COPY_BYTES:
            data = self._read(dst, (rv - 1) * (2 if wide else 1))
            self._remember_variable(dst, data, text, f"kernel32.{name}", wide)
        return rv

    def _environment_block(self, name: str, orig: Any, argv: list[int]) -> int:
        # GetEnvironmentStrings(): a block of NAME=value strings, each NUL-terminated, ending with
        # an empty one. Each long value in it is an environment read at its own address.
        rv = int(orig(argv) or 0)
        wide = name.endswith("W")
        unit = 2 if wide else 1
        at = rv
        for _ in range(len(self._variables()) + 1):
            entry = read_c_string(self.memory, at, wide, MAX_SOURCE_BYTES) if at else b""
            if not entry:
                break
            text = entry.decode("utf-16-le", "replace") if wide else entry.decode("latin-1")
            equals = text.find("=", 1)  # "=C:=C:\\" entries start with one
            if equals > 0:
                variable = self.variable_names.get(text[:equals].lower(), text[:equals])
                if len(variable) == equals and variable != text[:equals]:
                    self.memory.write(at, variable.encode("utf-16-le" if wide else "latin-1", "replace"))
                start = (equals + 1) * unit
                self._remember_variable(at + start, entry[start:], f"%{variable}%", f"kernel32.{name}", wide)
            at += len(entry) + unit
        return rv

    def _crt_getenv_hook(self, name: str) -> Callable[[Any, str, Any, list[int]], int]:
        wide = name.startswith("_w")
        given: dict[str, tuple[int, str]] = {}  # variable -> (address, value) handed out

        def getenv(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
            # getenv(varname): a pointer to the value, NULL for a variable not set. Each variable
            # keeps its address while its value does not change, as in the CRT's environment.
            self.recorder.call_pc = compat.call_site(emu)
            try:
                variable = read_c_string(self.memory, argv[0], wide, 4 * STRING_CHUNK)
                label = variable.decode("utf-16-le" if wide else "latin-1", "replace")
                value = self._variables().get(label.lower())
                if not label or value is None:
                    return 0
                data = value.encode("utf-16-le" if wide else "latin-1", "replace")
                address, held = given.get(label.lower(), (0, ""))
                if not address or held != value:
                    address = int(self.emu.mem_map(len(data) + 2, tag=f"api.environment.{name}"))
                    self.memory.write(address, data + b"\0\0")
                    given[label.lower()] = (address, value)
                self._remember_variable(address, data, f"%{label}%", f"msvcrt.{name}", wide)
                return address
            finally:
                self.recorder.call_pc = None

        return getenv

    def _pipe_write(self, name: str, orig: Any, argv: list[int]) -> int:
        # WriteFile(hFile, lpBuffer, nNumberOfBytesToWrite, ...) into a pipe: what a read of the
        # other end will get, remembered with where the writer had it.
        handle, buffer, size = argv[:3]
        pipe = compat.is_pipe(self.emu, handle)
        data = self._read(buffer, size) if pipe else b""
        if data and self.on_copy_from is not None:
            self.on_copy_from(buffer, len(data))  # how guest code wrote them, if it did
        rv = int(orig(argv) or 0)
        if rv and pipe:
            slots = mailslots.mailslots_of(self.emu)
            if slots is not None:
                slots.posted(handle, size & 0xFFFFFFFF)  # a message, if a mailslot's writing end
        if rv and data:
            # Keyed by the pipe, not the handle: a mailslot's writing end is another handle.
            self.pipes.setdefault(compat.pipe_key(self.emu, handle), []).append((buffer, data))
        return rv

    def _pipe_read(self, name: str, orig: Any, argv: list[int]) -> int:
        # ReadFile(hFile, lpBuffer, nNumberOfBytesToRead, lpNumberOfBytesRead, ...) from a pipe:
        # the bytes moved from the writer's buffer to this one, an API copy (a file's read is
        # recorded as such by the engine's event).
        handle, buffer = argv[:2]
        slots = mailslots.mailslots_of(self.emu)
        if slots is not None:
            # A mailslot's read takes one message (or fails: too small a buffer, none waiting).
            limit, error = slots.read_limit(handle, argv[2] & 0xFFFFFFFF)
            if error is not None:
                if argv[3]:
                    self.memory.write(argv[3], b"\0\0\0\0")
                self.emu.set_last_error(error)
                return 0
            argv[2] = limit
        rv = int(orig(argv) or 0)
        if rv and slots is not None:
            slots.taken(handle)
        key = compat.pipe_key(self.emu, handle)
        pending = self.pipes.get(key)
        if not rv or not pending or not compat.is_pipe(self.emu, handle):
            return rv
        got = self._u32(argv[3]) if argv[3] else 0
        data = self._read(buffer, got)
        source, written = pending[0]
        if len(data) >= len(written):
            pending.pop(0)
        else:
            pending[0] = (source + len(data), written[len(data) :])
        # A short read right after the last one remembered, from right after its source, is its
        # tail (the last message of a payload posted in pieces): remembered too.
        follows = self.pipe_reads.get(key) == (buffer, source)
        if (len(data) >= MIN_COPY_BYTES or follows) and data and data.startswith(written[: len(data)]):
            self.pipe_reads[key] = (buffer + len(data), source + len(data))
            self.recorder.remember_buffer(
                "api_copy",
                buffer,
                data,
                ref="mailslot" if slots is not None and slots.is_slot(handle) else "pipe",
                input_data=data,
                input_address=source,
                api=f"kernel32.{name}",
            )
        return rv

    def _read_file_ex(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        # ReadFileEx(hFile, lpBuffer, nNumberOfBytesToRead, lpOverlapped, lpCompletionRoutine):
        # the bytes at the OVERLAPPED's offset, read at once (recorded as ReadFile's read is);
        # the completion routine (error, bytes, overlapped) is queued as an APC to the calling
        # thread, delivered at its next alertable moment (emulator/apis/threads.py).
        handle, buffer, size, overlapped, routine = argv[:5]
        path = compat.file_path_of_handle(emu, handle)
        if path is None:
            self.memory.set_last_error(ERROR_INVALID_HANDLE)
            return 0
        if not overlapped or not buffer:
            self.memory.set_last_error(ERROR_INVALID_PARAMETER)
            return 0
        ptr = self.memory.ptr_size
        offset = self._u32(overlapped + 2 * ptr) | self._u32(overlapped + 2 * ptr + 4) << 32
        content = compat.guest_file_data(emu, path) or b""
        if offset >= len(content):
            self.memory.set_last_error(ERROR_HANDLE_EOF)
            return 0
        data = content[offset : offset + min(size & 0xFFFFFFFF, MAX_SOURCE_BYTES)]
        self.memory.write(buffer, data)
        self.memory.write(overlapped, (0).to_bytes(ptr, "little"))  # Internal: STATUS_SUCCESS
        self.memory.write(overlapped + ptr, len(data).to_bytes(ptr, "little"))  # InternalHigh
        self.recorder.call_pc = compat.call_site(emu)
        try:
            digest = self.recorder.put_blob(data)
            self.recorder.emit(FileAccess, op="read", path=path, size=len(data), data_sha256=digest, address=buffer)
            self.recorder.remember_buffer("file_read", buffer, data, ref=path, api=f"kernel32.{api_name}")
        finally:
            self.recorder.call_pc = None
        if routine and self.pending_apcs is not None:
            self.pending_apcs.setdefault(self.memory.current_thread_id(), []).append(
                (routine, (0, len(data), overlapped))
            )
        self.memory.set_last_error(ERROR_SUCCESS)
        return 1

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
