"""The report document built from a frozen trace and its analysis.

Pure: a :class:`emulator.trace.Trace` and an :class:`emulator.analysis.pipeline.Analysis` in,
a :class:`emulator.report.Report` out. Each report section is one small function over the
events, so a new event type is one function and one line in :func:`build_report`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypedDict, overload

from emulator import __version__
from emulator.analysis.attack import attack_release
from emulator.analysis.graph import graph_to_node_link
from emulator.analysis.lineage import Piece
from emulator.analysis.pipeline import Analysis
from emulator.analysis.stages import ORIGIN_TYPES, Stage
from emulator.eventlog import LINES_PER_PIECE, MAX_TEXT_CACHE, ApiTuple, EventLog, of_type
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
    OriginPiece,
    Outcome,
    RecordStream,
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


class ApiCallRecords(RecordStream):
    """The report's ``api_calls`` over the events: records are built when read, and report.json
    is written from the compact calls directly (no model per call: a million calls would hold
    gigabytes as models). Identical calls share their text after the seq."""

    def __init__(self, events: Sequence[Event]) -> None:
        self._events = events
        if isinstance(events, EventLog):
            self._seqs: list[int] | None = None
            self._count = events.api_count()
        else:
            self._seqs = [e.seq for e in events if isinstance(e, ApiCall)]
            self._count = len(self._seqs)

    def __len__(self) -> int:
        return self._count

    def _calls(self) -> Iterator[tuple[int, ApiTuple]]:
        events = self._events
        if isinstance(events, EventLog):
            return events.api_tuples()
        return ((e.seq, (e.stage, e.pc, e.api, tuple(e.args), e.ret)) for e in events if isinstance(e, ApiCall))

    @overload
    def __getitem__(self, index: int) -> ApiCallRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[ApiCallRecord]: ...

    def __getitem__(self, index: int | slice) -> ApiCallRecord | list[ApiCallRecord]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("api_calls index out of range")
        return next(itertools.islice(iter(self), index, None))

    def __iter__(self) -> Iterator[ApiCallRecord]:
        for seq, call in self._calls():
            yield _record(seq, call)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def raw(self) -> Iterator[tuple[int, str, str, tuple[str, ...], str | None]]:
        """(seq, stage, api, args, ret) of every call, no record built."""
        for seq, (stage, _, api, args, ret) in self._calls():
            yield seq, stage, api, args, ret

    def where(self, wanted: Callable[[str], bool]) -> Iterator[ApiCallRecord]:
        """The records of the calls whose ``api`` ``wanted`` accepts (asked once per name)."""
        events = self._events
        if isinstance(events, EventLog):
            for seq in events.api_positions(wanted):
                yield _record(seq, events.api_tuple(seq))
            return
        for seq, call in self._calls():
            if wanted(call[2]):
                yield _record(seq, call)

    def at(self, seqs: Collection[int]) -> dict[int, ApiCallRecord]:
        """The records of the calls at ``seqs`` (other seqs left out), without reading the rest."""
        events = self._events
        if not isinstance(events, EventLog):
            return {seq: _record(seq, call) for seq, call in self._calls() if seq in seqs}
        found = {}
        for seq in seqs:
            if seq < 0:
                continue
            try:
                found[seq] = _record(seq, events.api_tuple(seq))
            except (IndexError, TypeError):  # not an event, or not an API call
                continue
        return found

    def count_before(self, seq: int) -> int:
        """How many API calls come before event ``seq``."""
        events = self._events
        if isinstance(events, EventLog):
            return events.api_calls_before(seq)
        return bisect.bisect_left(self._seqs or [], seq)

    def json_items(self) -> Iterator[str]:
        events = self._events
        if not isinstance(events, EventLog):
            for seq, call in self._calls():
                yield f'    {{\n      "seq": {seq},\n{_api_record_tail(call)}'
            return
        # A record's text after its seq is made once per distinct call; a run of identical calls
        # is written by str.__mod__ over its seqs.
        templates: dict[ApiTuple, str] = {}
        for first, count, item in events.runs():
            if not isinstance(item, tuple):
                continue
            template = templates.get(item)
            if template is None:
                if len(templates) >= MAX_TEXT_CACHE:
                    templates.clear()
                tail = _api_record_tail(item).replace("%", "%%")
                template = templates[item] = '    {\n      "seq": %d,\n' + tail
            end = first + count
            for start in range(first, end, LINES_PER_PIECE):
                yield ",\n".join(map(template.__mod__, range(start, min(end, start + LINES_PER_PIECE))))


def _record(seq: int, call: ApiTuple) -> ApiCallRecord:
    stage, pc, api, args, ret = call
    return ApiCallRecord.model_construct(seq=seq, stage=stage, pc=_hex(pc), api=api, args=list(args), ret=ret)


_text = json.encoder.encode_basestring  # type: ignore[attr-defined]


def _api_record_tail(call: ApiTuple) -> str:
    """An API call's record in report.json after its seq, exactly as pydantic writes
    :class:`ApiCallRecord` at that depth (``indent=2``, non-ASCII kept)."""
    stage, pc, api, args, ret = call
    listed = "[]" if not args else "[\n" + ",\n".join(f"        {_text(a)}" for a in args) + "\n      ]"
    return (
        f'      "stage": {_text(stage)},\n'
        f'      "pc": {"null" if pc is None else _text(hex(pc))},\n'
        f'      "api": {_text(api)},\n'
        f'      "args": {listed},\n'
        f'      "ret": {"null" if ret is None else _text(ret)}\n'
        "    }"
    )


def _non_api(events: Sequence[Event], *classes: type[Any]) -> Iterator[Any]:
    return (event for _, event in of_type(events, *classes))


def api_calls(events: Sequence[Event]) -> ApiCallRecords:
    return ApiCallRecords(events)


def network(events: Sequence[Event]) -> list[NetworkRecord]:
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
        for e in _non_api(events, NetworkExchange)
    ]


def files(events: Sequence[Event]) -> list[FileRecord]:
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
        for e in _non_api(events, FileAccess)
    ]


def registry(events: Sequence[Event]) -> list[RegistryRecord]:
    return [
        RegistryRecord(**_common(e), op=e.op, path=e.path, value_name=e.value_name, value=e.value)
        for e in _non_api(events, RegistryAccess)
    ]


def sync_objects(events: Sequence[Event]) -> list[SyncRecord]:
    return [
        SyncRecord(**_common(e), op=e.op, object_type=e.object_type, name=e.name, existed=e.existed)
        for e in _non_api(events, SyncObject)
    ]


def memory(events: Sequence[Event]) -> list[MemoryRecord]:
    return [
        MemoryRecord(
            **_common(e),
            op="alloc" if isinstance(e, MemoryAlloc) else "protect",
            address=hex(e.address),
            size=e.size,
            protect=e.protect,
        )
        for e in _non_api(events, MemoryAlloc, MemoryProtect)
    ]


def threads(events: Sequence[Event]) -> list[ThreadRecord]:
    return [ThreadRecord(**_common(e), start=hex(e.start), api=e.api) for e in _non_api(events, ThreadStart)]


def buffers(events: Sequence[Event]) -> list[BufferRecord]:
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
        for e in _non_api(events, DataBuffer)
    ]


def notes(events: Sequence[Event]) -> list[NoteRecord]:
    return [
        NoteRecord(**_common(e), what=e.what, detail=e.detail, urls=list(e.urls) or None)
        for e in _non_api(events, Note)
    ]


def stage_record(stage: Stage) -> StageRecord:
    link = stage.link
    origin = Origin(
        type=link.source_type if link else "memory",  # type: ignore[arg-type]
        ref=link.source_ref if link else "",
        how=link.how if link else "executed_from",
        evidence=link.evidence if link else [],
        via_api=link.via_api if link else None,
        pieces=_pieces(link.hops[0].pieces) if link and link.hops else None,
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
                pieces=_pieces(h.pieces),
            )
            for h in (link.hops if link else [])
        ],
        decoded=bool(link and link.decoded),
        process=stage.process,
        system_program=stage.system_program,
        run_file=stage.run_file,
        parent=stage.parent,
        entry=hex(stage.entry),
        base=hex(stage.base),
        via=stage.via,
        seq_range=(stage.first_seq, stage.last_seq),
        file=f"stages/{stage.sha256}.bin",
    )


def _pieces(pieces: list[Piece]) -> list[OriginPiece] | None:
    if not pieces:
        return None
    return [
        OriginPiece(
            type=p.kind if p.kind in ORIGIN_TYPES else "memory",  # type: ignore[arg-type]
            ref=p.ref,
            offset=p.offset,
            size=p.size,
            evidence=sorted(p.evidence),
        )
        for p in pieces
    ]


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
        api_calls=[],
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
    ).model_copy(update={"api_calls": calls})  # the streamed section, not validated record by record
