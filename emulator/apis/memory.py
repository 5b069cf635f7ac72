"""Memory queries as Windows answers them: ``VirtualQuery``, ``VirtualQueryEx`` and
``NtQueryVirtualMemory(MemoryBasicInformation)``.

Speakeasy 2.0.0b9 answers ``VirtualQuery`` with type 0 for every region, one region and one
protection for a whole image, no reserved state, and ERROR_INVALID_PARAMETER for any address
nothing is mapped at, so a loop walking the address space stops at the first hole. Here the
backend describes the address space (emulator/backends/speakeasy/vmspace.py): images
``MEM_IMAGE`` with one region per run of pages sharing a section protection, views of a section
``MEM_MAPPED``, everything else ``MEM_PRIVATE``; ``MEM_COMMIT`` / ``MEM_RESERVE`` / ``MEM_FREE``;
free regions up to the end of user space, past which the query fails as on Windows.
"""

from __future__ import annotations

import struct

from emulator.apis.core import GuestApi, MemoryRegion, apihook

# Region states and types (MEMORY_BASIC_INFORMATION.State / .Type).
MEM_COMMIT = 0x1000
MEM_RESERVE = 0x2000
MEM_DECOMMIT = 0x4000
MEM_RELEASE = 0x8000
MEM_FREE = 0x10000
MEM_PRIVATE = 0x20000
MEM_MAPPED = 0x40000
MEM_IMAGE = 0x1000000

# Page protections.
PAGE_NOACCESS = 0x01
PAGE_READONLY = 0x02
PAGE_READWRITE = 0x04
PAGE_WRITECOPY = 0x08
PAGE_EXECUTE = 0x10
PAGE_EXECUTE_READ = 0x20
PAGE_EXECUTE_READWRITE = 0x40
PAGE_EXECUTE_WRITECOPY = 0x80
# Modifiers a protection may carry beside one of the values above.
PAGE_MODIFIERS = 0x700  # PAGE_GUARD | PAGE_NOCACHE | PAGE_WRITECOMBINE

# The last user-mode address + 1 (MmHighestUserAddress + 1): a 64-bit Windows process, and a
# 32-bit Windows process without /LARGEADDRESSAWARE.
USER_END_X64 = 0x7FFFFFFF0000
USER_END_X86 = 0x7FFF0000

ERROR_BAD_LENGTH = 24
ERROR_INVALID_HANDLE = 6
ERROR_INVALID_PARAMETER = 87
ERROR_NOACCESS = 998
STATUS_SUCCESS = 0
STATUS_INVALID_INFO_CLASS = 0xC0000003
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_PARAMETER = 0xC000000D
MemoryBasicInformation = 0


def basic_information(region: MemoryRegion, ptr_size: int) -> bytes:
    """MEMORY_BASIC_INFORMATION as laid out at ``ptr_size`` (x64: PartitionId and padding zero)."""
    r = region
    d = 0xFFFFFFFF  # DWORD fields
    r = MemoryRegion(
        r.base, r.allocation_base, r.allocation_protect & d, r.size, r.state & d, r.protect & d, r.type & d
    )
    if ptr_size == 8:
        return struct.pack(
            "<QQIHHQIIII", r.base, r.allocation_base, r.allocation_protect, 0, 0, r.size, r.state, r.protect, r.type, 0
        )
    return struct.pack("<IIIIIII", r.base, r.allocation_base, r.allocation_protect, r.size, r.state, r.protect, r.type)


def _query(api: GuestApi, address: int, buffer: int, length: int) -> int:
    """The Win32 side: bytes written, or 0 with the last error Windows sets."""
    size = 48 if api.ptr_size == 8 else 28
    if length & ((1 << (8 * api.ptr_size)) - 1) < size:
        api.set_last_error(ERROR_BAD_LENGTH)
        return 0
    region = api.query_memory(address)
    if region is None:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    try:
        if not buffer:
            raise ValueError("NULL buffer")
        api.write(buffer, basic_information(region, api.ptr_size))
    except Exception:
        api.set_last_error(ERROR_NOACCESS)
        return 0
    return size


@apihook("kernel32", "VirtualQuery", argc=3)
def virtual_query(api: GuestApi, argv: list[int]) -> int:
    address, buffer, length = argv
    return _query(api, address, buffer, length)


@apihook("kernel32", "VirtualQueryEx", argc=4)
def virtual_query_ex(api: GuestApi, argv: list[int]) -> int:
    """Another process's memory is the guest's own (processes share one address space here)."""
    process, address, buffer, length = argv
    target = api.object_of(process)
    if target is None or target.kind != "process":
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    return _query(api, address, buffer, length)


@apihook("ntdll", ["NtQueryVirtualMemory", "ZwQueryVirtualMemory"], argc=6)
def nt_query_virtual_memory(api: GuestApi, argv: list[int]) -> int:
    """MemoryBasicInformation answered; the other classes refused as an unknown class."""
    process, address, info_class, buffer, length, return_length = argv
    target = api.object_of(process)
    if target is None or target.kind != "process":
        return STATUS_INVALID_HANDLE
    if info_class & 0xFFFFFFFF != MemoryBasicInformation:
        return STATUS_INVALID_INFO_CLASS
    size = 48 if api.ptr_size == 8 else 28
    if length & ((1 << (8 * api.ptr_size)) - 1) < size:
        return STATUS_INFO_LENGTH_MISMATCH
    region = api.query_memory(address)
    if region is None:
        return STATUS_INVALID_PARAMETER
    try:
        api.write(buffer, basic_information(region, api.ptr_size))
        api.write_ptr(return_length, size)
    except Exception:
        return STATUS_ACCESS_VIOLATION
    return STATUS_SUCCESS
