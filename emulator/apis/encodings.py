"""Text-to-binary conversions loaders use to hide a payload as harmless-looking strings.

A payload can be stored as a list of UUIDs, IPv4 / IPv6 addresses or MAC addresses and turned
back into bytes one string at a time (``UuidFromStringA``, ``RtlIpv4StringToAddressA``, ...),
each call writing the next 16, 4 or 6 bytes. Speakeasy has none of these (the run ended as an
unsupported API). Each call here converts as Windows does and records its output as a decoded
buffer with the string as input, so lineage follows the bytes back to where the strings were
(the analysis joins the outputs of calls that filled adjacent memory into one buffer).
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Callable

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook, is_wide

RPC_S_OK = 0
RPC_S_INVALID_STRING_UUID = 1705
STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D
# The longest text each conversion reads (an IPv6 address with a zone and port is under 64).
MAX_ADDRESS_TEXT = 64
_IPV4_STRICT = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_IPV4_LOOSE = re.compile(r"(0[xX][0-9a-fA-F]+|\d+)(?:\.(0[xX][0-9a-fA-F]+|\d+)){0,3}")
_IPV6 = re.compile(r"[0-9a-fA-F:.]+")
_ETHERNET = re.compile(r"([0-9a-fA-F]{2})" + r"[-:]([0-9a-fA-F]{2})" * 5)


def _decoded(api: GuestApi, address: int, data: bytes, text: str, wide: bool) -> None:
    api.write(address, data)
    raw = text.encode("utf-16-le" if wide else "latin-1", "replace")
    _services(api).recorder.remember_buffer(
        "decode", address, data, ref=api.qualified_name, input_data=raw, api=api.qualified_name
    )


@apihook("rpcrt4", ["UuidFromStringA", "UuidFromStringW"], argc=2)
def uuid_from_string(api: GuestApi, argv: list[int]) -> int:
    """UuidFromString(StringUuid, Uuid*): the UUID's bytes as Windows lays out a GUID (the first
    three fields little-endian); a NULL string gives the nil UUID."""
    text_ptr, out = argv
    wide = is_wide(api)
    text = api.read_string(text_ptr, wide, max_chars=MAX_ADDRESS_TEXT) if text_ptr else ""
    if not text_ptr:
        api.write(out, bytes(16))
        return RPC_S_OK
    if len(text) != 36:
        return RPC_S_INVALID_STRING_UUID
    try:
        data = uuid.UUID(text).bytes_le
    except ValueError:
        return RPC_S_INVALID_STRING_UUID
    _decoded(api, out, data, text, wide)
    return RPC_S_OK


def _end_of(api: GuestApi, start: int, consumed: int, wide: bool, terminator_ptr: int) -> None:
    api.write_ptr(terminator_ptr, start + consumed * (2 if wide else 1))


@apihook("ntdll", ["RtlIpv4StringToAddressA", "RtlIpv4StringToAddressW"], argc=4)
def rtl_ipv4_string_to_address(api: GuestApi, argv: list[int]) -> int:
    """RtlIpv4StringToAddress(S, Strict, Terminator*, Addr*): four bytes in network order."""
    text_ptr, strict, terminator_ptr, out = argv
    wide = is_wide(api)
    text = api.read_string(text_ptr, wide, max_chars=MAX_ADDRESS_TEXT)
    match = (_IPV4_STRICT if strict & 0xFF else _IPV4_LOOSE).match(text)
    if match is None:
        return STATUS_INVALID_PARAMETER
    try:
        if strict & 0xFF:
            parts = [int(p) for p in match.groups()]
            if any(p > 255 for p in parts):
                return STATUS_INVALID_PARAMETER
            data = bytes(parts)
        else:
            data = ipaddress.IPv4Address(_loose_ipv4(match.group(0))).packed
    except ValueError:
        return STATUS_INVALID_PARAMETER
    _end_of(api, text_ptr, match.end(), wide, terminator_ptr)
    _decoded(api, out, data, match.group(0), wide)
    return STATUS_SUCCESS


def _number(text: str) -> int:
    if text[:2].lower() == "0x":
        return int(text, 16)
    return int(text, 8) if len(text) > 1 and text[0] == "0" else int(text)


def _loose_ipv4(text: str) -> int:
    """inet_addr's forms: a.b.c.d, a.b.c (c 16 bits), a.b (b 24 bits), a (32 bits); decimal, octal
    (leading 0) or hex (0x) parts."""
    parts = [
        int(p, 16) if p[:2].lower() == "0x" else int(p, 8) if len(p) > 1 and p[0] == "0" else int(p)
        for p in text.split(".")
    ]
    *head, last = parts
    if any(p > 255 for p in head) or last >= 1 << (8 * (4 - len(head))):
        raise ValueError(text)
    value = last
    for index, part in enumerate(head):
        value |= part << (8 * (3 - index))
    return value


def _address_text(api: GuestApi, argv: list[int], pattern: re.Pattern[str], convert: Callable[[str], bytes]) -> int:
    """The (S, Terminator*, Addr*) conversions: the bytes of the address at the start of S."""
    text_ptr, terminator_ptr, out = argv
    wide = is_wide(api)
    match = pattern.match(api.read_string(text_ptr, wide, max_chars=MAX_ADDRESS_TEXT))
    if match is None:
        return STATUS_INVALID_PARAMETER
    try:
        data = convert(match.group(0))
    except ValueError:
        return STATUS_INVALID_PARAMETER
    _end_of(api, text_ptr, match.end(), wide, terminator_ptr)
    _decoded(api, out, data, match.group(0), wide)
    return STATUS_SUCCESS


@apihook("ntdll", ["RtlIpv6StringToAddressA", "RtlIpv6StringToAddressW"], argc=3)
def rtl_ipv6_string_to_address(api: GuestApi, argv: list[int]) -> int:
    """RtlIpv6StringToAddress(S, Terminator*, Addr*): sixteen bytes."""
    return _address_text(api, argv, _IPV6, lambda text: ipaddress.IPv6Address(text).packed)


@apihook("ntdll", ["RtlEthernetStringToAddressA", "RtlEthernetStringToAddressW"], argc=3)
def rtl_ethernet_string_to_address(api: GuestApi, argv: list[int]) -> int:
    """RtlEthernetStringToAddress(S, Terminator*, Addr*): six bytes."""
    return _address_text(api, argv, _ETHERNET, lambda text: bytes(int(text[i : i + 2], 16) for i in range(0, 17, 3)))
