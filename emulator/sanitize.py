"""Strings that came from a sample are made safe before they reach a terminal, a page or a path."""

from __future__ import annotations

import re
import unicodedata

# Control characters, and the bidirectional overrides that can disguise a name (U+202E ...).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_DISPLAY = 260


def for_display(text: str, limit: int = MAX_DISPLAY) -> str:
    cleaned = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def is_suspicious_name(text: str) -> bool:
    return bool(_UNSAFE.search(text)) or any(unicodedata.category(c) == "Cf" for c in text)
