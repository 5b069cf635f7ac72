"""The contract between project-side API handlers and the engine backend.

A handler is a plain function ``handler(api: GuestApi, argv: list[int]) -> int`` registered
with :func:`apihook`, in the manner of Speakeasy's own ``@apihook`` decorator. It never sees
the engine: the backend gives it a :class:`GuestApi` (guest memory, last error) and the
replay's :class:`ReplayServices` (clock, randomness, network, recorder).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from emulator.limits import MAX_RENDERED_STRING

PAGE_SIZE = 0x1000
# Bytes read at a time by GuestApi.read_string (never across a page boundary).
STRING_CHUNK = 256


@dataclass(frozen=True)
class GuestObject:
    """What a handle names in the guest: ``kind`` "process" (``id`` its process id, with its
    parent's and its PEB), "thread" (``id`` its thread id, with its process's id in
    ``parent_id`` and its TEB) or "other" (a file, a key, an event)."""

    kind: Literal["process", "thread", "other"]
    id: int = 0
    parent_id: int = 0
    peb: int = 0
    teb: int = 0


@dataclass(frozen=True)
class MemoryRegion:
    """One region of the guest's address space as ``VirtualQuery`` describes it (a
    MEMORY_BASIC_INFORMATION): pages from ``base`` on sharing one allocation, state, protection
    and type. Values are Windows' (``MEM_*``, ``PAGE_*``: emulator/apis/memory.py)."""

    base: int
    allocation_base: int
    allocation_protect: int
    size: int
    state: int
    protect: int
    type: int


class GuestMemory(Protocol):
    ptr_size: int

    def read(self, address: int, size: int) -> bytes: ...

    def write(self, address: int, data: bytes) -> None: ...

    def alloc(self, size: int, tag: str) -> int: ...

    def set_last_error(self, code: int) -> None: ...

    def write_file(self, path: str, data: bytes) -> None: ...

    def call_guest(self, function: int, args: list[int], result_from_callback: bool = False) -> None: ...

    def object_of(self, handle: int) -> GuestObject | None: ...

    def query_memory(self, address: int) -> MemoryRegion | None: ...

    def current_thread_id(self) -> int: ...

    def load_context(self, address: int) -> bool: ...

    def start_thread(
        self,
        function: int,
        param: int,
        suspended: bool = False,
        process: int | None = None,
        args: tuple[int, ...] | None = None,
    ) -> tuple[int, int, int]: ...


class GuestApi:
    """What a handler may do to the guest: typed reads and writes over :class:`GuestMemory`."""

    def __init__(self, memory: GuestMemory, services: ReplayServicesLike, api_name: str, module: str = "") -> None:
        self.memory = memory
        self.services = services
        self.api_name = api_name
        self.module = module.lower()
        self.ptr_size = memory.ptr_size

    @property
    def qualified_name(self) -> str:
        """``module.Function``, the one spelling of an API name in events and the report."""
        return f"{self.module}.{self.api_name}" if self.module else self.api_name

    def read(self, address: int, size: int) -> bytes:
        return self.memory.read(address, size) if size > 0 else b""

    def write(self, address: int, data: bytes) -> None:
        if address and data:
            self.memory.write(address, data)

    def read_u32(self, address: int) -> int:
        return int.from_bytes(self.read(address, 4), "little")

    def write_u32(self, address: int, value: int) -> None:
        if address:
            self.write(address, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def write_u64(self, address: int, value: int) -> None:
        if address:
            self.write(address, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    def write_ptr(self, address: int, value: int) -> None:
        if address:
            self.write(address, value.to_bytes(self.ptr_size, "little"))

    def read_string(self, address: int, wide: bool, max_chars: int = MAX_RENDERED_STRING) -> str:
        """A NUL-terminated guest string, read in chunks so a long string costs few reads.

        A chunk never crosses a page boundary, so a string ending just below the end of its
        region (the top of the stack, the last page of an allocation) is read whole.
        """
        if not address:
            return ""
        unit = 2 if wide else 1
        limit = max_chars * unit
        out = bytearray()
        position = address
        while len(out) < limit:
            # Up to the next page boundary, at most STRING_CHUNK bytes, whole characters only.
            size = min(STRING_CHUNK, PAGE_SIZE - position % PAGE_SIZE, limit - len(out))
            size = max(size - size % unit, unit)
            try:
                data = self.read(position, size)
            except Exception:
                break
            for i in range(0, len(data) - unit + 1, unit):
                if data[i : i + unit] == b"\0" * unit:
                    out += data[:i]
                    return _decode(bytes(out), wide)
            out += data
            position += len(data)
            if not data:
                break
        return _decode(bytes(out[:limit]), wide)

    def read_counted_string(self, address: int, length: int, wide: bool) -> str:
        """A string of ``length`` characters, or NUL-terminated when length is -1 / 0xFFFFFFFF."""
        if length in (-1, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
            return self.read_string(address, wide, max_chars=1 << 16)
        unit = 2 if wide else 1
        return _decode(self.read(address, min(length, 1 << 16) * unit), wide)

    def write_string(self, address: int, text: str, wide: bool) -> int:
        data = text.encode("utf-16-le" if wide else "latin-1", "replace") + (b"\0\0" if wide else b"\0")
        self.write(address, data)
        return len(data)

    def alloc(self, size: int, tag: str) -> int:
        return self.memory.alloc(size, tag)

    def set_last_error(self, code: int) -> None:
        self.memory.set_last_error(code)

    def object_of(self, handle: int) -> GuestObject | None:
        """What ``handle`` names (pseudo handles included), or None for a handle that names nothing."""
        return self.memory.object_of(handle)

    def query_memory(self, address: int) -> MemoryRegion | None:
        """The region of the guest's address space from ``address``'s page on (free regions
        included), or None for an address past the end of user space."""
        return self.memory.query_memory(address)

    def write_file(self, path: str, data: bytes) -> None:
        """Create or replace ``path`` in the guest's file system, recorded as the guest writing it."""
        self.memory.write_file(path, data)

    def call_guest(self, function: int, args: list[int], result_from_callback: bool = False) -> None:
        """Call the guest's ``function(*args)`` (stdcall, a CALLBACK) when this API returns; then
        the API returns its value to its caller. Several calls run in the order made. With
        ``result_from_callback``, a callback returning FALSE ends them and the API returns FALSE."""
        self.memory.call_guest(function, args, result_from_callback)

    def current_thread_id(self) -> int:
        """The id of the thread making this call."""
        return self.memory.current_thread_id()

    def load_context(self, address: int) -> bool:
        """Resume the calling thread with the CONTEXT record at ``address`` (its registers, pc
        and stack pointer), as ``NtContinue`` does: the API does not return to its caller.
        False when the record cannot be read (nothing changed)."""
        return self.memory.load_context(address)

    def start_thread(
        self,
        function: int,
        param: int,
        suspended: bool = False,
        process: int | None = None,
        args: tuple[int, ...] | None = None,
    ) -> tuple[int, int, int]:
        """A new thread running ``function(param)`` (``function(*args)`` when given: a thread-pool
        callback's instance, context and object) in the guest process, or in the process the
        handle ``process`` names: (handle, thread id, process id); (0, 0, 0) for an unknown
        process handle or when the emulator runs no more threads."""
        return self.memory.start_thread(function, param, suspended, process, args)


def _decode(data: bytes, wide: bool) -> str:
    return data.decode("utf-16-le", "replace") if wide else data.decode("latin-1")


class ReplayServicesLike(Protocol):
    """Implemented by :class:`emulator.services.ReplayServices` (kept abstract to avoid a cycle)."""


CallConv = Literal["stdcall", "cdecl"]
HandlerFunc = Callable[[GuestApi, list[int]], int]


@dataclass(frozen=True)
class ApiHandler:
    module: str
    name: str
    argc: int
    conv: CallConv
    func: HandlerFunc
    # The result is 64 bits wide (ULONGLONG, __time64_t): on x86 it is returned in EDX:EAX.
    ret64: bool = False


HANDLERS: list[ApiHandler] = []


def apihook(
    module: str, names: str | list[str], argc: int, conv: CallConv = "stdcall", ret64: bool = False
) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register ``func`` as the project-side handler of ``module.name`` (each of ``names``)."""

    def register(func: HandlerFunc) -> HandlerFunc:
        for name in [names] if isinstance(names, str) else names:
            HANDLERS.append(ApiHandler(module.lower(), name, argc, conv, func, ret64))
        return func

    return register


def is_wide(api: GuestApi) -> bool:
    return api.api_name.endswith("W")
