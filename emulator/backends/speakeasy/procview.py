"""What the guest learns about processes and the OS version from Speakeasy's own handlers, made
to agree with the process blocks (guest.py) and with each other.

* Toolhelp's PROCESSENTRY32 carries each process's parent (the sample's is explorer.exe) and
  a thread count of at least one; bare Speakeasy writes zero for both.
* ``K32EnumProcesses`` (what psapi.lib links to on Windows 7 and later) lists the same ids as
  psapi's ``EnumProcesses`` and Toolhelp; bare Speakeasy has no handler and lists nothing.
* ``OpenProcess`` of a protected system process (csrss.exe, smss.exe, wininit.exe, services.exe,
  System) for more than limited query rights fails with ERROR_ACCESS_DENIED, as it does for
  anything but a protected process (bare Speakeasy opens it: the "can open csrss.exe" check
  takes that for a debugger's SeDebugPrivilege).
* ``RtlGetVersion`` reports the configured build, as ``GetVersionEx``, the PEB and
  KUSER_SHARED_DATA do (bare Speakeasy's says 19041 whatever the configuration).
"""

from __future__ import annotations

import struct
from typing import Any

from emulator.backends.speakeasy import compat_blocks

# PROCESSENTRY32: offsets of th32ProcessID, cntThreads and th32ParentProcessID (x64, x86).
PROCESSENTRY_OFFSETS = {8: (8, 28, 32), 4: (8, 20, 24)}
# RTL_OSVERSIONINFOW: dwMajorVersion, dwMinorVersion, dwBuildNumber, dwPlatformId at +4.
RTL_VERSION_OFFSET = 4
VER_PLATFORM_WIN32_NT = 2
THREADS_PER_PROCESS = 4
# Protected (PPL) system processes: another process opens them with these rights at most.
PROTECTED_PROCESSES = frozenset({"system", "smss.exe", "csrss.exe", "wininit.exe", "services.exe"})
PROTECTED_PROCESS_RIGHTS = 0x1000 | 0x100000  # PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE
ERROR_ACCESS_DENIED = 5


def install(se: Any, ptr_size: int) -> None:
    pid_at, threads_at, parent_at = PROCESSENTRY_OFFSETS[ptr_size]

    def process_entry(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        entry = argv[1]
        if rv and entry:
            pid = struct.unpack("<I", bytes(emu.mem_read(entry + pid_at, 4)))[0]
            process = next((p for p in compat_blocks.processes(emu) if p.pid == pid), None)
            if process is not None:
                threads = max(len(getattr(process, "threads", ()) or ()), THREADS_PER_PROCESS)
                emu.mem_write(entry + threads_at, struct.pack("<I", threads))
                emu.mem_write(entry + parent_at, struct.pack("<I", getattr(process, "ppid", 0)))
        return rv

    for name in ("Process32First", "Process32Next", "Process32FirstW", "Process32NextW"):
        se.add_api_hook(process_entry, "kernel32", name)

    def enum_processes(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        return compat_blocks.enum_processes(emu, argv)

    se.add_api_hook(enum_processes, "kernel32", "K32EnumProcesses", argc=3)

    def open_process(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        access, pid = argv[0] & 0xFFFFFFFF, argv[2] & 0xFFFFFFFF
        process = next((p for p in compat_blocks.processes(emu) if p.pid == pid), None)
        name = str(getattr(process, "image", "") or getattr(process, "name", "") or "").lower()
        if name in PROTECTED_PROCESSES and access & ~PROTECTED_PROCESS_RIGHTS:
            emu.set_last_error(ERROR_ACCESS_DENIED)
            return 0
        return orig(argv)

    se.add_api_hook(open_process, "kernel32", "OpenProcess")

    def rtl_get_version(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        if argv[0]:
            major, minor, build = compat_blocks.os_version(emu)
            emu.mem_write(
                argv[0] + RTL_VERSION_OFFSET, struct.pack("<IIII", major, minor, build, VER_PLATFORM_WIN32_NT)
            )
        return rv

    se.add_api_hook(rtl_get_version, "ntdll", "RtlGetVersion")
