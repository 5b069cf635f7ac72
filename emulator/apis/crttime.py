"""msvcrt's calendar functions (Speakeasy had none: ``localtime`` ended the replay as
``unsupported_api``): ``localtime`` / ``gmtime`` and their ``32`` / ``64`` / ``_s`` kin,
``mktime`` / ``_mkgmtime`` and ``strftime`` / ``wcsftime`` in the C locale.

The time is the replay's virtual clock's (``time()`` is emulator/apis/clock.py's); the guest's
time zone is UTC without daylight saving (GetTimeZoneInformation answers a zero bias), so local
time is UTC and ``tm_isdst`` is 0. ``localtime`` and ``gmtime`` return the calling thread's one
``struct tm`` (each call overwrites it, as msvcrt's per-thread buffer).
"""

from __future__ import annotations

import datetime as dt
import struct
import weakref
from typing import Any

from emulator.apis.core import GuestApi, apihook
from emulator.apis.heap import _alloc

TM_FORMAT = "<9i"  # tm_sec, tm_min, tm_hour, tm_mday, tm_mon, tm_year, tm_wday, tm_yday, tm_isdst
TM_SIZE = struct.calcsize(TM_FORMAT)
# The latest times msvcrt converts: 3000-12-31 23:59:59 (64-bit), 2038-01-18 23:59:59 (32-bit).
MAX_TIME64 = 32535215999
MAX_TIME32 = 0x7FFFD27F
EINVAL = 22
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# The longest strftime format read, in characters.
MAX_FORMAT_CHARS = 4096
DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# The guest's time zone name (GetTimeZoneInformation's StandardName is empty).
ZONE_NAME = ""

_TM_BUFFERS: weakref.WeakKeyDictionary[Any, dict[int, int]] = weakref.WeakKeyDictionary()


def _time_bits(api: GuestApi) -> int:
    """The width of time_t of the unsuffixed functions: 32 bits in x86 msvcrt, 64 on x64."""
    name = api.api_name
    if "64" in name:
        return 64
    if "32" in name:
        return 32
    return 32 if api.ptr_size == 4 else 64


def _read_time(api: GuestApi, address: int, bits: int) -> int:
    raw = int.from_bytes(api.read(address, bits // 8), "little")
    return raw - (1 << bits) if raw >> (bits - 1) else raw


def broken_down(seconds: int) -> tuple[int, ...]:
    """struct tm's nine fields of ``seconds`` since 1970 (UTC)."""
    when = EPOCH + dt.timedelta(seconds=seconds)
    yday = when.timetuple().tm_yday - 1
    wday = (when.weekday() + 1) % 7
    return (when.second, when.minute, when.hour, when.day, when.month - 1, when.year - 1900, wday, yday, 0)


def _convert(api: GuestApi, time_ptr: int, bits: int) -> tuple[int, ...] | None:
    if not time_ptr:
        return None
    seconds = _read_time(api, time_ptr, bits)
    if seconds < 0 or seconds > (MAX_TIME64 if bits == 64 else 0x7FFFFFFF):
        return None
    return broken_down(seconds)


@apihook(
    "msvcrt", ["localtime", "gmtime", "_localtime32", "_gmtime32", "_localtime64", "_gmtime64"], argc=1, conv="cdecl"
)
def localtime(api: GuestApi, argv: list[int]) -> int:
    """struct tm *localtime(const time_t *t): the calling thread's struct tm holding ``*t``
    (UTC, the guest's zone); NULL for NULL or a time before 1970 or after msvcrt's range."""
    fields = _convert(api, argv[0], _time_bits(api))
    if fields is None:
        return 0
    buffers = _TM_BUFFERS.setdefault(api.memory, {})
    thread = api.current_thread_id()
    if thread not in buffers:
        buffers[thread] = _alloc(api, TM_SIZE, zero=True)
    if buffers[thread]:
        api.write(buffers[thread], struct.pack(TM_FORMAT, *fields))
    return buffers[thread]


@apihook(
    "msvcrt",
    ["localtime_s", "gmtime_s", "_localtime32_s", "_gmtime32_s", "_localtime64_s", "_gmtime64_s"],
    argc=2,
    conv="cdecl",
)
def localtime_s(api: GuestApi, argv: list[int]) -> int:
    """errno_t _localtime64_s(struct tm *out, const __time64_t *t): 0, or EINVAL (``*out``
    filled with -1) for a bad time."""
    out, time_ptr = argv
    if not out:
        return EINVAL
    fields = _convert(api, time_ptr, _time_bits(api))
    api.write(out, struct.pack(TM_FORMAT, *(fields or (-1,) * 9)))
    return 0 if fields is not None else EINVAL


@apihook("msvcrt", ["mktime", "_mkgmtime", "_mktime32", "_mkgmtime32"], argc=1, conv="cdecl")
@apihook("msvcrt", ["_mktime64", "_mkgmtime64"], argc=1, conv="cdecl", ret64=True)
def mktime(api: GuestApi, argv: list[int]) -> int:
    """time_t mktime(struct tm *tm): the seconds since 1970 of the (local = UTC) time ``*tm``
    names, whose fields are normalized in place (tm_wday and tm_yday set, tm_isdst 0); -1 when
    it is out of range."""
    bits = _time_bits(api)
    failed = (1 << bits) - 1
    if not argv[0]:
        return failed
    sec, minute, hour, mday, mon, year = struct.unpack(TM_FORMAT, api.read(argv[0], TM_SIZE))[:6]
    try:
        start = dt.datetime(1900 + year + mon // 12, mon % 12 + 1, 1, tzinfo=dt.UTC)
        when = start + dt.timedelta(days=mday - 1, hours=hour, minutes=minute, seconds=sec)
    except (ValueError, OverflowError):
        return failed
    seconds = int((when - EPOCH).total_seconds())
    if seconds < 0 or seconds > (MAX_TIME64 if bits == 64 else MAX_TIME32):
        return failed
    api.write(argv[0], struct.pack(TM_FORMAT, *broken_down(seconds)))
    return seconds & failed


def format_time(fmt: str, tm: tuple[int, ...]) -> str | None:
    """``fmt`` expanded as msvcrt's strftime does in the C locale (``#`` drops leading zeros, or
    makes %c / %x long); None for a directive it does not know or a field out of range."""
    mon, wday, yday, hour = tm[4], tm[6], tm[7], tm[2]
    if not (0 <= mon <= 11 and 0 <= wday <= 6 and 0 <= yday <= 365 and 0 <= hour <= 23):
        return None
    out: list[str] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        i += 1
        if ch != "%":
            out.append(ch)
            continue
        alternate = i < len(fmt) and fmt[i] == "#"
        if alternate:
            i += 1
        if i >= len(fmt):
            return None
        produced = _directive(fmt[i], alternate, tm)
        i += 1
        if produced is None:
            return None
        out.append(produced)
    return "".join(out)


def _directive(directive: str, alternate: bool, tm: tuple[int, ...]) -> str | None:
    """What one strftime directive (``%`` and ``directive``) gives for ``tm``."""
    sec, minute, hour, mday, mon, year, wday, yday = tm[:8]
    full_year = 1900 + year
    twelve = hour % 12 or 12
    noon = "AM" if hour < 12 else "PM"

    def number(value: int, width: int = 2) -> str:
        return str(value) if alternate else str(value).zfill(width)

    short_date = f"{mon + 1:02d}/{mday:02d}/{full_year % 100:02d}"
    long_date = f"{DAYS[wday]}, {MONTHS[mon]} {mday:02d}, {full_year}"
    clock = f"{hour:02d}:{minute:02d}:{sec:02d}"
    if directive in "gGV":
        iso_year, iso_week = _iso_week(full_year, yday)
        return {"g": number(iso_year % 100), "G": str(iso_year), "V": number(iso_week)}[directive]
    fixed = {
        "a": DAYS[wday][:3],
        "A": DAYS[wday],
        "b": MONTHS[mon][:3],
        "h": MONTHS[mon][:3],
        "B": MONTHS[mon],
        "c": f"{long_date if alternate else short_date} {clock}",
        "x": long_date if alternate else short_date,
        "X": clock,
        "C": number(full_year // 100),
        "d": number(mday),
        "e": str(mday) if alternate else f"{mday:2d}",
        "D": short_date,
        "F": f"{full_year:04d}-{mon + 1:02d}-{mday:02d}",
        "H": number(hour),
        "I": number(twelve),
        "j": number(yday + 1, 3),
        "m": number(mon + 1),
        "M": number(minute),
        "n": "\n",
        "p": noon,
        "r": f"{twelve:02d}:{minute:02d}:{sec:02d} {noon}",
        "R": f"{hour:02d}:{minute:02d}",
        "S": number(sec),
        "t": "\t",
        "T": clock,
        "u": str(wday or 7),
        "U": number((yday + 7 - wday) // 7),
        "w": str(wday),
        "W": number((yday + 7 - (wday + 6) % 7) // 7),
        "y": number(full_year % 100),
        "Y": str(full_year),
        "z": "+0000",
        "Z": ZONE_NAME,
        "%": "%",
    }
    return fixed.get(directive)


def _iso_week(year: int, yday: int) -> tuple[int, int]:
    """(ISO year, ISO week) of the day ``yday`` of ``year``."""
    try:
        iso = (dt.date(year, 1, 1) + dt.timedelta(days=yday)).isocalendar()
        return iso[0], iso[1]
    except (ValueError, OverflowError):
        return year, 1


@apihook("msvcrt", ["strftime", "wcsftime"], argc=4, conv="cdecl")
def strftime(api: GuestApi, argv: list[int]) -> int:
    """size_t strftime(char *out, size_t size, const char *format, const struct tm *tm): the
    characters written without the terminator; 0 (and ``out`` emptied) when the result does not
    fit in ``size`` or the format or a field is invalid."""
    out, size, fmt, tm_ptr = argv
    wide = api.api_name == "wcsftime"
    if not out or not size or not fmt or not tm_ptr:
        return 0
    text = format_time(
        api.read_string(fmt, wide, max_chars=MAX_FORMAT_CHARS), struct.unpack(TM_FORMAT, api.read(tm_ptr, TM_SIZE))
    )
    if text is None or len(text) + 1 > size:
        api.write(out, b"\0\0" if wide else b"\0")
        return 0
    api.write_string(out, text, wide)
    return len(text)


# The UCRT's time zone variables, per replay: _daylight, _timezone, _dstbias and _tzname[2].
_ZONE_VARIABLES: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()


@apihook("msvcrt", ["__daylight", "__timezone", "__dstbias", "__tzname"], argc=0, conv="cdecl")
def zone_variable(api: GuestApi, argv: list[int]) -> int:
    """int *__daylight(void), long *__timezone(void), long *__dstbias(void), char **__tzname(void):
    the guest's zone (UTC: no daylight saving, 0 seconds west of UTC; its names empty, as
    GetTimeZoneInformation's StandardName is)."""
    variables = _ZONE_VARIABLES.setdefault(api.memory, {})
    name = api.api_name
    if name not in variables:
        if name == "__tzname":
            block = _alloc(api, 2 * api.ptr_size + 2, zero=True)
            if block:
                for i in range(2):
                    api.write_ptr(block + i * api.ptr_size, block + 2 * api.ptr_size + i)
        else:
            block = _alloc(api, 4, zero=True)
        variables[name] = block
    return variables[name]
