"""ATT&CK techniques matched from a table of behaviour patterns (``emulator/data/attack.toml``).

Each pattern names one matcher kind and its parameters; there is no code per technique.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import networkx as nx

from emulator.analysis.graph import iter_edges
from emulator.analysis.stages import Stage, decoded_trailers
from emulator.events import ApiCall, DataBuffer, Event, FileAccess, NetworkExchange, RegistryAccess


@dataclass(frozen=True)
class TechniqueHit:
    technique: str
    name: str
    stage: str
    evidence: list[int]


def load_patterns() -> list[dict[str, Any]]:
    text = resources.files("emulator").joinpath("data/attack.toml").read_text(encoding="utf-8")
    patterns: list[dict[str, Any]] = tomllib.loads(text)["pattern"]
    return patterns


def attack_release() -> str:
    """The ATT&CK release the pattern table's technique IDs come from (``release`` in attack.toml)."""
    text = resources.files("emulator").joinpath("data/attack.toml").read_text(encoding="utf-8")
    return str(tomllib.loads(text).get("release", ""))


def match_techniques(
    stages: list[Stage],
    events: list[Event],
    graph: nx.DiGraph,
    blobs: dict[str, bytes],
    patterns: list[dict[str, Any]] | None = None,
) -> list[TechniqueHit]:
    hits: dict[tuple[str, str], TechniqueHit] = {}
    owner = {e.seq: e.stage for e in events}
    for pattern in patterns if patterns is not None else load_patterns():
        for stage, found in _MATCHERS[pattern["match"]](pattern, stages, events, graph, blobs):
            # A technique is shown on the stage whose behaviour it describes, with evidence
            # from that stage only.
            evidence = [seq for seq in found if owner.get(seq) == stage]
            if not evidence:
                continue
            key = (pattern["technique"], stage)
            if key in hits:
                merged = sorted(set(hits[key].evidence) | set(evidence))
                hits[key] = TechniqueHit(pattern["technique"], pattern["name"], stage, merged)
            else:
                hits[key] = TechniqueHit(pattern["technique"], pattern["name"], stage, sorted(set(evidence)))
    return sorted(hits.values(), key=lambda h: (h.evidence[0] if h.evidence else 0, h.technique))


Matches = list[tuple[str, list[int]]]


def _api(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    names = [n.lower() for n in p["apis"]]
    found: dict[str, list[int]] = {}
    for e in events:
        if isinstance(e, ApiCall) and any(fnmatch.fnmatchcase(e.api.lower(), n) for n in names):
            found.setdefault(e.stage, []).append(e.seq)
    return list(found.items())


def _edge(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    """Edges of a type; the technique goes to the edge's actor, else its stage end (source first)."""
    found: dict[str, list[int]] = {}
    for src, dst, data in iter_edges(graph):
        if data["type"] != p["edge"]:
            continue
        if "from_kind" in p and graph.nodes[src].get("kind") != p["from_kind"]:
            continue
        if "to_kind" in p and graph.nodes[dst].get("kind") != p["to_kind"]:
            continue
        if "to_stage_kind" in p and graph.nodes[dst].get("stage_kind") != p["to_stage_kind"]:
            continue
        if "scheme" in p and not str(dst).startswith(f"url:{p['scheme']}://"):
            continue
        if "to_glob" in p and not fnmatch.fnmatchcase(str(dst).lower(), p["to_glob"].lower()):
            continue
        stage = data["actor"] if data.get("actor") else src if graph.nodes[src].get("kind") == "stage" else dst
        found.setdefault(stage, []).extend(data["evidence"])
    return list(found.items())


def _lineage(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    """Hops of stage lineages: a transform (``transforms``) or the origin (``origins``) of decoded
    or delivered bytes; the technique goes to the stage that performed the hop."""
    transforms = set(p.get("transforms", []))
    origins = set(p.get("origins", []))
    found: dict[str, list[int]] = {}
    for stage in stages:
        hops = stage.link.hops if stage.link else []
        if not hops or stage.link is None or stage.link.how == "entry":
            continue
        if origins:
            if hops[0].source_kind not in origins or (p.get("decoded") and not stage.link.decoded):
                continue
            if p.get("on") == "origin":
                if hops[0].actor:
                    found.setdefault(hops[0].actor, []).extend(hops[0].evidence)
                continue
        for hop in hops:
            if transforms and hop.transform not in transforms:
                continue
            if not transforms and not hop.decodes:
                continue
            if hop.actor:
                found.setdefault(hop.actor, []).extend(hop.evidence)
    return list(found.items())


def _api_with_edge(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    """API calls (``apis``) by a stage that also has an edge of type ``edge`` (another process)."""
    with_edge = {src for src, _dst, data in iter_edges(graph) if data["type"] == p["edge"]}
    return [(stage, seqs) for stage, seqs in _api(p, stages, events, graph, blobs) if stage in with_edge]


def _dead_drop(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    """Content fetched from a public service, then contact with a host named only after that."""
    public = [h.lower() for h in p["public_hosts"]]
    found: dict[str, list[int]] = {}
    fetched: list[tuple[NetworkExchange, bytes]] = []
    decrypted: list[DataBuffer] = []
    for e in events:
        if isinstance(e, NetworkExchange) and e.kind == "http":
            if any(fnmatch.fnmatchcase(e.host, h) for h in public) and e.response.status == 200:
                fetched.append((e, blobs.get(e.response.sha256 or "", b"")))
            elif fetched:
                named_by = [d for d in decrypted if e.host.encode() in blobs.get(d.sha256, b"")]
                plain = [f for f, body in fetched if e.host.encode() in body]
                if named_by or plain:
                    first = fetched[0][0]
                    evidence = [first.seq, e.seq, *(d.seq for d in named_by[:1])]
                    found.setdefault(first.stage, []).extend(evidence)
        elif isinstance(e, DataBuffer) and e.source == "decrypt":
            decrypted.append(e)
    return list(found.items())


def _file_read(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    globs = [g.lower() for g in p["paths"]]
    found: dict[str, list[int]] = {}
    for e in events:
        if isinstance(e, FileAccess) and e.op in ("open", "read"):
            path = e.path.lower().replace("/", "\\")
            if any(fnmatch.fnmatchcase(path, g) for g in globs):
                found.setdefault(e.stage, []).append(e.seq)
    return list(found.items())


def _registry_read(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    found: dict[str, list[int]] = {}
    for e in events:
        if isinstance(e, RegistryAccess) and e.op == "read":
            found.setdefault(e.stage, []).append(e.seq)
    return list(found.items())


def _long_sleep(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    found: dict[str, list[int]] = {}
    for e in events:
        if isinstance(e, ApiCall) and e.api.lower() in ("kernel32.sleep", "kernel32.sleepex") and e.args:
            try:
                ms = int(e.args[0], 0)
            except ValueError:
                continue
            if ms >= int(p["min_ms"]):
                found.setdefault(e.stage, []).append(e.seq)
    return list(found.items())


def _decrypt_from_magic(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    """Data hidden in a file of another format (an image) and then decoded."""
    magics = [bytes.fromhex(m) for m in p["magics"]]
    found: dict[str, list[int]] = {}
    carriers: list[tuple[int, bytes]] = []
    for e in events:
        if isinstance(e, NetworkExchange) and e.response.sha256:
            body = blobs.get(e.response.sha256, b"")
            if any(body.startswith(m) for m in magics):
                carriers.append((e.seq, body))
        elif isinstance(e, DataBuffer) and e.source == "decrypt" and carriers:
            ciphertext = blobs.get(e.input_sha256 or "", b"")
            for seq, body in carriers:
                if ciphertext and _hidden_in(ciphertext, body):
                    found.setdefault(e.stage, []).extend([seq, e.seq])
    return list(found.items())


def _hidden_in(ciphertext: bytes, carrier: bytes) -> bool:
    needle = ciphertext[:64]
    return needle in carrier or any(needle in decoded for decoded in decoded_trailers(carrier))


def _stage_kind(
    p: dict[str, Any], stages: list[Stage], events: list[Event], graph: nx.DiGraph, blobs: dict[str, bytes]
) -> Matches:
    """A kind of stage; the technique goes to the stage that started it (the loader)."""
    return [(s.parent or s.id, [s.start_seq]) for s in stages if s.kind == p["stage_kind"]]


_MATCHERS = {
    "api": _api,
    "edge": _edge,
    "dead_drop": _dead_drop,
    "file_read": _file_read,
    "registry_read": _registry_read,
    "long_sleep": _long_sleep,
    "decrypt_from_magic": _decrypt_from_magic,
    "stage_kind": _stage_kind,
    "lineage": _lineage,
    "api_with_edge": _api_with_edge,
}
