"""kernel32's string functions that swallow a bad pointer, as Windows' do.

``lstrlenA`` / ``lstrlenW`` run inside a structured exception handler on Windows: NULL gives 0,
and so does a pointer into unmapped memory (the access violation is caught). Speakeasy's
handler reads the string without that guard, so a program passing NULL (a failed call's output
left unset) ended the replay with a fault inside the API.
"""

from __future__ import annotations

from emulator.apis.core import PAGE_SIZE, STRING_CHUNK, GuestApi, apihook, is_wide
from emulator.limits import MAX_LSTRLEN_CHARS


def guarded_length(api: GuestApi, address: int, wide: bool) -> int:
    """Characters before the terminator at ``address``; 0 for NULL or when the string runs
    into memory that cannot be read (Windows' lstrlen catches the fault and returns 0)."""
    if not address:
        return 0
    unit = 2 if wide else 1
    terminator = b"\0" * unit
    count = 0
    position = address
    while count < MAX_LSTRLEN_CHARS:
        size = min(STRING_CHUNK, PAGE_SIZE - position % PAGE_SIZE)
        size = max(size - size % unit, unit)
        try:
            data = api.read(position, size)
        except Exception:
            return 0
        for i in range(0, len(data) - unit + 1, unit):
            if data[i : i + unit] == terminator:
                return count + i // unit
        count += len(data) // unit
        position += len(data)
    return 0


@apihook("kernel32", ["lstrlenA", "lstrlenW"], argc=1)
def lstrlen(api: GuestApi, argv: list[int]) -> int:
    return guarded_length(api, argv[0], is_wide(api))
