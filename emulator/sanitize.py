"""Strings that came from a sample are made safe before they reach a terminal, a page or a path."""

from __future__ import annotations

import re
import unicodedata

# Control characters, the bidirectional overrides and other invisible format characters that can
# disguise a name (U+202E ...), line/paragraph separators, lone surrogates (which no UTF-8
# writer accepts) and the noncharacters U+FFFE and U+FFFF (which XML 1.0 refuses).
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u00ad\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufffe\uffff\ud800-\udfff]"
)
MAX_DISPLAY = 260


def _escape(char: str) -> str:
    if _UNSAFE.fullmatch(char) or unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}"
    return char


# Every character but printable ASCII (which is never escaped): only these are looked at one by one.
_MAYBE_UNSAFE = re.compile(r"[^\x20-\x7e]")


def _escape_match(match: re.Match[str]) -> str:
    return _escape(match.group())


def for_display(text: str, limit: int = MAX_DISPLAY) -> str:
    """``text`` with every control, format and surrogate character written as ``\\uXXXX``, cut at
    ``limit`` characters (ending in ``...``). A display name only: never used as a path."""
    cleaned = _MAYBE_UNSAFE.sub(_escape_match, text) if not text.isascii() or _UNSAFE.search(text) else text
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def lines_for_display(text: str, limit: int = MAX_DISPLAY) -> str:
    """``text`` line by line through :func:`for_display` (each line cut at ``limit``): its line
    breaks kept, every other control, format and surrogate character escaped. Also what XML 1.0
    accepts as character data (it refuses most control characters, even escaped as ``&#1;``)."""
    return "\n".join(for_display(line, limit) for line in text.split("\n"))


def json_safe(value: object, depth: int = 0) -> object:
    """``value`` as plain JSON data that always serialises: strings with lone surrogates escaped,
    dict keys as strings, tuples and sets as lists, bytes as hex, anything else as its repr."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if depth > 32:
        return "..."
    if isinstance(value, dict):
        return {str(json_safe(k, depth + 1)): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((json_safe(v, depth + 1) for v in value), key=repr)
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return json_safe(repr(value), depth + 1)
