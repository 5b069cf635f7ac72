"""The printf family's formatting as the Windows C runtime and ``wsprintf`` do it.

Speakeasy's own formatter (``ApiHandler.do_str_format``, used by ``sprintf``, ``wsprintfA/W``,
``_snprintf``, ``vsprintf``, ``wnsprintf``, ``printf``, ``DbgPrint``...) keeps a length modifier
across conversions, so ``"%lu %lx"`` lost its second conversion and ended the replay with "API
handler failed: not all arguments converted" (found on a probe formatting a beacon); it has no
``*`` width, no ``I64``/``h``/``hh`` sizes, no floats and counts argument slots without them.
:func:`install` replaces both of Speakeasy's methods with :func:`format_slots` and
:func:`slot_count`, which follow the Microsoft format specification: ``l`` is 32 bits (LLP64),
``ll``/``I64``/``j`` 64, ``I``/``z``/``t`` the pointer's size; on x86 a 64-bit or floating
argument takes two stack slots; ``%s`` is wide in a wide function and ``%S`` the other width.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import speakeasy.winenv.arch as se_arch

from emulator.limits import MAX_FORMATTED_TEXT

_CDECL = se_arch.CALL_CONV_CDECL

# flags, width, precision, length, conversion (the length spellings, longest first)
_SPEC = re.compile(
    r"%(?P<flags>[-+ #0']*)(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?"
    r"(?P<length>hh|h|ll|l|L|w|I64|I32|I|z|j|t)?(?P<conv>[diouxXcCsSZpneEfFgGaA%])"
)
_INTEGER = "diouxX"
_FLOATING = "eEfFgGaA"
# Longest string read for one %s: a bound on a runaway read of unterminated guest memory.
MAX_FORMATTED_STRING = 0x10000


@dataclass(frozen=True)
class _Conversion:
    flags: str
    width: str | None
    precision: str | None
    length: str
    conv: str


def _pieces(fmt: str) -> list[str | _Conversion]:
    """The format as literal text and conversions, in order."""
    out: list[str | _Conversion] = []
    at = 0
    for match in _SPEC.finditer(fmt):
        if match.start() > at:
            out.append(fmt[at : match.start()])
        if match.group("conv") == "%":
            out.append("%")
        else:
            out.append(
                _Conversion(
                    match.group("flags").replace("'", ""),
                    match.group("width"),
                    match.group("precision"),
                    match.group("length") or "",
                    match.group("conv"),
                )
            )
        at = match.end()
    out.append(fmt[at:])
    return out


def _integer_bits(length: str, ptr_size: int) -> int:
    if length in ("ll", "I64", "j"):
        return 64
    if length in ("I", "z", "t"):
        return ptr_size * 8
    if length == "h":
        return 16
    if length == "hh":
        return 8
    return 32  # none, l, I32, w (LLP64: long is 32 bits)


def _slots_of(conversion: _Conversion, ptr_size: int) -> int:
    """Stack slots the conversion's own argument takes (a * width or precision adds one each)."""
    if conversion.conv in _FLOATING:
        return 1 if ptr_size == 8 else 2
    if conversion.conv in _INTEGER and _integer_bits(conversion.length, ptr_size) > ptr_size * 8:
        return 2
    return 1


def slot_count(fmt: str, ptr_size: int) -> int:
    """How many pointer-sized argument slots the format reads."""
    count = 0
    for piece in _pieces(fmt):
        if isinstance(piece, _Conversion):
            count += (piece.width == "*") + (piece.precision == "*") + _slots_of(piece, ptr_size)
    return count


def format_slots(
    fmt: str,
    slots: Sequence[int],
    ptr_size: int,
    wide: bool,
    read_narrow: Callable[[int], str],
    read_wide: Callable[[int], str],
) -> str:
    """``fmt`` formatted with the argument ``slots`` (as read from the stack or a va_list).
    ``wide``: a wide-character function (``%s`` and ``%c`` are wide there). Missing slots read 0.
    The text ends after MAX_FORMATTED_TEXT characters (a width or precision past it is cut to it)."""
    queue = list(slots)

    def take() -> int:
        return queue.pop(0) if queue else 0

    out: list[str] = []
    length = 0
    for piece in _pieces(fmt):
        if length >= MAX_FORMATTED_TEXT:
            break
        if isinstance(piece, str):
            out.append(piece)
            length += len(piece)
            continue
        flags = piece.flags
        width = piece.width
        if width == "*":
            value = _signed(take(), 32)
            if value < 0:
                flags += "-"
            width = str(abs(value))
        precision = piece.precision
        if precision == "*":
            value = _signed(take(), 32)
            precision = str(value) if value >= 0 else None
        value = take()
        if _slots_of(piece, ptr_size) == 2:  # x86: a 64-bit integer or a double
            value |= take() << 32
        text = _render(
            piece, flags, _bounded(width), _bounded(precision), value, ptr_size, wide, read_narrow, read_wide
        )
        out.append(text)
        length += len(text)
    return "".join(out)[:MAX_FORMATTED_TEXT]


def _bounded(number: str | None) -> str | None:
    """A width or precision cut to MAX_FORMATTED_TEXT (it never makes more text than that)."""
    return number if number is None or len(number) < 7 else str(min(int(number), MAX_FORMATTED_TEXT))


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _render(
    piece: _Conversion,
    flags: str,
    width: str | None,
    precision: str | None,
    value: int,
    ptr_size: int,
    wide: bool,
    read_narrow: Callable[[int], str],
    read_wide: Callable[[int], str],
) -> str:
    conv = piece.conv
    spec = "%" + flags + (width or "") + ("." + precision if precision is not None else "")
    if conv in _INTEGER:
        bits = _integer_bits(piece.length, ptr_size)
        number = _signed(value, bits) if conv in "di" else value & ((1 << bits) - 1)
        if conv == "o" and "#" in flags:
            # C's alternate octal form is a leading 0 (Python's is "0o")
            digits = format(number, "o").rjust(int(precision or 1), "0")
            digits = digits if digits.startswith("0") else "0" + digits
            return ("%" + flags.replace("#", "").replace("0", "") + (width or "") + "s") % digits
        return (spec + ("d" if conv in "diu" else conv)) % number
    if conv in _FLOATING:
        number = struct.unpack("<d", (value & (1 << 64) - 1).to_bytes(8, "little"))[0]
        return (spec + conv.replace("a", "e").replace("A", "E")) % number
    if conv == "p":
        return format(value & ((1 << (ptr_size * 8)) - 1), "X").rjust(ptr_size * 2, "0")
    if conv == "n":
        return ""  # the count is not written: the C runtime refuses %n by default
    if conv in "cC":
        is_wide = piece.length in ("l", "w") or (piece.length != "h" and (conv == "c") == wide)
        code = value & (0xFFFF if is_wide else 0xFF)
        char = chr(code) if is_wide else bytes([code]).decode("latin-1")
        return ("%" + flags + (width or "") + "s") % char
    # s, S, Z (Z: a counted string, read as its text here)
    is_wide = piece.length in ("l", "w") or (piece.length != "h" and (conv == "s") == wide)
    read = read_wide if is_wide else read_narrow
    text = read(value)[:MAX_FORMATTED_STRING] if value else "(null)"
    return (spec + "s") % text


def install() -> None:
    """Speakeasy's handlers format with this module (idempotent)."""
    import speakeasy.winenv.api.api as se_api

    if getattr(se_api.ApiHandler.do_str_format, "__module__", "") == __name__:
        return

    def do_str_format(self: Any, string: str, argv: Sequence[int], wide: bool = False) -> str:
        return format_slots(string, argv, self.get_ptr_size(), wide, self.read_string, self.read_wide_string)

    def get_va_arg_count(self: Any, fmt: str) -> int:
        return slot_count(fmt, self.get_ptr_size())

    do_str_format.__module__ = get_va_arg_count.__module__ = __name__
    se_api.ApiHandler.do_str_format = do_str_format  # type: ignore[method-assign]
    se_api.ApiHandler.get_va_arg_count = get_va_arg_count  # type: ignore[method-assign]


# ---- the functions Speakeasy lacks, and its _vsnprintf (it wrote UTF-8) ------------------------

# C runtime constants: _snprintf_s's count asking for truncation, the result of a failed call.
_TRUNCATE = (1 << 64) - 1
FAILED = -1


@dataclass(frozen=True)
class _Family:
    """One formatting function: its fixed parameters in order (``buf``, ``size``: the buffer's
    size in characters for the ``_s`` functions, ``count``: ``_snprintf``'s limit, ``c99``: C99
    ``vsnprintf``'s, ``fmt``; then ``ap``, a va_list, or the variable arguments)."""

    params: tuple[str, ...]
    wide: bool


_FAMILY = {
    "vsprintf": _Family(("buf", "fmt", "ap"), False),
    "vswprintf": _Family(("buf", "fmt", "ap"), True),  # msvcrt's: no count (as _vswprintf)
    "_vswprintf": _Family(("buf", "fmt", "ap"), True),
    "_vsnprintf": _Family(("buf", "count", "fmt", "ap"), False),
    "_vsnwprintf": _Family(("buf", "count", "fmt", "ap"), True),
    "vsnprintf": _Family(("buf", "c99", "fmt", "ap"), False),
    "_vscprintf": _Family(("fmt", "ap"), False),
    "_vscwprintf": _Family(("fmt", "ap"), True),
    "vsprintf_s": _Family(("buf", "size", "fmt", "ap"), False),
    "vswprintf_s": _Family(("buf", "size", "fmt", "ap"), True),
    "_vsnprintf_s": _Family(("buf", "size", "count", "fmt", "ap"), False),
    "_vsnwprintf_s": _Family(("buf", "size", "count", "fmt", "ap"), True),
    "swprintf": _Family(("buf", "fmt"), True),  # msvcrt's: no count (as _swprintf)
    "_swprintf": _Family(("buf", "fmt"), True),
    "_scprintf": _Family(("fmt",), False),
    "_scwprintf": _Family(("fmt",), True),
    "sprintf_s": _Family(("buf", "size", "fmt"), False),
    "swprintf_s": _Family(("buf", "size", "fmt"), True),
    "_snprintf_s": _Family(("buf", "size", "count", "fmt"), False),
    "_snwprintf_s": _Family(("buf", "size", "count", "fmt"), True),
}
# The modules exporting them (ntdll has the older ones too).
_MODULES = ("msvcrt", "ntdll")
# The longest format string read.
MAX_FORMAT_CHARS = 0x2000


def _write_text(api: Any, address: int, text: str, wide: bool, terminate: bool) -> None:
    data = text.encode("utf-16-le" if wide else "latin-1", "replace")
    if terminate:
        data += b"\0\0" if wide else b"\0"
    if address and data:
        api.mem_write(address, data)


def formatted(emu: Any, fmt_address: int, wide: bool, ap: int | None, fixed: int) -> str:
    """The text a printf-family call formats: its format at ``fmt_address``, its arguments in
    the va_list ``ap`` or, without one, on the stack after its ``fixed`` parameters."""
    ptr_size = emu.get_ptr_size()
    fmt = emu.read_mem_string(fmt_address, 2 if wide else 1, max_chars=MAX_FORMAT_CHARS) if fmt_address else ""
    slots_wanted = slot_count(fmt, ptr_size)
    if ap is not None:
        raw = emu.mem_read(ap, slots_wanted * ptr_size) if ap and slots_wanted else b""
        slots = [int.from_bytes(raw[i : i + ptr_size], "little") for i in range(0, len(raw), ptr_size)]
    else:
        slots = list(emu.get_func_argv(_CDECL, fixed + slots_wanted)[fixed:])

    def narrow(address: int) -> str:
        return str(emu.read_mem_string(address, 1, max_chars=MAX_FORMATTED_STRING))

    def wide_text(address: int) -> str:
        return str(emu.read_mem_string(address, 2, max_chars=MAX_FORMATTED_STRING))

    return format_slots(fmt, slots, ptr_size, wide, narrow, wide_text)


def _call(family: _Family, emu: Any, argv: Sequence[int]) -> int:
    """The function of ``family`` called with ``argv`` (its fixed parameters): its result."""
    values = dict(zip(family.params, argv, strict=False))
    ptr_size = emu.get_ptr_size()
    wide = family.wide
    text = formatted(emu, values["fmt"], wide, values.get("ap") if "ap" in values else None, len(family.params))
    if "buf" not in values:
        return len(text)
    buf = values["buf"]
    mask = (1 << (ptr_size * 8)) - 1
    if "size" in values:
        size = values["size"] & mask
        count = values.get("count", _TRUNCATE & mask)
        if not buf or not size:
            return FAILED
        limit = size - 1 if count & mask == _TRUNCATE & mask else min(count & mask, size - 1)
        if len(text) <= limit:
            _write_text(emu, buf, text, wide, True)
            return len(text)
        truncating = count & mask == _TRUNCATE & mask or (count & mask) < size
        _write_text(emu, buf, text[:limit] if truncating else "", wide, True)
        return FAILED
    if "count" in values:
        count = values["count"] & mask
        if len(text) < count:
            _write_text(emu, buf, text, wide, True)
            return len(text)
        _write_text(emu, buf, text[:count], wide, False)  # no terminator when it does not fit
        return len(text) if len(text) == count else FAILED
    if "c99" in values:
        count = values["c99"] & mask
        if count:
            _write_text(emu, buf, text[: count - 1], wide, True)
        return len(text)
    _write_text(emu, buf, text, wide, True)
    return len(text)


def install_handlers(se: Any) -> None:
    """The functions of the printf family that Speakeasy has no handler for (and its _vsnprintf),
    on the replay's Speakeasy ``se``. cdecl: the caller pops its arguments, so only the fixed ones
    are declared."""
    for name, family in _FAMILY.items():

        def hook(emu: Any, api_name: str, orig: Any, argv: list[int], family: _Family = family) -> int:
            return _call(family, emu, argv) & ((1 << (emu.get_ptr_size() * 8)) - 1)

        for module in _MODULES:
            se.add_api_hook(hook, module, name, argc=len(family.params), call_conv=_CDECL)
