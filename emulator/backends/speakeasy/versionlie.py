"""GetVersion and GetVersionEx as Windows 8.1 and later answer a program: the version its
manifest declares support for, not the machine's.

A program whose embedded manifest does not name Windows 10 (``supportedOS``) is told 6.2
build 9200 (Windows 8), or 6.3 build 9600 when it names Windows 8.1; ``RtlGetVersion``, the PEB
and KUSER_SHARED_DATA keep the machine's version (what checks compare). Most malware carries no
such manifest, so "GetVersionEx says 10.0 without one" told an emulator. Only the target
program is judged: a DLL, or shellcode, runs in a host whose manifest is not known (system
programs such as rundll32.exe name Windows 10), so it is told the machine's version.
"""

from __future__ import annotations

import struct
from typing import Any

from emulator import pe
from emulator.backends.speakeasy import compat_blocks, procapis

WINDOWS_8 = (6, 2, 9200)
WINDOWS_81 = (6, 3, 9600)


def told_version(data: bytes, machine: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """The version GetVersionEx gives the program in ``data`` on ``machine``; None: the machine's."""
    if machine[:2] < WINDOWS_81[:2] or pe.is_dll(data):
        return None
    declared = pe.manifest_supported_os(data)
    if declared == "10":
        return None
    if declared == "8.1":
        return WINDOWS_81 if machine[:2] > WINDOWS_81[:2] else None
    return WINDOWS_8


def install(se: Any, data: bytes | None) -> None:
    """Hook GetVersionExA/W (its OSVERSIONINFOEX fields, procapis.fill_version_ex), and GetVersion
    too when the program (``data``; None: shellcode) is told an older version."""
    told = told_version(data, compat_blocks.os_version(se.emu)) if data is not None else None

    def get_version_ex(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        if rv and argv and argv[0]:
            procapis.fill_version_ex(emu, argv[0])
            if told is not None:
                # OSVERSIONINFO(EX)A/W: dwOSVersionInfoSize, dwMajorVersion, dwMinorVersion, dwBuildNumber
                emu.mem_write(argv[0] + 4, struct.pack("<III", *told))
        return rv

    for name in ("GetVersionExA", "GetVersionExW"):
        se.add_api_hook(get_version_ex, "kernel32", name)
    if told is None:
        return
    major, minor, build = told

    def get_version(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        orig(argv)
        return (build << 16) | (minor << 8) | major

    se.add_api_hook(get_version, "kernel32", "GetVersion")
