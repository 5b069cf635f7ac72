"""Enumeration APIs that call the caller's function back, as Windows does.

``EnumSystemLocalesA(proc, flags)`` and its kin call ``proc`` once per item. Loaders use that
to run a payload without ``CreateThread`` (the "callback execution" family). Speakeasy either
lacks these APIs (the run ended as an unsupported API) or returns TRUE without calling anything
(``EnumWindows``, ``EnumDisplayMonitors``): the payload never ran, and a guest could tell it
was not on Windows. Here each enumerates one plausible item: the callback is called once with
that item's arguments (strings and structures in fresh guest memory), then the API returns
TRUE (the window enumerations return FALSE when the callback did, as Windows' do). A callback
pointer of NULL fails with ERROR_INVALID_PARAMETER.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.apis.core import GuestApi, apihook

ERROR_INVALID_PARAMETER = 87
# One page holds every string and structure a callback is given.
ARGUMENT_PAGE = 0x1000
# The one window, monitor and desktop handle an enumeration hands out.
ENUMERATED_WINDOW = 0x0001_0010
ENUMERATED_MONITOR = 0x0001_0001
GEOID_UNITED_STATES = 244
LGRPID_WESTERN_EUROPE = 1
LGRPID_INSTALLED = 1
DEVICE_FONTTYPE = 2
CERT_SYSTEM_STORE_CURRENT_USER = 0x0001_0000
CRYPT_PUBKEY_ALG_OID_GROUP_ID = 3
# The device context and the one GDI object the drawing enumerations hand out.
ENUMERATED_BRUSH = 0x0190_0010
ENUMERATED_INPUT_CONTEXT = 0x0001_0020
# Sizes of the structures handed to callbacks (LOGFONTW/ENUMLOGFONTEXW, TEXTMETRICW/NEWTEXTMETRICEXW,
# CERT_SYSTEM_STORE_INFO), rounded up; zero-filled apart from the fields set below.
ENUMLOGFONTEX_SIZE = 0x160
NEWTEXTMETRICEX_SIZE = 0x70
RECT_SIZE = 16
SCREEN = (1920, 1080)


class _Arguments:
    """Builds a callback's arguments in one fresh page of guest memory."""

    def __init__(self, api: GuestApi) -> None:
        self.api = api
        self.base = 0
        self.used = 0

    def _place(self, data: bytes) -> int:
        if not self.base:
            self.base = self.api.alloc(ARGUMENT_PAGE, "api.callback_arguments")
        address = self.base + self.used
        self.api.write(address, data)
        self.used += (len(data) + 15) & ~15
        return address

    def string(self, text: str, wide: bool) -> int:
        return self._place(text.encode("utf-16-le" if wide else "latin-1") + (b"\0\0" if wide else b"\0"))

    def zeroed(self, size: int, fields: dict[int, bytes] | None = None) -> int:
        data = bytearray(size)
        for offset, value in (fields or {}).items():
            data[offset : offset + len(value)] = value
        return self._place(bytes(data))


@dataclass(frozen=True)
class Enumerator:
    module: str
    names: tuple[str, ...]
    argc: int
    proc_index: int  # which argument is the callback
    # (api, argv, wide, page) -> the callback's arguments
    arguments: Callable[[GuestApi, list[int], bool, _Arguments], list[int]]
    # The API returns FALSE when the callback does (the window enumerations).
    result_from_callback: bool = False


def _text(text: str) -> Callable[[GuestApi, list[int], bool, _Arguments], list[int]]:
    return lambda api, argv, wide, page: [page.string(text, wide)]


def _text_and_param(text: str, param_index: int) -> Callable[[GuestApi, list[int], bool, _Arguments], list[int]]:
    return lambda api, argv, wide, page: [page.string(text, wide), argv[param_index]]


def _window_and_param(param_index: int) -> Callable[[GuestApi, list[int], bool, _Arguments], list[int]]:
    return lambda api, argv, wide, page: [ENUMERATED_WINDOW, argv[param_index]]


def _font(api: GuestApi, argv: list[int], wide: bool, page: _Arguments) -> list[int]:
    # LOGFONT's lfFaceName (offset 28) and TEXTMETRIC's tmHeight; then the font type and lParam.
    face = "Arial".encode("utf-16-le" if wide else "latin-1")
    logfont = page.zeroed(ENUMLOGFONTEX_SIZE, {0: (16).to_bytes(4, "little"), 28: face})
    metric = page.zeroed(NEWTEXTMETRICEX_SIZE, {0: (16).to_bytes(4, "little")})
    return [logfont, metric, DEVICE_FONTTYPE, argv[3]]


def _monitor(api: GuestApi, argv: list[int], wide: bool, page: _Arguments) -> list[int]:
    rect = page.zeroed(RECT_SIZE, {8: SCREEN[0].to_bytes(4, "little"), 12: SCREEN[1].to_bytes(4, "little")})
    return [ENUMERATED_MONITOR, argv[0], rect, argv[3]]


def _language_group(api: GuestApi, argv: list[int], wide: bool, page: _Arguments) -> list[int]:
    return [
        LGRPID_WESTERN_EUROPE,
        page.string("1", wide),
        page.string("Western Europe and United States", wide),
        LGRPID_INSTALLED,
        argv[2],
    ]


def _oid_info(api: GuestApi, argv: list[int], wide: bool, page: _Arguments) -> list[int]:
    # CRYPT_OID_INFO: cbSize, pszOID, pwszName, dwGroupId, then a union and blobs (zero here).
    ptr = api.ptr_size
    oid = page.string("1.2.840.113549.1.1.1", False)
    name = page.string("RSA", True)
    size = 4 * ptr + 8 + 2 * ptr + 8
    fields = {0: size.to_bytes(4, "little"), ptr: oid.to_bytes(ptr, "little"), 2 * ptr: name.to_bytes(ptr, "little")}
    fields[3 * ptr] = CRYPT_PUBKEY_ALG_OID_GROUP_ID.to_bytes(4, "little")
    return [page.zeroed(size, fields), argv[2]]


def _physical_store(api: GuestApi, argv: list[int], wide: bool, page: _Arguments) -> list[int]:
    # (pvSystemStore, dwFlags, pwszStoreName, pStoreInfo, pvReserved, pvArg)
    info = page.zeroed(32, {0: (32).to_bytes(4, "little")})  # CERT_PHYSICAL_STORE_INFO.cbSize
    return [argv[0], argv[1], page.string(".Default", True), info, 0, argv[2]]


def _system_store(api: GuestApi, argv: list[int], wide: bool, page: _Arguments) -> list[int]:
    info = page.zeroed(16, {0: (4).to_bytes(4, "little")})  # CERT_SYSTEM_STORE_INFO.cbSize
    return [page.string("My", True), CERT_SYSTEM_STORE_CURRENT_USER, info, 0, argv[2]]


ENUMERATORS = (
    Enumerator("kernel32", ("EnumSystemLocalesA", "EnumSystemLocalesW"), 2, 0, _text("00000409")),
    Enumerator(
        "kernel32",
        ("EnumSystemLocalesEx",),
        4,
        0,
        lambda api, argv, wide, page: [page.string("en-US", True), 1, argv[2]],
    ),
    Enumerator("kernel32", ("EnumSystemCodePagesA", "EnumSystemCodePagesW"), 2, 0, _text("1252")),
    Enumerator("kernel32", ("EnumDateFormatsA", "EnumDateFormatsW"), 3, 0, _text("M/d/yyyy")),
    Enumerator("kernel32", ("EnumTimeFormatsA", "EnumTimeFormatsW"), 3, 0, _text("h:mm:ss tt")),
    Enumerator("kernel32", ("EnumCalendarInfoA", "EnumCalendarInfoW"), 4, 0, _text("1")),
    Enumerator("kernel32", ("EnumUILanguagesA", "EnumUILanguagesW"), 3, 0, _text_and_param("0409", 2)),
    Enumerator("kernel32", ("EnumSystemLanguageGroupsA", "EnumSystemLanguageGroupsW"), 3, 0, _language_group),
    Enumerator(
        "kernel32",
        ("EnumSystemGeoID",),
        3,
        2,
        lambda api, argv, wide, page: [GEOID_UNITED_STATES],
    ),
    Enumerator("user32", ("EnumWindows",), 2, 0, _window_and_param(1), result_from_callback=True),
    Enumerator("user32", ("EnumChildWindows",), 3, 1, _window_and_param(2)),
    Enumerator("user32", ("EnumDesktopWindows",), 3, 1, _window_and_param(2), result_from_callback=True),
    Enumerator("user32", ("EnumThreadWindows",), 3, 1, _window_and_param(2), result_from_callback=True),
    Enumerator("user32", ("EnumDisplayMonitors",), 4, 2, _monitor),
    Enumerator("user32", ("EnumDesktopsA", "EnumDesktopsW"), 3, 1, _text_and_param("Default", 2)),
    Enumerator("user32", ("EnumWindowStationsA", "EnumWindowStationsW"), 2, 0, _text_and_param("WinSta0", 1)),
    Enumerator("gdi32", ("EnumFontsA", "EnumFontsW"), 4, 2, _font),
    Enumerator("gdi32", ("EnumFontFamiliesA", "EnumFontFamiliesW"), 4, 2, _font),
    Enumerator("gdi32", ("EnumFontFamiliesExA", "EnumFontFamiliesExW"), 5, 2, _font),
    Enumerator("crypt32", ("CertEnumSystemStore",), 4, 3, _system_store),
    Enumerator("crypt32", ("CertEnumPhysicalStore",), 4, 3, _physical_store),
    # CryptEnumOIDInfo(dwGroupId, dwFlags, pvArg, pfnEnumOIDInfo): pfn(pInfo, pvArg)
    Enumerator("crypt32", ("CryptEnumOIDInfo",), 4, 3, _oid_info, result_from_callback=True),
    # GrayString(hDC, hBrush, lpOutputFunc, lpData, nCount, X, Y, nWidth, nHeight): fn(hDC, lpData, nCount)
    Enumerator(
        "user32",
        ("GrayStringA", "GrayStringW"),
        9,
        2,
        lambda api, argv, wide, page: [argv[0], argv[3], argv[4]],
        result_from_callback=True,
    ),
    # EnumObjects(hdc, nType, lpFunc, lParam): fn(object, lParam)
    Enumerator("gdi32", ("EnumObjects",), 4, 2, lambda api, argv, wide, page: [ENUMERATED_BRUSH, argv[3]]),
    # LineDDA(xStart, yStart, xEnd, yEnd, lpProc, data): proc(x, y, data), here for the first point
    Enumerator("gdi32", ("LineDDA",), 6, 4, lambda api, argv, wide, page: [argv[0], argv[1], argv[5]]),
    # ImmEnumInputContext(idThread, lpfn, lParam): fn(hIMC, lParam)
    Enumerator(
        "imm32",
        ("ImmEnumInputContext",),
        3,
        1,
        lambda api, argv, wide, page: [ENUMERATED_INPUT_CONTEXT, argv[2]],
        result_from_callback=True,
    ),
)


# INIT_ONCE's state in the low bits of its pointer (RTL_RUN_ONCE): 2 once the function succeeded.
INIT_ONCE_COMPLETED = 2
INIT_ONCE_STATE_MASK = 3
# Resource types (RT_*), and the one given for a module whose resources cannot be read.
RT_VERSION = 16
RESOURCE_DIRECTORY = 2  # IMAGE_DIRECTORY_ENTRY_RESOURCE
ERROR_RESOURCE_DATA_NOT_FOUND = 1812
# The property a window enumeration reports when the guest set none: one every top-level window
# created by the shell carries.
DEFAULT_WINDOW_PROPERTY = "SysShadow"
# Window properties the guest set (SetProp), per replay: guest memory -> (window, name) -> data.
_PROPERTIES: weakref.WeakKeyDictionary[Any, dict[tuple[int, str], int]] = weakref.WeakKeyDictionary()


@apihook("kernel32", "InitOnceExecuteOnce", argc=4)
def init_once_execute_once(api: GuestApi, argv: list[int]) -> int:
    """BOOL InitOnceExecuteOnce(INIT_ONCE *once, PINIT_ONCE_FN fn, PVOID parameter, LPVOID *context):
    ``fn(once, parameter, context)`` the first time only; its result is the API's."""
    once, function, parameter, context = argv
    if not once or not function:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    state = int.from_bytes(api.read(once, api.ptr_size), "little")
    if state & INIT_ONCE_STATE_MASK == INIT_ONCE_COMPLETED:
        return 1
    api.write(once, (state & ~INIT_ONCE_STATE_MASK | INIT_ONCE_COMPLETED).to_bytes(api.ptr_size, "little"))
    api.call_guest(function, [once, parameter, context], result_from_callback=True)
    return 1


@apihook("kernel32", ["EnumResourceTypesA", "EnumResourceTypesW"], argc=3)
def enum_resource_types(api: GuestApi, argv: list[int]) -> int:
    """BOOL EnumResourceTypes(HMODULE module, ENUMRESTYPEPROC proc, LONG_PTR param): ``proc(module,
    type, param)`` with the module's first resource type (an integer id, as most are); FALSE
    and ERROR_RESOURCE_DATA_NOT_FOUND for a module without resources."""
    module, proc, param = argv
    if not proc:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    types = _resource_types(api, module) if module else [RT_VERSION]
    if types is None:
        types = [RT_VERSION]
    if not types:
        api.set_last_error(ERROR_RESOURCE_DATA_NOT_FOUND)
        return 0
    api.call_guest(proc, [module, types[0], param], result_from_callback=False)
    return 1


def _resource_types(api: GuestApi, base: int) -> list[int] | None:
    """The integer type ids of a mapped image's resource directory; None when it cannot be read."""
    try:
        lfanew = api.read_u32(base + 0x3C)
        optional = base + lfanew + 24
        magic = int.from_bytes(api.read(optional, 2), "little")
        directories = optional + (112 if magic == 0x20B else 96)
        rva = api.read_u32(directories + RESOURCE_DIRECTORY * 8)
        if not rva:
            return []
        table = base + rva
        named = int.from_bytes(api.read(table + 12, 2), "little")
        ids = int.from_bytes(api.read(table + 14, 2), "little")
        entries = table + 16 + named * 8
        return [api.read_u32(entries + 8 * i) & 0xFFFF for i in range(min(ids, 64))]
    except Exception:  # an address the guest made up: no image there
        return None


@apihook("user32", ["SetPropA", "SetPropW"], argc=3)
def set_prop(api: GuestApi, argv: list[int]) -> int:
    """BOOL SetProp(HWND window, LPCTSTR name, HANDLE data)."""
    window, name, data = argv
    if not window or not name:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    text = api.read_string(name, api.api_name.endswith("W")) if name >> 16 else f"#{name}"
    _PROPERTIES.setdefault(api.memory, {})[(window, text)] = data
    return 1


@apihook("user32", ["GetPropA", "GetPropW"], argc=2)
def get_prop(api: GuestApi, argv: list[int]) -> int:
    """HANDLE GetProp(HWND window, LPCTSTR name)."""
    window, name = argv
    if not name:
        return 0
    text = api.read_string(name, api.api_name.endswith("W")) if name >> 16 else f"#{name}"
    return _PROPERTIES.get(api.memory, {}).get((window, text), 0)


@apihook("user32", ["EnumPropsA", "EnumPropsW"], argc=2)
def enum_props(api: GuestApi, argv: list[int]) -> int:
    """int EnumProps(HWND window, PROPENUMPROC proc): ``proc(window, name, data)``."""
    return _enum_props(api, argv[0], argv[1], None)


@apihook("user32", ["EnumPropsExA", "EnumPropsExW"], argc=3)
def enum_props_ex(api: GuestApi, argv: list[int]) -> int:
    """int EnumPropsEx(HWND window, PROPENUMPROCEX proc, LPARAM param): ``proc(window, name, data,
    param)``."""
    return _enum_props(api, argv[0], argv[1], argv[2])


def _enum_props(api: GuestApi, window: int, proc: int, param: int | None) -> int:
    """The window's first property (the one the guest set, else one the shell sets), to ``proc``;
    the API returns what the callback did (-1 when it is not called)."""
    if not proc:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return -1 & 0xFFFFFFFF
    own = [(name, data) for (w, name), data in _PROPERTIES.get(api.memory, {}).items() if w == window]
    name, data = own[0] if own else (DEFAULT_WINDOW_PROPERTY, 1)
    page = _Arguments(api)
    arguments = [window, page.string(name, api.api_name.endswith("W")), data]
    if param is not None:
        arguments.append(param)
    api.call_guest(proc, arguments, result_from_callback=True)
    return 1


@apihook("user32", ["CallWindowProcA", "CallWindowProcW"], argc=5)
def call_window_proc(api: GuestApi, argv: list[int]) -> int:
    """LRESULT CallWindowProc(lpPrevWndFunc, hWnd, Msg, wParam, lParam): the procedure is called
    with the message (the API returns 0, not the procedure's result)."""
    proc, window, message, wparam, lparam = argv
    if not proc:
        return 0
    api.call_guest(proc, [window, message & 0xFFFFFFFF, wparam, lparam])
    return 0


def _register(enumerator: Enumerator) -> None:
    def handler(api: GuestApi, argv: list[int]) -> int:
        proc = argv[enumerator.proc_index]
        if not proc:
            api.set_last_error(ERROR_INVALID_PARAMETER)
            return 0
        wide = api.api_name.endswith("W")
        arguments = enumerator.arguments(api, argv, wide, _Arguments(api))
        api.call_guest(proc, arguments, enumerator.result_from_callback)
        return 1

    apihook(enumerator.module, list(enumerator.names), argc=enumerator.argc)(handler)


for _enumerator in ENUMERATORS:
    _register(_enumerator)
