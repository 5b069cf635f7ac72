"""Firmware and system tables a sandbox check parses: ``GetSystemFirmwareTable`` /
``EnumSystemFirmwareTables`` for the SMBIOS table ('RSMB'), and ``NtQuerySystemInformation``'s
basic and kernel-debugger classes.

Speakeasy 2.0.0b9 answers ``GetSystemFirmwareTable`` with a buffer of 0x01 bytes (an SMBIOS
parser finds a table of length 0x01010101) and has no ``NtQuerySystemInformation``: the
signature stub returns success with zeroed output, so SystemBasicInformation says zero
processors. Here the SMBIOS table is that of an ordinary desktop: BIOS, system, baseboard,
chassis, processor (the ``[environment]`` brand and processor count) and memory (the
``[environment]`` size) structures.
"""

from __future__ import annotations

import struct

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook
from emulator.apis.memory import USER_END_X64, USER_END_X86

RSMB = 0x52534D42  # 'RSMB': the raw SMBIOS firmware table provider
ERROR_INVALID_PARAMETER = 87
ERROR_NOT_FOUND = 1168
ERROR_NOACCESS = 998
STATUS_SUCCESS = 0
STATUS_INVALID_INFO_CLASS = 0xC0000003
STATUS_INFO_LENGTH_MISMATCH = 0xC0000004
STATUS_ACCESS_VIOLATION = 0xC0000005
SystemBasicInformation = 0
SystemKernelDebuggerInformation = 0x23
# The most bytes a class this module does not know is zeroed (as Speakeasy's signature stub did).
MAX_ZEROED_OUTPUT = 0x10000

SMBIOS_VERSION = (3, 2)
BIOS_VENDOR = "American Megatrends Inc."
BIOS_VERSION = "1.21.0"
BIOS_DATE = "07/14/2022"
SYSTEM_MANUFACTURER = "Dell Inc."
SYSTEM_PRODUCT = "OptiPlex 7090"
SYSTEM_SERIAL = "7XK9Q53"
SYSTEM_UUID = bytes.fromhex("4c4c4544005810388039b7c04f513533")
BOARD_PRODUCT = "0W0CHX"
CHASSIS_DESKTOP = 3


def _structure(kind: int, handle: int, formatted: bytes, strings: list[str]) -> bytes:
    """One SMBIOS structure: header (type, length, handle), formatted area, string set."""
    header = struct.pack("<BBH", kind, 4 + len(formatted), handle)
    text = b"".join(s.encode("ascii", "replace") + b"\0" for s in strings) or b"\0"
    return header + formatted + text + b"\0"


def smbios_table(cpu_brand: str, processors: int, memory_mb: int) -> bytes:
    """RawSMBIOSData: Used20CallingMethod, major, minor, DmiRevision, Length, table data."""
    structures = [
        # BIOS: vendor 1, version 2, start segment, release date 3, ROM size, characteristics
        _structure(
            0,
            0,
            struct.pack("<BBHBBQHBB", 1, 2, 0xF000, 3, 0xFF, 0x0B, 0, 5, 17),
            [
                BIOS_VENDOR,
                BIOS_VERSION,
                BIOS_DATE,
            ],
        ),
        # System: manufacturer 1, product 2, version 3, serial 4, UUID, wake-up (power switch)
        _structure(
            1,
            1,
            struct.pack("<BBBB16sB", 1, 2, 0, 3, SYSTEM_UUID, 6),
            [
                SYSTEM_MANUFACTURER,
                SYSTEM_PRODUCT,
                SYSTEM_SERIAL,
            ],
        ),
        # Baseboard: manufacturer 1, product 2, version 3, serial 4
        _structure(2, 2, struct.pack("<BBBB", 1, 2, 3, 4), [SYSTEM_MANUFACTURER, BOARD_PRODUCT, "A00", "/7XK9Q53/"]),
        # Chassis: manufacturer 1, desktop, version, serial 2
        _structure(3, 3, struct.pack("<BBBBB", 1, CHASSIS_DESKTOP, 0, 2, 0), [SYSTEM_MANUFACTURER, SYSTEM_SERIAL]),
        # Processor: socket 1, central processor, family, manufacturer 2, id, version 3, ...
        _structure(
            4,
            4,
            struct.pack(
                "<BBBBQBBHHHBBHHHBBBBB",
                1,
                3,
                0xCD,
                2,
                0xBFEBFBFF000306C3,
                3,
                0x8B,
                100,
                4000,
                3600,
                0x41,
                0x1F,
                0xFFFF,
                0xFFFF,
                0xFFFF,
                0,
                0,
                0,
                min(processors, 255),
                min(processors, 255),
            ),
            ["SOCKET 0", "Intel(R) Corporation", cpu_brand or "Intel(R) Core(TM) CPU"],
        ),
        # Memory device: size in MiB (the extended size when it does not fit 15 bits)
        _structure(
            17,
            5,
            struct.pack(
                "<HHHHHBBBBBHHBBBBBI",
                0xFFFE,
                0xFFFE,
                64,
                64,
                0x7FFF if memory_mb >= 0x7FFF else memory_mb,
                0x09,
                0,
                1,
                2,
                0x1A,
                0x80,
                2666,
                0,
                0,
                0,
                0,
                1,
                memory_mb,
            ),
            ["DIMM1", "BANK 0"],
        ),
        _structure(127, 6, b"", []),
    ]
    data = b"".join(structures)
    major, minor = SMBIOS_VERSION
    return struct.pack("<BBBBI", 0, major, minor, 0, len(data)) + data


def _table(api: GuestApi) -> bytes:
    guest = _services(api).guest
    return smbios_table(guest.cpu_brand, guest.processors, guest.memory_mb)


@apihook("kernel32", "GetSystemFirmwareTable", argc=4)
def get_system_firmware_table(api: GuestApi, argv: list[int]) -> int:
    """The SMBIOS table (provider 'RSMB', table 0): its size when the buffer is missing or too
    small, else the bytes written. Other providers (ACPI, FIRM) have no tables here."""
    provider, table_id, buffer, size = (value & 0xFFFFFFFF if i != 2 else value for i, value in enumerate(argv))
    if provider != RSMB:
        api.set_last_error(ERROR_NOT_FOUND)
        return 0
    data = _table(api)
    if not buffer or size < len(data):
        return len(data)
    try:
        api.write(buffer, data)
    except Exception:
        api.set_last_error(ERROR_NOACCESS)
        return 0
    return len(data)


@apihook("kernel32", "EnumSystemFirmwareTables", argc=3)
def enum_system_firmware_tables(api: GuestApi, argv: list[int]) -> int:
    """'RSMB' has one table, id 0; other providers none."""
    provider, buffer, size = argv[0] & 0xFFFFFFFF, argv[1], argv[2] & 0xFFFFFFFF
    if provider != RSMB:
        api.set_last_error(ERROR_NOT_FOUND)
        return 0
    if buffer and size >= 4:
        try:
            api.write_u32(buffer, 0)
        except Exception:
            api.set_last_error(ERROR_NOACCESS)
            return 0
    return 4


@apihook("ntdll", ["NtQuerySystemInformation", "ZwQuerySystemInformation"], argc=4)
def nt_query_system_information(api: GuestApi, argv: list[int]) -> int:
    """SystemBasicInformation from ``[environment]``; SystemKernelDebuggerInformation: no kernel
    debugger. Other classes as Speakeasy's signature stub answered them: success, the output
    zeroed."""
    info_class, buffer, length, return_length = argv[0] & 0xFFFFFFFF, argv[1], argv[2] & 0xFFFFFFFF, argv[3]
    if info_class == SystemBasicInformation:
        answer = _basic_information(api)
    elif info_class == SystemKernelDebuggerInformation:
        answer = bytes([0, 1])  # KernelDebuggerEnabled FALSE, KernelDebuggerNotPresent TRUE
    else:
        try:
            api.write(buffer, bytes(min(length, MAX_ZEROED_OUTPUT)))
        except Exception:
            return STATUS_ACCESS_VIOLATION
        return STATUS_SUCCESS
    if length != len(answer):
        try:
            api.write_u32(return_length, len(answer))
        except Exception:
            return STATUS_ACCESS_VIOLATION
        return STATUS_INFO_LENGTH_MISMATCH
    try:
        api.write(buffer, answer)
        api.write_u32(return_length, len(answer))
    except Exception:
        return STATUS_ACCESS_VIOLATION
    return STATUS_SUCCESS


def _basic_information(api: GuestApi) -> bytes:
    """SYSTEM_BASIC_INFORMATION, as GetSystemInfo and GlobalMemoryStatusEx describe the machine."""
    guest = _services(api).guest
    processors = guest.processors
    pages = guest.memory_mb * 256
    mask = (1 << min(processors, api.ptr_size * 8)) - 1
    if api.ptr_size == 8:
        return struct.pack(
            "<IIIIIIIIQQQb7x",
            0,
            156250,
            0x1000,
            pages,
            1,
            pages + 0x400,
            0x10000,
            0,
            0x10000,
            USER_END_X64 - 1,
            mask,
            min(processors, 127),
        )
    return struct.pack(
        "<IIIIIIIIIIb3x",
        0,
        156250,
        0x1000,
        pages,
        1,
        pages + 0x400,
        0x10000,
        0x10000,
        USER_END_X86 - 1,
        mask,
        min(processors, 127),
    )
