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

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulator.events import EVENT_ADAPTER, Event
from emulator.report import OutcomeStatus

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
    lines = [_line(trace.header.model_dump(mode="json", by_alias=True))]
    lines.extend(_line(event.model_dump(mode="json")) for event in trace.events)
    return lines


def read_trace(outdir: Path) -> Trace:
    """The trace in ``outdir``, checked: header, every event, every blob and its sha256."""
    path = outdir / TRACE_FILE
    if not path.is_file():
        raise TraceError(f"{path}: no such file (not a replay output folder, or written before traces existed)")
    header: TraceHeader | None = None
    events: list[Event] = []
    try:
        with path.open(encoding="ascii") as handle:
            for number, text in enumerate(handle, 1):
                try:
                    data = json.loads(text)
                    if header is None:
                        header = TraceHeader.model_validate(data)
                    else:
                        events.append(EVENT_ADAPTER.validate_python(data))
                except (ValueError, RecursionError) as err:
                    raise TraceError(f"{path}: line {number}: {_one_line(err)}") from err
    except UnicodeDecodeError as err:
        raise TraceError(f"{path}: not a chainreplay trace (not ASCII JSON lines)") from err
    if header is None:
        raise TraceError(f"{path}: empty")
    if len(events) != header.events:
        raise TraceError(f"{path}: {len(events)} events, the header announces {header.events} (truncated?)")
    for index, event in enumerate(events):
        if event.seq != index:
            raise TraceError(f"{path}: event {index} has seq {event.seq}")
    return Trace(header, events, _read_blobs(outdir / BLOB_DIR, header.blobs))


def _read_blobs(folder: Path, digests: list[str]) -> dict[str, bytes]:
    blobs: dict[str, bytes] = {}
    for digest in digests:
        path = folder / blob_name(digest)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise TraceError(f"{path}: blob cited by the trace is missing ({err.strerror})") from err
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
