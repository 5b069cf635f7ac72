"""Successful calls leave the last error alone, as Windows' do.

Speakeasy's handlers of some APIs set the last error to ``ERROR_SUCCESS`` when they succeed
(``HeapAlloc``, ``ReadFile``, ``WideCharToMultiByte``, ...). Windows' leave it as it was: a
program that sets an error, makes such a call and reads the error back (an emulator check, or
code that reads ``GetLastError`` late) saw 0. Each handler named here is wrapped, once per
process, before any handler class is scanned: when the handler succeeded (the error it left is
0) the error before the call is put back. The APIs that Windows documents as clearing the error
on success (``TlsGetValue``, ``CreateMutex`` of a new mutex, ``GetLastError`` itself) are not
wrapped.
"""

from __future__ import annotations

import functools
from typing import Any

# Speakeasy's handler names (without A/W: one handler serves both) that set ERROR_SUCCESS on
# success where Windows sets nothing.
KERNEL32_KEEP = (
    "GlobalSize",
    "HeapAlloc",
    "HeapFree",
    "LocalFree",
    "TlsSetValue",
    "FlsSetValue",
    "WideCharToMultiByte",
    "LCMapString",
    "GetSystemDirectory",
    "UnmapViewOfFile",
    "MoveFile",
    "ReadFile",
    "WriteFile",
    "ReadProcessMemory",
    "WriteProcessMemory",
    "CreateThread",
    "CreateRemoteThread",
    "OpenProcess",
)

_installed = False


def _keeping(func: Any) -> Any:
    @functools.wraps(func)
    def handler(self: Any, emu: Any, *args: Any, **kwargs: Any) -> Any:
        before = emu.get_last_error()
        rv = func(self, emu, *args, **kwargs)
        if before and not emu.get_last_error():
            emu.set_last_error(before)
        return rv

    return handler


def install() -> None:
    """Wrap the handlers (idempotent; before Speakeasy's handler classes are first scanned)."""
    global _installed
    if _installed:
        return
    _installed = True
    from speakeasy.winenv.api.usermode import kernel32

    by_name = {}
    for value in vars(kernel32.Kernel32).values():
        attrs = getattr(value, "__apihook__", None)
        if attrs is not None:
            by_name[attrs[0]] = value
    for name in KERNEL32_KEEP:
        func = by_name.get(name)
        if func is None:
            continue
        wrapped = _keeping(func)
        wrapped.__apihook__ = (name, wrapped, *func.__apihook__[2:])  # type: ignore[attr-defined]
        func.__apihook__ = wrapped.__apihook__  # the class attribute scanned is the original function
