"""msvcrt's locale functions (Speakeasy has none; a call ended the replay as
``unsupported_api``): ``setlocale`` / ``_wsetlocale`` per category, ``localeconv``,
``___lc_codepage_func`` and ``___mb_cur_max_func``.

A program starts in the "C" locale; ``setlocale(LC_ALL, "")`` (or a name of it) selects the
guest user's, English (United States) with the ANSI code page 1252, the code page
GetACP answers. The C locale's code page is 0 (CP_ACP, msvcrt's ``_CLOCALECP``); both have one
byte a character (MB_CUR_MAX 1).
"""

from __future__ import annotations

import struct
import weakref
from dataclasses import dataclass, field
from typing import Any

from emulator.apis.core import GuestApi, apihook
from emulator.apis.heap import _alloc

LC_ALL, LC_COLLATE, LC_CTYPE, LC_MONETARY, LC_NUMERIC, LC_TIME = range(6)
CATEGORY_NAMES = ("LC_ALL", "LC_COLLATE", "LC_CTYPE", "LC_MONETARY", "LC_NUMERIC", "LC_TIME")
C_LOCALE = "C"
USER_LOCALE = "English_United States.1252"
USER_CODE_PAGE = 1252
# Names setlocale takes for the user's locale (compared lower-cased, without the code page).
USER_LOCALE_NAMES = frozenset(("", "english_united states", "english", "american", "english_usa", "en-us", "en_us"))
USER_CODE_PAGES = frozenset(("", "1252", "acp"))
# The buffer setlocale's answer is written to (a mixed LC_ALL name fits).
NAME_BUFFER = 512
CHAR_MAX = 127


@dataclass
class _Locale:
    categories: list[str] = field(default_factory=lambda: [C_LOCALE] * 6)
    names: dict[bool, int] = field(default_factory=dict)  # wide -> the answer's buffer
    conv: dict[tuple[str, str], int] = field(default_factory=dict)  # (numeric, monetary) -> lconv


_STATE: weakref.WeakKeyDictionary[Any, _Locale] = weakref.WeakKeyDictionary()


def _state(api: GuestApi) -> _Locale:
    return _STATE.setdefault(api.memory, _Locale())


def resolve(name: str) -> str | None:
    """The locale ``name`` selects ("C", the user's) or None for one the guest does not have."""
    if name in (C_LOCALE, "POSIX"):
        return C_LOCALE
    language, _, code_page = name.partition(".")
    if language.lower() in USER_LOCALE_NAMES and code_page.lower() in USER_CODE_PAGES:
        return USER_LOCALE
    if name.lower() == USER_LOCALE.lower():
        return USER_LOCALE
    return None


def _all_name(categories: list[str]) -> str:
    if len(set(categories[1:])) == 1:
        return categories[1]
    return ";".join(f"{CATEGORY_NAMES[i]}={categories[i]}" for i in range(1, 6))


def _parse_all(name: str) -> list[str] | None:
    """The categories of an LC_ALL name in setlocale's ``LC_COLLATE=...;LC_CTYPE=...`` form."""
    values: list[str] = [C_LOCALE] * 6
    for part in name.split(";"):
        category, _, value = part.partition("=")
        if category not in CATEGORY_NAMES[1:]:
            return None
        resolved = resolve(value)
        if resolved is None:
            return None
        values[CATEGORY_NAMES.index(category)] = resolved
    return values


@apihook("msvcrt", ["setlocale", "_wsetlocale"], argc=2, conv="cdecl")
def setlocale(api: GuestApi, argv: list[int]) -> int:
    """char *setlocale(int category, const char *locale): the category's locale name after the
    call (NULL locale: a query); NULL for an unknown category or a locale the guest has not."""
    wide = api.api_name == "_wsetlocale"
    category = argv[0] & 0xFFFFFFFF
    if category > LC_TIME:
        return 0
    state = _state(api)
    if argv[1]:
        requested = api.read_string(argv[1], wide, max_chars=NAME_BUFFER)
        if category == LC_ALL and "=" in requested:
            parsed = _parse_all(requested)
            if parsed is None:
                return 0
            state.categories = parsed
        else:
            resolved = resolve(requested)
            if resolved is None:
                return 0
            if category == LC_ALL:
                state.categories = [resolved] * 6
            else:
                state.categories[category] = resolved
    name = _all_name(state.categories) if category == LC_ALL else state.categories[category]
    if wide not in state.names:
        state.names[wide] = _alloc(api, NAME_BUFFER * (2 if wide else 1), zero=True)
    if state.names[wide]:
        api.write_string(state.names[wide], name, wide)
    return state.names[wide]


@apihook("msvcrt", "___lc_codepage_func", argc=0, conv="cdecl")
def lc_codepage(api: GuestApi, argv: list[int]) -> int:
    """UINT ___lc_codepage_func(void): LC_CTYPE's code page (0, CP_ACP, in the C locale)."""
    return 0 if _state(api).categories[LC_CTYPE] == C_LOCALE else USER_CODE_PAGE


@apihook("msvcrt", "___mb_cur_max_func", argc=0, conv="cdecl")
def mb_cur_max(api: GuestApi, argv: list[int]) -> int:
    """int ___mb_cur_max_func(void): 1, both locales have single-byte code pages."""
    return 1


# struct lconv's strings in the C locale and the user's (English, United States):
# decimal_point, thousands_sep, grouping, int_curr_symbol, currency_symbol, mon_decimal_point,
# mon_thousands_sep, mon_grouping, positive_sign, negative_sign.
NUMERIC_FIELDS = {C_LOCALE: (".", "", ""), USER_LOCALE: (".", ",", "\3")}
MONETARY_FIELDS = {
    C_LOCALE: ("", "", "", "", "", "", ""),
    USER_LOCALE: ("USD ", "$", ".", ",", "\3", "", "-"),
}
# int_frac_digits, frac_digits, p_cs_precedes, p_sep_by_space, n_cs_precedes, n_sep_by_space,
# p_sign_posn, n_sign_posn.
MONETARY_CHARS = {C_LOCALE: (CHAR_MAX,) * 8, USER_LOCALE: (2, 2, 1, 0, 1, 0, 3, 0)}


@apihook("msvcrt", "localeconv", argc=0, conv="cdecl")
def localeconv(api: GuestApi, argv: list[int]) -> int:
    """struct lconv *localeconv(void): the numeric and monetary conventions of the current
    LC_NUMERIC / LC_MONETARY, msvcrt's layout (ten string pointers, eight chars, then the
    wide strings of decimal_point, thousands_sep, int_curr_symbol, currency_symbol,
    mon_decimal_point, mon_thousands_sep, positive_sign and negative_sign)."""
    state = _state(api)
    key = (state.categories[LC_NUMERIC], state.categories[LC_MONETARY])
    if key in state.conv:
        return state.conv[key]
    numeric, monetary = NUMERIC_FIELDS[key[0]], MONETARY_FIELDS[key[1]]
    strings = [*numeric, *monetary]
    wide_strings = [strings[i] for i in (0, 1, 3, 4, 5, 6, 8, 9)]
    ptr = api.ptr_size
    header = 10 * ptr + 8
    header += -header % ptr
    size = header + 8 * ptr
    texts = [s.encode("latin-1") + b"\0" for s in strings] + [s.encode("utf-16-le") + b"\0\0" for s in wide_strings]
    block = _alloc(api, size + sum(len(t) + 1 for t in texts), zero=True)
    if not block:
        return 0
    pointers = []
    position = block + size
    for text in texts:
        api.write(position, text)
        pointers.append(position)
        position += len(text) + (len(text) & 1)
    packed = b"".join(p.to_bytes(ptr, "little") for p in pointers[:10])
    packed += struct.pack("<8B", *MONETARY_CHARS[key[1]])
    packed += b"\0" * (header - len(packed))
    packed += b"".join(p.to_bytes(ptr, "little") for p in pointers[10:])
    api.write(block, packed)
    state.conv[key] = block
    return block
