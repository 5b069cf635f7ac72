"""Window procedures that run, as Windows runs them while it creates a window and sends it messages.

A window class names its procedure (``RegisterClass(Ex)A/W``, ``WNDCLASS.lpfnWndProc``);
``CreateWindowEx`` of that class calls it at once, with ``WM_NCCREATE`` then ``WM_CREATE``;
``SendMessage`` calls the window's procedure, and ``SetWindowLongPtr(GWLP_WNDPROC)`` replaces it
(subclassing). Loaders hand their payload as a class's procedure, or subclass a window with it
and send it a message: no thread, no enumeration. Bare Speakeasy has no ``RegisterClassA/W``
(served from its signature), its ``CreateWindowEx`` calls nothing, and its ``SendMessage`` jumps
to a procedure set with ``SetWindowLong`` with none of the call's arguments: the payload never
ran, or ran with garbage.

Here Speakeasy's handlers still run (its window objects and class atoms stand); this module
remembers each class's procedure (by name and atom) and each window's, and calls it back as the
API returns (the stage it starts is ``via: callback``). The window is created whatever the
procedure answers (on Windows a ``FALSE`` to ``WM_NCCREATE`` or -1 to ``WM_CREATE`` fails it);
``SendMessage`` answers what the procedure returns. Posted messages reach the procedure through
the message loop (``DispatchMessage``: messages.py).
"""

from __future__ import annotations

import struct
from typing import Any

from speakeasy.winenv import arch as se_arch

from emulator.apis.core import GuestApi
from emulator.backends.speakeasy import compat
from emulator.backends.speakeasy.messages import ANSWER
from emulator.services import ReplayServices

WM_CREATE = 0x0001
WM_NCCREATE = 0x0081
GWLP_WNDPROC = -4
ERROR_INVALID_PARAMETER = 87
# Atoms this module hands out for classes Speakeasy did not register (RegisterClassA/W).
FIRST_ATOM = 0xC100
# CREATESTRUCT is twelve fields, handed to WM_NCCREATE / WM_CREATE; its size by pointer size.
CREATESTRUCT_SIZE = {8: 0x50, 4: 0x30}


def install(se: Any, emu: Any, memory: Any, services: ReplayServices) -> dict[int, int]:
    """Install the hooks; the windows' procedures, by window (messages.py dispatches to them)."""
    ptr = memory.ptr_size
    by_name: dict[str, int] = {}  # class name (lower-case) -> procedure
    by_atom: dict[int, int] = {}
    by_window: dict[int, int] = {}
    atoms = [FIRST_ATOM]

    def read_ptr(address: int) -> int:
        return int.from_bytes(memory.read(address, ptr), "little")

    def class_name(address: int, wide: bool) -> str:
        api = GuestApi(memory, services, "RegisterClass", module="user32")
        return api.read_string(address, wide, max_chars=256).lower()

    def remember_class(wndclass: int, procedure_at: int, name_at: int, wide: bool, atom: int) -> int:
        procedure = read_ptr(wndclass + procedure_at)
        name = read_ptr(wndclass + name_at)
        if not atom:
            atom = atoms[0]
            atoms[0] += 1
        if procedure:
            by_atom[atom & 0xFFFF] = procedure
            if name > 0xFFFF:
                by_name[class_name(name, wide)] = procedure
        return atom

    # WNDCLASS: style, lpfnWndProc, cbClsExtra, cbWndExtra, hInstance, hIcon, hCursor,
    # hbrBackground, lpszMenuName, lpszClassName. WNDCLASSEX: cbSize first, hIconSm last.
    plain = (8, 8 + ptr + 8 + 5 * ptr) if ptr == 8 else (4, 4 + 4 + 8 + 5 * 4)
    extended = (8, 8 + ptr + 8 + 5 * ptr) if ptr == 8 else (8, 8 + 4 + 8 + 5 * 4)

    def register_class(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        wndclass = argv[0] if argv else 0
        if not wndclass:
            memory.set_last_error(ERROR_INVALID_PARAMETER)
            return 0
        rv = orig(argv) if orig is not None else 0
        layout = extended if "Ex" in api_name else plain
        try:
            return remember_class(wndclass, layout[0], layout[1], api_name.endswith("W"), int(rv or 0))
        except Exception:
            return rv

    def create_window(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        window = orig(argv)
        if not window:
            return window
        cls = argv[1]
        procedure = by_atom.get(cls & 0xFFFF) if cls <= 0xFFFF else by_name.get(class_name(cls, api_name.endswith("W")))
        if not procedure:
            return window
        by_window[int(window)] = procedure
        # CREATESTRUCT: lpCreateParams, hInstance, hMenu, hwndParent, cy, cx, y, x, style,
        # lpszName, lpszClass, dwExStyle (from the call's arguments).
        ex_style, _cls, name, style, x, y, width, height, parent, menu, instance, param = argv[:12]
        sizes = (_s32(height), _s32(width), _s32(y), _s32(x))
        if ptr == 8:
            fields = struct.pack(
                "<QQQQ4iI4xQQI4x", param, instance, menu, parent, *sizes, style & 0xFFFFFFFF, name, cls, ex_style
            )
        else:
            fields = struct.pack(
                "<4I4i4I", param, instance, menu, parent, *sizes, style & 0xFFFFFFFF, name, cls, ex_style & 0xFFFFFFFF
            )
        create = int(memory.alloc(CREATESTRUCT_SIZE[ptr], "api.createstruct"))
        memory.write(create, fields)
        compat.call_guest_after_api(emu, procedure, [int(window), WM_NCCREATE, 0, create])
        compat.call_guest_after_api(emu, procedure, [int(window), WM_CREATE, 0, create])
        return window

    def send_message(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        window, message, wparam, lparam = argv[:4]
        procedure = by_window.get(window)
        if procedure is None:
            return orig(argv)
        compat.call_guest_after_api(emu, procedure, [window, message & 0xFFFFFFFF, wparam, lparam])
        compat.tag_api_frame(emu, ANSWER)  # SendMessage answers what the procedure returns
        return 0

    def set_window_long(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        window, index, value = argv[:3]
        signed = index - (1 << 32) if index & 0x80000000 and index <= 0xFFFFFFFF else index
        if ptr == 8 and index > 0xFFFFFFFF:
            signed = index - (1 << 64)
        if signed != GWLP_WNDPROC:
            return orig(argv)
        previous = by_window.get(window, 0)
        rv = orig(argv) if orig is not None else 0
        if value:
            by_window[window] = value
        return previous or rv

    def default_procedure(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # DefWindowProc answers WM_NCCREATE with TRUE (the window is created); Speakeasy's, 0.
        if len(argv) > 1 and argv[1] & 0xFFFFFFFF == WM_NCCREATE:
            return 1
        return orig(argv)

    for name in ("DefWindowProcA", "DefWindowProcW"):
        se.add_api_hook(default_procedure, "user32", name)
    for name in ("RegisterClassA", "RegisterClassW"):
        se.add_api_hook(register_class, "user32", name, argc=1, call_conv=se_arch.CALL_CONV_STDCALL)
    for name in ("RegisterClassExA", "RegisterClassExW"):
        se.add_api_hook(register_class, "user32", name)
    for name in ("CreateWindowExA", "CreateWindowExW"):
        se.add_api_hook(create_window, "user32", name)
    for name in ("SendMessageA", "SendMessageW"):
        se.add_api_hook(send_message, "user32", name)
    for name in ("SetWindowLongA", "SetWindowLongW"):
        se.add_api_hook(set_window_long, "user32", name)
    if ptr == 8:  # x86's user32 exports no SetWindowLongPtr (a macro for SetWindowLong)
        for name in ("SetWindowLongPtrA", "SetWindowLongPtrW"):
            se.add_api_hook(set_window_long, "user32", name, argc=3, call_conv=se_arch.CALL_CONV_STDCALL)
    return by_window


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value
