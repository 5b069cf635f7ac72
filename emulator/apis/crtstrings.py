"""msvcrt's string and number functions Speakeasy lacks (a call ended the replay as
``unsupported_api``): ``strtol`` / ``strtoul`` and their wide and 64-bit kin (bases 0 and 2-36,
``endptr``, clamped on overflow), ``atol``, ``strtok`` / ``wcstok`` (their position kept per
thread, as msvcrt's per-thread data has it) and ``strtok_s``, ``mbstowcs`` (code page 1252, the
guest's ANSI code page) and ``strerror`` / ``_wcserror`` (msvcrt's message table, copied into
a per-thread buffer) and ``memchr``. ``errno`` is not set.
"""

from __future__ import annotations

import weakref
from typing import Any

from emulator.apis.core import GuestApi, apihook
from emulator.apis.heap import _alloc
from emulator.apis.strings import guarded_length

# The longest number text strtol reads (digits past it are not looked at).
MAX_NUMBER_CHARS = 4096
# The C locale's white space (isspace): space, \t \n \v \f \r.
C_SPACE = frozenset(" \t\n\v\f\r")
# (bits, signed) of each conversion's result: long and unsigned long are 32 bits on Windows.
CONVERSIONS = {
    "strtol": (32, True),
    "wcstol": (32, True),
    "atol": (32, True),
    "_wtol": (32, True),
    "strtoul": (32, False),
    "wcstoul": (32, False),
    "_strtoi64": (64, True),
    "_wcstoi64": (64, True),
    "strtoll": (64, True),
    "_atoi64": (64, True),
    "_wtoi64": (64, True),
    "_strtoui64": (64, False),
    "_wcstoui64": (64, False),
    "strtoull": (64, False),
}
WIDE_CONVERSIONS = frozenset(("wcstol", "wcstoul", "_wcstoi64", "_wcstoui64", "_wtol", "_wtoi64"))


def parse_integer(text: str, base: int, bits: int, signed: bool) -> tuple[int, int]:
    """(value, characters consumed) as msvcrt's strtol family converts ``text``: white space,
    a sign, ``0x`` for base 16 or 0, a leading ``0`` meaning octal for base 0; out-of-range
    values clamp (LONG_MAX / LONG_MIN / ULONG_MAX); no digit: (0, 0), endptr at the start, as
    msvcrt leaves it (``"0x"`` too). An unsigned conversion of ``-n`` gives its two's complement."""
    if base == 1 or not 0 <= base <= 36:
        return 0, 0
    i = 0
    while i < len(text) and text[i] in C_SPACE:
        i += 1
    negative = False
    if i < len(text) and text[i] in "+-":
        negative = text[i] == "-"
        i += 1
    if base in (0, 16) and text[i : i + 2].lower() == "0x":
        base, i = 16, i + 2
    elif base == 0:
        base = 8 if text[i : i + 1] == "0" else 10
    value, digits = 0, 0
    while i < len(text):
        ch = text[i].lower()
        digit = ord(ch) - 48 if "0" <= ch <= "9" else ord(ch) - 87 if "a" <= ch <= "z" else 99
        if digit >= base:
            break
        value = value * base + digit
        digits += 1
        i += 1
    if not digits:
        return 0, 0
    if signed:
        high = (1 << (bits - 1)) - (0 if negative else 1)
        value = -min(value, high) if negative else min(value, high)
        return value & ((1 << bits) - 1), i
    if value > (1 << bits) - 1:
        return (1 << bits) - 1, i
    return (-value if negative else value) & ((1 << bits) - 1), i


def _number_text(api: GuestApi, address: int, wide: bool) -> str:
    length = min(guarded_length(api, address, wide), MAX_NUMBER_CHARS)
    data = api.read(address, length * (2 if wide else 1))
    return data.decode("utf-16-le", "replace") if wide else data.decode("latin-1")


@apihook("msvcrt", ["strtol", "wcstol", "strtoul", "wcstoul"], argc=3, conv="cdecl")
@apihook("msvcrt", ["_strtoi64", "_wcstoi64", "_strtoui64", "_wcstoui64"], argc=3, conv="cdecl", ret64=True)
@apihook("msvcrt", ["strtoll", "strtoull"], argc=3, conv="cdecl", ret64=True)
def strtol(api: GuestApi, argv: list[int]) -> int:
    """long strtol(const char *str, char **endptr, int base) and its kin: the value, ``*endptr``
    after the last digit read (at ``str`` when there was none)."""
    address, endptr, base = argv[0], argv[1], argv[2] & 0xFFFFFFFF
    wide = api.api_name in WIDE_CONVERSIONS
    if not address:
        return 0
    bits, signed = CONVERSIONS[api.api_name]
    value, used = parse_integer(_number_text(api, address, wide), base, bits, signed)
    if endptr:
        api.write_ptr(endptr, address + used * (2 if wide else 1))
    return value


@apihook("msvcrt", ["atol", "_wtol"], argc=1, conv="cdecl")
@apihook("msvcrt", ["_atoi64", "_wtoi64"], argc=1, conv="cdecl", ret64=True)
def atol(api: GuestApi, argv: list[int]) -> int:
    """long atol(const char *str): strtol(str, NULL, 10)."""
    if not argv[0]:
        return 0
    bits, signed = CONVERSIONS[api.api_name]
    return parse_integer(_number_text(api, argv[0], api.api_name in WIDE_CONVERSIONS), 10, bits, signed)[0]


# strtok's position, per replay and thread (msvcrt keeps it in the thread's data).
_TOKENS: weakref.WeakKeyDictionary[Any, dict[tuple[str, int], int]] = weakref.WeakKeyDictionary()


def _next_token(api: GuestApi, start: int, delimiters: int, wide: bool) -> tuple[int, int]:
    """(token, where the next search starts) from ``start``: delimiters skipped, the token's end
    overwritten with NUL; (0, 0) when only delimiters are left."""
    unit = 2 if wide else 1
    codec = "utf-16-le" if wide else "latin-1"
    stops = set(api.read(delimiters, guarded_length(api, delimiters, wide) * unit).decode(codec, "replace"))
    length = guarded_length(api, start, wide)
    text = api.read(start, length * unit).decode(codec, "replace")
    i = 0
    while i < len(text) and text[i] in stops:
        i += 1
    if i == len(text):
        return 0, start + length * unit
    j = i
    while j < len(text) and text[j] not in stops:
        j += 1
    if j < len(text):
        api.write(start + j * unit, b"\0" * unit)
        return start + i * unit, start + (j + 1) * unit
    return start + i * unit, start + j * unit


@apihook("msvcrt", ["strtok", "wcstok"], argc=2, conv="cdecl")
def strtok(api: GuestApi, argv: list[int]) -> int:
    """char *strtok(char *str, const char *delimiters): the next token of ``str`` (of the
    string the calling thread gave last, for NULL); NULL when none is left."""
    wide = api.api_name == "wcstok"
    state = _TOKENS.setdefault(api.memory, {})
    key = (api.api_name, api.current_thread_id())
    start = argv[0] or state.get(key, 0)
    if not start or not argv[1]:
        return 0
    token, state[key] = _next_token(api, start, argv[1], wide)
    return token


@apihook("msvcrt", ["strtok_s", "wcstok_s"], argc=3, conv="cdecl")
def strtok_s(api: GuestApi, argv: list[int]) -> int:
    """char *strtok_s(char *str, const char *delimiters, char **context): strtok with its
    position in ``*context``."""
    context = argv[2]
    if not context or not argv[1]:
        return 0
    start = argv[0] or int.from_bytes(api.read(context, api.ptr_size), "little")
    if not start:
        return 0
    token, position = _next_token(api, start, argv[1], api.api_name == "wcstok_s")
    api.write_ptr(context, position)
    return token


@apihook("msvcrt", "mbstowcs", argc=3, conv="cdecl")
def mbstowcs(api: GuestApi, argv: list[int]) -> int:
    """size_t mbstowcs(wchar_t *out, const char *in, size_t count): the characters converted
    (code page 1252, one byte a character), without the terminator; with ``out`` NULL the
    length needed. At most ``count`` characters are written, terminated when room is left."""
    out, address, count = argv
    if not address:
        return (1 << (8 * api.ptr_size)) - 1  # (size_t)-1
    text = api.read(address, guarded_length(api, address, False)).decode("cp1252", "replace")
    if not out:
        return len(text)
    written = text[:count]
    data = written.encode("utf-16-le") + (b"\0\0" if len(written) < count else b"")
    api.write(out, data)
    return len(written)


# msvcrt's _sys_errlist: errno -> message (44 and up: "Unknown error").
ERROR_MESSAGES = (
    "No error",
    "Operation not permitted",
    "No such file or directory",
    "No such process",
    "Interrupted function call",
    "Input/output error",
    "No such device or address",
    "Arg list too long",
    "Exec format error",
    "Bad file descriptor",
    "No child processes",
    "Resource temporarily unavailable",
    "Not enough space",
    "Permission denied",
    "Bad address",
    "Unknown error",
    "Resource device",
    "File exists",
    "Improper link",
    "No such device",
    "Not a directory",
    "Is a directory",
    "Invalid argument",
    "Too many open files in system",
    "Too many open files",
    "Inappropriate I/O control operation",
    "Unknown error",
    "File too large",
    "No space left on device",
    "Invalid seek",
    "Read-only file system",
    "Too many links",
    "Broken pipe",
    "Domain error",
    "Result too large",
    "Unknown error",
    "Resource deadlock avoided",
    "Unknown error",
    "Filename too long",
    "No locks available",
    "Function not implemented",
    "Directory not empty",
    "Illegal byte sequence",
    "Unknown error",
)
# msvcrt's per-thread strerror buffer (_SYS_MSGMAX + 2 characters).
ERROR_BUFFER_CHARS = 94
_ERROR_BUFFERS: weakref.WeakKeyDictionary[Any, dict[tuple[bool, int], int]] = weakref.WeakKeyDictionary()


def error_message(number: int) -> str:
    return ERROR_MESSAGES[number] if 0 <= number < len(ERROR_MESSAGES) else "Unknown error"


@apihook("msvcrt", ["strerror", "_wcserror"], argc=1, conv="cdecl")
def strerror(api: GuestApi, argv: list[int]) -> int:
    """char *strerror(int errnum): the message of ``errnum``, in the calling thread's buffer
    (the next call overwrites it, as msvcrt's does)."""
    wide = api.api_name == "_wcserror"
    raw = argv[0] & 0xFFFFFFFF
    number = raw - (1 << 32) if raw >> 31 else raw
    buffers = _ERROR_BUFFERS.setdefault(api.memory, {})
    key = (wide, api.current_thread_id())
    if key not in buffers:
        buffers[key] = _alloc(api, ERROR_BUFFER_CHARS * (2 if wide else 1), zero=True)
    if buffers[key]:
        api.write_string(buffers[key], error_message(number), wide)
    return buffers[key]


# Bytes memchr reads at a time (a large count costs nothing past the byte found).
MEMCHR_CHUNK = 0x1000


@apihook("msvcrt", "memchr", argc=3, conv="cdecl")
def memchr(api: GuestApi, argv: list[int]) -> int:
    """void *memchr(const void *buf, int c, size_t count): the first byte ``c`` among ``count``
    (NULL if none). It reads no further than the byte found: an unreadable page after it is never
    touched, and one before it faults in the call, as the CRT's loop does."""
    buf, c, count = argv
    count &= (1 << (8 * api.ptr_size)) - 1
    needle = bytes([c & 0xFF])
    done = 0
    while done < count:
        size = min(MEMCHR_CHUNK - (buf + done) % MEMCHR_CHUNK, count - done)
        found = api.read(buf + done, size).find(needle)
        if found >= 0:
            return buf + done + found
        done += size
    return 0
