"""The report document built from a frozen trace and its analysis.

Pure: a :class:`emulator.trace.Trace` and an :class:`emulator.analysis.pipeline.Analysis` in,
a :class:`emulator.report.Report` out. Each report section is one small function over the
events, so a new event type is one function and one line in :func:`build_report`.
"""

from __future__ import annotations

import datetime as dt
from typing import TypedDict

from emulator import __version__
from emulator.analysis.attack import attack_release
from emulator.analysis.graph import graph_to_node_link
from emulator.analysis.pipeline import Analysis
from emulator.analysis.stages import Stage
from emulator.events import (
    ApiCall,
    DataBuffer,
    Event,
    FileAccess,
    MemoryAlloc,
    MemoryProtect,
    NetworkExchange,
    Note,
    RegistryAccess,
    SyncObject,
    ThreadStart,
)
from emulator.report import (
    ApiCallRecord,
    BufferRecord,
    Containment,
    DroppedFile,
    FileRecord,
    LineageHop,
    MemoryRecord,
    NetRequestRecord,
    NetResponseRecord,
    NetworkRecord,
    Origin,
    Outcome,
    RegistryRecord,
    Report,
    RunRecord,
    StageGraph,
    StageRecord,
    Stats,
    SyncRecord,
    Target,
    Technique,
    ThreadRecord,
    Tool,
    VirtualTime,
)
from emulator.report import Note as NoteRecord
from emulator.trace import BLOB_DIR, Trace, blob_name


def _hex(value: int | None) -> str | None:
    return None if value is None else hex(value)


class _Common(TypedDict):
    seq: int
    stage: str
    pc: str | None


def _common(e: Event) -> _Common:
    return {"seq": e.seq, "stage": e.stage, "pc": _hex(e.pc)}


def api_calls(events: list[Event]) -> list[ApiCallRecord]:
    return [ApiCallRecord(**_common(e), api=e.api, args=e.args, ret=e.ret) for e in events if isinstance(e, ApiCall)]


def network(events: list[Event]) -> list[NetworkRecord]:
    return [
        NetworkRecord(
            **_common(e),
            kind=e.kind,
            host=e.host,
            port=e.port,
            method=e.method,
            url=e.url,
            request=NetRequestRecord(headers=e.request.headers, size=e.request.body_size, sha256=e.request.body_sha256),
            response=NetResponseRecord(
                status=e.response.status, headers=e.response.headers, size=e.response.size, sha256=e.response.sha256
            ),
            responder=e.responder,
            blocked=e.blocked,
            error=e.error,
        )
        for e in events
        if isinstance(e, NetworkExchange)
    ]


def files(events: list[Event]) -> list[FileRecord]:
    return [
        FileRecord(
            **_common(e),
            op=e.op,
            path=e.path,
            size=e.size,
            sha256=e.data_sha256,
            address=_hex(e.address),
            existed=e.existed,
        )
        for e in events
        if isinstance(e, FileAccess)
    ]


def registry(events: list[Event]) -> list[RegistryRecord]:
    return [
        RegistryRecord(**_common(e), op=e.op, path=e.path, value_name=e.value_name, value=e.value)
        for e in events
        if isinstance(e, RegistryAccess)
    ]


def sync_objects(events: list[Event]) -> list[SyncRecord]:
    return [
        SyncRecord(**_common(e), op=e.op, object_type=e.object_type, name=e.name, existed=e.existed)
        for e in events
        if isinstance(e, SyncObject)
    ]


def memory(events: list[Event]) -> list[MemoryRecord]:
    return [
        MemoryRecord(
            **_common(e),
            op="alloc" if isinstance(e, MemoryAlloc) else "protect",
            address=hex(e.address),
            size=e.size,
            protect=e.protect,
        )
        for e in events
        if isinstance(e, MemoryAlloc | MemoryProtect)
    ]


def threads(events: list[Event]) -> list[ThreadRecord]:
    return [ThreadRecord(**_common(e), start=hex(e.start), api=e.api) for e in events if isinstance(e, ThreadStart)]


def buffers(events: list[Event]) -> list[BufferRecord]:
    return [
        BufferRecord(
            **_common(e),
            source=e.source,
            ref=e.ref,
            address=hex(e.address),
            size=e.size,
            sha256=e.sha256,
            input_sha256=e.input_sha256,
            api=e.api,
            file=f"{BLOB_DIR}/{blob_name(e.sha256)}",
        )
        for e in events
        if isinstance(e, DataBuffer)
    ]


def notes(events: list[Event]) -> list[NoteRecord]:
    return [NoteRecord(**_common(e), what=e.what, detail=e.detail) for e in events if isinstance(e, Note)]


def stage_record(stage: Stage) -> StageRecord:
    link = stage.link
    origin = Origin(
        type=link.source_type if link else "memory",  # type: ignore[arg-type]
        ref=link.source_ref if link else "",
        how=link.how if link else "executed_from",
        evidence=link.evidence if link else [],
        via_api=link.via_api if link else None,
    )
    return StageRecord(
        id=stage.id,
        kind=stage.kind,
        name=stage.name,
        sha256=stage.sha256,
        size=stage.size,
        origin=origin,
        lineage=[
            LineageHop(
                source=h.source_kind,
                ref=h.source_ref,
                transform=h.transform,
                detail=h.detail,
                actor=h.actor,
                evidence=h.evidence,
            )
            for h in (link.hops if link else [])
        ],
        decoded=bool(link and link.decoded),
        process=stage.process,
        parent=stage.parent,
        entry=hex(stage.entry),
        base=hex(stage.base),
        via=stage.via,
        seq_range=(stage.first_seq, stage.last_seq),
        file=f"stages/{stage.sha256}.bin",
    )


def runs(trace: Trace) -> list[RunRecord]:
    return [
        RunRecord(
            kind=r.kind,
            start=hex(r.start),
            instructions=r.instructions,
            api_calls=r.api_calls,
            ret=_hex(r.ret),
            error=r.error,
            error_detail=r.error_detail,
        )
        for r in trace.header.runs
    ]


def iso_utc(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def build_report(
    trace: Trace, analysis: Analysis, dropped: list[DroppedFile], containment: Containment, generated_at: str
) -> Report:
    header, events = trace.header, trace.events
    calls = api_calls(events)
    exchanges = network(events)
    return Report(
        generated_at=generated_at,
        tool=Tool(version=__version__, engine=header.engine, mode=header.mode),
        scenario=header.scenario,
        target=Target(
            name=header.name,
            path=header.target_path,
            sha256=header.target_sha256,
            arch=header.arch,
            kind=header.target_kind,
        ),
        outcome=Outcome(status=header.status, detail=header.detail, limit=header.limit),
        stages=[stage_record(s) for s in analysis.stages],
        api_calls=calls,
        network=exchanges,
        files=files(events),
        registry=registry(events),
        sync_objects=sync_objects(events),
        memory=memory(events),
        threads=threads(events),
        buffers=buffers(events),
        dropped=dropped,
        graph=StageGraph.model_validate(graph_to_node_link(analysis.graph)),
        attack=[
            Technique(technique=h.technique, name=h.name, stage=h.stage, evidence=h.evidence)
            for h in analysis.techniques
        ],
        attack_release=attack_release(),
        virtual_time=VirtualTime(start=iso_utc(header.start_time), skipped_ms=header.skipped_ms, sleeps=header.sleeps),
        containment=containment,
        responders=header.responders,
        runs=runs(trace),
        notes=notes(events),
        stats=Stats(
            instructions=header.instructions,
            api_calls=len(calls),
            events=len(events),
            network_exchanges=len(exchanges),
            seed=header.seed,
        ),
    )
