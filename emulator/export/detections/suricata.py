"""A Suricata rule per beacon and per download: every HTTP request the chain made, keyed on
``http.method``, ``http.host``, ``http.uri``, ``http.user_agent`` and ``http.cookie`` (the cookie's
names, not its host-specific values). Its role is read from the stage graph: a URL whose response
became a stage is a download; a request the graph calls a beacon or an exfiltration is a beacon.
The rules match the HTTPS exchanges once decrypted (a TLS-inspecting sensor, or network.pcap).
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from emulator.export._common import header, http_exchanges, stable_uuid, url_path
from emulator.report import NetworkRecord, Report

SID_BASE = 1_000_000  # Suricata's range for local rules
SID_SPAN = 999_999
_UNSAFE = re.compile(r'[;"\\|:\x00-\x1f\x7f-\xff]')
_DOWNLOAD_EDGES = ("delivers", "decrypts_to", "decodes_to", "fetches", "downloads")
_BEACON_EDGES = ("beacons_to", "exfiltrates_to", "beacons", "exfiltrates")


def content(value: str) -> str:
    """``value`` as a Suricata content string, with the characters rules may not hold written as |hex|."""
    return '"' + _UNSAFE.sub(lambda m: "|" + m.group().encode("latin-1", "replace").hex(" ") + "|", value) + '"'


def _msg(text: str) -> str:
    """``text`` safe inside ``msg:"..."``: printable ASCII, with ``;``, ``"`` and ``\\`` escaped."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return re.sub(r'([;"\\])', r"\\\1", printable)


def _roles(report: Report) -> dict[int, str]:
    """seq of an exchange -> 'download' or 'beacon', from the graph's URL edges."""
    by_url: dict[str, str] = {}
    stages = {s.id for s in report.stages}
    seq_role: dict[int, str] = {}
    # The response's bytes may reach a stage through other artifacts (url -> dropped file -> stage).
    onward: dict[str, list[str]] = {}
    for edge in report.graph.edges:
        if edge.type in _DOWNLOAD_EDGES and edge.source not in stages:
            onward.setdefault(edge.source, []).append(edge.target)
    for node in onward:
        if node.startswith("url:") and _reaches(node, onward, stages):
            by_url[node[4:]] = "download"
    for edge in report.graph.edges:
        if edge.target.startswith("url:") and edge.type in _BEACON_EDGES:
            for seq in edge.evidence:
                seq_role[seq] = "beacon"
    roles = {}
    for record in http_exchanges(report):
        roles[record.seq] = by_url.get(record.url or "") or seq_role.get(record.seq) or "request"
    return roles


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


def suricata_rules(report: Report) -> list[dict[str, Any]]:
    """One dict per rule: ``seq`` of the exchange, ``role``, ``text`` (the rule line)."""
    roles = _roles(report)
    rules = []
    seen: set[tuple[str, str, str]] = set()
    for record in http_exchanges(report):
        role = roles.get(record.seq, "request")
        key = (record.method or "", record.url or "", role)
        if key in seen:
            continue
        seen.add(key)
        host = (urlsplit(record.url or "").hostname or record.host).lower()
        path = url_path(record.url or "/")
        what = f"chainreplay {report.target.name} {record.stage} {role} {record.method} {host}{path}"
        parts = [
            f'msg:"{_msg(what)}"',
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
        parts += [
            "classtype:trojan-activity",
            f"metadata:chainreplay_seq {record.seq}, chainreplay_stage {record.stage}",
            f"sid:{_sid(report, record)}",
            "rev:1",
        ]
        rules.append(
            {
                "seq": record.seq,
                "role": role,
                "text": "alert http $HOME_NET any -> $EXTERNAL_NET any (" + "; ".join(parts) + ";)",
            }
        )
    return rules


def suricata_text(report: Report) -> str:
    lines = [f"# chainreplay {report.tool.version}: Suricata rules generated from the replay of {report.target.name}"]
    lines += [r["text"] for r in suricata_rules(report)]
    return "\n".join(lines) + "\n"
