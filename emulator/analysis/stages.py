"""Stages and their provenance, derived from observed behaviour only.

A stage starts when code runs (the entry sample, or dynamic memory executed for the first
time, or a module the sample wrote and loaded). Its origin is its *lineage*
(:mod:`emulator.analysis.lineage`): the hops that brought its bytes into the process, back to a
file, registry value, network response, resource, image or scenario input, each with its
evidence and the transform (identity, XOR, base64, an API's decryption, guest code).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

from emulator.analysis.lineage import (
    Carrier,
    Hop,
    Piece,
    guest_code_detail,
    matched_length,
    section_table,
    trace,
)
from emulator.eventlog import api_calls_where, of_type, stage_bounds
from emulator.events import (
    ApiCall,
    DataBuffer,
    Event,
    FileAccess,
    MemoryAlloc,
    MemoryProtect,
    NetworkExchange,
    RegistryAccess,
    StageStart,
)
from emulator.recorder import sha256_hex

# How far (in events) from a buffer the API call that produced it is looked for.
_API_CALL_WINDOW = 4
# Kinds of stage whose bytes are a PE image identified by its section table.
IMAGE_STAGE_KINDS = ("pe_in_memory", "module")
# DataBuffer sources -> carrier kind (api outputs are traced on through their input).
_BUFFER_KINDS = {
    "file_read": "file",
    "network_read": "network",
    "registry_read": "registry",
    "resource": "resource",
    "decrypt": "api",
    "decode": "api",
    "decompress": "api",
    "api_copy": "api",
    "process_write": "process_write",
    "guest_write": "api",
    "environment_read": "environment",
}
_API_TRANSFORMS = {
    "decrypt": "decrypt",
    "decode": "decode",
    "decompress": "decompress",
    "api_copy": "copy",
    "guest_write": "guest_code",
}
# Reads whose pieces, read one after the other into one buffer, are joined into one carrier.
_PIECEWISE_READS = ("file", "network", "registry")
# Reads of different sources joined so (a file, then a registry value, then a download): one
# carrier whose pieces name each source.
_JOINED_SOURCES = (*_PIECEWISE_READS, "environment")
MAX_PIECE_EVIDENCE = 16
# APIs that queue an APC -> the index of the routine it runs (its start address).
APC_APIS = {
    "queueuserapc": 0,
    "queueuserapc2": 0,
    "ntqueueapcthread": 1,
    "zwqueueapcthread": 1,
    "ntqueueapcthreadex": 2,
    "zwqueueapcthreadex": 2,
    "ntqueueapcthreadex2": 3,
    "zwqueueapcthreadex2": 3,
    # completion routines, queued as APCs to the calling thread (emulator/apis/threads.py,
    # emulator/backends/speakeasy/sources.py)
    "setwaitabletimer": 3,
    "setwaitabletimerex": 3,
    "readfileex": 4,
    "writefileex": 4,
}
# Origin types the report knows; a lineage starting elsewhere is reported as memory.
ORIGIN_TYPES = ("file", "network", "memory", "scenario", "registry", "environment", "resource", "image", "process")


@dataclass
class Link:
    """How a stage's bytes are tied to an earlier input (the report's ``origin``)."""

    how: str  # entry | same_bytes | decoded | decrypted_in_place | decrypt_api | mapped_image | executed_from
    source_type: str  # one of ORIGIN_TYPES
    source_ref: str
    evidence: list[int]
    decrypted: bool = False
    via_api: str | None = None
    decoded: bool = False
    hops: list[Hop] = field(default_factory=list)


@dataclass
class Stage:
    id: str
    kind: str
    name: str
    sha256: str
    size: int
    base: int
    entry: int
    parent: str | None
    via: str
    start_seq: int
    first_seq: int = 0
    last_seq: int = 0
    link: Link | None = None
    order: int = 0
    process: str | None = None  # the process the stage runs in, when not the sample's own
    system_program: str | None = None  # the system program that ran the stage's file (rundll32, cmd)
    run_file: str | None = None  # the guest file that system program ran

    @property
    def origin_type(self) -> str:
        return self.link.source_type if self.link else "memory"


def derive_stages(events: Sequence[Event], blobs: dict[str, bytes], entry_origin: tuple[str, str]) -> list[Stage]:
    """Stages in start order, each with its lineage. Adds bounded stage bytes to ``blobs``."""
    stages: list[Stage] = []
    carriers: list[Carrier] = []
    buffers: list[DataBuffer] = []
    memory: list[MemoryAlloc | MemoryProtect] = []
    by_id: dict[str, Stage] = {}
    apcs = _apc_routines(events)
    kinds = (DataBuffer, NetworkExchange, RegistryAccess, FileAccess, MemoryAlloc, MemoryProtect, StageStart)
    for index, event in of_type(events, *kinds):  # API calls are not built (emulator/eventlog.py)
        if isinstance(event, DataBuffer):
            buffers.append(event)
            carrier = _buffer_carrier(event, blobs)
            if carrier is not None and carrier.kind == "resource" and event.address is not None:
                # A resource is data of a loaded image: drawn as that image's node.
                owner = next(
                    (
                        s
                        for s in reversed(stages)
                        if s.kind in IMAGE_STAGE_KINDS + ("pe",) and s.base <= event.address < s.base + s.size
                    ),
                    None,
                )
                carrier.node = f"image:{owner.id}" if owner is not None else None
            if carrier is not None:
                carrier.evidence.extend(_api_call_of(events, index, event))
                # The latest carrier an API put at an address: the value a registry read rendered
                # (no address) comes between the reads of two values into one buffer.
                latest = next((c for c in reversed(carriers) if c.address is not None), None)
                if not _extends(latest, carrier):
                    carriers.append(carrier)
        elif isinstance(event, NetworkExchange) and event.response.sha256 in blobs:
            ref = event.url or event.host
            # A DNS answer (TXT strings) is the host's: drawn as its node.
            node = f"host:{event.host}" if event.kind == "dns" else _url(event)
            api = event.method if event.kind == "dns" else None  # the query's API (an HTTP method is not)
            carriers.append(
                Carrier(
                    blobs[event.response.sha256 or ""],
                    "network",
                    ref,
                    event.seq,
                    event.stage,
                    [event.seq],
                    node,
                    api=api,
                )
            )
        elif isinstance(event, RegistryAccess) and event.op == "read" and event.value:
            # The rendered value; the exact bytes also come as a later registry_read buffer when
            # the backend records one (searched first, being more recent).
            carriers.append(
                Carrier(
                    event.value.encode("latin-1", "replace"),
                    "registry",
                    _registry_ref(event.path, event.value_name),
                    event.seq,
                    event.stage,
                    [event.seq],
                    f"registry:{event.path.lower()}",
                )
            )
        elif isinstance(event, RegistryAccess) and event.op == "write" and event.data_sha256 in blobs:
            carriers.append(
                Carrier(
                    blobs[event.data_sha256 or ""],
                    "registry_write",
                    _registry_ref(event.path, event.value_name),
                    event.seq,
                    event.stage,
                    [event.seq],
                    f"registry:{event.path.lower()}",
                    api=_writing_api(events, index, event),
                )
            )
        elif isinstance(event, FileAccess) and event.op == "write" and event.data_sha256 in blobs:
            carriers.append(
                Carrier(
                    blobs[event.data_sha256 or ""],
                    "file_write",
                    event.path,
                    event.seq,
                    event.stage,
                    [event.seq],
                    f"file:{event.path.lower()}",
                    api=_writing_api(events, index, event),
                )
            )
        elif isinstance(event, MemoryAlloc | MemoryProtect):
            memory.append(event)
        elif isinstance(event, StageStart):
            stage = Stage(
                id=event.new_stage,
                kind=event.kind,
                name=event.name,
                sha256=event.sha256,
                size=event.size,
                base=event.base,
                entry=event.entry,
                parent=event.parent,
                via=_apc_start(event, apcs) or event.via,
                start_seq=event.seq,
                first_seq=event.seq,
                last_seq=event.seq,
                order=len(stages),
                # A process the chain started from one of its files (the event says so); the
                # stages it runs are in it too unless injected elsewhere (graph.py decides).
                process=event.process,
                system_program=event.system_program,
                run_file=event.run_file,
            )
            data = blobs.get(event.sha256, b"")
            allocator = _allocator(event, memory)
            if allocator and allocator != stage.parent and _descends(allocator, stage.parent, by_id):
                # Control reached the stage by a jump from code that a later stage prepared
                # (a tail call keeps the earlier caller's return address on the stack).
                stage.parent = allocator
            if event.parent is None:
                stage.link = Link("entry", entry_origin[0], entry_origin[1], [event.seq])
                kind = "image"
            else:
                stage.link, data = _find_lineage(event, data, carriers, buffers, memory, allocator or stage.parent)
                kind = "memory"
                if data and sha256_hex(data) != stage.sha256:
                    stage.sha256 = sha256_hex(data)
                    stage.size = len(data)
                    blobs.setdefault(stage.sha256, data)
            if stage.via == "process" and stage.kind in ("pe", "module"):
                # A program the chain started as a process: its image is a source as the
                # sample's own (code it decodes from its data reads "image").
                kind = "image"
            carriers.append(
                Carrier(
                    data,
                    kind,
                    stage.id,
                    event.seq,
                    stage.parent or stage.id,
                    [event.seq],
                    f"image:{stage.id}" if kind == "image" else None,
                )
            )
            stages.append(stage)
            by_id[stage.id] = stage
    for stage_id, (first, last) in stage_bounds(events).items():
        owner = by_id.get(stage_id)
        if owner is not None:
            owner.first_seq = min(owner.first_seq, first)
            owner.last_seq = max(owner.last_seq, last)
    return stages


def _is_image(event: StageStart) -> bool:
    """A stage whose bytes are a mapped PE image: a module, an image mapped in memory, or the
    image of a process the chain started (a ``pe`` stage with a parent)."""
    return event.kind in IMAGE_STAGE_KINDS or (event.kind == "pe" and event.parent is not None)


def _apc_routines(events: Sequence[Event]) -> dict[int, list[int]]:
    """routine address -> seqs of the calls that queued an APC to run it (QueueUserAPC,
    NtQueueApcThread, ...), in order."""
    found: dict[int, list[int]] = {}
    for call in api_calls_where(events, lambda api: api.rpartition(".")[2].lower() in APC_APIS):
        name = call.api.rpartition(".")[2].lower()
        index = APC_APIS[name]
        # QueueUserAPC returns non-zero on success, the native calls STATUS_SUCCESS (0).
        failed = call.ret not in (None, "0x0") if name.startswith(("nt", "zw")) else call.ret in (None, "0x0")
        if len(call.args) <= index or failed:
            continue
        try:
            routine = int(call.args[index].split(" ", 1)[0], 0)
        except ValueError:
            continue
        if routine:
            found.setdefault(routine, []).append(call.seq)
    return found


def _apc_start(event: StageStart, apcs: dict[int, list[int]]) -> str | None:
    """``apc`` for a stage whose entry is the routine of an APC queued before it, started with no
    thread or call to explain it (the engine ran the APC as a thread it did not record), called
    back (the APC delivered to the queuing thread when it became alertable) or started as a thread
    (an APC to another thread, run as one)."""
    if event.via not in ("unknown", "callback", "thread") or event.parent is None:
        return None
    return "apc" if any(seq < event.seq for seq in apcs.get(event.entry, ())) else None


def _calls_near(events: Sequence[Event], index: int, stage: str, before_first: bool) -> Iterator[ApiCall]:
    """The stage's API calls within ``_API_CALL_WINDOW`` events of ``events[index]``, the nearest
    first, those before it first or those after it first. An event an API call caused is
    recorded just before it (project handlers record while the call runs) or just after it
    (engine handlers' records are translated once it is logged)."""
    before = reversed(events[max(0, index - _API_CALL_WINDOW) : index])
    after = events[index + 1 : index + 1 + _API_CALL_WINDOW]
    for other in (*before, *after) if before_first else (*after, *before):
        if isinstance(other, ApiCall) and other.stage == stage:
            yield other


def _api_call_of(events: Sequence[Event], index: int, buffer: DataBuffer) -> list[int]:
    """The API call that produced a buffer, found by the API's name."""
    name = (buffer.api or "").rpartition(".")[2].lower()
    if not name:
        return []
    calls = [
        c for c in _calls_near(events, index, buffer.stage, before_first=False) if c.api.lower().endswith("." + name)
    ]
    # Of two calls of one API near the buffer (a read, then the next read), the one that was given
    # the buffer's address.
    address = hex(buffer.address) if buffer.address else None
    found = next((c for c in calls if address in c.args), None) or next(iter(calls), None)
    return [found.seq] if found is not None else []


def _extends(previous: Carrier | None, carrier: Carrier) -> bool:
    """Join a carrier to the previous one when it continues it in memory: a decoding API's
    output (a payload turned back into bytes one UUID or address string per call: one buffer,
    traced upstream through the inputs joined as the NUL-terminated strings they were), or the
    next piece of one file or response, or the next value of one registry key, read into one
    buffer chunk by chunk (a payload split across values: the ref names each value), or a read of
    another source read right after (a file, then a registry value, then a download: the carrier's
    pieces name each)."""
    if previous is None or previous.address is None or carrier.address is None:
        return False
    # A string read overwrites the previous one's terminator (text joined as C strings are: the
    # next value read where the last one's NUL is).
    overlap = previous.address + len(previous.data) - carrier.address
    if overlap and not (0 < overlap <= 2 and previous.data.endswith(b"\0" * overlap) and len(previous.data) > overlap):
        return False
    if (
        carrier.kind in _JOINED_SOURCES
        and previous.kind in _JOINED_SOURCES
        and carrier.node is not None
        and previous.node is not None
        and previous.stage == carrier.stage
        and previous.transform == carrier.transform
    ):
        pieces = previous.pieces or [
            Piece(previous.kind, previous.ref, previous.node, previous.evidence, 0, len(previous.data), previous.api)
        ]
        last = pieces[-1]
        last.size -= overlap
        if (last.kind, last.node) == (carrier.kind, carrier.node) and carrier.kind in _PIECEWISE_READS:
            name = carrier.ref.rpartition("\\")[2]
            if carrier.kind == "registry" and carrier.ref != last.ref and not last.ref.endswith(" + " + name):
                # Another value of the key: "KEY\\Part1 + Part2".
                last.ref += " + " + name
            last.size += len(carrier.data)
            last.evidence = _bounded_evidence(last.evidence, carrier.evidence)
        else:
            pieces.append(
                Piece(
                    carrier.kind,
                    carrier.ref,
                    carrier.node,
                    list(carrier.evidence),
                    len(previous.data) - overlap,
                    len(carrier.data),
                    carrier.api,
                )
            )
        # Joined in place (a download may come in thousands of pieces); bytearray does all that
        # the searches ask of bytes.
        joined = previous.data if isinstance(previous.data, bytearray) else bytearray(previous.data)
        if overlap:
            del joined[-overlap:]
        joined += carrier.data
        previous.data = cast(bytes, joined)
        if len(pieces) == 1:
            previous.ref, previous.evidence = last.ref, last.evidence
        else:
            previous.pieces = pieces
            previous.evidence = [seq for piece in pieces for seq in piece.evidence]
        return True
    if (
        not overlap
        and carrier.kind == previous.kind == "api"
        and carrier.transform == previous.transform == "copy"
        and (carrier.api, carrier.ref, carrier.stage) == (previous.api, previous.ref, previous.stage)
        and previous.input_address is not None
        and carrier.input_address == previous.input_address + len(previous.data)
    ):
        # One copy made in pieces by one API (a pipe's or a mailslot's messages read one after
        # the other into one buffer, from one buffer of the writer's): one carrier, its input the
        # pieces' inputs joined.
        previous.data = previous.data + carrier.data
        previous.evidence = [*previous.evidence, *carrier.evidence]
        if previous.input is not None and carrier.input is not None:
            previous.input = previous.input + carrier.input
        return True
    if overlap or carrier.transform != "decode" or previous.transform != "decode" or previous.api != carrier.api:
        return False
    previous.data += carrier.data
    previous.evidence.extend(carrier.evidence)
    if previous.input is not None and carrier.input is not None:
        # The strings as a C array of them lies in a program's data: each ends with a NUL.
        previous.input += b"\0" + carrier.input
    return True


def _bounded_evidence(first: list[int], more: list[int]) -> list[int]:
    """The first reads and the latest: every piece's would swamp the evidence."""
    seqs = sorted({*first, *more})
    return seqs if len(seqs) <= MAX_PIECE_EVIDENCE else seqs[:8] + seqs[-8:]


def _writing_api(events: Sequence[Event], index: int, write: FileAccess | RegistryAccess) -> str:
    """The API whose call wrote a file (WriteFile, URLDownloadToFileA, ...) or a registry value
    (RegSetValueExA, ...): the nearest call from the same call site."""
    if write.pc is not None:
        for call in _calls_near(events, index, write.stage, before_first=True):
            if call.pc == write.pc:
                return call.api.rpartition(".")[2]
    return "WriteFile" if isinstance(write, FileAccess) else "RegSetValueEx"


def _buffer_carrier(event: DataBuffer, blobs: dict[str, bytes]) -> Carrier | None:
    kind = _BUFFER_KINDS.get(event.source)
    data = blobs.get(event.sha256)
    if kind is None or not data:
        return None
    node = None
    if kind == "file":
        node = f"file:{event.ref.lower()}"
    elif kind == "network":
        node = f"url:{event.ref}"
    elif kind == "registry":
        node = f"registry:{event.ref.rsplit(chr(92), 1)[0].lower()}"
    elif kind == "environment":
        node = f"environment:{event.ref}"
    elif kind == "process_write":
        node = f"process:{event.ref}"
    return Carrier(
        data,
        kind,
        event.ref,
        event.seq,
        event.stage,
        [event.seq],
        node,
        input=blobs.get(event.input_sha256 or "") if kind == "api" else None,
        api=event.api,
        address=event.address,
        transform=_API_TRANSFORMS.get(event.source, "identity"),
        pc=event.pc if event.source == "guest_write" else None,
        input_address=event.input_address,
    )


def _find_lineage(
    event: StageStart,
    data: bytes,
    carriers: list[Carrier],
    buffers: list[DataBuffer],
    memory: list[MemoryAlloc | MemoryProtect],
    actor: str | None,
) -> tuple[Link, bytes]:
    """The stage's lineage and its bounded bytes; ``actor`` is the stage that prepared its memory."""
    hops, bounded = _trace_stage(event, data, carriers, guest=False)
    if hops is not None and hops[0].transform != "source":
        # An API's output whose input no recognised transform explains (a copy of bytes guest
        # code decoded, say): the guest-code writes may lead on, to the origin or at least to
        # the decoding instruction.
        further, further_bounded = _trace_stage(event, data, carriers, guest=True)
        if further is not None and (further[0].transform == "source" or len(further) > len(hops)):
            hops, bounded = further, further_bounded
    if hops is None:
        hops = _in_place(event, buffers, memory, actor, carriers)
        if hops is not None:
            kind, ref = hops[0].source_kind, hops[0].source_ref
            evidence = sorted({*hops[0].evidence, event.seq})
            return Link("decrypted_in_place", kind, ref, evidence, decrypted=True, decoded=True, hops=hops), bounded
        hops, bounded = _trace_stage(event, data, carriers, guest=True)
    if hops is not None:
        # A transform matched by content names no actor: the stage that prepared the stage's
        # memory made the last ones; one made before a hop of a known stage (a file that stage
        # wrote) was that stage's, on the bytes it then passed on.
        after: tuple[str | None, list[int]] | None = None
        for hop in reversed(hops):
            if hop.actor is not None:
                after = (hop.actor, hop.evidence)
            elif after is None:
                hop.actor = actor
                hop.evidence = _writer_evidence(event, memory, actor)
            else:
                hop.actor, hop.evidence = after[0], list(after[1])
        return _link_from_hops(event, hops), bounded
    hop = Hop("memory", event.parent or "", "executed_from", "", [event.seq], actor=actor)
    return Link("executed_from", "memory", event.parent or "", [event.seq], hops=[hop]), bounded


def _trace_stage(
    event: StageStart, data: bytes, carriers: list[Carrier], guest: bool
) -> tuple[list[Hop] | None, bytes]:
    """The stage's hops (recognised transforms only, or also guest-code writes) and bounded bytes."""
    if _is_image(event):
        probe = section_table(data)
        return (trace(probe, event.seq, carriers, guest=guest) if probe else None), data
    # Stage bytes run to the end of the page-rounded region; the tail is padding.
    trimmed = data.rstrip(b"\0")
    for offset in dict.fromkeys((0, max(0, event.entry - event.base))):
        hops = trace(trimmed[offset:], event.seq, carriers, guest=guest, at=event.base + offset)
        if hops is not None:
            length = matched_length(hops)
            return hops, (data[offset : offset + length] if length else data)
    return None, trimmed or data


def _in_place(
    event: StageStart,
    buffers: list[DataBuffer],
    memory: list[MemoryAlloc | MemoryProtect],
    actor: str | None,
    carriers: list[Carrier],
) -> list[Hop] | None:
    """A buffer read from a file or the network, transformed in place by guest code, then run.
    Read from several sources one after the other (a joined carrier): the pieces from the
    stage's entry on."""
    writer = next(
        (
            b
            for b in reversed(buffers)
            if b.source == "guest_write" and b.seq < event.seq and b.address <= event.entry < b.address + b.size
        ),
        None,
    )
    for buffer in reversed(buffers):
        if buffer.source not in ("file_read", "network_read"):
            continue
        if buffer.address <= event.entry < buffer.address + buffer.size:
            kind = "file" if buffer.source == "file_read" else "network"
            node = f"file:{buffer.ref.lower()}" if kind == "file" else f"url:{buffer.ref}"
            evidence = _writer_evidence(event, memory, actor)
            decoder = actor
            if writer is not None and writer.seq > buffer.seq:
                decoder = writer.stage
                evidence = sorted({*evidence, writer.seq})
            pc = writer.pc if writer is not None and writer.seq > buffer.seq else None
            origin = Hop(kind, buffer.ref, "source", buffer.api or "", [buffer.seq], actor=buffer.stage, node=node)
            joined = next((c for c in carriers if any(buffer.seq in p.evidence for p in c.pieces)), None)
            if joined is not None and joined.address is not None:
                start = event.entry - joined.address
                covered = [p for p in joined.pieces if p.offset + p.size > start]
                if len(covered) > 1:
                    origin.pieces = covered
                    origin.evidence = sorted({seq for p in covered for seq in p.evidence})
            return [
                origin,
                Hop(
                    "memory",
                    "",
                    "guest_code",
                    guest_code_detail(pc, decoder, in_place=True),
                    evidence,
                    actor=decoder,
                ),
            ]
    return None


def _allocator(event: StageStart, memory: list[MemoryAlloc | MemoryProtect]) -> str | None:
    """The stage that last allocated or re-protected the memory the stage runs from."""
    for m in reversed(memory):
        if m.seq < event.seq and m.address <= event.entry < m.address + max(m.size, 1):
            return m.stage
    return None


def _descends(stage_id: str, ancestor: str | None, by_id: dict[str, Stage]) -> bool:
    seen: set[str] = set()
    current = by_id.get(stage_id)
    while current is not None and current.parent and current.id not in seen:
        seen.add(current.id)
        if current.parent == ancestor:
            return True
        current = by_id.get(current.parent)
    return False


def _writer_evidence(event: StageStart, memory: list[MemoryAlloc | MemoryProtect], actor: str | None) -> list[int]:
    """The allocation / protection calls of the stage's memory made by the actor, and the start."""
    seqs = [
        m.seq
        for m in memory
        if m.stage == actor and m.address <= event.entry < m.address + max(m.size, 1) and m.seq < event.seq
    ]
    return sorted({*seqs, event.seq})


def _link_from_hops(event: StageStart, hops: list[Hop]) -> Link:
    origin = hops[0]
    source_type = origin.source_kind if origin.source_kind in ORIGIN_TYPES else "memory"
    decrypted = any(h.transform == "decrypt" for h in hops)
    decoded = any(h.decodes for h in hops)
    via_api = next((h.detail for h in hops if h.source_kind == "api" and h.transform == "decrypt"), None)
    if _is_image(event):
        how = "mapped_image"
    elif decrypted:
        how = "decrypt_api"
    elif decoded:
        how = "decoded"
    else:
        how = "same_bytes"
    evidence = sorted({seq for h in hops for seq in h.evidence} | {event.seq})
    return Link(
        how,
        source_type,
        origin.source_ref,
        evidence,
        decrypted=decrypted,
        via_api=via_api,
        decoded=decoded,
        hops=hops,
    )


def _url(event: NetworkExchange) -> str:
    return f"url:{event.url or f'{event.kind}://{event.host}:{event.port}'}"


def _registry_ref(path: str, value_name: str | None) -> str:
    return f"{path}\\{value_name}" if value_name else path


def decoded_trailers(data: bytes) -> Iterator[bytes]:
    """Base64 text after each ``$`` marker, decoded: how an image carries a hidden payload."""
    for start in _trailer_starts(data):
        try:
            yield base64.b64decode(data[start:].split(b"\0", 1)[0], validate=False)
        except (binascii.Error, ValueError):
            continue


def _trailer_starts(data: bytes) -> list[int]:
    marks: list[int] = []
    index = data.find(b"$")
    while index != -1 and len(marks) < 8:
        marks.append(index + 1)
        index = data.find(b"$", index + 1)
    return marks
