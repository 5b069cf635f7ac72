"""The stage graph: stages and the artifacts they touched, with typed, evidenced edges.

Edges are derived from events only. Each carries ``type`` and ``evidence`` (the seqs that
prove it), so a reader can go from any arrow back to the calls that caused it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import networkx as nx

from emulator.analysis.stages import Stage
from emulator.events import (
    DataBuffer,
    Event,
    FileAccess,
    NetworkExchange,
    RegistryAccess,
    SyncObject,
)

EDGE_TYPES = (
    "loads",
    "reads",
    "decrypts_to",
    "delivers",
    "maps",
    "executes",
    "fetches",
    "beacons_to",
    "exfiltrates_to",
    "drops",
    "writes",
    "creates",
    "resolves",
)
# A printable run this long shared by a request body and a file the sample read marks exfiltration.
EXFIL_MIN_SHARED_RUN = 12
# A host identifier shorter than this is too common to single out a beacon.
MIN_IDENTIFIER_LENGTH = 6
# Runs of text between the delimiters a sample uses to pack what it collected (JSON, CSV, ...).
_PRINTABLE_RUN = re.compile(rb'[^"\\{}\[\],;\x00-\x1f\x7f-\xff]{%d,}' % EXFIL_MIN_SHARED_RUN)


@dataclass
class GraphContext:
    host_process: str | None = None
    host_identifiers: list[str] = field(default_factory=list)


def node_id(kind: str, ref: str) -> str:
    return f"{kind}:{ref.lower() if kind in ('file', 'registry', 'sync') else ref}"


def build_graph(
    stages: list[Stage], events: list[Event], blobs: dict[str, bytes], context: GraphContext | None = None
) -> nx.DiGraph:
    context = context or GraphContext()
    graph = nx.DiGraph()
    for stage in stages:
        graph.add_node(
            stage.id,
            kind="stage",
            stage_kind=stage.kind,
            label=stage.name,
            order=stage.order,
            sha256=stage.sha256,
            first_seq=stage.first_seq,
        )

    def artifact(kind: str, ref: str, label: str | None = None, **attrs: object) -> str:
        nid = node_id(kind, ref)
        if nid not in graph:
            graph.add_node(nid, kind=kind, label=label or ref, **attrs)
        return nid

    def edge(src: str, dst: str, etype: str, evidence: Iterable[int]) -> None:
        if graph.has_edge(src, dst):
            data = graph.edges[src, dst]
            data["evidence"] = sorted(set(data["evidence"]) | set(evidence))
            # An edge between the same two nodes keeps the strongest meaning.
            if EDGE_TYPES.index(etype) > EDGE_TYPES.index(data["type"]) and data["type"] in ("reads", "fetches"):
                data["type"] = etype
            return
        graph.add_edge(src, dst, type=etype, evidence=sorted(set(evidence)))

    stage_ids = {s.id for s in stages}
    # Stages and where they came from.
    for stage in stages:
        link = stage.link
        if link is None:
            continue
        if link.how == "entry":
            if context.host_process:
                host = artifact("process", context.host_process)
                edge(host, stage.id, "loads", link.evidence)
            continue
        if stage.parent in stage_ids:
            edge(
                stage.parent or "", stage.id, "maps" if stage.kind == "pe_in_memory" else "executes", [stage.start_seq]
            )
        if link.source_type in ("file", "network"):
            kind = "file" if link.source_type == "file" else "url"
            source = artifact(kind, link.source_ref)
            edge(source, stage.id, "decrypts_to" if link.decrypted else "delivers", link.evidence)

    file_reads: list[bytes] = []
    for event in events:
        if isinstance(event, DataBuffer) and event.source == "file_read":
            file_reads.append(blobs.get(event.sha256, b""))
    created: set[str] = set()
    for event in events:
        owner = event.stage
        if owner not in stage_ids:
            continue
        if isinstance(event, FileAccess):
            if event.op == "create" and not event.existed:
                created.add(event.path.lower())
            if event.op == "read":
                edge(owner, artifact("file", event.path), "reads", [event.seq])
            elif event.op == "write":
                etype = "drops" if event.path.lower() in created else "writes"
                edge(owner, artifact("file", event.path), etype, [event.seq])
        elif isinstance(event, RegistryAccess) and event.op == "read":
            edge(owner, artifact("registry", event.path), "reads", [event.seq])
        elif isinstance(event, RegistryAccess) and event.op in ("write", "create"):
            edge(owner, artifact("registry", event.path), "writes", [event.seq])
        elif isinstance(event, SyncObject):
            edge(owner, artifact("sync", event.name, object_type=event.object_type), "creates", [event.seq])
        elif isinstance(event, NetworkExchange):
            if event.kind == "dns":
                edge(owner, artifact("host", event.host, blocked=event.blocked), "resolves", [event.seq])
                continue
            ref = event.url or f"{event.kind}://{event.host}:{event.port}"
            target = artifact("url", ref, host=event.host, blocked=event.blocked)
            edge(owner, target, classify_exchange(event, blobs, file_reads, context.host_identifiers), [event.seq])
    return graph


def classify_exchange(
    event: NetworkExchange, blobs: dict[str, bytes], file_reads: list[bytes], identifiers: list[str]
) -> str:
    """fetches, beacons_to or exfiltrates_to, from what the request carried."""
    body = blobs.get(event.request.body_sha256 or "", b"")
    if body and event.method in ("POST", "PUT") and _shares_file_content(body, file_reads):
        return "exfiltrates_to"
    carried = (
        body.decode("latin-1")
        + " "
        + " ".join(f"{k}: {v}" for k, v in event.request.headers.items() if k.lower() not in ("host", "user-agent"))
    )
    carried_lower = carried.lower()
    for identifier in identifiers:
        if len(identifier) >= MIN_IDENTIFIER_LENGTH and identifier.lower() in carried_lower:
            return "beacons_to"
    return "fetches"


def _shares_file_content(body: bytes, file_reads: list[bytes]) -> bool:
    for run in _PRINTABLE_RUN.findall(body):
        for data in file_reads:
            if run in data:
                return True
    return False


def graph_to_node_link(graph: nx.DiGraph) -> dict[str, object]:
    data: dict[str, object] = nx.node_link_data(graph, edges="edges")
    return data
