"""``network.pcap``: every synthetic exchange of a replay as packets Wireshark and tshark read.

No packet was ever on a wire: the replay answers the guest's network calls in-process. This file
is a reconstruction from ``report.network`` and the bodies in ``OUTDIR/network/``: a DNS query and
answer before a host is first contacted (the recorded answer when the replay saw a DNS call, else
the address the responder would hand out), a TCP handshake, the HTTP request and response with
their recorded headers and bodies, and the close. HTTPS is shown decrypted, as FakeNet-NG's
capture shows it: plain HTTP/1.1 on the recorded port (443), so Wireshark needs
``Decode As... HTTP`` (``tshark -d tcp.port==443,http``) to dissect it as HTTP. Addresses are
documentation ranges (RFC 5737): the guest is ``GUEST_ADDRESS``, servers are in 203.0.113.0/24.
Timestamps are virtual: the replay's guest clock start plus one millisecond per trace event.
"""

from __future__ import annotations

import datetime as dt
import http.client
import io
import ipaddress
import socket
import struct
from dataclasses import dataclass

import dpkt

from emulator.export._common import header, read_body, url_path
from emulator.limits import MAX_TXT_BYTES
from emulator.report import NetworkRecord, Report

GUEST_ADDRESS = "192.0.2.10"
DNS_SERVER = "192.0.2.53"
GUEST_MAC = b"\x02\x00\x00\x00\x00\x0a"
GATEWAY_MAC = b"\x02\x00\x00\x00\x00\x01"
SYNTHETIC_BASE = ipaddress.IPv4Address("203.0.113.10")
FIRST_CLIENT_PORT = 49152
MSS = 1460
SEQ_TICK = 0.001  # virtual seconds between two trace events
# A TXT answer's bytes in one UDP datagram (an IP packet holds 65,535 bytes; a resource record's
# data as many, with a length byte per string): the rest of a larger record is left out.
MAX_TXT_IN_DATAGRAM = 60_000


@dataclass(frozen=True)
class Exchange:
    """One request/response pair as bytes on the wire."""

    record: NetworkRecord
    server: str
    port: int
    client_port: int
    request: bytes
    response: bytes
    time: float


def _start_time(report: Report) -> float:
    text = report.virtual_time.start.replace("Z", "+00:00")
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def _one_line(text: str) -> str:
    """A header name or value as one line: a CR or LF a sample put in it cannot forge another header."""
    return text.replace("\r", " ").replace("\n", " ")


def _header_block(first_line: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [_one_line(first_line)]
    lines += [f"{_one_line(name)}: {_one_line(value)}" for name, value in headers.items()]
    if body and header(headers, "Content-Length") is None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body


def http_request_bytes(record: NetworkRecord, body: bytes) -> bytes:
    headers = dict(record.request.headers)
    if header(headers, "Host") is None:
        headers = {"Host": record.host, **headers}
    return _header_block(f"{record.method or 'GET'} {url_path(record.url or '/')} HTTP/1.1", headers, body)


def http_response_bytes(record: NetworkRecord, body: bytes) -> bytes:
    status = record.response.status or 0
    reason = http.client.responses.get(status, "Unknown")
    return _header_block(f"HTTP/1.1 {status} {reason}", dict(record.response.headers), body)


def server_addresses(report: Report) -> dict[str, str]:
    """The address of every host: the recorded DNS answer, an IP host as is, else a synthetic one."""
    addresses: dict[str, str] = {}
    for record in report.network:
        answer = record.response.headers.get("A") if record.kind == "dns" else None
        if answer:
            addresses.setdefault(record.host.lower(), answer)
    used = set(addresses.values())
    candidate = SYNTHETIC_BASE
    for record in report.network:
        host = record.host.lower()
        if host in addresses:
            continue
        try:
            addresses[host] = str(ipaddress.IPv4Address(host))
            continue
        except ValueError:
            pass
        while str(candidate) in used:
            candidate += 1
        addresses[host] = str(candidate)
        used.add(str(candidate))
    return addresses


def exchanges(report: Report, outdir) -> list[Exchange]:  # type: ignore[no-untyped-def]
    """Every HTTP, TCP and UDP exchange of ``report`` as wire bytes (DNS is written separately)."""
    start = _start_time(report)
    addresses = server_addresses(report)
    out: list[Exchange] = []
    for index, record in enumerate(r for r in report.network if r.kind != "dns"):
        request_body = read_body(outdir, record.request.sha256)
        response_body = read_body(outdir, record.response.sha256)
        if record.kind == "http":
            request = http_request_bytes(record, request_body)
            response = http_response_bytes(record, response_body) if record.response.status is not None else b""
        else:
            request, response = request_body, response_body
        out.append(
            Exchange(
                record=record,
                server=addresses[record.host.lower()],
                port=record.port or (443 if (record.url or "").startswith("https:") else 80),
                client_port=FIRST_CLIENT_PORT + index,
                request=request,
                response=response,
                time=start + record.seq * SEQ_TICK,
            )
        )
    return out


class _DpktWriter:
    """Every packet made by dpkt's packet classes: what :class:`_Writer` writes, made ~5x slower
    (kept as the reference the tests hold it to, and for a packet whose header dpkt refuses)."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()
        self.pcap = dpkt.pcap.Writer(self.buffer, linktype=dpkt.pcap.DLT_EN10MB)
        self.ip_id = 1

    def packet(self, time: float, src: str, dst: str, transport: dpkt.Packet, to_server: bool) -> None:
        proto = dpkt.ip.IP_PROTO_TCP if isinstance(transport, dpkt.tcp.TCP) else dpkt.ip.IP_PROTO_UDP
        ip = dpkt.ip.IP(
            src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=128 if to_server else 64, id=self.ip_id
        )
        self.ip_id += 1
        ip.data = transport
        if isinstance(transport, dpkt.udp.UDP):
            transport.ulen = 8 + len(transport.data)
        ip.len = 20 + len(bytes(transport))
        eth = dpkt.ethernet.Ethernet(
            src=GUEST_MAC if to_server else GATEWAY_MAC,
            dst=GATEWAY_MAC if to_server else GUEST_MAC,
            type=dpkt.ethernet.ETH_TYPE_IP,
            data=ip,
        )
        self.pcap.writepkt(bytes(eth), ts=time)

    def segment(
        self, time: float, ends: tuple[str, str, int, int], seq: int, ack: int, flags: int, data: bytes, to_server: bool
    ) -> None:
        """A TCP segment; ``ends``: source and destination address and port."""
        src, dst, sport, dport = ends
        tcp = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=65535, data=data)
        self.packet(time, src, dst, tcp, to_server)

    def datagram(self, time: float, ends: tuple[str, str, int, int], data: bytes, to_server: bool) -> None:
        """A UDP datagram; ``ends``: source and destination address and port."""
        src, dst, sport, dport = ends
        self.packet(time, src, dst, dpkt.udp.UDP(sport=sport, dport=dport, data=data), to_server)

    def dns(self, time: float, query_id: int, host: str, address: str | None, txt: bytes | None = None) -> None:
        """A query and its answer; nothing for a name DNS cannot carry (a label over 63 bytes...).
        ``txt``: the query is for the host's TXT record, answered with these bytes (NXDOMAIN if
        None) as character-strings of at most 255 bytes."""
        try:
            labels = host.encode("idna")
        except UnicodeError:
            return
        if not host or len(labels) > 253 or any(len(label) > 63 for label in labels.split(b".")):
            return
        kind = dpkt.dns.DNS_A if txt is None else dpkt.dns.DNS_TXT
        question = dpkt.dns.DNS.Q(name=host, type=kind)
        query = dpkt.dns.DNS(id=query_id & 0xFFFF, op=dpkt.dns.DNS_RD, qd=[question])
        sport = FIRST_CLIENT_PORT - 1 - (query_id % 1000)
        self.datagram(time, (GUEST_ADDRESS, DNS_SERVER, sport, 53), bytes(query), True)
        answers = []
        if txt:
            txt = txt[:MAX_TXT_IN_DATAGRAM]
            strings = [txt[i : i + MAX_TXT_BYTES] for i in range(0, len(txt), MAX_TXT_BYTES)]
            answers = [dpkt.dns.DNS.RR(name=host, type=dpkt.dns.DNS_TXT, ttl=300, text=strings)]
        elif address and txt is None:
            answers = [dpkt.dns.DNS.RR(name=host, type=dpkt.dns.DNS_A, ttl=300, ip=socket.inet_aton(address))]
        answer = dpkt.dns.DNS(
            id=query_id & 0xFFFF,
            op=dpkt.dns.DNS_RD | dpkt.dns.DNS_RA | dpkt.dns.DNS_QR,
            rcode=dpkt.dns.DNS_RCODE_NOERR if answers else dpkt.dns.DNS_RCODE_NXDOMAIN,
            qd=[question],
            an=answers,
        )
        self.datagram(time + 0.0001, (DNS_SERVER, GUEST_ADDRESS, 53, sport), bytes(answer), False)

    def tcp(self, ex: Exchange) -> None:
        client_isn, server_isn = 1000 + ex.client_port, 5000 + ex.client_port
        t = ex.time + 0.0002
        c_seq, s_seq = client_isn, server_isn
        to_client = (ex.server, GUEST_ADDRESS, ex.port, ex.client_port)
        to_server_ends = (GUEST_ADDRESS, ex.server, ex.client_port, ex.port)

        def seg(flags: int, to_server: bool, data: bytes = b"") -> None:
            nonlocal t, c_seq, s_seq
            seq = c_seq if to_server else s_seq
            ack = (s_seq if to_server else c_seq) if flags & dpkt.tcp.TH_ACK else 0
            self.segment(t, to_server_ends if to_server else to_client, seq, ack, flags, data, to_server)
            t += 0.00001
            advance = len(data) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
            if to_server:
                c_seq += advance
            else:
                s_seq += advance

        seg(dpkt.tcp.TH_SYN, True)
        seg(dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK, False)
        seg(dpkt.tcp.TH_ACK, True)
        for to_server, payload in ((True, ex.request), (False, ex.response)):
            for offset in range(0, len(payload), MSS):
                seg(dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH, to_server, payload[offset : offset + MSS])
            if payload:
                seg(dpkt.tcp.TH_ACK, not to_server)
        seg(dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, True)
        seg(dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, False)
        seg(dpkt.tcp.TH_ACK, True)

    def udp(self, ex: Exchange) -> None:
        if ex.request:
            self.datagram(ex.time + 0.0002, (GUEST_ADDRESS, ex.server, ex.client_port, ex.port), ex.request, True)
        if ex.response:
            self.datagram(ex.time + 0.0003, (ex.server, GUEST_ADDRESS, ex.port, ex.client_port), ex.response, False)


class _Writer(_DpktWriter):
    """:class:`_DpktWriter` with the TCP, UDP, IP and Ethernet headers packed here (dpkt's packet
    objects cost ~40 us each: ~15 ms of a 3CX pcap): the same bytes, checksums included; DNS
    messages are still dpkt's. A header field out of its range raises ``struct.error``
    (:func:`network_pcap` then writes with :class:`_DpktWriter`, which refuses it in its words)."""

    def segment(
        self, time: float, ends: tuple[str, str, int, int], seq: int, ack: int, flags: int, data: bytes, to_server: bool
    ) -> None:
        src, dst, sport, dport = ends
        # dpkt's header offset is 5 words (no options); its flags field holds the low 12 bits
        header = _TCP.pack(sport, dport, seq, ack, (5 << 12) | (flags & 0xFFF), 65535, 0, 0)
        self._send(time, src, dst, dpkt.ip.IP_PROTO_TCP, header, data, to_server)

    def datagram(self, time: float, ends: tuple[str, str, int, int], data: bytes, to_server: bool) -> None:
        src, dst, sport, dport = ends
        header = _UDP.pack(sport, dport, _UDP.size + len(data), 0)
        self._send(time, src, dst, dpkt.ip.IP_PROTO_UDP, header, data, to_server)

    def _send(self, time: float, src: str, dst: str, proto: int, header: bytes, data: bytes, to_server: bool) -> None:
        source, destination = socket.inet_aton(src), socket.inet_aton(dst)
        size = len(header) + len(data)
        checksum = _checksum(_PSEUDO.pack(source, destination, proto, size) + header + data)
        if proto == dpkt.ip.IP_PROTO_UDP and checksum == 0:  # RFC 768: zero means "none": all ones
            checksum = 0xFFFF
        at = _CHECKSUM_AT[proto]
        segment = header[:at] + checksum.to_bytes(2, "big") + header[at + 2 :] + data
        ip = _IP.pack(0x45, 0, _IP.size + size, self.ip_id, 0, 128 if to_server else 64, proto, 0, source, destination)
        self.ip_id += 1
        ip = ip[:10] + _checksum(ip).to_bytes(2, "big") + ip[12:]
        macs = GATEWAY_MAC + GUEST_MAC if to_server else GUEST_MAC + GATEWAY_MAC  # destination first
        self.pcap.writepkt(macs + _ETHERTYPE_IP + ip + segment, ts=time)


_TCP = struct.Struct(">HHIIHHHH")
_UDP = struct.Struct(">HHHH")
_IP = struct.Struct(">BBHHHBBH4s4s")
_PSEUDO = struct.Struct(">4s4sxBH")
_ETHERTYPE_IP = dpkt.ethernet.ETH_TYPE_IP.to_bytes(2, "big")
# Where each transport's checksum sits in its header.
_CHECKSUM_AT = {dpkt.ip.IP_PROTO_TCP: 16, dpkt.ip.IP_PROTO_UDP: 6}


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``, as dpkt computes it: the one's complement
    of the one's complement sum of its 16-bit big-endian words (a last odd byte padded with
    zero). The sum is taken modulo 0xFFFF of the whole as one integer (2**16 is 1 modulo
    0xFFFF), which is the folded sum but for one case: a sum of words not all zero that is a
    multiple of 0xFFFF folds to 0xFFFF, not 0."""
    if len(data) % 2:
        data += b"\x00"
    total = int.from_bytes(data, "big") % 0xFFFF
    if total == 0 and data.count(0) != len(data):
        total = 0xFFFF
    return ~total & 0xFFFF


def network_pcap(report: Report, outdir) -> bytes:  # type: ignore[no-untyped-def]
    """The pcap (Ethernet link type, microsecond timestamps) of every exchange in ``report``."""
    try:
        return _pcap(report, outdir, _Writer())
    except struct.error:  # a header field out of range: dpkt's packets say so in their words
        return _pcap(report, outdir, _DpktWriter())


def _pcap(report: Report, outdir, writer: _DpktWriter) -> bytes:  # type: ignore[no-untyped-def]
    start = _start_time(report)
    addresses = server_addresses(report)
    resolved: set[str] = set()
    by_seq = {ex.record.seq: ex for ex in exchanges(report, outdir)}
    for record in report.network:
        host = record.host.lower()
        if record.kind == "dns":
            # a TXT query (DnsQuery with DNS_TYPE_TEXT): its answer is the strings, one after the other
            txt = read_body(outdir, record.response.sha256) if "TXT" in record.response.headers else None
            writer.dns(start + record.seq * SEQ_TICK, record.seq, host, record.response.headers.get("A"), txt)
            resolved.add(host)
            continue
        ex = by_seq[record.seq]
        if host not in resolved and ex.server != host:
            writer.dns(ex.time, record.seq, host, None if record.blocked else addresses[host])
            resolved.add(host)
        if record.blocked:
            continue
        if record.kind == "udp":
            writer.udp(ex)
        else:
            writer.tcp(ex)
    return writer.buffer.getvalue()
