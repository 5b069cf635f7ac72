"""The stage graph: stages and the artifacts they touched, with typed, evidenced edges.

Edges are derived from events only. Each carries ``type`` and ``evidence`` (the seqs that
prove it), so a reader can go from any arrow back to the calls that caused it.
"""

from __future__ import annotations

import ntpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import networkx as nx

from emulator.analysis.lineage import DECRYPTING_TRANSFORMS, Hop
from emulator.analysis.programs import program_image
from emulator.analysis.stages import Stage
from emulator.eventlog import api_calls_where, of_type
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
    "decodes_to",
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
    "creates_process",
    "opens_process",
    "writes_memory",
    "injects_into",
    "hosts",
    "redirects_to",
)
# Lineage hops that put bytes into a node of their own (every other hop is a transform).
_ARTIFACT_HOPS = (
    "file",
    "network",
    "registry",
    "environment",
    "resource",
    "image",
    "scenario",
    "process_write",
    "file_write",
    "registry_write",
)
# API -> (edge type, index of the process argument) for work done on another process.
PROCESS_APIS = {
    "createprocessa": ("creates_process", None),
    "createprocessw": ("creates_process", None),
    "createprocessinternala": ("creates_process", None),
    "createprocessinternalw": ("creates_process", None),
    "createprocessasusera": ("creates_process", None),
    "createprocessasuserw": ("creates_process", None),
    "winexec": ("creates_process", None),
    "shellexecutea": ("creates_process", None),
    "shellexecutew": ("creates_process", None),
    "openprocess": ("opens_process", None),
    "virtualallocex": ("writes_memory", 0),
    "virtualallocexnuma": ("writes_memory", 0),
    "writeprocessmemory": ("writes_memory", 0),
    "ntwritevirtualmemory": ("writes_memory", 0),
    "zwwritevirtualmemory": ("writes_memory", 0),
    "ntallocatevirtualmemory": ("writes_memory", 0),
    "zwallocatevirtualmemory": ("writes_memory", 0),
    # a view of a section the stage also maps (and writes) in its own process: mapping injection
    "ntmapviewofsection": ("writes_memory", 1),
    "zwmapviewofsection": ("writes_memory", 1),
    "createremotethread": ("injects_into", 0),
    "createremotethreadex": ("injects_into", 0),
    "ntcreatethreadex": ("injects_into", 3),
    "zwcreatethreadex": ("injects_into", 3),
    "rtlcreateuserthread": ("injects_into", 0),
    "queueuserapc": ("injects_into", None),
    "ntqueueapcthread": ("injects_into", None),
    "zwqueueapcthread": ("injects_into", None),
    "setthreadcontext": ("injects_into", None),
    "wow64setthreadcontext": ("injects_into", None),
    "ntsetcontextthread": ("injects_into", None),
    "zwsetcontextthread": ("injects_into", None),
}
# Thread-creating calls on another process -> the index of their start address argument.
THREAD_START_ARGUMENT = {
    "createremotethread": 3,
    "createremotethreadex": 3,
    "ntcreatethreadex": 4,
    "zwcreatethreadex": 4,
    "rtlcreateuserthread": 6,
}
# ... and the index of the parameter they pass the thread.
THREAD_PARAM_ARGUMENT = {
    "createremotethread": 4,
    "createremotethreadex": 4,
    "ntcreatethreadex": 5,
    "zwcreatethreadex": 5,
    "rtlcreateuserthread": 7,
}
# The loader's calls that take a DLL's path first (LdrLoadDll takes it third, as a UNICODE_STRING:
# its rendered argument is the path too).
LOAD_LIBRARY_APIS = {
    "loadlibrarya": 0,
    "loadlibraryw": 0,
    "loadlibraryexa": 0,
    "loadlibraryexw": 0,
    "ldrloaddll": 2,
}
# Calls that draw no edge of their own but tell how a process was injected into (the process is
# the one the stage last created, opened or wrote to, as for thread-handle APIs above).
INJECTION_STEPS = {
    "resumethread": "resume",
    "ntresumethread": "resume",
    "ntunmapviewofsection": "unmap",
    "zwunmapviewofsection": "unmap",
    "ntunmapviewofsectionex": "unmap",
    "zwunmapviewofsectionex": "unmap",
}
# The injecting call -> its method; thread_context becomes hollowing when the stage also created
# the process and unmapped a view in it (emulator/data/attack.toml maps methods to sub-techniques).
INJECTION_METHODS = {
    "createremotethread": "remote_thread",
    "createremotethreadex": "remote_thread",
    "ntcreatethreadex": "remote_thread",
    "zwcreatethreadex": "remote_thread",
    "rtlcreateuserthread": "remote_thread",
    "queueuserapc": "apc",
    "ntqueueapcthread": "apc",
    "zwqueueapcthread": "apc",
    "setthreadcontext": "thread_context",
    "wow64setthreadcontext": "thread_context",
    "ntsetcontextthread": "thread_context",
    "zwsetcontextthread": "thread_context",
    # a remote thread started at the loader with a DLL's path written into the process
    "remote_load_library": "dll_path",
}
# The current process's pseudo-handle, as an argument renders.
_CURRENT_PROCESS = {"0xffffffff", "0xffffffffffffffff", "-1"}
# A printable run this long shared by a request body and a file the sample read marks exfiltration.
EXFIL_MIN_SHARED_RUN = 12
# A host identifier shorter than this is too common to single out a beacon.
MIN_IDENTIFIER_LENGTH = 6
# Runs of text between the delimiters a sample uses to pack what it collected (JSON, CSV, ...).
_PRINTABLE_RUN = re.compile(rb'[^"\\{}\[\],;\x00-\x1f\x7f-\xff]{%d,}' % EXFIL_MIN_SHARED_RUN)


@dataclass
class GraphContext:
    host_process: str | None = None  # the host application's image path (its name in older traces)
    host_identifiers: list[str] = field(default_factory=list)
    arch: str = ""  # the guest's: where a program named without a folder is (programs.py)


def node_id(kind: str, ref: str) -> str:
    return f"{kind}:{ref.lower() if kind in ('file', 'registry', 'sync') else ref}"


def build_graph(
    stages: list[Stage], events: Sequence[Event], blobs: dict[str, bytes], context: GraphContext | None = None
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
        if kind == "process":
            ref = label = program_image(ref, context.arch)  # one node per program, by its path
        nid = node_id(kind, ref)
        if nid not in graph:
            graph.add_node(nid, kind=kind, label=label or ref, **attrs)
        return nid

    def edge(src: str, dst: str, etype: str, evidence: Iterable[int]) -> None:
        if graph.has_edge(src, dst):
            data = graph.edges[src, dst]
            if data["type"] == etype:
                data["evidence"] = sorted(set(data["evidence"]) | set(evidence))
                return
            # An edge between the same two nodes keeps the strongest meaning.
            if EDGE_TYPES.index(etype) > EDGE_TYPES.index(data["type"]) and data["type"] in ("reads", "fetches"):
                data["evidence"] = sorted(set(data["evidence"]) | set(evidence))
                data["type"] = etype
                return
            # A different relation between the same two nodes (creates_process, writes_memory,
            # injects_into): kept beside the first, one edge each in the report.
            also: list[dict[str, Any]] = data.setdefault("also", [])
            for other in also:
                if other["type"] == etype:
                    other["evidence"] = sorted(set(other["evidence"]) | set(evidence))
                    return
            also.append({"type": etype, "evidence": sorted(set(evidence))})
            return
        graph.add_edge(src, dst, type=etype, evidence=sorted(set(evidence)))

    stage_ids = {s.id for s in stages}
    by_id = {s.id: s for s in stages}
    own_names = {s.name.lower() for s in stages if s.parent is None}
    if context.host_process:
        own_names.add(_basename(context.host_process))
    processes = _process_edges(events, stage_ids, own_names, context.arch)
    loaded_in = _remote_loads(stages, events, blobs, processes)
    for stage in stages:
        # A process the chain started from its files says so itself (the stage's event);
        # otherwise a module another process loaded from a path the chain wrote there, or
        # memory or a thread start in a process the stage wrote to; otherwise the process of
        # the stage that started it (parents come first), which may itself be one the chain
        # started or injected into: an injection from a child process lands in its target.
        parent = by_id.get(stage.parent or "")
        stage.process = (
            stage.process
            or loaded_in.get(stage.id)
            or processes.hosting(stage.entry)
            or (parent.process if parent is not None else None)
        )
        if stage.process:
            stage.process = program_image(stage.process, context.arch)
            graph.nodes[stage.id]["process"] = stage.process
    # Stages and where they came from.
    for stage in stages:
        link = stage.link
        if link is None:
            continue
        graph.nodes[stage.id]["decoded"] = link.decoded
        if link.how == "entry":
            if context.host_process:
                host = artifact("process", context.host_process)
                edge(host, stage.id, "loads", link.evidence)
            continue
        if stage.parent in stage_ids:
            etype = {"pe_in_memory": "maps", "module": "loads"}.get(stage.kind, "executes")
            if stage.via == "process":
                etype = "executes"  # a program the parent started ran it (a DLL: rundll32, regsvr32)
            edge(stage.parent or "", stage.id, etype, [stage.start_seq])
        _lineage_edges(stage, link.hops, by_id, artifact, graph)

    started = _started_aliases(stages)
    for src, dst, etype, seq in processes.edges:
        if src in stage_ids:
            # A program named without its folder is the one the replay ran: its path.
            dst = started.get((src, ntpath.basename(dst).lower()), dst) if etype == "creates_process" else dst
            edge(src, artifact("process", dst), etype, [seq])
    for (src, dst), (methods, seqs) in processes.injections().items():
        relation = _relation(graph, src, node_id("process", program_image(dst, context.arch)), "injects_into")
        if relation is not None:
            relation["methods"] = methods
            relation["evidence"] = sorted(set(relation["evidence"]) | set(seqs))
    for stage in stages:
        if stage.via == "process" and stage.process:
            # A program the chain started from one of its files: the stage that started it
            # created the process (ShellExecuteEx names it only in a structure), and the file was
            # run as that process.
            # A system program (rundll32, regsvr32, cmd) the stage started ran the file: the stage
            # created that program's process, which ran the file (a DLL in it) or started it.
            process = artifact("process", stage.process)
            launcher = artifact("process", stage.system_program) if stage.system_program else process
            if stage.parent in stage_ids:
                edge(stage.parent or "", launcher, "creates_process", [stage.start_seq])
            if launcher != process:
                edge(launcher, process, "creates_process", [stage.start_seq])
                if stage.parent in stage_ids and graph.has_edge(launcher, process):
                    graph.edges[launcher, process].setdefault("actor", stage.parent)  # whose chain it is
            edge(artifact("file", stage.run_file or stage.process), process, "executes", [stage.start_seq])
        if stage.process:
            edge(artifact("process", stage.process), stage.id, "hosts", [stage.start_seq])

    file_reads: list[bytes] = []
    for _, event in of_type(events, DataBuffer):
        if isinstance(event, DataBuffer) and event.source == "file_read":
            file_reads.append(blobs.get(event.sha256, b""))
    created: set[str] = set()
    redirected: tuple[str, str, str, int] | None = None  # the last exchange's redirect, if any
    for _, event in of_type(events, FileAccess, RegistryAccess, SyncObject, NetworkExchange):
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
            if redirected is not None and redirected[1] == ref and redirected[2] == owner:
                edge(redirected[0], target, "redirects_to", [redirected[3], event.seq])
            redirected = _redirect_of(event, target, owner)
    return graph


def _started_aliases(stages: Sequence[Stage]) -> dict[tuple[str, str], str]:
    """(parent stage, program file name lower-case) -> the path of the program it started that
    the replay ran (a system program, or a guest program found by the search of a bare name)."""
    found: dict[tuple[str, str], str] = {}
    for stage in stages:
        if stage.via != "process" or not stage.parent:
            continue
        for path in (stage.system_program, stage.process):
            if path:
                found.setdefault((stage.parent, ntpath.basename(path).lower()), path)
    return found


def _redirect_of(event: NetworkExchange, node: str, stage: str) -> tuple[str, str, str, int] | None:
    """(url node, the URL its answer redirects to, stage, seq) of a 3xx answer with a Location:
    the stage's next exchange, with that URL, is the redirect followed."""
    status = event.response.status
    if event.kind != "http" or not event.url or status is None or not 300 <= status < 400:
        return None
    location = next((v for k, v in event.response.headers.items() if k.lower() == "location"), "")
    if not location:
        return None
    return node, urljoin(event.url, location.strip()), stage, event.seq


def _lineage_edges(stage: Stage, hops: list[Hop], by_id: dict[str, Stage], artifact: Any, graph: nx.DiGraph) -> None:
    """One edge per artifact along the stage's lineage, typed by the transforms in between; an
    origin of several sources (pieces read into one buffer) draws an edge from each, citing its
    own reads."""
    previous: dict[str, list[int]] = {}  # node -> its own reads (several: the pieces of an origin)
    transforms: list[str] = []
    evidence: list[int] = []
    actor: str | None = None

    def close(target: str) -> None:
        for node, own in previous.items():
            if node != target:
                cited = [*own, *evidence] if len(previous) > 1 else evidence
                _add_lineage_edge(graph, node, target, transforms, cited, actor)

    for hop in hops:
        if hop.source_kind in _ARTIFACT_HOPS and hop.node:
            sources = [(p.node, p.evidence) for p in hop.pieces if p.node] or [(hop.node, [])]
            nodes = {_artifact_node(node, by_id, artifact): own for node, own in sources}
            close(next(iter(nodes)))
            previous, transforms, actor = nodes, [], hop.actor
            # The reads of a single source; each piece's edge cites its own instead.
            evidence = [] if len(nodes) > 1 else list(hop.evidence)
            if hop.transform not in ("source", "identity"):
                transforms.append(hop.transform)
            continue
        if hop.transform not in ("source", "identity", "executed_from"):
            transforms.append(f"{hop.transform}: {hop.detail}" if hop.detail else hop.transform)
            actor = hop.actor or actor
        evidence.extend(hop.evidence)
    evidence.append(stage.start_seq)
    close(stage.id)


def _artifact_node(hop_node: str, by_id: dict[str, Stage], artifact: Any) -> str:
    kind, _, ref = hop_node.partition(":")
    label = f"{by_id[ref].name} (image)" if kind == "image" and ref in by_id else None
    node: str = artifact(kind, ref, label)
    return node


def _add_lineage_edge(
    graph: nx.DiGraph, src: str, dst: str, transforms: list[str], evidence: list[int], actor: str | None
) -> None:
    names = {t.split(":", 1)[0] for t in transforms}
    if names & DECRYPTING_TRANSFORMS:
        etype = "decrypts_to"
    elif names - {"copy", "process_write", "file_write", "registry_write"}:
        etype = "decodes_to"
    elif graph.nodes[src].get("kind") == "process":
        etype = "hosts"
    else:
        etype = "delivers"
    if graph.has_edge(src, dst):
        data = graph.edges[src, dst]
        data["evidence"] = sorted(set(data["evidence"]) | set(evidence))
        return
    attrs: dict[str, Any] = {"type": etype, "evidence": sorted(set(evidence))}
    if transforms:
        attrs["transforms"] = list(transforms)
    if actor:
        attrs["actor"] = actor
    graph.add_edge(src, dst, **attrs)


def _relation(graph: nx.DiGraph, src: str, dst: str, etype: str) -> dict[str, Any] | None:
    """The attributes of the ``etype`` relation between two nodes (the edge or one of its ``also``)."""
    if not graph.has_edge(src, dst):
        return None
    data: dict[str, Any] = graph.edges[src, dst]
    if data["type"] == etype:
        return data
    return next((other for other in data.get("also", []) if other["type"] == etype), None)


@dataclass
class _Processes:
    edges: list[tuple[str, str, str, int]] = field(default_factory=list)  # stage, process, type, seq
    regions: list[tuple[int, int, str]] = field(default_factory=list)  # memory allocated in a process
    thread_starts: dict[int, str] = field(default_factory=dict)
    # threads started in another process: (stage, process, parameter, seq)
    remote_threads: list[tuple[str, str, int, int]] = field(default_factory=list)
    # (stage, process) -> the process-related calls in order: (function, edge type or step, seq)
    calls: dict[tuple[str, str], list[tuple[str, str, int]]] = field(default_factory=dict)

    def injections(self) -> dict[tuple[str, str], tuple[list[str], list[int]]]:
        """(stage, process) -> (injection methods, seqs of the calls that make them) from the
        order of the calls: SetThreadContext counts once the thread is resumed after it."""
        found: dict[tuple[str, str], tuple[list[str], list[int]]] = {}
        for key, calls in self.calls.items():
            methods: set[str] = set()
            seqs: set[int] = set()
            created = any(kind == "creates_process" for _, kind, _ in calls)
            unmaps = [seq for _, kind, seq in calls if kind == "unmap"]
            for index, (func, _kind, seq) in enumerate(calls):
                method = INJECTION_METHODS.get(func)
                if method is None:
                    continue
                if method == "thread_context":
                    resumed = [s for f, kind, s in calls[index + 1 :] if kind == "resume"]
                    if not resumed:
                        continue
                    seqs.update((seq, resumed[0]))
                    if created and any(u < seq for u in unmaps):
                        method = "hollowing"
                        seqs.update(u for u in unmaps if u < seq)
                else:
                    seqs.add(seq)
                methods.add(method)
            if methods:
                found[key] = (sorted(methods), sorted(seqs))
        return found

    def hosting(self, address: int) -> str | None:
        if address in self.thread_starts:
            return self.thread_starts[address]
        for base, end, process in self.regions:
            if base <= address < end:
                return process
        return None


def _process_edges(events: Sequence[Event], stage_ids: set[str], own_names: set[str], arch: str = "") -> _Processes:
    """Processes the sample created, opened, wrote to or injected into, from its API calls, each
    named by its image path as the guest resolves it (programs.program_image)."""
    found = _Processes()
    last_target: dict[str, str] = {}  # stage -> process it last created or wrote to
    wanted = PROCESS_APIS.keys() | INJECTION_STEPS.keys()
    for event in api_calls_where(events, lambda api: api.rpartition(".")[2].lower() in wanted):
        if event.stage not in stage_ids:
            continue
        func = event.api.rpartition(".")[2].lower()
        if func in INJECTION_STEPS:
            target = last_target.get(event.stage, "")
            if target and not (
                INJECTION_STEPS[func] == "unmap" and event.args[:1] and event.args[0] in _CURRENT_PROCESS
            ):
                found.calls.setdefault((event.stage, target), []).append((func, INJECTION_STEPS[func], event.seq))
            continue
        if func not in PROCESS_APIS:
            continue
        etype, index = PROCESS_APIS[func]
        if etype == "creates_process":
            if not event.ret or event.ret == "0x0":
                continue
            process = _started_image(func, event.args)
        elif index is not None:
            process = event.args[index] if len(event.args) > index else ""
        else:
            process = last_target.get(event.stage, "")
        if not process or process.startswith("0x") or _basename(process) in own_names:
            continue
        process = program_image(process, arch)
        found.edges.append((event.stage, process, etype, event.seq))
        found.calls.setdefault((event.stage, process), []).append((func, etype, event.seq))
        last_target[event.stage] = process
        if func.startswith("virtualallocex") and event.ret and event.ret != "0x0":
            size = _int(event.args[2]) if len(event.args) > 2 else 0
            base = _int(event.ret)
            found.regions.append((base, base + max(size, 1), process))
        elif func in THREAD_START_ARGUMENT and len(event.args) > THREAD_START_ARGUMENT[func]:
            start = _int(event.args[THREAD_START_ARGUMENT[func]])
            if start:
                found.thread_starts[start] = process
            if len(event.args) > THREAD_PARAM_ARGUMENT[func]:
                param = _int(event.args[THREAD_PARAM_ARGUMENT[func]])
                if param:
                    found.remote_threads.append((event.stage, process, param, event.seq))
    return found


def _started_image(func: str, args: list[str]) -> str:
    """The program a process-starting call names: CreateProcess's command line or application
    name, WinExec's command line, ShellExecute's file."""
    if func == "winexec":
        return _image_of(args[0] if args else "")
    if func.startswith("shellexecute"):
        return _image_of(args[2] if len(args) > 2 else "")
    offset = 1 if "internal" in func or "asuser" in func else 0
    return _image_of(args[offset + 1] if len(args) > offset + 1 else "") or _image_of(
        args[offset] if len(args) > offset else ""
    )


def _remote_loads(
    stages: list[Stage], events: Sequence[Event], blobs: dict[str, bytes], processes: _Processes
) -> dict[str, str]:
    """stage id -> process, for the modules another process's loader took from a path a stage
    wrote there: a remote thread whose parameter is where ``WriteProcessMemory`` put the DLL's
    path, then a ``LoadLibrary`` of that path loading the module (classic DLL injection: the
    thread starts at ``LoadLibraryA`` in the target). The injection's method is ``dll_path``."""
    if not processes.remote_threads:
        return {}
    writes: dict[tuple[str, int], list[tuple[int, str]]] = {}  # (process, address) -> (seq, text)
    for _, event in of_type(events, DataBuffer):
        if isinstance(event, DataBuffer) and event.source == "process_write":
            text = _path_text(blobs.get(event.sha256, b""))
            if text:
                writes.setdefault((event.ref, event.address), []).append((event.seq, text))
    if not writes:
        return {}
    loads = [
        (call.seq, _path_text(call.args[LOAD_LIBRARY_APIS[name]].encode("utf-8", "replace")))
        for call in api_calls_where(events, lambda api: api.rpartition(".")[2].lower() in LOAD_LIBRARY_APIS)
        if len(call.args) > LOAD_LIBRARY_APIS[(name := call.api.rpartition(".")[2].lower())]
    ]
    found: dict[str, str] = {}
    for stage in stages:
        if stage.kind != "module":
            continue
        load = next(
            (
                (seq, path)
                for seq, path in reversed(loads)
                if seq < stage.start_seq and path and _basename(path) == stage.name.lower()
            ),
            None,
        )
        if load is None:
            continue
        for injector, process, param, thread_seq in processes.remote_threads:
            written = [
                seq
                for seq, text in writes.get((process, param), [])
                if seq < thread_seq < load[0] and text.lower() == load[1].lower()
            ]
            if written:
                found[stage.id] = process
                key = (injector, process)
                processes.calls.setdefault(key, []).append(("remote_load_library", "dll_path", thread_seq))
                break
    return found


def _path_text(data: bytes) -> str:
    """A path written as a C string, narrow or wide, up to its terminator ('' when not text)."""
    wide = len(data) >= 4 and data[1] == 0 and data[3] == 0
    text = data.decode("utf-16-le", "replace").split("\0", 1)[0] if wide else data.split(b"\0", 1)[0].decode("latin-1")
    return text if text and text.isprintable() else ""


def _image_of(text: str) -> str:
    """The executable of a command line: its first, possibly quoted, token."""
    text = text.strip()
    if not text or text == "0x0":
        return ""
    if text.startswith('"'):
        return text[1:].split('"', 1)[0]
    return text.split(" ", 1)[0]


def _basename(path: str) -> str:
    return path.replace("/", "\\").rsplit("\\", 1)[-1].lower()


def _int(text: str) -> int:
    try:
        return int(text.split(" ", 1)[0], 0)
    except ValueError:
        return 0


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


def iter_edges(graph: nx.DiGraph) -> Iterable[tuple[str, str, dict[str, Any]]]:
    """Every relation of the graph, including further relations between the same two nodes."""
    for src, dst, data in graph.edges(data=True):
        yield src, dst, {k: v for k, v in data.items() if k != "also"}
        for other in data.get("also", []):
            shared = {k: v for k, v in data.items() if k not in ("also", "type", "evidence", "methods")}
            yield src, dst, {**shared, **other}


def graph_to_node_link(graph: nx.DiGraph) -> dict[str, object]:
    data: dict[str, object] = nx.node_link_data(graph, edges="edges")
    data["edges"] = [{**attrs, "source": src, "target": dst} for src, dst, attrs in iter_edges(graph)]
    return data
