"""Winsock and name resolution routed to the responders.

Bytes a guest sends on a TCP socket are parsed as HTTP when they form a request, and the
responder's answer is queued for recv(). A client that speaks no HTTP (a stager reading its
next stage) gets the responder's ``stream`` answer when it reads with nothing queued, one
exchange per answer; what it sent and nobody answered is recorded when the socket closes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook, is_wide
from emulator.responders.base import HttpRequest
from emulator.services import ReplayServices

SOCKET_ERROR = 0xFFFFFFFF
INVALID_SOCKET = 0xFFFFFFFFFFFFFFFF
AF_INET = 2
SOCK_STREAM = 1
WSAHOST_NOT_FOUND = 11001
WSAECONNREFUSED = 10061
WSAENOTCONN = 10057
WSAENOTSOCK = 10038
DNS_ERROR_RCODE_NAME_ERROR = 9003
DNS_TYPE_A = 1
DNS_TYPE_TEXT = 0x10
# DNS_RECORD: pNext, pName, then wType, wDataLength, Flags, dwTtl, dwReserved before Data.
DNS_RECORD_FIXED = 16
# An HTTP request line ("METHOD target HTTP/1.x"): a client that sent this is waiting for an
# HTTP answer. A raw protocol's first word (SMTP's "HELO host", IRC's "NICK x") is no request.
HTTP_REQUEST_START = re.compile(rb"^[A-Z]{3,10} [^\s]+ HTTP/\d")
MSG_PEEK = 0x2
# WSABUFs of one WSASend / WSARecv read at most.
MAX_WSABUFS = 1024


@dataclass
class Socket:
    kind: str
    host: str = ""
    port: int = 0
    connected: bool = False
    sent: bytearray = field(default_factory=bytearray)
    received: bytearray = field(default_factory=bytearray)
    inbox: bytearray = field(default_factory=bytearray)
    answered_http: bool = False
    turns: int = 0  # raw (non-HTTP) answers given on this connection


@apihook("ws2_32", "socket", argc=3)
def socket_(api: GuestApi, argv: list[int]) -> int:
    kind = "tcp" if (argv[1] & 0xFFFFFFFF) == SOCK_STREAM else "udp"
    return _services(api).new_handle(Socket(kind))


@apihook("ws2_32", ["WSASocketA", "WSASocketW", "WSASocket"], argc=6)
def wsa_socket(api: GuestApi, argv: list[int]) -> int:
    """WSASocket(af, type, protocol, lpProtocolInfo, g, dwFlags): a socket as ``socket`` makes
    (overlapped or not: every call here completes at once)."""
    return socket_(api, argv[:3])


def _parse_sockaddr(api: GuestApi, address: int) -> tuple[str, int] | None:
    raw = api.read(address, 8)
    if int.from_bytes(raw[0:2], "little") != AF_INET:
        return None
    return str(ipaddress.IPv4Address(raw[4:8])), int.from_bytes(raw[2:4], "big")


@apihook("ws2_32", "WSAConnect", argc=7)
def wsa_connect(api: GuestApi, argv: list[int]) -> int:
    """WSAConnect(s, name, namelen, lpCallerData, lpCalleeData, lpSQOS, lpGQOS): connect's
    seven-argument form (no connect data, no quality of service)."""
    return connect(api, argv[:3])


@apihook("ws2_32", "connect", argc=3)
def connect(api: GuestApi, argv: list[int]) -> int:
    services = _services(api)
    sock = services.get(argv[0], Socket)
    if sock is None:
        api.set_last_error(WSAENOTSOCK)
        return SOCKET_ERROR
    endpoint = _parse_sockaddr(api, argv[1])
    if endpoint is None:
        api.set_last_error(WSAECONNREFUSED)
        return SOCKET_ERROR
    sock.host, sock.port = services.network.host_of_address(endpoint[0]), endpoint[1]
    if not services.network.accepts_connection(sock.host):
        services.network.record_raw(sock.kind, sock.host, sock.port, b"", b"", "default", blocked=True)  # type: ignore[arg-type]
        api.set_last_error(WSAECONNREFUSED)
        return SOCKET_ERROR
    sock.connected = True
    return 0


def _try_http(services: ReplayServices, sock: Socket) -> None:
    head, sep, rest = bytes(sock.sent).partition(b"\r\n\r\n")
    if not sep:
        return
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    length = int(headers.get("Content-Length", "0") or 0) if headers.get("Content-Length", "0").isdigit() else 0
    if len(rest) < length:
        return
    scheme = "https" if sock.port == 443 else "http"
    request = HttpRequest(parts[0].upper(), scheme, sock.host.lower(), sock.port, parts[1], headers, rest[:length])
    response = services.network.http(request)
    sock.answered_http = True
    sock.sent.clear()
    if response is None:
        return
    status_line = f"HTTP/1.1 {response.status} {response.reason}\r\n"
    header_lines = "".join(f"{k}: {v}\r\n" for k, v in response.headers.items())
    sock.inbox += (status_line + header_lines + "\r\n").encode("latin-1") + response.body


@apihook("ws2_32", "send", argc=4)
def send(api: GuestApi, argv: list[int]) -> int:
    services = _services(api)
    sock = services.get(argv[0], Socket)
    if sock is None or not sock.connected:
        api.set_last_error(WSAENOTSOCK if sock is None else WSAENOTCONN)
        return SOCKET_ERROR
    data = api.read(argv[1], argv[2] & 0xFFFFFFFF)
    sock.sent += data
    _try_http(services, sock)
    return len(data)


@apihook("ws2_32", "recv", argc=4)
def recv(api: GuestApi, argv: list[int]) -> int:
    """recv(s, buf, len, flags): MSG_PEEK leaves what it read in the socket; MSG_WAITALL reads
    all it asked for when the answer holds it (every answer is there at once)."""
    services = _services(api)
    sock = services.get(argv[0], Socket)
    if sock is None or not sock.connected:
        api.set_last_error(WSAENOTSOCK if sock is None else WSAENOTCONN)
        return SOCKET_ERROR
    return _receive(api, services, sock, argv[1], argv[2] & 0xFFFFFFFF, peek=bool(argv[3] & MSG_PEEK))


def _receive(api: GuestApi, services: ReplayServices, sock: Socket, address: int, size: int, peek: bool) -> int:
    """Bytes of the connection's answer into ``address`` (asking the responder for a raw answer
    when nothing is queued): how many."""
    if not sock.inbox and sock.kind == "tcp" and not sock.answered_http and not HTTP_REQUEST_START.match(sock.sent):
        reply = services.network.stream(sock.host, sock.port, bytes(sock.sent), sock.turns)
        if reply:
            sock.turns += 1
            sock.sent.clear()
            sock.inbox += reply
    chunk = bytes(sock.inbox[:size])
    if not peek:
        del sock.inbox[:size]
    if chunk:
        api.write(address, chunk)
        if not peek:
            sock.received += chunk
        services.recorder.remember_buffer(
            "network_read", address, chunk, ref=f"tcp://{sock.host}:{sock.port}", api=api.qualified_name
        )
    return len(chunk)


def _wsabufs(api: GuestApi, array: int, count: int) -> list[tuple[int, int]]:
    """(buf, len) of each WSABUF: ULONG len, then CHAR *buf at pointer alignment."""
    step = 2 * api.ptr_size
    found = []
    for index in range(min(count & 0xFFFFFFFF, MAX_WSABUFS)):
        raw = api.read(array + index * step, step)
        length = int.from_bytes(raw[:4], "little")
        pointer = int.from_bytes(raw[api.ptr_size : 2 * api.ptr_size], "little")
        found.append((pointer, length))
    return found


@apihook("ws2_32", "WSASend", argc=7)
def wsa_send(api: GuestApi, argv: list[int]) -> int:
    """WSASend(s, lpBuffers, dwBufferCount, lpNumberOfBytesSent, dwFlags, lpOverlapped,
    lpCompletionRoutine): each buffer sent in order, at once (0; an overlapped call completes
    at once too)."""
    services = _services(api)
    sock = services.get(argv[0], Socket)
    if sock is None or not sock.connected:
        api.set_last_error(WSAENOTSOCK if sock is None else WSAENOTCONN)
        return SOCKET_ERROR
    total = 0
    for pointer, length in _wsabufs(api, argv[1], argv[2]):
        if length:
            sock.sent += api.read(pointer, length)
            total += length
    _try_http(services, sock)
    if argv[3]:
        api.write_u32(argv[3], total)
    return 0


@apihook("ws2_32", "WSARecv", argc=7)
def wsa_recv(api: GuestApi, argv: list[int]) -> int:
    """WSARecv(s, lpBuffers, dwBufferCount, lpNumberOfBytesRecvd, lpFlags, lpOverlapped,
    lpCompletionRoutine): the answer into each buffer in order, at once (0)."""
    services = _services(api)
    sock = services.get(argv[0], Socket)
    if sock is None or not sock.connected:
        api.set_last_error(WSAENOTSOCK if sock is None else WSAENOTCONN)
        return SOCKET_ERROR
    flags = api.read_u32(argv[4]) if argv[4] else 0
    total = 0
    for pointer, length in _wsabufs(api, argv[1], argv[2]):
        if not length:
            continue
        got = _receive(api, services, sock, pointer, length, peek=bool(flags & MSG_PEEK))
        total += got
        if got < length:
            break
    if argv[3]:
        api.write_u32(argv[3], total)
    if argv[4]:
        api.write_u32(argv[4], 0)  # no MSG_PARTIAL: each message is read whole
    return 0


@apihook("ws2_32", "closesocket", argc=1)
def closesocket(api: GuestApi, argv: list[int]) -> int:
    services = _services(api)
    sock = services.get(argv[0], Socket)
    if sock is None:
        api.set_last_error(WSAENOTSOCK)
        return SOCKET_ERROR
    # Raw answers were recorded as given; what is left is what the guest sent unanswered.
    if sock.connected and not sock.answered_http and (sock.sent or (sock.received and not sock.turns)):
        responder = services.network.responder_for_host(sock.host)
        services.network.record_raw(
            sock.kind,
            sock.host,
            sock.port,
            bytes(sock.sent),
            b"" if sock.turns else bytes(sock.received),  # type: ignore[arg-type]
            responder.name if responder else "default",
            blocked=responder is None,
        )
    services.close(argv[0])
    return 0


@apihook("ws2_32", "gethostbyname", argc=1)
def gethostbyname(api: GuestApi, argv: list[int]) -> int:
    name = api.read_string(argv[0], wide=False, max_chars=255)
    address = _services(api).network.resolve(name, api=api.qualified_name)
    if address is None:
        api.set_last_error(WSAHOST_NOT_FOUND)
        return 0
    p = api.ptr_size
    # hostent followed by its name, alias list (empty), address list and the address.
    block = api.alloc(0x200, "api.hostent")
    name_at, aliases_at, list_at, addr_at = block + 0x40, block + 0x140, block + 0x150, block + 0x160
    api.write_string(name_at, name, wide=False)
    api.write_ptr(aliases_at, 0)
    api.write_ptr(list_at, addr_at)
    api.write_ptr(list_at + p, 0)
    api.write(addr_at, ipaddress.IPv4Address(address).packed)
    api.write_ptr(block, name_at)
    api.write_ptr(block + p, aliases_at)
    api.write(block + 2 * p, AF_INET.to_bytes(2, "little") + (4).to_bytes(2, "little"))
    api.write_ptr(block + (3 * p if p == 8 else 2 * p + 4), list_at)
    return block


@apihook("ws2_32", ["getaddrinfo", "GetAddrInfoW"], argc=4)
def getaddrinfo(api: GuestApi, argv: list[int]) -> int:
    node, service, _hints, result = argv
    wide = api.api_name == "GetAddrInfoW"
    name = api.read_string(node, wide, max_chars=255)
    service_text = api.read_string(service, wide, max_chars=32) if service else ""
    address = _services(api).network.resolve(name, api=api.qualified_name)
    if address is None:
        api.write_ptr(result, 0)
        return WSAHOST_NOT_FOUND
    p = api.ptr_size
    port = int(service_text) if service_text.isdigit() else 0
    block = api.alloc(0x100, "api.addrinfo")
    sockaddr_at = block + 0x80
    api.write(
        sockaddr_at,
        AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big") + ipaddress.IPv4Address(address).packed + bytes(8),
    )
    header = (0).to_bytes(4, "little") + AF_INET.to_bytes(4, "little") + SOCK_STREAM.to_bytes(4, "little")
    header += (6).to_bytes(4, "little") + (16).to_bytes(p, "little")
    api.write(block, header)
    api.write_ptr(block + 16 + p, 0)  # ai_canonname
    api.write_ptr(block + 16 + 2 * p, sockaddr_at)
    api.write_ptr(block + 16 + 3 * p, 0)  # ai_next
    api.write_ptr(result, block)
    return 0


@apihook("ws2_32", ["freeaddrinfo", "FreeAddrInfoW"], argc=1)
def freeaddrinfo(api: GuestApi, argv: list[int]) -> int:
    return 0


@apihook("dnsapi", ["DnsQuery_A", "DnsQuery_W", "DnsQuery_UTF8"], argc=6)
def dns_query(api: GuestApi, argv: list[int]) -> int:
    name_ptr, record_type, _options, _extra, results, _reserved = argv
    name = api.read_string(name_ptr, is_wide(api), max_chars=255)
    if (record_type & 0xFFFF) == DNS_TYPE_TEXT:
        return _dns_txt(api, name, results)
    address = _services(api).network.resolve(name, api=api.qualified_name)
    if address is None or (record_type & 0xFFFF) != DNS_TYPE_A:
        api.write_ptr(results, 0)
        return DNS_ERROR_RCODE_NAME_ERROR
    p = api.ptr_size
    block = api.alloc(0x100, "api.DnsRecord")
    name_at = block + 0x80
    api.write_string(name_at, name, is_wide(api))
    api.write_ptr(block, 0)
    api.write_ptr(block + p, name_at)
    fixed = DNS_TYPE_A.to_bytes(2, "little") + (4).to_bytes(2, "little") + bytes(4) + (300).to_bytes(4, "little")
    api.write(block + 2 * p, fixed + bytes(4) + ipaddress.IPv4Address(address).packed)
    api.write_ptr(results, block)
    return 0


def _dns_txt(api: GuestApi, name: str, results: int) -> int:
    """A TXT record of the responder serving ``name``: one DNS_RECORD whose DNS_TXT_DATA
    (dwStringCount, then the string pointers) points at each string (wide for DnsQuery_W)."""
    strings = _services(api).network.resolve_txt(name, api=api.qualified_name)
    if not strings:
        api.write_ptr(results, 0)
        return DNS_ERROR_RCODE_NAME_ERROR
    wide = is_wide(api)
    texts = [s.decode("utf-8", "replace") if wide else s.decode("latin-1") for s in strings]
    p = api.ptr_size
    data_at = 2 * p + DNS_RECORD_FIXED
    data_length = p + p * len(texts)  # dwStringCount (padded to a pointer), the pointers
    name_size = (len(name) + 1) * (2 if wide else 1)
    string_sizes = [(len(t) + 1) * (2 if wide else 1) for t in texts]
    block = api.alloc(data_at + data_length + name_size + sum(string_sizes), "api.DnsRecord")
    name_at = block + data_at + data_length
    api.write_string(name_at, name, wide)
    api.write_ptr(block, 0)
    api.write_ptr(block + p, name_at)
    fixed = DNS_TYPE_TEXT.to_bytes(2, "little") + min(data_length, 0xFFFF).to_bytes(2, "little")
    api.write(block + 2 * p, fixed + bytes(4) + (300).to_bytes(4, "little") + bytes(4))
    api.write_u32(block + data_at, len(texts))
    at = name_at + name_size
    for index, (text, size) in enumerate(zip(texts, string_sizes, strict=True)):
        api.write_string(at, text, wide)
        api.write_ptr(block + data_at + p + p * index, at)
        at += size
    api.write_ptr(results, block)
    return 0


@apihook("dnsapi", ["DnsFree", "DnsRecordListFree"], argc=2)
def dns_free(api: GuestApi, argv: list[int]) -> int:
    return 0
