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

from collections.abc import Callable
from dataclasses import dataclass

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
)


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
