"""The replay's own events as the log records a SIEM would hold (Sigma taxonomy field names).

One row per DNS query (every host the chain resolved or contacted: WinINet and WinHTTP resolve
inside the API, so a contacted host is a query even when no DNS call was recorded), per proxied
HTTP request, per side-loaded image and per dropped file. The Sigma proofs load these rows into a
table and run the converted rules over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator.export._common import header, http_exchanges
from emulator.report import Report, api_calls_at

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
    "ParentImage",
    "CommandLine",
)


def side_loads(report: Report) -> list[tuple[str, str, int]]:
    """(host process, loaded image name, seq) for every DLL the graph or a note says was side-loaded:
    a stage a process node loads (the host application loaded the planted DLL), and a stage noted
    ``dll_search_hijack`` (the loader's search for a system DLL's bare name took it from outside
    the system folders), loaded by the process of the stage that loads it."""
    nodes = {n.id: n for n in report.graph.nodes}
    stages = {s.id: s for s in report.stages}
    found: dict[str, tuple[str, str, int]] = {}
    for edge in report.graph.edges:
        source = nodes.get(edge.source)
        if edge.type == "loads" and source is not None and source.kind == "process" and edge.target in stages:
            seq = edge.evidence[0] if edge.evidence else 0
            found.setdefault(edge.target, (_last_name(source.label), stages[edge.target].name, seq))
    loaders = {e.target: e.source for e in report.graph.edges if e.type == "loads" and e.source in stages}
    for note in report.notes:
        stage = stages.get(note.stage)
        if note.what != "dll_search_hijack" or stage is None or stage.id in found:
            continue
        process = _process_name(report, loaders.get(stage.id, stage.id))
        if process:
            image = stage.origin.ref if stage.origin.type == "file" else stage.name
            found[stage.id] = (process, _last_name(image), note.seq)
    return sorted(found.values(), key=lambda load: load[2])


def _last_name(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[-1]


def _process_name(report: Report, stage_id: str) -> str:
    """The image name of the process stage ``stage_id`` ran in: its ``process``, else the sample's
    own process: the host application that loaded the entry stage, or the entry program itself."""
    stage = next((s for s in report.stages if s.id == stage_id), None)
    if stage is not None and stage.process:
        return _last_name(stage.process)
    nodes = {n.id: n for n in report.graph.nodes}
    first = report.stages[0] if report.stages else None
    for edge in report.graph.edges:
        node = nodes.get(edge.source)
        if first is not None and edge.target == first.id and node is not None and node.kind == "process":
            return _last_name(node.label)
    return _last_name(first.name) if first is not None and first.kind == "pe" else ""


@dataclass(frozen=True)
class ProcessStart:
    """A process the chain started (a ``creates_process`` edge of the graph)."""

    parent: str  # image name of the process that started it
    image: str  # the program as the graph names it (a path, or a bare name)
    command_line: str  # the command line the creating call passed ("" if none was recorded)
    run_file: str  # name of the guest file a system program ran ("" if none)
    evidence: tuple[int, ...]


def process_starts(report: Report) -> list[ProcessStart]:
    """Every process the chain started: ``sN -creates_process-> process:X`` (the parent is the
    process stage sN ran in) and ``process:P -creates_process-> process:X`` (cmd.exe starting a
    program), with the command line of the call that started it (the string argument of the
    call naming the program) and, for a system program that ran a guest file, that file's name."""
    nodes = {n.id: n for n in report.graph.nodes}
    stages = {s.id for s in report.stages}
    calls = api_calls_at(report, {seq for e in report.graph.edges if e.type == "creates_process" for seq in e.evidence})
    out = []
    for edge in report.graph.edges:
        target = nodes.get(edge.target)
        if edge.type != "creates_process" or target is None:
            continue
        if edge.source in stages:
            parent = _process_name(report, edge.source)
        elif edge.source in nodes and nodes[edge.source].kind == "process":
            parent = _last_name(nodes[edge.source].label)
        else:
            continue
        image = target.label
        name = _last_name(image).lower()
        stem = name.rsplit(".", 1)[0]
        command = ""
        for seq in edge.evidence:
            call = calls.get(seq)
            if call is not None:
                command = next((a for a in call.args if stem and stem in a.lower()), "")
                if command:
                    break
        run = next(
            (
                s.run_file
                for s in report.stages
                if s.run_file and s.parent == edge.source and _last_name(s.system_program or "").lower() == name
            ),
            "",
        )
        out.append(ProcessStart(parent, image, command, _last_name(run) if run else "", tuple(edge.evidence)))
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
    for start in process_starts(report):
        rows.append(
            {
                "category": "process_creation",
                "seq": start.evidence[0] if start.evidence else 0,
                "stage": "",
                "ParentImage": f"C:\\{start.parent}",
                "Image": start.image if ":" in start.image else f"C:\\{start.image}",
                "CommandLine": start.command_line,
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
