"""ntdll's virtual-memory system calls, answered as kernel32's equivalents are.

Bare Speakeasy has no user-mode handler for ``NtAllocateVirtualMemory`` and
``NtProtectVirtualMemory`` (a call reaches its kernel-mode ``Zw*`` handler, which maps the region
with no access at all, ignores the address, the allocation type and the protection, and
returns success), nor for ``NtFreeVirtualMemory``. Loaders that avoid kernel32 (and every
loader making system calls itself, syscalls.py) allocate and protect with these: their memory
was unwritable. Here each is kernel32's ``VirtualAllocEx`` / ``VirtualProtectEx`` /
``VirtualFree`` (the same regions, tags, watches and protections), with the native calling
convention: addresses and sizes in and out through pointers, rounded to pages, and an NTSTATUS.
"""

from __future__ import annotations

from typing import Any

STATUS_SUCCESS = 0
STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_NO_MEMORY = 0xC0000017
STATUS_CONFLICTING_ADDRESSES = 0xC0000018
STATUS_INVALID_PAGE_PROTECTION = 0xC0000045
STATUS_MEMORY_NOT_ALLOCATED = 0xC00000A0
PAGE = 0x1000


def install(se: Any, ptr_size: int, space: Any = None) -> None:
    """``space`` (vmspace.AddressSpace) keeps its bookkeeping (reserved pages, protections,
    write watch) for these calls as for kernel32's."""
    mask = (1 << (8 * ptr_size)) - 1

    def read_ptr(emu: Any, address: int) -> int | None:
        try:
            return int.from_bytes(bytes(emu.mem_read(address, ptr_size)), "little")
        except Exception:  # noqa: BLE001 - the guest's bad pointer: STATUS_ACCESS_VIOLATION
            return None

    def write_ptr(emu: Any, address: int, value: int) -> bool:
        try:
            emu.mem_write(address, (value & mask).to_bytes(ptr_size, "little"))
        except Exception:  # noqa: BLE001
            return False
        return True

    def kernel32(emu: Any) -> Any:
        return emu.api.load_api_handler("kernel32")

    def call(emu: Any, api: str, argv: list[int]) -> Any:
        """kernel32's handler ``api``, through the address space's bookkeeping when there is one."""
        handler = getattr(kernel32(emu), api)
        run = lambda args: handler(emu, args)  # noqa: E731
        return run(argv) if space is None else space.through(api, run, argv)

    def allocate(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        """NtAllocateVirtualMemory(Process, *BaseAddress, ZeroBits, *RegionSize, AllocationType, Protect)."""
        process, base_ptr, _zero_bits, size_ptr, allocation_type, protect = argv
        base, size = read_ptr(emu, base_ptr), read_ptr(emu, size_ptr)
        if base is None or size is None:
            return STATUS_ACCESS_VIOLATION
        if not size:
            return STATUS_INVALID_PARAMETER
        address = call(emu, "VirtualAllocEx", [process, base, size, allocation_type, protect])
        if not address:
            return STATUS_CONFLICTING_ADDRESSES if base else STATUS_NO_MEMORY
        start = int(address) & ~(PAGE - 1)
        end = (int(address) + size + PAGE - 1) & ~(PAGE - 1)
        if not (write_ptr(emu, base_ptr, start) and write_ptr(emu, size_ptr, end - start)):
            return STATUS_ACCESS_VIOLATION
        return STATUS_SUCCESS

    def protect(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        """NtProtectVirtualMemory(Process, *BaseAddress, *RegionSize, NewProtect, *OldProtect)."""
        process, base_ptr, size_ptr, new_protect, old_ptr = argv
        base, size = read_ptr(emu, base_ptr), read_ptr(emu, size_ptr)
        if base is None or size is None or not old_ptr:
            return STATUS_ACCESS_VIOLATION
        if not call(emu, "VirtualProtectEx", [process, base, size, new_protect, old_ptr]):
            return STATUS_INVALID_PAGE_PROTECTION
        start = base & ~(PAGE - 1)
        end = (base + max(size, 1) + PAGE - 1) & ~(PAGE - 1)
        write_ptr(emu, base_ptr, start)
        write_ptr(emu, size_ptr, end - start)
        return STATUS_SUCCESS

    def free(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        """NtFreeVirtualMemory(Process, *BaseAddress, *RegionSize, FreeType)."""
        _process, base_ptr, size_ptr, free_type = argv
        base, size = read_ptr(emu, base_ptr), read_ptr(emu, size_ptr)
        if base is None or size is None:
            return STATUS_ACCESS_VIOLATION
        # Speakeasy's kernel32 has VirtualFree only (its processes share one address space)
        if not call(emu, "VirtualFree", [base, size, free_type]):
            return STATUS_MEMORY_NOT_ALLOCATED
        return STATUS_SUCCESS

    for prefix in ("Nt", "Zw"):
        se.add_api_hook(allocate, "ntdll", f"{prefix}AllocateVirtualMemory", argc=6)
        se.add_api_hook(protect, "ntdll", f"{prefix}ProtectVirtualMemory", argc=5)
        se.add_api_hook(free, "ntdll", f"{prefix}FreeVirtualMemory", argc=4)
