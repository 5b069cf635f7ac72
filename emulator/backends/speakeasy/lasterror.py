"""Successful calls leave the last error alone, as Windows' do.

Speakeasy's handlers of some APIs set the last error to ``ERROR_SUCCESS`` when they succeed
(``HeapAlloc``, ``ReadFile``, ``WideCharToMultiByte``, ...). Windows' leave it as it was: a
program that sets an error, makes such a call and reads the error back (an emulator check, or
code that reads ``GetLastError`` late) saw 0. Each handler named here is wrapped, once per
process, before any handler class is scanned: when the handler succeeded (the error it left is
0) the error before the call is put back. The APIs that Windows documents as clearing the error
on success (``TlsGetValue``, ``CreateMutex`` of a new mutex, ``GetLastError`` itself) are not
wrapped.

A handle-taking call that fails on a handle that names nothing (no object, file, pipe or
pseudo handle) fails with ``ERROR_INVALID_HANDLE``, as Windows' do: Speakeasy's ``ReadFile``,
``SetEvent`` and kin set no error (or ``ERROR_INVALID_PARAMETER``), which a check calling them
with a bogus handle reads as an emulator.
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
    "SetEvent",
    "ResetEvent",
)
ERROR_INVALID_HANDLE = 6
# Handler name -> the value it returns when it fails; its first argument is the handle.
HANDLE_FIRST = {
    "ReadFile": 0,
    "WriteFile": 0,
    "SetEvent": 0,
    "ResetEvent": 0,
    "ReleaseMutex": 0,
    "GetFileSize": 0xFFFFFFFF,
    "GetFileSizeEx": 0,
    "SetFilePointer": 0xFFFFFFFF,
    "SetFilePointerEx": 0,
    "FlushFileBuffers": 0,
    "SetEndOfFile": 0,
    "GetFileType": 0,
}

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


def _known_handle(emu: Any, handle: int) -> bool:
    from emulator.backends.speakeasy import compat

    if compat.object_of(emu, handle) is not None:
        return True
    try:
        return bool(emu.file_get(handle)) or bool(emu.fileman.get_pipe_from_handle(handle))
    except Exception:
        return True  # unsure: leave the handler's answer


def _checking_handle(func: Any, failure: int) -> Any:
    @functools.wraps(func)
    def handler(self: Any, emu: Any, argv: Any, *args: Any, **kwargs: Any) -> Any:
        rv = func(self, emu, argv, *args, **kwargs)
        if argv and (rv or 0) & 0xFFFFFFFF == failure and not _known_handle(emu, argv[0]):
            emu.set_last_error(ERROR_INVALID_HANDLE)
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
    for name in {*KERNEL32_KEEP, *HANDLE_FIRST}:
        func = by_name.get(name)
        if func is None:
            continue
        attrs = func.__apihook__
        wrapped = attrs[1]
        if name in KERNEL32_KEEP:
            wrapped = _keeping(wrapped)
        if name in HANDLE_FIRST:
            wrapped = _checking_handle(wrapped, HANDLE_FIRST[name])
        # The class attribute scanned stays the original function; its hook names the wrapper.
        func.__apihook__ = (name, wrapped, *attrs[2:])
