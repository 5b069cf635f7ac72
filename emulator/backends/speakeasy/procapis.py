"""APIs whose answers Windows reads from the process blocks or KUSER_SHARED_DATA, answered from
the same memory the guest can read itself (guest.py fills it), so the two agree:

* ``TlsGetValue`` / ``TlsSetValue`` use TEB.TlsSlots (the first 64 indexes): a value set with the
  API is in the TEB, a value the guest writes there is what the API returns (Speakeasy kept a
  Python list nothing else saw);
* ``GetCurrentThreadStackLimits`` is (TEB.DeallocationStack, TEB.StackBase); ``GetThreadLocale``
  is TEB.CurrentLocale (Speakeasy said 0xC000);
* ``GetProcessHeaps`` lists PEB.ProcessHeaps; ``GetProcessAffinityMask`` is every processor's
  bit (PEB.ActiveProcessAffinityMask; Speakeasy said 1 processor); ``GetLargePageMinimum`` is
  KUSER_SHARED_DATA.LargePageMinimum; ``IsProcessorFeaturePresent`` reads
  KUSER_SHARED_DATA.ProcessorFeatures, filled from the guest's CPUID (Speakeasy's own table
  disagreed with both); ``RtlGetNtVersionNumbers`` is the configured version (Speakeasy said
  build 19041 whatever the configuration);
* ``SetEnvironmentVariable`` rebuilds the PEB's environment block (a NULL value deletes the
  variable, as on Windows; Speakeasy kept it);
* ``SetCurrentDirectory`` updates the PEB's CurrentDirectory, which ``GetCurrentDirectory``
  agrees with; ``DuplicateHandle`` of a kernel object (a pseudo handle too) gives a new handle to
  it (Speakeasy returned TRUE and wrote nothing);
* ``GetVersionEx`` with an OSVERSIONINFOEX fills the EX fields (service pack, suite mask and
  product type, KUSER_SHARED_DATA's): Speakeasy filled the small structure only.
"""

from __future__ import annotations

import struct
from typing import Any

from emulator.backends.speakeasy import compat, compat_blocks
from emulator.backends.speakeasy.guest import (
    KUSER_LARGE_PAGE_MINIMUM,
    KUSER_NT_PRODUCT_TYPE,
    KUSER_PROCESSOR_FEATURES,
    KUSER_SHARED_DATA,
    KUSER_SUITE_MASK,
    TEB_DEALLOCATION_STACK,
    TEB_TLS_SLOTS,
    TLS_MINIMUM_AVAILABLE,
    write_environment,
)

ERROR_INVALID_HANDLE = 6
ERROR_INVALID_PARAMETER = 87
ERROR_FILE_NOT_FOUND = 2
ERROR_PARTIAL_COPY = 299
PAGE = 0x1000
MAX_CHECKED_PAGES = 1 << 16  # of a ReadProcessMemory range (256 MiB)
PROCESSOR_FEATURE_COUNT = 64
# OSVERSIONINFOEXA / W: their sizes, and where wServicePackMajor starts (after szCSDVersion).
OSVERSIONINFOEX_SIZES = {156: 148, 284: 276}  # size -> offset of wServicePackMajor
# PEB.CurrentDirectory.DosPath's buffer holds MAX_PATH characters, as RtlSetCurrentDirectory_U's.
CURRENT_DIRECTORY_CHARS = 260
# RTL_USER_PROCESS_PARAMETERS.CurrentDirectory.DosPath (a UNICODE_STRING), x64 and x86.
PARAMETERS_CURRENT_DIRECTORY = {True: 0x38, False: 0x24}
PEB_PROCESS_PARAMETERS = {True: 0x20, False: 0x10}
PEB_PROCESS_HEAPS = {True: (0xE8, 0xF0), False: (0x88, 0x90)}  # NumberOfHeaps, ProcessHeaps


def install(se: Any, emu: Any, x64: bool) -> None:
    ptr = 8 if x64 else 4

    def read_ptr(address: int) -> int:
        return int.from_bytes(bytes(emu.mem_read(address, ptr)), "little")

    def teb() -> int:
        thread = emu.get_current_thread()
        block = getattr(thread, "teb", None) if thread is not None else None
        return int(getattr(block, "address", 0) or 0)

    def peb() -> int:
        process = emu.get_current_process()
        return compat_blocks.peb_address(process) if process is not None else 0

    def slots_held() -> bool:
        return bool(teb()) and compat_blocks.teb_holds(emu, teb(), TEB_TLS_SLOTS[x64])

    def tls_set(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        index = argv[0] & 0xFFFFFFFF
        if rv and index < TLS_MINIMUM_AVAILABLE and slots_held():
            value = (argv[1] & ((1 << (8 * ptr)) - 1)).to_bytes(ptr, "little")
            emu.mem_write(teb() + TEB_TLS_SLOTS[x64] + index * ptr, value)
        return rv

    def tls_get(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)  # its checks of the index and its last error
        index = argv[0] & 0xFFFFFFFF
        if index < TLS_MINIMUM_AVAILABLE and slots_held() and emu.get_last_error() == 0:
            return read_ptr(teb() + TEB_TLS_SLOTS[x64] + index * ptr)
        return rv

    se.add_api_hook(tls_set, "kernel32", "TlsSetValue")
    se.add_api_hook(tls_get, "kernel32", "TlsGetValue")

    def stack_limits(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        low_out, high_out = argv[0], argv[1]
        block = teb()
        if block:
            high = read_ptr(block + ptr)  # NtTib.StackBase
            if compat_blocks.teb_holds(emu, block, TEB_DEALLOCATION_STACK[x64]):
                low = read_ptr(block + TEB_DEALLOCATION_STACK[x64])
            else:  # the stack's allocation base, which DeallocationStack holds on Windows
                stack = emu.get_address_map(high - 1) if high else None
                low = int(stack.base) if stack is not None else read_ptr(block + 2 * ptr)
            emu.mem_write(low_out, low.to_bytes(ptr, "little"))
            emu.mem_write(high_out, high.to_bytes(ptr, "little"))
        return 0

    se.add_api_hook(stack_limits, "kernel32", "GetCurrentThreadStackLimits", argc=2)

    def thread_locale(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        block = teb()
        if not block:
            return orig(argv)
        return int.from_bytes(bytes(emu.mem_read(block + (0x108 if x64 else 0xC4), 4)), "little")

    se.add_api_hook(thread_locale, "kernel32", "GetThreadLocale", argc=0)

    def process_heaps(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        count_at, list_at = PEB_PROCESS_HEAPS[x64]
        block = peb()
        if not block:
            return 0
        count = int.from_bytes(bytes(emu.mem_read(block + count_at, 4)), "little")
        heaps = read_ptr(block + list_at)
        wanted, buffer = argv[0] & 0xFFFFFFFF, argv[1]
        if buffer and wanted >= count and heaps:
            emu.mem_write(buffer, bytes(emu.mem_read(heaps, count * ptr)))
        return count

    se.add_api_hook(process_heaps, "kernel32", "GetProcessHeaps", argc=2)

    def affinity(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        if compat.object_of(emu, argv[0]) is None:
            emu.set_last_error(ERROR_INVALID_HANDLE)
            return 0
        block = peb()
        mask = read_ptr(block + (0x138 if x64 else 0xC0)) if block else 1
        for out in argv[1:3]:
            if out:
                emu.mem_write(out, mask.to_bytes(ptr, "little"))
        return 1

    se.add_api_hook(affinity, "kernel32", "GetProcessAffinityMask", argc=3)

    def large_page_minimum(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        return int.from_bytes(bytes(emu.mem_read(KUSER_SHARED_DATA + KUSER_LARGE_PAGE_MINIMUM, 4)), "little")

    se.add_api_hook(large_page_minimum, "kernel32", "GetLargePageMinimum", argc=0)

    def feature_present(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        feature = argv[0] & 0xFFFFFFFF
        if feature >= PROCESSOR_FEATURE_COUNT:
            return 0
        return 1 if bytes(emu.mem_read(KUSER_SHARED_DATA + KUSER_PROCESSOR_FEATURES + feature, 1))[0] else 0

    se.add_api_hook(feature_present, "kernel32", "IsProcessorFeaturePresent", argc=1)

    def nt_version_numbers(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        major, minor, build = compat_blocks.os_version(emu)
        for out, value in zip(argv[:3], (major, minor, 0xF0000000 | (build & 0xFFFF)), strict=False):
            if out:
                emu.mem_write(out, struct.pack("<I", value))
        return 0

    se.add_api_hook(nt_version_numbers, "ntdll", "RtlGetNtVersionNumbers", argc=3)

    def set_current_directory(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        if rv:
            _update_current_directory(emu, peb(), x64, read_ptr)
        return rv

    for name in ("SetCurrentDirectoryA", "SetCurrentDirectoryW"):
        se.add_api_hook(set_current_directory, "kernel32", name, argc=1)

    def duplicate_handle(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        source_process, source, _target_process, target = argv[:4]
        obj = compat.object_of(emu, source)
        if compat.object_of(emu, source_process) is None:
            emu.set_last_error(ERROR_INVALID_HANDLE)
            return 0
        if obj is None:
            return orig(argv)  # a file, a key, ...: Speakeasy's answer
        handle = compat.new_handle_to(emu, obj)
        if not handle:
            return orig(argv)
        if target:
            emu.mem_write(target, handle.to_bytes(ptr, "little"))
        return 1

    se.add_api_hook(duplicate_handle, "kernel32", "DuplicateHandle", argc=7)

    def open_named(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        if not rv and len(argv) > 2 and argv[2]:
            emu.set_last_error(ERROR_FILE_NOT_FOUND)  # no object of that name (Speakeasy: 87 or 3)
        return rv

    for name in ("OpenMutexA", "OpenMutexW", "OpenEventA", "OpenEventW", "OpenSemaphoreA", "OpenSemaphoreW"):
        se.add_api_hook(open_named, "kernel32", name, argc=3)

    spellings: dict[str, str] = {}  # lower-cased name -> as the guest or the scenario spelled it

    def set_variable(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        wide = api_name.endswith("W")
        name = _c_string(emu, argv[0], wide) if argv and argv[0] else ""
        if rv and name:
            spellings[name.lower()] = name
            if len(argv) > 1 and not argv[1]:
                emu.get_env().pop(name.lower(), None)  # a NULL value deletes (Speakeasy kept it)
            write_environment(emu, peb(), x64, spellings)
        return rv

    for name in ("SetEnvironmentVariableA", "SetEnvironmentVariableW"):
        se.add_api_hook(set_variable, "kernel32", name, argc=2)

    def read_process_memory(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        process, address, _buffer, size, done = argv[:5]
        if (
            compat.is_current_process(emu, process)
            and size
            and not _readable(emu, address, size & ((1 << (8 * ptr)) - 1))
        ):
            # Unmapped memory of the own process: nothing is copied (Speakeasy copied zeros).
            if done:
                emu.mem_write(done, (0).to_bytes(ptr, "little"))
            emu.set_last_error(ERROR_PARTIAL_COPY)
            return 0
        return orig(argv)

    se.add_api_hook(read_process_memory, "kernel32", "ReadProcessMemory", argc=5)

    # GetCurrentThread is the pseudo handle (HANDLE)-2, as GetCurrentProcess is (HANDLE)-1
    # (Speakeasy made a new real handle at each call); every handler resolves both.
    compat.resolve_pseudo_handles(emu)

    def current_thread(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        return (1 << (8 * ptr)) - 2

    se.add_api_hook(current_thread, "kernel32", "GetCurrentThread", argc=0)

    def process_id(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        obj = compat.object_of(emu, argv[0])
        pid = getattr(obj, "pid", None) if obj is not None else None
        if not isinstance(pid, int):
            emu.set_last_error(ERROR_INVALID_HANDLE)
            return 0
        return pid

    se.add_api_hook(process_id, "kernel32", "GetProcessId", argc=1)


def fill_version_ex(emu: Any, info: int) -> None:
    """The OSVERSIONINFOEX part of a GetVersionEx answer, when the structure is one (its size
    says so): no service pack, KUSER_SHARED_DATA's suite mask and product type."""
    try:
        size = int.from_bytes(bytes(emu.mem_read(info, 4)), "little")
        at = OSVERSIONINFOEX_SIZES.get(size)
        if at is None:
            return
        suite = int.from_bytes(bytes(emu.mem_read(KUSER_SHARED_DATA + KUSER_SUITE_MASK, 2)), "little")
        product = bytes(emu.mem_read(KUSER_SHARED_DATA + KUSER_NT_PRODUCT_TYPE, 1))[0]
        # wServicePackMajor, wServicePackMinor, wSuiteMask, wProductType, wReserved
        emu.mem_write(info + at, struct.pack("<HHHBB", 0, 0, suite, product, 0))
    except Exception:
        return


def _readable(emu: Any, address: int, size: int) -> bool:
    """Whether every page of [address, address + size) is mapped (a longer range is taken as
    readable: Speakeasy's handler meets it)."""
    first, last = address // PAGE, (address + size - 1) // PAGE
    if last - first >= MAX_CHECKED_PAGES:
        return True
    page = first
    while page <= last:
        mm = emu.get_address_map(page * PAGE)
        if mm is None:
            return False
        page = max(page + 1, (int(mm.base) + int(mm.size)) // PAGE)
    return True


def _c_string(emu: Any, address: int, wide: bool, max_chars: int = 32767) -> str:
    unit = 2 if wide else 1
    data = b""
    try:
        while len(data) < max_chars * unit:
            chunk = bytes(emu.mem_read(address + len(data), 64))
            data += chunk
            for at in range(0, len(data) - unit + 1, unit):
                if data[at : at + unit] == b"\0" * unit:
                    return data[:at].decode("utf-16-le" if wide else "latin-1", "replace")
    except Exception:
        pass
    return ""


def _update_current_directory(emu: Any, peb: int, x64: bool, read_ptr: Any) -> None:
    """PEB.ProcessParameters.CurrentDirectory.DosPath: the current directory with a trailing
    backslash, in a MAX_PATH buffer of its own (the first change allocates it)."""
    if not peb:
        return
    parameters = read_ptr(peb + PEB_PROCESS_PARAMETERS[x64])
    if not parameters:
        return
    path = str(compat.current_directory(emu) or "")
    if not path:
        return
    if not path.endswith("\\"):
        path += "\\"
    data = path.encode("utf-16-le")[: (CURRENT_DIRECTORY_CHARS - 1) * 2]
    string = parameters + PARAMETERS_CURRENT_DIRECTORY[x64]
    maximum = int.from_bytes(bytes(emu.mem_read(string + 2, 2)), "little")
    buffer = read_ptr(string + (8 if x64 else 4))
    if maximum < CURRENT_DIRECTORY_CHARS * 2 or not buffer:
        buffer = emu.mem_map(CURRENT_DIRECTORY_CHARS * 2, tag="emu.current_directory")
        maximum = CURRENT_DIRECTORY_CHARS * 2
    emu.mem_write(buffer, data + b"\0\0")
    emu.mem_write(string, struct.pack("<HH", len(data), maximum))
    emu.mem_write(string + (8 if x64 else 4), buffer.to_bytes(8 if x64 else 4, "little"))
