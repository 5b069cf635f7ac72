"""The replay's own events as the log records a SIEM would hold (Sigma taxonomy field names).

One row per DNS query (every host the chain resolved or contacted: WinINet and WinHTTP resolve
inside the API, so a contacted host is a query even when no DNS call was recorded), per proxied
HTTP request, per side-loaded image and per dropped file. The Sigma proofs load these rows into a
table and run the converted rules over it.
"""

from __future__ import annotations

from typing import Any

from emulator.export._common import header, http_exchanges
from emulator.report import Report

COLUMNS = (
    "category",
    "seq",
    "stage",
    "QueryName",
    "c-uri",
    "cs-host",
    "cs-method",
    "c-useragent",
    "cs-cookie",
    "Image",
    "ImageLoaded",
    "TargetFilename",
)


def side_loads(report: Report) -> list[tuple[str, str, int]]:
    """(host process, loaded image name, seq) for every stage a process node loads in the graph."""
    nodes = {n.id: n for n in report.graph.nodes}
    names = {s.id: s.name for s in report.stages}
    out = []
    for edge in report.graph.edges:
        source = nodes.get(edge.source)
        if edge.type == "loads" and source is not None and source.kind == "process" and edge.target in names:
            out.append((source.label, names[edge.target], edge.evidence[0] if edge.evidence else 0))
    return out


def replay_events(report: Report) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    queried: set[str] = set()
    for record in report.network:
        host = record.host.lower().rstrip(".")
        if host and host not in queried and record.kind in ("dns", "http", "tcp", "udp"):
            queried.add(host)
            rows.append({"category": "dns_query", "seq": record.seq, "stage": record.stage, "QueryName": host})
    for record in http_exchanges(report):
        rows.append(
            {
                "category": "proxy",
                "seq": record.seq,
                "stage": record.stage,
                "c-uri": record.url,
                "cs-host": record.host.lower(),
                "cs-method": record.method,
                "c-useragent": header(record.request.headers, "User-Agent"),
                "cs-cookie": header(record.request.headers, "Cookie"),
            }
        )
    for process, image, seq in side_loads(report):
        rows.append(
            {
                "category": "image_load",
                "seq": seq,
                "stage": "",
                "Image": f"C:\\{process}",
                "ImageLoaded": f"C:\\{image}",
            }
        )
    writers = {f.sha256: f for f in report.files if f.sha256 and f.op == "write"}
    for dropped in report.dropped:
        writer = writers.get(dropped.sha256)
        rows.append(
            {
                "category": "file_event",
                "seq": writer.seq if writer else 0,
                "stage": writer.stage if writer else "",
                "TargetFilename": dropped.path,
            }
        )
    return [{column: row.get(column) for column in COLUMNS} for row in rows]
