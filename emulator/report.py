"""The report document: versioned pydantic models, the single source every renderer reads.

Field names are an interface. Change them only with a new ``SCHEMA`` and a CHANGELOG entry.
``generated_at`` is the one field that differs between two replays of the same scenario/seed.
"""

from __future__ import annotations

import itertools
import json
import mmap
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulator.inputs import InputFileError, file_problem, read_input
from emulator.outcome import Status

SCHEMA = "chainreplay/report/4"
# Earlier schemas this one only added to (optional fields, new values): their reports read as
# this schema, with what it added absent (CHANGELOG.md says what each added).
ADDITIVE_PREDECESSORS = frozenset({"chainreplay/report/3"})

# The values are an interface; each is listed with its meaning in emulator/outcome.py.
OutcomeStatus = Status


class ReportError(Exception):
    """A file that is not a chainreplay report of this schema: one line naming it and why."""


class _Model(BaseModel):
    # Validators are built on first use (or by build_models()), not at import: building them all
    # costs about 0.2 s of CPU, which a replay pays while its emulation child runs.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


def build_models() -> None:
    """Build every report model's validator now (a replay does it while the child emulates)."""
    pending: list[type[_Model]] = [_Model]
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if model is not _Model and not model.__pydantic_complete__:
            model.model_rebuild(force=True)


class RecordStream(Sequence[Any]):
    """A report section held as something smaller than its records (a million API calls): it
    reads as a sequence of records, built one at a time, and writes itself into report.json item
    by item (:meth:`Report.json_chunks`), exactly as the list of records would be written."""

    def json_items(self) -> Iterator[str]:
        """Each record's JSON text as an item of a top-level list of report.json (indented by 4)."""
        raise NotImplementedError


class _EventRecord(_Model):
    seq: int = Field(description="Position of the event in the replay (the trace), from 0.")
    stage: str = Field(description="Id of the stage whose code caused it.")
    pc: str | None = Field(default=None, description="Call site (hex) of the API call that caused it, if known.")


class Tool(_Model):
    name: str = "chainreplay"
    version: str
    engine: str
    mode: Literal["fast", "faithful"] = "fast"


class Target(_Model):
    name: str
    path: str = Field(
        description="The entry sample: scenario-folder/relative-path for a scenario, the file name for a bare "
        "sample. Never a host path."
    )
    sha256: str
    arch: str = ""
    kind: str = "pe"


class Outcome(_Model):
    status: OutcomeStatus
    detail: str = ""
    limit: str | None = Field(default=None, description="Name of the limit that fired (see emulator/limits.py).")


OriginType = Literal["file", "network", "memory", "scenario", "registry", "environment", "resource", "image", "process"]


class OriginPiece(_Model):
    """One of several sources a buffer was filled from, one read after the other."""

    type: OriginType
    ref: str = Field(description="Guest path, URL, registry key\\value or %variable%.")
    offset: int = Field(description="Where its bytes start in the buffer the pieces were read into.")
    size: int = Field(description="How many bytes it put there.")
    evidence: list[int] = Field(default_factory=list, description="seqs of the reads.")


class Origin(_Model):
    type: OriginType
    ref: str = Field(
        description="Guest path, URL, stage id, or for the entry stage the host process (scenario) or the "
        "sample's guest path (bare sample)."
    )
    how: str = Field(
        description="How the link was established: entry, same_bytes, decoded, decrypted_in_place, "
        "decrypt_api, mapped_image, executed_from."
    )
    evidence: list[int] = Field(default_factory=list)
    via_api: str | None = None
    pieces: list[OriginPiece] | None = Field(
        default=None,
        description="When the stage's bytes were read from several sources into one buffer (a file, then a "
        "registry value, then a download): every source, in memory order; type and ref name the first. Null "
        "for one source.",
    )


class LineageHop(_Model):
    """One step that brought a stage's bytes into the process, origin first."""

    source: str = Field(
        description="What the bytes were at this step: file, network, registry, environment (a variable), "
        "resource, image (of the entry sample), memory (of an earlier stage), scenario, api (an API's output), "
        "process_write, file_write, registry_write."
    )
    ref: str = Field(description="Path, URL, registry key\\value, %variable%, API name or stage id.")
    transform: str = Field(
        description="source (where the bytes were found), identity, xor, base64, decrypt, decode, decompress, "
        "copy, process_write, file_write, registry_write, guest_code (decoded by guest code), executed_from (no "
        "origin found)."
    )
    detail: str = Field("", description="Key, API name or the guest code that did it.")
    actor: str | None = Field(None, description="The stage that performed this step.")
    evidence: list[int] = Field(default_factory=list)
    pieces: list[OriginPiece] | None = Field(
        default=None,
        description="For a source read from several sources into one buffer: each of them (source and ref name "
        "the first); null otherwise.",
    )


class StageRecord(_Model):
    id: str
    kind: str
    name: str
    sha256: str = Field(
        description="sha256 of the stage's bytes: what ran, bounded by its lineage, not the page-rounded region."
    )
    size: int
    origin: Origin
    lineage: list[LineageHop] = Field(default_factory=list, description="The hops from the origin to the stage.")
    decoded: bool = Field(False, description="Some hop of the lineage transformed the bytes (T1140).")
    process: str | None = Field(
        None,
        description="The process the stage ran in, when not the sample's own: one the chain injected into, or "
        "the image path of a program it started from its files (via process) and the stages that program ran.",
    )
    system_program: str | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="For a stage a system program ran from the guest's files (rundll32.exe, regsvr32.exe, cmd.exe): "
        "the program the parent stage started, its path as Windows shows it. Left out otherwise.",
    )
    run_file: str | None = Field(
        None,
        exclude_if=lambda value: value is None,
        description="For a stage a system program ran: the guest file it ran (the DLL rundll32 or regsvr32 loaded "
        "into its process, the program cmd started). Left out otherwise.",
    )
    parent: str | None
    entry: str = Field(description="Entry address in hex.")
    base: str
    via: str = Field(
        description="How control reached the stage: entry, call, thread, callback, apc (the routine of an APC "
        "the chain queued: QueueUserAPC, NtQueueApcThread), exception (an exception handler resumed a "
        "faulting thread there), context (the parent stage loaded a CONTEXT whose instruction pointer is the "
        "stage's entry: NtContinue, RtlRestoreContext, or SetThreadContext on a thread it then resumed: thread "
        "hijacking, hollowing), process (the entry point of a program the parent stage "
        "started as a new process from one of the guest's files: CreateProcess, WinExec, ShellExecute; or the "
        "DllMain of a DLL a system program it started loaded, or a program that program started: system_program) "
        "or unknown."
    )
    seq_range: tuple[int, int]
    file: str = Field(description="Where the stage's bytes are saved, relative to the output folder.")


class ApiCallRecord(_EventRecord):
    api: str = Field(description="module.Function, the one spelling used everywhere in the report.")
    args: list[str]
    ret: str | None


class NetRequestRecord(_Model):
    headers: dict[str, str]
    size: int = Field(description="Size of the body.")
    sha256: str | None = Field(description="sha256 of the body (saved as network/<sha256>.bin).")


class NetResponseRecord(_Model):
    status: int | None
    headers: dict[str, str] = Field(default_factory=dict)
    size: int = Field(description="Size of the body.")
    sha256: str | None = Field(description="sha256 of the body (saved as network/<sha256>.bin).")


class NetworkRecord(_EventRecord):
    kind: Literal["dns", "http", "tcp", "udp"]
    host: str
    port: int | None
    method: str | None = Field(description="HTTP method, or the API (module.Function) of a DNS or socket exchange.")
    url: str | None
    request: NetRequestRecord
    response: NetResponseRecord
    responder: str
    blocked: bool
    error: str | None = None


class FileRecord(_EventRecord):
    op: str
    path: str
    size: int | None = None
    sha256: str | None = None
    address: str | None = Field(default=None, description="Guest buffer (hex) the bytes were read into / written from.")
    existed: bool | None = Field(default=None, description="For create and open: whether the file existed before.")


class RegistryRecord(_EventRecord):
    op: str
    path: str
    value_name: str | None = None
    value: str | None = None


class SyncRecord(_EventRecord):
    op: str
    object_type: str
    name: str
    existed: bool


class MemoryRecord(_EventRecord):
    op: Literal["alloc", "protect"]
    address: str
    size: int
    protect: str | None


class BufferRecord(_EventRecord):
    """Bytes that entered the process (file read, network read, decryption output): provenance evidence."""

    source: str
    ref: str
    address: str
    size: int
    sha256: str
    input_sha256: str | None = None
    api: str | None = Field(default=None, description="module.Function that brought the bytes in.")
    file: str | None = Field(default=None, description="Where the bytes are saved, relative to the output folder.")


class ThreadRecord(_EventRecord):
    start: str
    api: str


class DroppedFile(_Model):
    path: str = Field(description="Guest path, sanitised for display.")
    sha256: str
    size: int
    stored_as: str | None = Field(description="Relative path under the output folder, or None if not stored.")


# The ATT&CK release whose technique IDs the report uses.
ATTACK_RELEASE = "ATT&CK Enterprise v18"


class Technique(_Model):
    technique: str
    name: str
    stage: str
    evidence: list[int]


class VirtualTime(_Model):
    start: str = Field(description="Guest clock at the start of the replay, ISO 8601 UTC.")
    skipped_ms: int = Field(description="Virtual milliseconds fast-forwarded by sleeps and waits.")
    sleeps: int


class ContainmentLayer(_Model):
    name: str = Field(description="parent_death_signal, process_group, network_namespace, landlock, seccomp.")
    active: bool
    detail: str = Field(description="What the layer stops, or why the kernel refused it.")


class Containment(_Model):
    """What the replay tried outside its sandbox, counted by the audit hook that refused it.

    See docs/containment.md.
    """

    host_connects_refused: int = Field(0, description="Host socket connects, binds and sends attempted and refused.")
    host_name_lookups_refused: int = Field(0, description="Host name lookups attempted and refused.")
    writes_outside_outdir_refused: int = Field(
        0,
        description="File writes, creations, removals, renames, links and permission changes outside the "
        "output folder attempted and refused.",
    )
    host_processes_refused: int = Field(0, description="Host processes the replay tried to start, refused.")
    violations: list[str] = Field(default_factory=list, description="The first refused attempts, named.")
    isolation: str = Field(description="How the replay was contained: child process, in-process.")
    layers: list[ContainmentLayer] = Field(
        default_factory=list,
        description="The kernel layers around the emulation child (emulator/sandbox.py): which were in force "
        "and, for those the kernel refused, why. Empty in-process.",
    )
    kernel_refusals: int = Field(
        0, description="Attempts the audit hook did not see and a kernel layer refused (EPERM/EACCES in user code)."
    )


class RunRecord(_Model):
    kind: str
    start: str
    instructions: int | None = Field(description="Instructions emulated; null in fast mode, which does not count.")
    api_calls: int
    ret: str | None = Field(default=None, description="Value the run returned (hex), null if it did not return.")
    error: str | None = None
    error_detail: str | None = None


class Stats(_Model):
    instructions: int | None = Field(description="Instructions emulated; null in fast mode, which does not count.")
    api_calls: int
    events: int
    network_exchanges: int
    seed: int


class Note(_EventRecord):
    what: str
    detail: str
    urls: list[str] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="URLs the note names that the replay did not contact (a script_command's command line): "
        "indicators seen in a command line. Left out when none.",
    )


class YaraMatch(_Model):
    rule: str
    namespace: str = Field(description="The rule file's path under the --yara folder, without suffix.")
    tags: list[str] = Field(default_factory=list)
    target_type: Literal["stage", "dropped", "request", "response"]
    target: str = Field(description="Stage id, guest path of the dropped file, or 'METHOD URL' of the exchange.")
    sha256: str
    stage: str | None = Field(default=None, description="Stage the bytes are, or the stage that wrote or sent them.")
    strings: list[str] = Field(default_factory=list, description="Identifiers of the strings that matched.")
    offsets: list[int] = Field(default_factory=list, description="Offsets of the string matches (the first 32).")


class YaraScan(_Model):
    """Result of ``run --yara RULES`` over every stage, dropped file and request/response body."""

    rules: str = Field(description="The --yara argument: a rule file or a folder of .yar/.yara files.")
    scanned: int = Field(description="Byte buffers scanned.")
    matches: list[YaraMatch] = Field(default_factory=list)


class GraphNode(_Model):
    """A stage or an artifact it touched. Attributes that do not apply to the node's kind are null."""

    id: str = Field(description="Stage id (s0, s1, ...) or kind:ref (file:c:\\..., url:https://...).")
    kind: str = Field(
        description="stage, process, file, url, host, registry, environment (a variable), sync or image (of a stage)."
    )
    label: str
    stage_kind: str | None = Field(default=None, description="For a stage: its kind (pe, shellcode, ...).")
    order: int | None = Field(default=None, description="For a stage: its position in the chain.")
    sha256: str | None = Field(default=None, description="For a stage: sha256 of its bytes.")
    first_seq: int | None = Field(default=None, description="For a stage: its first event.")
    object_type: str | None = Field(default=None, description="For a sync object: event, mutex, semaphore or timer.")
    host: str | None = Field(default=None, description="For a URL: its host.")
    blocked: bool | None = Field(default=None, description="For a URL or host: no responder answered it.")
    decoded: bool | None = Field(default=None, description="For a stage: some hop of its lineage transformed it.")
    process: str | None = Field(
        default=None, description="For a stage that ran in another process: that process's image path."
    )


class GraphEdge(_Model):
    source: str
    target: str
    type: str = Field(description="loads, reads, decrypts_to, delivers, maps, executes, fetches, ... (see docs).")
    evidence: list[int] = Field(description="seqs of the events that prove the edge.")
    transforms: list[str] | None = Field(
        default=None, description="For a lineage edge: the transforms between the two nodes (xor: key 0x5c, ...)."
    )
    actor: str | None = Field(default=None, description="For a lineage edge: the stage that moved the bytes.")
    methods: list[str] | None = Field(
        default=None,
        description="For injects_into: how (remote_thread, apc, thread_context: SetThreadContext then "
        "ResumeThread, hollowing: that in a process the stage created and unmapped a view of).",
    )


class StageGraph(_Model):
    """The stage graph in networkx node-link form (``nx.node_link_graph(data, edges="edges")`` reads it)."""

    directed: bool = True
    multigraph: bool = False
    graph: dict[str, str] = Field(default_factory=dict)
    nodes: list[GraphNode] = Field(default_factory=list)
    edges: list[GraphEdge] = Field(default_factory=list)


class Report(_Model):
    schema_: str = Field(SCHEMA, alias="schema")
    generated_at: str = Field(description="Wall-clock time the report was written; the only non-deterministic field.")
    tool: Tool
    scenario: str | None = None
    target: Target
    outcome: Outcome
    stages: list[StageRecord]
    api_calls: list[ApiCallRecord]
    network: list[NetworkRecord]
    files: list[FileRecord]
    registry: list[RegistryRecord] = Field(default_factory=list)
    sync_objects: list[SyncRecord] = Field(default_factory=list)
    memory: list[MemoryRecord] = Field(default_factory=list)
    threads: list[ThreadRecord] = Field(default_factory=list)
    buffers: list[BufferRecord] = Field(default_factory=list)
    dropped: list[DroppedFile] = Field(default_factory=list)
    graph: StageGraph = Field(default_factory=StageGraph, description="The stage graph, node-link form.")
    attack: list[Technique] = Field(default_factory=list)
    attack_release: str = Field(ATTACK_RELEASE, description="The ATT&CK release of the technique IDs.")
    virtual_time: VirtualTime
    containment: Containment
    responders: dict[str, Any] = Field(default_factory=dict, description="Final state of stateful responders.")
    runs: list[RunRecord] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    stats: Stats
    yara: YaraScan | None = Field(
        default=None, description="Matches of the user's YARA rules (run --yara); null without it."
    )

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)

    def to_json(self) -> str:
        return "".join(self.json_chunks())

    def json_chunks(self) -> Iterator[str]:
        """report.json's text in pieces; a section held as a :class:`RecordStream` is written
        record by record, never as one string (the text is the same as for a plain list)."""
        streamed = [name for name in type(self).model_fields if isinstance(getattr(self, name), RecordStream)]
        text = self.model_copy(update=dict.fromkeys(streamed, [])).model_dump_json(indent=2, by_alias=True) + "\n"
        for name in streamed:
            marker = f'\n  "{name}": []'
            if text.count(marker) != 1:
                raise ValueError(f"report.json: cannot place the {name} section")
            before, _, text = text.partition(marker)
            first = True
            for item in getattr(self, name).json_items():
                yield f'{before}\n  "{name}": [\n{item}' if first else f",\n{item}"
                first = False
            yield f"{before}{marker}" if first else "\n  ]"
        yield text

    @classmethod
    def from_file(cls, path: Path) -> Report:
        """The report in ``path``; :class:`ReportError` (one line) if it is not one of this schema
        (or of one it only added to, :data:`ADDITIVE_PREDECESSORS`, read as this one).

        A report larger than :data:`EAGER_REPORT_BYTES` written by chainreplay keeps its
        ``api_calls`` in the file: read record by record when iterated (:class:`FileApiCalls`),
        so a million-call report is never a million models in memory."""
        problem = file_problem(path)  # a FIFO or a device is refused, never read
        if problem is not None:
            raise ReportError(f"{path}: {problem}")
        try:
            large = path.stat().st_size > EAGER_REPORT_BYTES
        except OSError as err:
            raise ReportError(f"{path}: {err.strerror or err}") from err
        if large:
            found = _api_calls_section(path)
            if found is not None:
                head, section = found
                report = cls._validated(path, head)
                return report.model_copy(update={"api_calls": section})
        try:
            data = json.loads(read_input(path))
        except InputFileError as err:
            raise ReportError(str(err)) from err
        except (ValueError, RecursionError) as err:
            raise ReportError(f"{path}: not JSON ({_first_line(err)})") from err
        return cls._validated(path, data)

    @classmethod
    def _validated(cls, path: Path, data: Any) -> Report:
        if not isinstance(data, dict):
            raise ReportError(f"{path}: not a chainreplay report (a JSON {type(data).__name__})")
        if data.get("schema") in ADDITIVE_PREDECESSORS:
            data = {**data, "schema": SCHEMA}
        elif data.get("schema") != SCHEMA:
            readable = ", ".join(repr(s) for s in sorted({SCHEMA, *ADDITIVE_PREDECESSORS}))
            raise ReportError(f"{path}: schema {str(data.get('schema'))[:60]!r}, this chainreplay reads {readable}")
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ReportError(f"{path}: not a chainreplay report: {where}: {first['msg']}") from err


# A report.json larger than this is read with its api_calls left in the file (Report.from_file).
EAGER_REPORT_BYTES = 8 << 20
_SECTION_START = b'\n  "api_calls": [\n'
_SECTION_END = b"\n  ]"
_ITEM_START = b"    {\n"
_ITEM_END = b"    }"


def _api_calls_section(path: Path) -> tuple[Any, FileApiCalls] | None:
    """report.json without its api_calls (parsed), and the section as a FileApiCalls; None when
    the file is not laid out as chainreplay writes it (it is then read whole)."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
        start = view.find(_SECTION_START)
        if start < 0:
            return None
        first = start + len(_SECTION_START)
        end = view.find(_SECTION_END, first)
        if end < 0:
            return None
        try:
            data = json.loads(view[:start] + b'\n  "api_calls": []' + view[end + len(_SECTION_END) :])
        except (ValueError, RecursionError) as err:
            raise ReportError(f"{path}: not JSON ({_first_line(err)})") from err
        count = 0
        step = 1 << 24
        for offset in range(first - 1, end, step):  # items start after a newline
            count += view[offset : min(offset + step + len(_ITEM_START), end + 1)].count(b"\n" + _ITEM_START)
    return data, FileApiCalls(path, first, end + 1, count)


class FileApiCalls(RecordStream):
    """The api_calls of a large report.json, read from the file when iterated."""

    def __init__(self, path: Path, start: int, end: int, count: int) -> None:
        self._path, self._start, self._end, self._count = path, start, end, count

    def __len__(self) -> int:
        return self._count

    def _texts(self) -> Iterator[bytes]:
        """Each item's JSON text, as written."""
        with self._path.open("rb") as handle:
            handle.seek(self._start)
            remaining = self._end - self._start
            item: list[bytes] = []
            for line in handle:
                remaining -= len(line)
                if remaining < 0:
                    break
                item.append(line)
                if line.startswith(_ITEM_END):
                    yield b"".join(item).rstrip(b",\n")
                    item = []

    def __iter__(self) -> Iterator[ApiCallRecord]:
        for text in self._texts():
            try:
                yield ApiCallRecord.model_validate_json(text)
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ReportError(
                    f"{self._path}: not a chainreplay report: api_calls: {where}: {first['msg']}"
                ) from err

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return list(itertools.islice(iter(self), *index.indices(self._count)))
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("api_calls index out of range")
        return next(itertools.islice(iter(self), index, None))

    def json_items(self) -> Iterator[str]:
        for text in self._texts():
            yield text.decode("utf-8")


def api_calls_at(report: Report, seqs: Collection[int]) -> dict[int, ApiCallRecord]:
    """The report's API calls at ``seqs``, by seq; a streamed section (a large replay) reads only
    those, without building a record for each of its million calls."""
    at = getattr(report.api_calls, "at", None)
    if callable(at):
        return at(seqs)  # type: ignore[no-any-return]
    return {call.seq: call for call in report.api_calls if call.seq in seqs}


def api_call_rows(report: Report) -> Iterator[tuple[int, str, str, Sequence[str], str | None]]:
    """(seq, stage, api, args, ret) of every API call of the report, without a record each when
    the section is streamed."""
    raw = getattr(report.api_calls, "raw", None)
    if callable(raw):
        return raw()  # type: ignore[no-any-return]
    return ((c.seq, c.stage, c.api, c.args, c.ret) for c in report.api_calls)


def _first_line(err: Exception) -> str:
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return (str(err).splitlines() or [type(err).__name__])[0]
