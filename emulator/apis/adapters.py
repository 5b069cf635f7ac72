"""GetAdaptersAddresses: the machine's network adapter, the one GetAdaptersInfo lists.

Speakeasy has no handler (its signature stub returned ERROR_SUCCESS and wrote nothing: a
program walking the list read its own uninitialised buffer). The list is laid out as Windows
lays it out, every structure and string inside the caller's buffer: one
``IP_ADAPTER_ADDRESSES_LH`` (448 bytes on x64, 376 on x86), its IPv4 unicast address and
``SOCKADDR_IN``, its names. Anycast, multicast, DNS server, prefix and gateway lists are empty.
"""

from __future__ import annotations

import socket
import struct

from emulator.apis.core import GuestApi, apihook
from emulator.environment import ADAPTER_DESCRIPTION, ADAPTER_IP, ADAPTER_MAC, ADAPTER_MASK, ADAPTER_NAME

ERROR_SUCCESS = 0
ERROR_INVALID_PARAMETER = 87
ERROR_BUFFER_OVERFLOW = 111
ERROR_NO_DATA = 232
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 23
IF_TYPE_ETHERNET_CSMACD = 6
IF_OPER_STATUS_UP = 1
IP_ADAPTER_DHCP_ENABLED = 0x4
IP_ADAPTER_IPV4_ENABLED = 0x80
IF_INDEX = 12
MTU = 1500
LINK_SPEED = 1_000_000_000
FRIENDLY_NAME = "Ethernet"
# Offsets in IP_ADAPTER_ADDRESSES_LH: (x64, x86).
SIZE = (448, 376)
OFF_NEXT = (8, 8)
OFF_ADAPTER_NAME = (16, 12)
OFF_FIRST_UNICAST = (24, 16)
OFF_DNS_SUFFIX = (56, 32)
OFF_DESCRIPTION = (64, 36)
OFF_FRIENDLY_NAME = (72, 40)
OFF_PHYSICAL = (80, 44)
OFF_PHYSICAL_LENGTH = (88, 52)
OFF_FLAGS = (92, 56)
OFF_MTU = (96, 60)
OFF_IF_TYPE = (100, 64)
OFF_OPER_STATUS = (104, 68)
OFF_TRANSMIT_SPEED = (184, 144)
OFF_RECEIVE_SPEED = (192, 152)
OFF_LUID = (224, 176)
OFF_NETWORK_GUID = (252, 196)
OFF_CONNECTION_TYPE = (268, 212)
# IP_ADAPTER_UNICAST_ADDRESS_LH: Length/Flags, Next, Address (SOCKET_ADDRESS), origins, lifetimes.
# (Offsets checked against mingw-w64's iphlpapi.h with offsetof, both architectures.)
UNICAST_SIZE = (64, 48)
UNICAST_SOCKADDR = (16, 12)
UNICAST_PREFIX_ORIGIN = (32, 20)
UNICAST_LIFETIMES = (44, 32)
UNICAST_PREFIX_LENGTH = (56, 44)
SOCKADDR_IN_SIZE = 16
LIFETIME = 86400


def _align(n: int, to: int = 8) -> int:
    return (n + to - 1) & ~(to - 1)


def _strings() -> tuple[bytes, bytes, bytes, bytes]:
    """The adapter name (ANSI), DNS suffix, description and friendly name (UTF-16), NUL-ended."""
    return (
        ADAPTER_NAME.encode("ascii") + b"\0",
        "\0".encode("utf-16-le"),
        (ADAPTER_DESCRIPTION + "\0").encode("utf-16-le"),
        (FRIENDLY_NAME + "\0").encode("utf-16-le"),
    )


def _layout(x64: bool) -> tuple[int, list[int]]:
    """The bytes needed and the offset of each piece: adapter, unicast, sockaddr, strings."""
    i = 0 if x64 else 1
    pieces = [SIZE[i], UNICAST_SIZE[i], SOCKADDR_IN_SIZE, *(len(s) for s in _strings())]
    offsets, at = [], 0
    for size in pieces:
        offsets.append(at)
        at = _align(at + size)
    return at, offsets


@apihook("iphlpapi", "GetAdaptersAddresses", argc=5)
def get_adapters_addresses(api: GuestApi, argv: list[int]) -> int:
    """ULONG GetAdaptersAddresses(Family, Flags, Reserved, PIP_ADAPTER_ADDRESSES, PULONG SizePointer)."""
    family, _flags, _reserved, buffer, size_pointer = argv
    family &= 0xFFFFFFFF
    if not size_pointer:
        return ERROR_INVALID_PARAMETER
    if family not in (AF_UNSPEC, AF_INET, AF_INET6):
        return ERROR_INVALID_PARAMETER
    if family == AF_INET6:
        return ERROR_NO_DATA  # the adapter has no IPv6 address
    x64 = api.ptr_size == 8
    i = 0 if x64 else 1
    needed, offsets = _layout(x64)
    given = api.read_u32(size_pointer)
    if not buffer or given < needed:
        api.write_u32(size_pointer, needed)
        return ERROR_BUFFER_OVERFLOW
    adapter, unicast, sockaddr = (buffer + o for o in offsets[:3])
    name_at, suffix_at, description_at, friendly_at = (buffer + o for o in offsets[3:])
    data = bytearray(needed)
    ptr = "<Q" if x64 else "<I"

    def put(offset: int, fmt: str, *values: int) -> None:
        struct.pack_into(fmt, data, offset, *values)

    put(0, "<II", SIZE[i], IF_INDEX)
    put(OFF_NEXT[i], ptr, 0)
    put(OFF_ADAPTER_NAME[i], ptr, name_at)
    put(OFF_FIRST_UNICAST[i], ptr, unicast)
    put(OFF_DNS_SUFFIX[i], ptr, suffix_at)
    put(OFF_DESCRIPTION[i], ptr, description_at)
    put(OFF_FRIENDLY_NAME[i], ptr, friendly_at)
    mac = bytes.fromhex(ADAPTER_MAC.replace("-", ""))
    data[OFF_PHYSICAL[i] : OFF_PHYSICAL[i] + len(mac)] = mac
    put(OFF_PHYSICAL_LENGTH[i], "<I", len(mac))
    put(OFF_FLAGS[i], "<I", IP_ADAPTER_DHCP_ENABLED | IP_ADAPTER_IPV4_ENABLED)
    put(OFF_MTU[i], "<III", MTU, IF_TYPE_ETHERNET_CSMACD, IF_OPER_STATUS_UP)
    put(OFF_TRANSMIT_SPEED[i], "<QQ", LINK_SPEED, LINK_SPEED)
    put(OFF_LUID[i], "<Q", (IF_TYPE_ETHERNET_CSMACD << 48) | (1 << 24))
    guid = ADAPTER_NAME.strip("{}").split("-")
    network_guid = struct.pack("<IHH", int(guid[0], 16), int(guid[1], 16), int(guid[2], 16)) + bytes.fromhex(
        guid[3] + guid[4]
    )
    data[OFF_NETWORK_GUID[i] : OFF_NETWORK_GUID[i] + 16] = network_guid
    put(OFF_CONNECTION_TYPE[i], "<I", 1)  # NET_IF_CONNECTION_DEDICATED
    # The unicast address: 192.168.1.23/24 from DHCP.
    u = offsets[1]
    put(u, "<II", UNICAST_SIZE[i], 0)
    put(u + UNICAST_SOCKADDR[i], ptr, sockaddr)
    put(u + UNICAST_SOCKADDR[i] + api.ptr_size, "<i", SOCKADDR_IN_SIZE)
    put(u + UNICAST_PREFIX_ORIGIN[i], "<iii", 3, 3, 4)  # IpPrefixOriginDhcp, IpSuffixOriginDhcp, IpDadStatePreferred
    put(u + UNICAST_LIFETIMES[i], "<III", LIFETIME, LIFETIME, LIFETIME)
    prefix = bin(int.from_bytes(socket.inet_aton(ADAPTER_MASK), "big")).count("1")
    data[u + UNICAST_PREFIX_LENGTH[i]] = prefix
    put(offsets[2], "<H", AF_INET)
    data[offsets[2] + 4 : offsets[2] + 8] = socket.inet_aton(ADAPTER_IP)
    for at, text in zip(offsets[3:], _strings(), strict=True):
        data[at : at + len(text)] = text
    api.write(buffer, bytes(data))
    return ERROR_SUCCESS
