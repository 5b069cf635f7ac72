"""msvcrt functions Speakeasy has neither a handler nor a signature for (without one, a call
ends the replay as ``unsupported_api``): multibyte classification and string duplication (the
file descriptors are emulator/backends/speakeasy/crtio.py's; ``getenv`` / ``_wgetenv`` are
answered by the backend's source taps, which also record the value as an origin:
emulator/backends/speakeasy/sources.py). The guest's ANSI code page is a single-byte one
(1252), so no byte is a DBCS lead or trail byte.
"""

from __future__ import annotations

import struct
import weakref
from typing import Any

from emulator.apis.core import GuestApi, apihook
from emulator.apis.heap import _alloc
from emulator.apis.strings import guarded_length


@apihook("msvcrt", ["_ismbblead", "_ismbbtrail"], argc=1, conv="cdecl")
def ismbb(api: GuestApi, argv: list[int]) -> int:
    """int _ismbblead(unsigned int c): 0, no byte leads or trails a character in code page 1252."""
    return 0


@apihook("msvcrt", ["_strdup", "_wcsdup"], argc=1, conv="cdecl")
def strdup(api: GuestApi, argv: list[int]) -> int:
    """char *_strdup(const char *s): a heap copy of ``s`` (NULL for NULL), as malloc gives."""
    wide = api.api_name == "_wcsdup"
    if not argv[0]:
        return 0
    unit = 2 if wide else 1
    length = guarded_length(api, argv[0], wide)
    data = api.read(argv[0], length * unit) + b"\0" * unit
    block = _alloc(api, len(data), zero=False)
    if block:
        api.write(block, data)
    return block


# msvcrt's FILE: its size and the offset of _flag (_file, the descriptor, follows it), by
# pointer size; the flags of the standard streams (_IOREAD for stdin, _IOWRT for the others).
FILE_LAYOUT = {8: (0x30, 0x18), 4: (0x20, 0x0C)}
IOREAD, IOWRT = 0x1, 0x2
STANDARD_STREAM_FLAGS = (IOREAD, IOWRT, IOWRT)
_STREAMS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


@apihook("msvcrt", "__iob_func", argc=0, conv="cdecl")
def iob_func(api: GuestApi, argv: list[int]) -> int:
    """FILE *__iob_func(void): msvcrt's array of stdin, stdout and stderr (mingw-w64's x64
    ``stdout`` / ``stderr`` are ``&__iob_func()[1]`` / ``[2]``: printf to them ended the replay
    as ``unsupported_api``). One array per replay, each FILE naming its descriptor."""
    found = _STREAMS.get(api.memory)
    if found:
        return found
    size, flag_at = FILE_LAYOUT[api.ptr_size]
    array = _alloc(api, size * len(STANDARD_STREAM_FLAGS), zero=True)
    for fd, flags in enumerate(STANDARD_STREAM_FLAGS):
        api.write(array + fd * size + flag_at, struct.pack("<Ii", flags, fd))
    _STREAMS[api.memory] = array
    return array


# The C locale's character classes, as msvcrt's _ctype table has them (its mask bits).
UPPER, LOWER, DIGIT, SPACE, PUNCT, CONTROL, BLANK, HEX, ALPHA = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40, 0x80, 0x100
CLASSES = {
    "isalpha": ALPHA | UPPER | LOWER,
    "isupper": UPPER,
    "islower": LOWER,
    "isxdigit": HEX,
    "isspace": SPACE,
    "ispunct": PUNCT,
    "isalnum": ALPHA | UPPER | LOWER | DIGIT,
    "isprint": BLANK | PUNCT | ALPHA | UPPER | LOWER | DIGIT,
    "isgraph": PUNCT | ALPHA | UPPER | LOWER | DIGIT,
    "iscntrl": CONTROL,
}
WIDE_CLASSES = {f"isw{name[2:]}": mask for name, mask in CLASSES.items()} | {"iswdigit": DIGIT}


def ctype_mask(c: int, wide: bool) -> int:
    """msvcrt's class bits of character ``c`` in the C locale (0 for EOF and, narrow, bytes
    above 127); a wide character above 127 is classed by Unicode, as iswalpha and its kin do."""
    if c < 0 or c > (0xFFFF if wide else 0xFF):
        return 0
    if c >= 0x80:
        if not wide:
            return 0
        ch = chr(c)
        mask = (UPPER if ch.isupper() else 0) | (LOWER if ch.islower() else 0)
        mask |= ALPHA if ch.isalpha() else 0
        mask |= DIGIT if ch.isdecimal() else 0
        mask |= SPACE if ch.isspace() else 0
        if ch.isprintable() and not ch.isalnum() and not ch.isspace():
            mask |= PUNCT
        return mask
    if c < 0x20 or c == 0x7F:
        return CONTROL | (SPACE if 9 <= c <= 13 else 0) | (BLANK if c == 9 else 0)
    if c == 0x20:
        return SPACE | BLANK
    ch = chr(c)
    if ch.isdigit():
        return DIGIT | HEX
    if ch.isalpha():
        return ALPHA | (UPPER if ch.isupper() else LOWER) | (HEX if ch.lower() in "abcdef" else 0)
    return PUNCT


@apihook("msvcrt", list(CLASSES), argc=1, conv="cdecl")
@apihook("msvcrt", list(WIDE_CLASSES), argc=1, conv="cdecl")
def ctype(api: GuestApi, argv: list[int]) -> int:
    """int isspace(int c) and its kin (iswspace(wint_t c) ...): the class bits ``c`` has of the
    function's class, nonzero when it is one. (isdigit, toupper and tolower are Speakeasy's.)"""
    name = api.api_name
    wide = name.startswith("isw")
    raw = argv[0] & (0xFFFF if wide else 0xFFFFFFFF)
    c = raw - (1 << 32) if not wide and raw >> 31 else raw  # EOF is -1
    return ctype_mask(c, wide) & (WIDE_CLASSES[name] if wide else CLASSES[name])


@apihook("msvcrt", ["iswctype", "_isctype"], argc=2, conv="cdecl")
def isctype(api: GuestApi, argv: list[int]) -> int:
    """int iswctype(wint_t c, wctype_t mask) / _isctype(int c, int mask): the class bits of ``c``
    among ``mask`` (what the headers' iswalpha(c) and its kin expand to)."""
    wide = api.api_name == "iswctype"
    raw = argv[0] & (0xFFFF if wide else 0xFFFFFFFF)
    c = raw - (1 << 32) if not wide and raw >> 31 else raw
    return ctype_mask(c, wide) & argv[1] & 0xFFFF


@apihook("msvcrt", ["_encode_pointer", "_decode_pointer"], argc=1, conv="cdecl")
def encode_pointer(api: GuestApi, argv: list[int]) -> int:
    """void *_encode_pointer(void *p) / _decode_pointer (msvcr80+): as kernel32's EncodePointer
    / DecodePointer, which they call (Speakeasy's add and subtract 1), so either decodes the
    other's (an MSVC 2005 start-up's initializers call them; unsupported before _initterm ran
    them)."""
    mask = (1 << (8 * api.ptr_size)) - 1
    return (argv[0] + (1 if api.api_name == "_encode_pointer" else -1)) & mask


@apihook("msvcrt", "_encoded_null", argc=0, conv="cdecl")
def encoded_null(api: GuestApi, argv: list[int]) -> int:
    """void *_encoded_null(void): _encode_pointer(NULL)."""
    return 1


@apihook("msvcrt", "__lconv_init", argc=0, conv="cdecl")
def lconv_init(api: GuestApi, argv: list[int]) -> int:
    """int __lconv_init(void): 0 (msvcrt's sets the C locale's lconv chars to CHAR_MAX, which
    localeconv's answer has already; an initializer of MSVC 6-era start-ups)."""
    return 0
