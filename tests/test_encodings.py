"""String-to-bytes conversions (emulator/apis/encodings.py) on a flat fake guest memory.

The scenarios string-encoded(-x86) replay UuidFromStringA and RtlIpv4StringToAddressA end to
end; here each conversion's bytes, terminator and refusals against Python's own parsers.
"""

from __future__ import annotations

import ipaddress
import uuid

from test_bcrypt import Guest

from emulator.apis import encodings
from emulator.events import DataBuffer


def _call(handler, name: str, text: str, *extra: int) -> tuple[int, bytes, int, Guest, int]:  # type: ignore[no-untyped-def]
    guest = Guest(8)
    text_ptr = guest.put(text.encode("latin-1") + b"\0")
    out, end_ptr = guest.memory.alloc(32, "out"), guest.memory.alloc(8, "end")
    argv = [text_ptr, *extra, end_ptr, out] if extra or name.startswith("Rtl") else [text_ptr, out]
    status = handler(guest.api(name), argv)
    end = int.from_bytes(guest.memory.read(end_ptr, 8), "little")
    return status, guest.memory.read(out, 16), end - text_ptr, guest, out


def test_uuid_bytes_are_windows_guid_layout() -> None:
    text = "6e8f3a1b-2c4d-4e5f-8a9b-0c1d2e3f4a5b"
    status, data, _, guest, out = _call(encodings.uuid_from_string, "UuidFromStringA", text)
    assert status == encodings.RPC_S_OK and data == uuid.UUID(text).bytes_le
    [buffer] = [e for e in guest.services.recorder.events if isinstance(e, DataBuffer)]
    assert (buffer.source, buffer.address, buffer.size) == ("decode", out, 16)
    assert _call(encodings.uuid_from_string, "UuidFromStringA", "not-a-uuid")[0] == encodings.RPC_S_INVALID_STRING_UUID


def test_ipv4_strict_and_loose_forms() -> None:
    status, data, consumed, _, _ = _call(
        encodings.rtl_ipv4_string_to_address, "RtlIpv4StringToAddressA", "10.1.2.3:80", 1
    )
    assert status == encodings.STATUS_SUCCESS and data[:4] == bytes([10, 1, 2, 3]) and consumed == len("10.1.2.3")
    loose = _call(encodings.rtl_ipv4_string_to_address, "RtlIpv4StringToAddressA", "0x7f.1", 0)
    assert loose[0] == encodings.STATUS_SUCCESS and loose[1][:4] == ipaddress.IPv4Address("127.0.0.1").packed
    assert _call(encodings.rtl_ipv4_string_to_address, "RtlIpv4StringToAddressA", "300.1.1.1", 1)[0] != 0


def test_ipv6_and_ethernet() -> None:
    status, data, consumed, _, _ = _call(encodings.rtl_ipv6_string_to_address, "RtlIpv6StringToAddressA", "fe80::1%3")
    assert status == encodings.STATUS_SUCCESS and data == ipaddress.IPv6Address("fe80::1").packed and consumed == 7
    status, data, consumed, _, _ = _call(
        encodings.rtl_ethernet_string_to_address, "RtlEthernetStringToAddressA", "01-23-45-67-89-AB!"
    )
    assert status == encodings.STATUS_SUCCESS and data[:6] == bytes.fromhex("0123456789ab") and consumed == 17
    assert _call(encodings.rtl_ethernet_string_to_address, "RtlEthernetStringToAddressA", "01-23")[0] != 0
