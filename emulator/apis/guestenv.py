"""What the guest machine says about itself: paths, hardware, screen, cursor, debugger state.

Values come from the scenario's ``[environment]`` (:class:`emulator.environment.GuestEnvironment`)
and are those of an ordinary workstation by default, so a sample's sandbox and debugger checks
see a real machine (see docs/limitations.md for what can still tell).
"""

from __future__ import annotations

import struct

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, GuestObject, apihook, is_wide
from emulator.environment import PROCESSOR_REVISION

STATUS_SUCCESS = 0
STATUS_INVALID_INFO_CLASS = 0xC0000003
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_PENDING = 0x103
STATUS_PORT_NOT_SET = 0xC0000353
ProcessBasicInformation = 0
ProcessDebugPort = 7
ProcessWow64Information = 0x1A
ThreadBasicInformation = 0
ThreadHideFromDebugger = 0x11
NORMAL_BASE_PRIORITY = 8
ProcessDebugObjectHandle = 0x1E
ProcessDebugFlags = 0x1F
ERROR_NOACCESS = 998
GIB = 1 << 30
MIB = 1 << 20

# GetSystemMetrics indices a sandbox check looks at, and what an ordinary desktop answers.
SM_CXSCREEN, SM_CYSCREEN = 0, 1
SM_MOUSEPRESENT = 19
SM_CMOUSEBUTTONS = 43
SM_CLEANBOOT = 67
SM_CXVIRTUALSCREEN, SM_CYVIRTUALSCREEN = 78, 79
SM_CMONITORS = 80
SM_REMOTESESSION = 0x1000


def _temp_path(api: GuestApi) -> str:
    temp = _services(api).variables.get("temp") or "C:\\Windows\\Temp"
    return temp if temp.endswith("\\") else temp + "\\"


@apihook("kernel32", ["GetTempPathA", "GetTempPathW", "GetTempPath2A", "GetTempPath2W"], argc=2)
def get_temp_path(api: GuestApi, argv: list[int]) -> int:
    """GetTempPath: %TMP% / %TEMP% always ending in a backslash, as Windows returns it."""
    size, buffer = argv[0] & 0xFFFFFFFF, argv[1]
    path = _temp_path(api)
    if not buffer or size <= len(path):
        return len(path) + 1  # the size needed, with the terminating NUL
    try:
        api.write_string(buffer, path, is_wide(api))
    except Exception:
        api.set_last_error(ERROR_NOACCESS)
        return 0
    return len(path)


@apihook("kernel32", ["GetSystemInfo", "GetNativeSystemInfo"], argc=1)
def get_system_info(api: GuestApi, argv: list[int]) -> int:
    guest = _services(api).guest
    processors = guest.processors
    mask = (1 << min(processors, api.ptr_size * 8)) - 1
    if api.ptr_size == 8:
        info = struct.pack(
            "<HHIQQQIIIHH",
            9,
            0,
            0x1000,
            0x10000,
            0x7FFFFFFEFFFF,
            mask,
            processors,
            8664,
            0x10000,
            6,
            PROCESSOR_REVISION,
        )
    else:
        info = struct.pack(
            "<HHIIIIIIIHH", 0, 0, 0x1000, 0x10000, 0x7FFEFFFF, mask, processors, 586, 0x10000, 6, PROCESSOR_REVISION
        )
    api.write(argv[0], info)
    return 0


@apihook("kernel32", ["GetActiveProcessorCount", "GetMaximumProcessorCount"], argc=1)
def get_active_processor_count(api: GuestApi, argv: list[int]) -> int:
    """DWORD GetActiveProcessorCount(WORD GroupNumber): the machine's processors in group 0 or
    ALL_PROCESSOR_GROUPS (0xFFFF), 0 for a group it does not have (ERROR_INVALID_PARAMETER).
    It was signature-emulated: 0 processors, where GetSystemInfo said the configured count."""
    group = argv[0] & 0xFFFF
    if group not in (0, 0xFFFF):
        api.set_last_error(87)
        return 0
    return _services(api).guest.processors


@apihook("kernel32", ["GetActiveProcessorGroupCount", "GetMaximumProcessorGroupCount"], argc=0)
def get_active_processor_group_count(api: GuestApi, argv: list[int]) -> int:
    return 1


@apihook("kernel32", "GlobalMemoryStatusEx", argc=1)
def global_memory_status_ex(api: GuestApi, argv: list[int]) -> int:
    total = _services(api).guest.memory_mb * MIB
    avail = total * 11 // 20
    virtual = (1 << 47) - (1 << 17) if api.ptr_size == 8 else 2 * GIB - (1 << 17)
    api.write(
        argv[0],
        struct.pack(
            "<IIQQQQQQQ", 64, 45, total, avail, total + 4 * GIB, avail + 2 * GIB, virtual, virtual - 64 * MIB, 0
        ),
    )
    return 1


@apihook("kernel32", "GetPhysicallyInstalledSystemMemory", argc=1)
def get_physically_installed_system_memory(api: GuestApi, argv: list[int]) -> int:
    """The installed memory in KiB: what GlobalMemoryStatusEx reports as total, not less."""
    if not argv[0]:
        api.set_last_error(87)  # ERROR_INVALID_PARAMETER
        return 0
    api.write_u64(argv[0], _services(api).guest.memory_mb * 1024)
    return 1


@apihook("kernel32", ["GetDiskFreeSpaceExA", "GetDiskFreeSpaceExW"], argc=4)
def get_disk_free_space_ex(api: GuestApi, argv: list[int]) -> int:
    guest = _services(api).guest
    _root, avail, total, free = argv
    for pointer, value in (
        (avail, guest.disk_free_gb * GIB),
        (total, guest.disk_gb * GIB),
        (free, guest.disk_free_gb * GIB),
    ):
        api.write_u64(pointer, value)
    return 1


@apihook("kernel32", ["GetDiskFreeSpaceA", "GetDiskFreeSpaceW"], argc=5)
def get_disk_free_space(api: GuestApi, argv: list[int]) -> int:
    guest = _services(api).guest
    _root, sectors_per_cluster, bytes_per_sector, free_clusters, total_clusters = argv
    cluster = 8 * 512
    api.write_u32(sectors_per_cluster, 8)
    api.write_u32(bytes_per_sector, 512)
    api.write_u32(free_clusters, min(guest.disk_free_gb * GIB // cluster, 0xFFFFFFFF))
    api.write_u32(total_clusters, min(guest.disk_gb * GIB // cluster, 0xFFFFFFFF))
    return 1


@apihook("user32", "GetSystemMetrics", argc=1)
def get_system_metrics(api: GuestApi, argv: list[int]) -> int:
    width, height = _services(api).guest.screen
    index = argv[0] & 0xFFFFFFFF
    return {
        SM_CXSCREEN: width,
        SM_CYSCREEN: height,
        SM_CXVIRTUALSCREEN: width,
        SM_CYVIRTUALSCREEN: height,
        SM_CMONITORS: 1,
        SM_MOUSEPRESENT: 1,
        SM_CMOUSEBUTTONS: 5,
        SM_CLEANBOOT: 0,
        SM_REMOTESESSION: 0,
    }.get(index, 0)


@apihook("user32", "GetCursorPos", argc=1)
def get_cursor_pos(api: GuestApi, argv: list[int]) -> int:
    """The cursor drifts with virtual time, as a user's hand would move it (never the same spot twice in a row)."""
    services = _services(api)
    width, height = services.guest.screen
    step = services.clock.elapsed_units() // 10_000 + services.clock.api_calls
    x = (width // 3 + 7 * step) % max(width, 1)
    y = (height // 2 + 3 * step) % max(height, 1)
    if not argv[0]:
        return 0
    api.write(argv[0], struct.pack("<ii", x, y))
    return 1


@apihook("ntdll", ["NtQueryInformationProcess", "ZwQueryInformationProcess"], argc=5)
def nt_query_information_process(api: GuestApi, argv: list[int]) -> int:
    """The debugger-related classes answer "no debugger"; ProcessBasicInformation and
    ProcessWow64Information as Windows fills them; other classes are refused as Windows refuses
    an unknown class."""
    process, info_class, buffer, length, return_length = argv
    info_class &= 0xFFFFFFFF
    length &= 0xFFFFFFFF
    if info_class == ProcessDebugPort:
        answer, status = bytes(api.ptr_size), STATUS_SUCCESS
    elif info_class == ProcessDebugObjectHandle:
        answer, status = bytes(api.ptr_size), STATUS_PORT_NOT_SET
    elif info_class == ProcessDebugFlags:
        answer, status = (1).to_bytes(4, "little"), STATUS_SUCCESS  # 1: NoDebugInherit clear, not debugged
    elif info_class == ProcessBasicInformation:
        target = api.object_of(process)
        if target is None or target.kind != "process":
            return STATUS_INVALID_HANDLE
        answer, status = _basic_information(api, target.peb, target.id, target.parent_id), STATUS_SUCCESS
    elif info_class == ProcessWow64Information:
        # The guest's Windows is as wide as the guest (GetNativeSystemInfo, IsWow64Process agree).
        answer, status = bytes(api.ptr_size), STATUS_SUCCESS
    else:
        return STATUS_INVALID_INFO_CLASS
    if length != len(answer):
        return STATUS_INFO_LENGTH_MISMATCH
    if not buffer:
        return STATUS_ACCESS_VIOLATION  # the kernel's probe of the output buffer
    try:
        api.write(buffer, answer)
        api.write_u32(return_length, len(answer))
    except Exception:
        return STATUS_ACCESS_VIOLATION
    return status


def _write_info(api: GuestApi, answer: bytes, buffer: int, length: int, return_length: int) -> int:
    """An information class's fixed-size answer, as the kernel checks and writes it."""
    if length & 0xFFFFFFFF != len(answer):
        return STATUS_INFO_LENGTH_MISMATCH
    try:
        api.write(buffer, answer)
        if return_length:
            api.write_u32(return_length, len(answer))
    except Exception:
        return STATUS_ACCESS_VIOLATION
    return STATUS_SUCCESS


def _thread_basic_information(api: GuestApi, thread: GuestObject) -> bytes:
    """THREAD_BASIC_INFORMATION: ExitStatus, TebBaseAddress, ClientId (process, thread),
    AffinityMask, Priority, BasePriority."""
    processors = _services(api).guest.processors
    mask = (1 << min(processors, api.ptr_size * 8)) - 1
    layout = "<IIQQQQii" if api.ptr_size == 8 else "<IIIIIii"
    values = (
        STATUS_PENDING,
        0,
        thread.teb,
        thread.parent_id,
        thread.id,
        mask,
        NORMAL_BASE_PRIORITY,
        NORMAL_BASE_PRIORITY,
    )
    return struct.pack(layout, *(values if api.ptr_size == 8 else values[:1] + values[2:]))


def _basic_information(api: GuestApi, peb: int, pid: int, parent: int) -> bytes:
    """PROCESS_BASIC_INFORMATION: ExitStatus, PebBaseAddress, AffinityMask, BasePriority,
    UniqueProcessId, InheritedFromUniqueProcessId (each pointer-sized, as laid out)."""
    processors = _services(api).guest.processors
    mask = (1 << min(processors, api.ptr_size * 8)) - 1
    layout = "<QQQQQQ" if api.ptr_size == 8 else "<IIIiII"
    return struct.pack(layout, STATUS_PENDING, peb, mask, NORMAL_BASE_PRIORITY, pid, parent)


@apihook("ntdll", ["NtSetInformationThread", "ZwSetInformationThread"], argc=4)
def nt_set_information_thread(api: GuestApi, argv: list[int]) -> int:
    """ThreadHideFromDebugger as Windows checks it: a thread handle, no data (a length other
    than zero fails, which is how a sample catches a hook that accepts anything); the thread
    stays hidden (NtQueryInformationThread says so). Other classes succeed."""
    thread, info_class, _buffer, length = argv
    if info_class & 0xFFFFFFFF != ThreadHideFromDebugger:
        return STATUS_SUCCESS
    target = api.object_of(thread)
    if target is None or target.kind != "thread":
        return STATUS_INVALID_HANDLE
    if length & 0xFFFFFFFF:
        return STATUS_INFO_LENGTH_MISMATCH
    services = _services(api)
    if target.id not in services.hidden_threads:
        services.recorder.note(
            "thread_hidden_from_debugger",
            f"{api.qualified_name}(ThreadHideFromDebugger) hid thread {target.id}: a debugger attached would not "
            "see its events",
        )
    services.hidden_threads.add(target.id)
    return STATUS_SUCCESS


@apihook("ntdll", ["NtQueryInformationThread", "ZwQueryInformationThread"], argc=5)
def nt_query_information_thread(api: GuestApi, argv: list[int]) -> int:
    """ThreadHideFromDebugger: one BOOLEAN, whether the thread was hidden; ThreadBasicInformation:
    its TEB, ids, affinity and priority. Other classes succeed without an answer, as before (bare
    Speakeasy has no handler)."""
    thread, info_class, buffer, length, return_length = argv
    if info_class & 0xFFFFFFFF not in (ThreadHideFromDebugger, ThreadBasicInformation):
        return STATUS_SUCCESS
    target = api.object_of(thread)
    if target is None or target.kind != "thread":
        return STATUS_INVALID_HANDLE
    if info_class & 0xFFFFFFFF == ThreadBasicInformation:
        return _write_info(api, _thread_basic_information(api, target), buffer, length, return_length)
    if length & 0xFFFFFFFF != 1:
        return STATUS_INFO_LENGTH_MISMATCH
    try:
        api.write(buffer, bytes([target.id in _services(api).hidden_threads]))
        api.write_u32(return_length, 1)
    except Exception:
        return STATUS_ACCESS_VIOLATION
    return STATUS_SUCCESS


@apihook("ntdll", ["NtClose", "ZwClose"], argc=1)
def nt_close(api: GuestApi, argv: list[int]) -> int:
    """A handle that names nothing is STATUS_INVALID_HANDLE (with no debugger attached Windows
    returns it rather than raising), as CloseHandle fails with ERROR_INVALID_HANDLE."""
    handle = argv[0]
    if _services(api).close(handle) or api.object_of(handle) is not None:
        return STATUS_SUCCESS
    return STATUS_INVALID_HANDLE


# The kernel modules of a stock Windows 10 workstation (no hypervisor guest drivers).
DRIVERS = (
    "ntoskrnl.exe", "hal.dll", "kd.dll", "mcupdate_GenuineIntel.dll", "CLFS.SYS", "tm.sys", "PSHED.dll",
    "BOOTVID.dll", "FLTMGR.SYS", "msrpc.sys", "ksecdd.sys", "clipsp.sys", "cmimcext.sys", "werkernel.sys",
    "ntosext.sys", "CI.dll", "cng.sys", "Wdf01000.sys", "WDFLDR.SYS", "acpiex.sys", "ACPI.sys", "WMILIB.SYS",
    "msisadrv.sys", "pci.sys", "partmgr.sys", "spaceport.sys", "volmgr.sys", "volmgrx.sys", "mountmgr.sys",
    "storahci.sys", "storport.sys", "stornvme.sys", "EhStorClass.sys", "fileinfo.sys", "Wof.sys", "Ntfs.sys",
    "Fs_Rec.sys", "ndis.sys", "NETIO.SYS", "ksecpkg.sys", "tcpip.sys", "fwpkclnt.sys", "volsnap.sys",
    "rdyboost.sys", "mup.sys", "iorate.sys", "disk.sys", "CLASSPNP.SYS", "crashdmp.sys", "WdFilter.sys",
    "afd.sys", "igdkmd64.sys", "dxgkrnl.sys", "watchdog.sys", "HDAudBus.sys", "usbxhci.sys", "USBPORT.SYS",
    "e1d68x64.sys", "Netwtw08.sys", "win32k.sys", "win32kbase.sys", "win32kfull.sys",
)  # fmt: skip
KERNEL_BASE_X64 = 0xFFFFF80000000000
KERNEL_BASE_X86 = 0x80000000
DRIVER_STRIDE = 0x100000


def _driver_bases(api: GuestApi) -> list[int]:
    base = KERNEL_BASE_X64 if api.ptr_size == 8 else KERNEL_BASE_X86
    return [base + 0x4000000 + i * DRIVER_STRIDE for i in range(len(DRIVERS))]


@apihook("psapi", ["EnumDeviceDrivers"], argc=3)
def enum_device_drivers(api: GuestApi, argv: list[int]) -> int:
    buffer, size, needed = argv[0], argv[1] & 0xFFFFFFFF, argv[2]
    bases = _driver_bases(api)
    count = min(len(bases), size // api.ptr_size)
    try:
        for index in range(count):
            api.write_ptr(buffer + index * api.ptr_size, bases[index])
        api.write_u32(needed, len(bases) * api.ptr_size)
    except Exception:
        api.set_last_error(ERROR_NOACCESS)
        return 0
    return 1


@apihook("psapi", ["GetDeviceDriverBaseNameA", "GetDeviceDriverBaseNameW"], argc=3)
def get_device_driver_base_name(api: GuestApi, argv: list[int]) -> int:
    image_base, buffer, size = argv[0], argv[1], argv[2] & 0xFFFFFFFF
    bases = _driver_bases(api)
    if image_base not in bases or not size:
        api.set_last_error(87)  # ERROR_INVALID_PARAMETER
        return 0
    name = DRIVERS[bases.index(image_base)][: size - 1]
    try:
        api.write_string(buffer, name, is_wide(api))
    except Exception:
        api.set_last_error(ERROR_NOACCESS)
        return 0
    return len(name)


# kernel32 exports the same functions as K32<name> (what psapi.lib links to on Windows 7+).
apihook("kernel32", "K32EnumDeviceDrivers", argc=3)(enum_device_drivers)
apihook("kernel32", ["K32GetDeviceDriverBaseNameA", "K32GetDeviceDriverBaseNameW"], argc=3)(get_device_driver_base_name)
