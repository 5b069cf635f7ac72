"""A Suricata rule per beacon and per download: every HTTP request the chain made, keyed on
``http.method``, ``http.host``, ``http.uri``, ``http.user_agent`` and ``http.cookie`` (the cookie's
names, not its host-specific values); every DNS TXT query (``dns.query``: a record that may carry
a payload) and every raw TCP or UDP exchange that carried bytes (the first bytes the server sent,
else the first the client sent). Its role is read from the stage graph: an exchange whose answer
became a stage (its URL, ``tcp://host:port`` or host node leads to one, through redirects too) is
a download; a request the graph calls a beacon or an exfiltration is a beacon. A URL named in a
command line the replay read but did not run (a script host's) gets a rule too, role
``command_line``: the request that script would make.
The rules match the HTTPS exchanges once decrypted (a TLS-inspecting sensor, or network.pcap).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emulator.export._common import header, http_exchanges, read_body, stable_uuid, url_path
from emulator.export.iocs import command_line_urls
from emulator.report import NetworkRecord, Report

SID_BASE = 1_000_000  # Suricata's range for local rules
SID_SPAN = 999_999
_UNSAFE = re.compile(r'[;"\\|:\x00-\x1f\x7f-\xff]')
_DOWNLOAD_EDGES = ("delivers", "decrypts_to", "decodes_to", "fetches", "downloads")
_BEACON_EDGES = ("beacons_to", "exfiltrates_to", "beacons", "exfiltrates")
RAW_CONTENT = 32  # bytes of a raw TCP/UDP exchange a rule keys on


def content(value: str) -> str:
    """``value`` as a Suricata content string, with the characters rules may not hold written as |hex|."""
    return '"' + _UNSAFE.sub(lambda m: "|" + m.group().encode("latin-1", "replace").hex(" ") + "|", value) + '"'


def _msg(text: str) -> str:
    """``text`` safe inside ``msg:"..."``: printable ASCII, with ``;``, ``"`` and ``\\`` escaped."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return re.sub(r'([;"\\])', r"\\\1", printable)


def _node(record: NetworkRecord) -> str:
    """The graph node of an exchange (as emulator/analysis/stages.py names it)."""
    if record.kind == "dns":
        return f"host:{record.host}"
    return f"url:{record.url or f'{record.kind}://{record.host}:{record.port}'}"


def _roles(report: Report) -> dict[int, str]:
    """seq of an exchange -> 'download' or 'beacon', from the graph's URL and host edges."""
    stages = {s.id for s in report.stages}
    seq_role: dict[int, str] = {}
    # The response's bytes may reach a stage through other artifacts (url -> dropped file -> stage).
    # A URL that answered a redirect leads where the redirect went (url -redirects_to-> url).
    onward: dict[str, list[str]] = {}
    for edge in report.graph.edges:
        if (edge.type in _DOWNLOAD_EDGES or edge.type == "redirects_to") and edge.source not in stages:
            onward.setdefault(edge.source, []).append(edge.target)
    delivering = {node for node in onward if node.startswith(("url:", "host:")) and _reaches(node, onward, stages)}
    for edge in report.graph.edges:
        if edge.target.startswith("url:") and edge.type in _BEACON_EDGES:
            for seq in edge.evidence:
                seq_role[seq] = "beacon"
    roles = {}
    for record in _exchanges(report):
        roles[record.seq] = "download" if _node(record) in delivering else seq_role.get(record.seq) or "request"
    return roles


def _exchanges(report: Report) -> list[NetworkRecord]:
    """The exchanges that get a rule: HTTP ones (not blocked, with a URL), DNS TXT queries, raw
    TCP and UDP exchanges, in the order the chain made them."""
    http = {r.seq for r in http_exchanges(report)}
    return [
        r
        for r in report.network
        if r.seq in http
        or (not r.blocked and r.kind == "dns" and "TXT" in r.response.headers)
        or (not r.blocked and r.kind in ("tcp", "udp"))
    ]


def _reaches(start: str, onward: dict[str, list[str]], stages: set[str]) -> bool:
    """Whether lineage edges lead from ``start`` through artifacts (never through a stage) to a stage."""
    seen, todo = {start}, [start]
    while todo:
        for target in onward.get(todo.pop(), []):
            if target in stages:
                return True
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return False


def _sid(report: Report, record: NetworkRecord) -> int:
    key = stable_uuid("suricata", report.target.sha256, str(record.seq), record.url or "")
    return SID_BASE + uuid.UUID(key).int % SID_SPAN


def _raw_payload(record: NetworkRecord, outdir: Path | None) -> tuple[str, bytes]:
    """The direction and first bytes of a raw TCP/UDP exchange a rule keys on: what the server
    sent (a stager's payload), else what the client sent; ("", b"") if neither is in ``outdir``."""
    response = read_body(outdir, record.response.sha256)
    if response:
        return "to_client", response[:RAW_CONTENT]
    request = read_body(outdir, record.request.sha256)
    return ("to_server", request[:RAW_CONTENT]) if request else ("", b"")


def _raw_content(data: bytes) -> str:
    return '"|' + data.hex(" ") + '|"'


def suricata_rules(report: Report, outdir: Path | None = None) -> list[dict[str, Any]]:
    """One dict per rule: ``seq`` of the exchange, ``role``, ``text`` (the rule line). The bytes
    of raw TCP/UDP exchanges are read from ``outdir`` (none: no rule for them)."""
    roles = _roles(report)
    rules = []
    seen: set[tuple[str, str, str]] = set()
    for record in _exchanges(report):
        role = roles.get(record.seq, "request")
        tail = [
            "classtype:trojan-activity",
            f"metadata:chainreplay_seq {record.seq}, chainreplay_stage {record.stage}",
            f"sid:{_sid(report, record)}",
            "rev:1",
        ]
        prefix = f"chainreplay {report.target.name} {record.stage} {role}"
        if record.kind == "dns":
            host = record.host.lower().rstrip(".")
            if ("dns", host, role) in seen or not host:
                continue
            seen.add(("dns", host, role))
            parts = [f'msg:"{_msg(f"{prefix} DNS TXT {host}")}"', f"dns.query; content:{content(host)}; nocase", *tail]
            head = "alert dns $HOME_NET any -> any any"
        elif record.kind in ("tcp", "udp"):
            direction, data = _raw_payload(record, outdir)
            if not data:
                continue
            where = f"{record.host.lower()}:{record.port}"
            raw_key = (str(record.kind), f"{where} {direction} {data.hex()}", role)
            if raw_key in seen:
                continue
            seen.add(raw_key)
            flow = f"flow:established,{direction}" if record.kind == "tcp" else f"flow:{direction}"
            what = f"{prefix} {record.kind.upper()} {where}"
            parts = [f'msg:"{_msg(what)}"', flow, f"content:{_raw_content(data)}; depth:{len(data)}", *tail]
            port = record.port if record.port is not None else "any"
            if direction == "to_client":
                head = f"alert {record.kind} $EXTERNAL_NET {port} -> $HOME_NET any"
            else:
                head = f"alert {record.kind} $HOME_NET any -> $EXTERNAL_NET {port}"
        else:
            key = (record.method or "", record.url or "", role)
            if key in seen:
                continue
            seen.add(key)
            parts = _http_parts(record, f"{prefix} {record.method} ", role) + tail
            head = "alert http $HOME_NET any -> $EXTERNAL_NET any"
        rules.append({"seq": record.seq, "role": role, "text": f"{head} (" + "; ".join(parts) + ";)"})
    rules += _command_line_rules(report, seen)
    return rules


def _command_line_rules(report: Report, seen: set[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """A rule per URL named in a command line the replay read but did not run (a script host's:
    iocs.command_line_urls), with role ``command_line``: the request the script would make (HTTP:
    host and path; HTTPS: the TLS server name), never made in the replay."""
    rules = []
    for url, host, note in command_line_urls(report):
        scheme = urlsplit(url).scheme.lower()
        if not host or scheme not in ("http", "https") or ("url", url, "command_line") in seen:
            continue
        seen.add(("url", url, "command_line"))
        prefix = f"chainreplay {report.target.name} {note.stage} command_line"
        sid = SID_BASE + uuid.UUID(stable_uuid("suricata", report.target.sha256, str(note.seq), url)).int % SID_SPAN
        tail = [
            "classtype:trojan-activity",
            f"metadata:chainreplay_seq {note.seq}, chainreplay_stage {note.stage}",
            f"sid:{sid}",
            "rev:1",
        ]
        if scheme == "https":
            head = "alert tls $HOME_NET any -> $EXTERNAL_NET any"
            parts = [f'msg:"{_msg(f"{prefix} TLS {host} ({url})")}"', "flow:established,to_server"]
            parts.append(f"tls.sni; content:{content(host)}; nocase")
        else:
            head = "alert http $HOME_NET any -> $EXTERNAL_NET any"
            path = url_path(url)
            parts = [
                f'msg:"{_msg(f"{prefix} {host}{path}")}"',
                "flow:established,to_server",
                f"http.host; content:{content(host)}",
                f"http.uri; content:{content(path)}",
            ]
        rules.append({"seq": note.seq, "role": "command_line", "text": f"{head} (" + "; ".join(parts + tail) + ";)"})
    return rules


def _http_parts(record: NetworkRecord, prefix: str, role: str) -> list[str]:
    host = (urlsplit(record.url or "").hostname or record.host).lower()
    path = url_path(record.url or "/")
    parts = [
        f'msg:"{_msg(f"{prefix}{host}{path}")}"',
        "flow:established,to_server",
        f"http.method; content:{content(record.method or 'GET')}",
        f"http.host; content:{content(host)}",
        f"http.uri; content:{content(path)}",
    ]
    agent = header(record.request.headers, "User-Agent")
    if agent:
        parts.append(f"http.user_agent; content:{content(agent)}")
    cookie = header(record.request.headers, "Cookie")
    if cookie:
        for name in dict.fromkeys(p.strip().partition("=")[0] + "=" for p in cookie.split(";") if "=" in p):
            parts.append(f"http.cookie; content:{content(name)}")
    return parts


def suricata_text(report: Report, outdir: Path | None = None) -> str:
    lines = [f"# chainreplay {report.tool.version}: Suricata rules generated from the replay of {report.target.name}"]
    lines += [r["text"] for r in suricata_rules(report, outdir)]
    return "\n".join(lines) + "\n"
