"""The frozen trace of one replay: ``OUTDIR/trace.jsonl`` and the blobs it cites.

A replay writes its trace once the emulation is over; ``report.json`` and every rendered file
are derived from it, and ``chainreplay analyse OUTDIR`` derives them again from the trace alone,
with no engine importable (the ``null`` extractor of capa plays the same part).

``trace.jsonl``: the first line is a :class:`TraceHeader` (``"type": "header"``, the trace
schema, what the analysis needs to know about the plan, the engine, the outcome, the runs);
every other line is one event (:mod:`emulator.events`), in ``seq`` order. Strings are written
with ``\\uXXXX`` escapes for anything outside ASCII, so every string the guest produced (lone
surrogates included) reads back exactly. ``blobs/<sha256>.bin`` holds every body of bytes an
event cites by sha256 (files read and written, network bodies, decryption inputs and outputs,
stage images); the header lists them so a missing or altered blob is found on reading.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import ntpath
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulator.eventlog import LINES_PER_PIECE, MAX_TEXT_CACHE, ApiTuple, EventLog, api_fields_typed
from emulator.events import EVENT_ADAPTER, Event
from emulator.inputs import NO_SUCH_FILE, InputFileError, InputTooLarge, file_problem, open_input, read_input
from emulator.limits import MAX_BLOBS_SIZE, MAX_TRACE_FILE_SIZE, MAX_TRACE_LINE_SIZE
from emulator.report import OutcomeStatus

if TYPE_CHECKING:
    from emulator.plan import ReplayPlan
    from emulator.replay import Recording

TRACE_SCHEMA = "chainreplay/trace/1"
TRACE_FILE = "trace.jsonl"
BLOB_DIR = "blobs"
BLOB_SUFFIX = ".bin"


class TraceError(Exception):
    """The trace cannot be read: one line naming the file and what is wrong."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TraceRun(_Model):
    """One emulator run (entry point, export, thread) as the engine reported it."""

    kind: str
    start: int
    instructions: int | None
    api_calls: int
    ret: int | None = Field(default=None, description="Value the run returned, if it returned.")
    error: str | None = None
    error_detail: str | None = None


class TraceContainment(_Model):
    """What the emulation tried outside its sandbox and was refused (counts from the audit hook)."""

    connects_refused: int = 0
    lookups_refused: int = 0
    writes_refused: int = 0
    processes_refused: int = 0
    violations: list[str] = Field(default_factory=list)
    isolation: str = "child process"
    # The kernel layers around the emulation child (emulator/sandbox.py): name, active, detail.
    layers: list[tuple[str, bool, str]] = Field(default_factory=list)
    kernel_refusals: int = 0


class EntryOrigin(_Model):
    type: Literal["scenario", "file"]
    ref: str = Field(description="The host process of a scenario, or the guest path of a bare sample.")


class TraceHeader(_Model):
    type: Literal["header"] = "header"
    schema_: Literal["chainreplay/trace/1"] = Field("chainreplay/trace/1", alias="schema")
    engine: str = Field(description="Engine name and version that recorded the trace.")
    mode: Literal["fast", "faithful"] = "fast"
    name: str
    scenario: str | None = Field(default=None, description="Scenario name, None for a bare sample.")
    target_path: str = Field(description="Entry sample: scenario-relative path or file name, never a host path.")
    target_sha256: str
    target_kind: Literal["pe", "shellcode"] = "pe"
    arch: str = ""
    entry_origin: EntryOrigin
    host_process: str | None = None
    # Left out when None: traces of targets with no host application are as before.
    host_process_path: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="The host application's image path in the guest (beside the entry DLL).",
    )
    machine_names: list[str] = Field(default_factory=list, description="Host name and user the guest was given.")
    seed: int
    start_time: float
    status: OutcomeStatus
    detail: str = ""
    limit: str | None = None
    runs: list[TraceRun] = Field(default_factory=list)
    instructions: int | None = None
    dropped: dict[str, str] = Field(default_factory=dict, description="Guest path -> sha256 of its final content.")
    skipped_ms: int = 0
    sleeps: int = 0
    responders: dict[str, Any] = Field(default_factory=dict)
    containment: TraceContainment = Field(default_factory=TraceContainment)
    events: int = Field(description="Number of event lines that follow.")
    blobs: list[str] = Field(default_factory=list, description="sha256 of every blob in blobs/.")


@dataclass
class Trace:
    header: TraceHeader
    # An EventLog (a replay, read_trace) or a plain list of events (tests).
    events: Sequence[Event] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)


def blob_name(digest: str) -> str:
    return f"{digest}{BLOB_SUFFIX}"


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=True, separators=(",", ":")) + "\n"


def trace_lines(trace: Trace) -> list[str]:
    """The lines of ``trace.jsonl``."""
    return [f"{line}\n" for line in "".join(iter_trace_lines(trace)).split("\n")[:-1]]


def header_line(header: TraceHeader) -> str:
    """The first line of ``trace.jsonl``."""
    return _line(header.model_dump(mode="json", by_alias=True))


def iter_trace_lines(trace: Trace) -> Iterator[str]:
    """The text of ``trace.jsonl`` in pieces of whole lines: no event is turned into a model to
    write it, and a run of identical API calls is one piece per LINES_PER_PIECE lines."""
    yield header_line(trace.header)
    yield from iter_event_lines(trace.events)


def iter_event_lines(events: Sequence[Event], start: int = 0) -> Iterator[str]:
    """The lines of the events from seq ``start`` on, in pieces of whole lines (each line is the
    same whatever ``start``: a trace may be written in parts, emulator.output.EarlyTrace)."""
    if not isinstance(events, EventLog):
        for event in events[start:]:
            yield _line(event.model_dump(mode="json"))
        return
    # An API call's line after its seq is made once per distinct call; a run of identical calls
    # is written by str.__mod__ over its seqs (no Python code per line).
    templates: dict[ApiTuple, str] = {}
    for first, count, item in events.runs(start):
        if not isinstance(item, tuple):
            yield _line(item.model_dump(mode="json"))
            continue
        template = templates.get(item)
        if template is None:
            if len(templates) >= MAX_TEXT_CACHE:
                templates.clear()
            template = templates[item] = '{"seq":%d' + _api_line_tail(item).replace("%", "%%")
        end = first + count
        for start in range(first, end, LINES_PER_PIECE):
            yield "".join(map(template.__mod__, range(start, min(end, start + LINES_PER_PIECE))))


_ascii = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _api_line_tail(call: ApiTuple) -> str:
    """An API call's trace line after its seq, exactly as :func:`_line` writes the model."""
    stage, pc, api, args, ret = call
    return (
        f',"stage":{_ascii(stage)},"pc":{"null" if pc is None else int(pc)},"type":"api",'
        f'"api":{_ascii(api)},"args":[{",".join(map(_ascii, args))}],"ret":{"null" if ret is None else _ascii(ret)}}}\n'
    )


_API_KEYS = frozenset(("seq", "stage", "pc", "type", "api", "args", "ret"))


def _api_call_fields(data: Any) -> ApiTuple | None:
    """The fields of an API call line with every field present and of its exact type (the lines
    chainreplay writes); None for anything else (validated by the models instead)."""
    if type(data) is not dict or data.keys() != _API_KEYS or data["type"] != "api":
        return None
    stage, pc, api, args, ret = data["stage"], data["pc"], data["api"], data["args"], data["ret"]
    if api_fields_typed(stage, pc, api, args, ret):
        return (stage, pc, api, tuple(args), ret)
    return None


# How a user raises the size limits of what ``analyse`` reads (its flags).
RAISE_TRACE_SIZE = "raise it with --max-trace-size"
RAISE_BLOBS_SIZE = "raise it with --max-blobs-size"


def read_trace(
    outdir: Path, *, max_trace_size: int = MAX_TRACE_FILE_SIZE, max_blobs_size: int = MAX_BLOBS_SIZE
) -> Trace:
    """The trace in ``outdir``, checked: header, every event, every blob and its sha256.

    The events are read into an :class:`~emulator.eventlog.EventLog`: API calls are checked
    field by field without building a model (a line repeating an earlier call after its seq is
    recognised by its text), every other event is validated by its model.

    A trace.jsonl larger than ``max_trace_size`` bytes, blobs larger than ``max_blobs_size``
    bytes together, or a line longer than :data:`MAX_TRACE_LINE_SIZE` are refused (one line
    naming the file, the size and the limit) before they are read.
    """
    path = outdir / TRACE_FILE
    if file_problem(path) == NO_SUCH_FILE:
        raise TraceError(f"{path}: no such file (not a replay output folder, or written before traces existed)")
    try:
        binary = open_input(path, limit=max_trace_size, raise_with=RAISE_TRACE_SIZE)  # never a FIFO or a device
    except InputFileError as err:
        raise TraceError(str(err)) from err
    header: TraceHeader | None = None
    events = EventLog()
    seen: dict[str, ApiTuple] = {}  # text after the seq -> the call it reads as
    try:
        with io.TextIOWrapper(binary, encoding="ascii") as handle:
            for number, text in enumerate(iter(lambda: handle.readline(MAX_TRACE_LINE_SIZE + 1), ""), 1):
                if len(text) > MAX_TRACE_LINE_SIZE:
                    raise TraceError(f"{path}: line {number} is longer than the {MAX_TRACE_LINE_SIZE}-byte limit")
                if header is not None:
                    seq = len(events)
                    head, _, tail = text.partition(",")
                    call = seen.get(tail)
                    if call is not None and head == f'{{"seq":{seq}':
                        events.append_api(*call)
                        continue
                    if len(seen) >= MAX_TEXT_CACHE:
                        seen.clear()
                try:
                    data = json.loads(text)
                    if header is None:
                        header = TraceHeader.model_validate(data)
                        continue
                    call = _api_call_fields(data)
                    if call is not None:
                        if data["seq"] != seq:
                            raise TraceError(f"{path}: event {seq} has seq {data['seq']}")
                        events.append_api(*call)
                        seen[tail] = call
                        continue
                    event = EVENT_ADAPTER.validate_python(data)
                except (ValueError, RecursionError) as err:
                    raise TraceError(f"{path}: line {number}: {_one_line(err)}") from err
                if event.seq != seq:
                    raise TraceError(f"{path}: event {seq} has seq {event.seq}")
                events.append(event)
    except UnicodeDecodeError as err:
        raise TraceError(f"{path}: not a chainreplay trace (not ASCII JSON lines)") from err
    if header is None:
        raise TraceError(f"{path}: empty")
    if len(events) != header.events:
        raise TraceError(f"{path}: {len(events)} events, the header announces {header.events} (truncated?)")
    return Trace(header, events, _read_blobs(outdir / BLOB_DIR, header.blobs, max_blobs_size))


def _blob_problem(path: Path, problem: str) -> TraceError:
    missing = "is missing" if problem == NO_SUCH_FILE else f"cannot be read: {problem}"
    return TraceError(f"{path}: blob cited by the trace {missing}")


def _read_blobs(folder: Path, digests: list[str], limit: int) -> dict[str, bytes]:
    """Every blob the trace cites, checked against its sha256; their sizes are added up first
    (nothing is read when they come to more than ``limit`` bytes)."""
    total = 0
    for digest in digests:
        with contextlib.suppress(OSError, ValueError):  # a blob that cannot be read: named below
            total += (folder / blob_name(digest)).stat().st_size
    if total > limit:
        raise TraceError(
            f"{folder}: the {len(digests)} blobs the trace cites are {total} bytes together, larger than the "
            f"{limit}-byte limit; {RAISE_BLOBS_SIZE}"
        )
    blobs: dict[str, bytes] = {}
    for digest in digests:
        path = folder / blob_name(digest)
        try:
            # never a FIFO (a read that would wait forever) or a device; the limit: a blob that grew
            data = read_input(path, limit=limit, raise_with=RAISE_BLOBS_SIZE)
        except InputTooLarge as err:
            raise TraceError(str(err)) from err
        except InputFileError as err:
            raise _blob_problem(path, err.problem) from err
        if hashlib.sha256(data).hexdigest() != digest:
            raise TraceError(f"{path}: content does not match its sha256")
        blobs[digest] = data
    return blobs


def _one_line(err: Exception) -> str:
    if isinstance(err, ValidationError):
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


# ---- freezing a recording ------------------------------------------------------------------------------


def target_display_path(plan: ReplayPlan) -> str:
    """The entry sample as the report names it: never a host path."""
    target = Path(plan.target_path)
    if plan.scenario_dir:
        folder = Path(plan.scenario_dir)
        if target.is_relative_to(folder):
            return f"{folder.name}/{target.relative_to(folder).as_posix()}"
    return target.name


def freeze(plan: ReplayPlan, recording: Recording, target_sha256: str) -> Trace:
    """The recording as a frozen trace: what the analysis needs, and nothing of the host."""
    entry = (
        EntryOrigin(type="scenario", ref=plan.host_process or plan.name)
        if plan.scenario_dir
        else EntryOrigin(type="file", ref=plan.emu_path)
    )
    header = TraceHeader(
        engine=recording.engine,
        mode=plan.mode,
        name=plan.name,
        scenario=plan.name if plan.scenario_dir else None,
        target_path=target_display_path(plan),
        target_sha256=target_sha256,
        target_kind=plan.target_kind,
        arch=recording.arch,
        entry_origin=entry,
        host_process=plan.host_process,
        host_process_path=ntpath.join(ntpath.dirname(plan.emu_path), plan.host_process) if plan.host_process else None,
        machine_names=[plan.hostname, plan.user],
        seed=plan.seed,
        start_time=plan.start_time,
        status=recording.status,
        detail=recording.detail,
        limit=recording.limit,
        runs=[TraceRun.model_validate(run) for run in recording.runs],
        instructions=recording.instructions,
        dropped=recording.dropped,
        skipped_ms=recording.skipped_ms,
        sleeps=recording.sleeps,
        responders=recording.responders,
        containment=TraceContainment(
            connects_refused=recording.sockets_blocked,
            lookups_refused=recording.lookups_blocked,
            writes_refused=recording.writes_blocked,
            processes_refused=recording.processes_blocked,
            violations=recording.violations,
            isolation=recording.isolation,
            layers=recording.layers,
            kernel_refusals=recording.kernel_refusals,
        ),
        events=len(recording.events),
        blobs=sorted(recording.blobs),
    )
    return Trace(header, recording.events, recording.blobs)
