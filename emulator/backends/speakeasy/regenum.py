"""RegEnumValue: a key's values one by one, as Windows lists them.

Speakeasy has no handler: its declared signature answered ERROR_SUCCESS for every index with
nothing written, so a loader enumerating a key (a payload split over values it finds by listing
them, a persistence check walking a Run key) read empty names and data, and never got
ERROR_NO_MORE_ITEMS to end its loop on. Here each index names the key's value at that position
(the order the scenario gives them, as Windows keeps creation order), its type and its data, with
Windows' size rules; the read is recorded like RegQueryValueEx's (a registry read of that value,
into the buffer the guest gave), so the lineage runs from the value.
"""

from __future__ import annotations

from typing import Any

import speakeasy.winenv.arch as se_arch
from speakeasy.profiler_events import REG_READ

ERROR_SUCCESS = 0
ERROR_INVALID_HANDLE = 6
ERROR_INVALID_PARAMETER = 87
ERROR_MORE_DATA = 234
ERROR_NO_MORE_ITEMS = 259
PREDEFINED_KEY_MASK = 0xFFFFFFF0
PREDEFINED_KEY_BASE = 0x80000000


def install(se: Any, ptr_size: int) -> None:
    for name in ("RegEnumValueA", "RegEnumValueW"):
        se.add_api_hook(_enum_value, "advapi32", name, argc=8, call_conv=se_arch.CALL_CONV_STDCALL)


def _enum_value(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
    """LSTATUS RegEnumValue(HKEY key, DWORD index, LPTSTR name, LPDWORD name_chars,
    LPDWORD reserved, LPDWORD type, LPBYTE data, LPDWORD data_size)."""
    handle, index, name_out, name_chars, _reserved, type_out, data_out, data_size = argv
    wide = api_name.endswith("W")
    if handle >> 32 == 0xFFFFFFFF and handle & PREDEFINED_KEY_MASK == PREDEFINED_KEY_BASE:
        handle &= 0xFFFFFFFF  # HKEY_CURRENT_USER and kin, sign-extended by x64 code
    key = emu.reg_get_key(handle)
    if key is None:
        return ERROR_INVALID_HANDLE
    values = list(key.get_values() or [])
    index &= 0xFFFFFFFF
    if index >= len(values):
        return ERROR_NO_MORE_ITEMS
    value = values[index]
    name = str(value.get_name() or "")
    if not name_out or not name_chars:
        return ERROR_INVALID_PARAMETER
    room = int.from_bytes(emu.mem_read(name_chars, 4), "little")
    if len(name) + 1 > room:
        return ERROR_MORE_DATA  # the name does not fit: Windows writes nothing
    emu.mem_write(name_out, (name + "\0").encode("utf-16-le" if wide else "latin-1", "replace"))
    emu.mem_write(name_chars, len(name).to_bytes(4, "little"))
    if type_out:
        emu.mem_write(type_out, int(value.get_type()).to_bytes(4, "little"))
    data = value.get_bytes(2 if wide else 1)
    status = ERROR_SUCCESS
    if data_out and not data_size:
        return ERROR_INVALID_PARAMETER
    if data_size:
        size = int.from_bytes(emu.mem_read(data_size, 4), "little")
        if data_out and len(data) > size:
            status = ERROR_MORE_DATA
        elif data_out:
            emu.mem_write(data_out, data)
        emu.mem_write(data_size, len(data).to_bytes(4, "little"))
    if status == ERROR_SUCCESS:
        advapi32 = emu.api.load_api_handler("advapi32")
        if advapi32 is not None:
            advapi32.record_registry_access_event(
                key.get_path(), REG_READ, value_name=name, data=data, buffer=data_out if data_out else 0
            )
    return status
