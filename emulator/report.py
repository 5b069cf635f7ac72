"""The report document: versioned pydantic models, the single source every renderer reads.

Field names are an interface. Change them only with a new ``SCHEMA`` and a CHANGELOG entry.
``generated_at`` is the one field that differs between two replays of the same scenario/seed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "chainreplay/report/2"

# completed: every run returned. timeout / instruction_limit / api_limit / limit: a limit fired
# (outcome.limit names it). unsupported_api: the sample called an API nobody implements.
# containment: the replay tried to reach the host (report.containment). fault: the guest's own
# code faulted (bad memory access, bad instruction, unhandled interrupt); outcome.detail names
# the run, the fault and the address. error: the input or the emulator failed.
OutcomeStatus = Literal[
    "completed",
    "timeout",
    "instruction_limit",
    "api_limit",
    "unsupported_api",
    "limit",
    "containment",
    "fault",
    "error",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tool(_Model):
    name: str = "chainreplay"
    version: str
    engine: str
    mode: Literal["fast", "faithful"] = "fast"


class Target(_Model):
    name: str
    path: str = Field(description="Path of the entry sample, relative to the scenario folder when there is one.")
    sha256: str
    arch: str = ""
    kind: str = "pe"


class Outcome(_Model):
    status: OutcomeStatus
    detail: str = ""
    limit: str | None = Field(default=None, description="Name of the limit that fired (see emulator/limits.py).")


class Origin(_Model):
    type: Literal["file", "network", "memory", "scenario", "registry", "resource", "image", "process"]
    ref: str
    how: str = Field(
        description="How the link was established: entry, same_bytes, decoded, decrypted_in_place, "
        "decrypt_api, mapped_image, executed_from."
    )
    evidence: list[int] = Field(default_factory=list)
    via_api: str | None = None


class LineageHop(_Model):
    """One step that brought a stage's bytes into the process, origin first."""

    source: str = Field(
        description="What the bytes were at this step: file, network, registry, resource, image (of the entry "
        "sample), memory (of an earlier stage), scenario, api (an API's output), process_write, file_write."
    )
    ref: str = Field(description="Path, URL, registry key\\value, API name or stage id.")
    transform: str = Field(
        description="source (where the bytes were found), identity, xor, base64, decrypt, decode, decompress, "
        "copy, process_write, file_write, guest_code (decoded by guest code), executed_from (no origin found)."
    )
    detail: str = Field("", description="Key, API name or the guest code that did it.")
    actor: str | None = Field(None, description="The stage that performed this step.")
    evidence: list[int] = Field(default_factory=list)


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
    process: str | None = Field(None, description="The process the stage ran in, when not the sample's own.")
    parent: str | None
    entry: str = Field(description="Entry address in hex.")
    base: str
    via: str
    seq_range: tuple[int, int]
    file: str = Field(description="Where the stage's bytes are saved, relative to the output folder.")


class ApiCallRecord(_Model):
    seq: int
    stage: str
    api: str
    args: list[str]
    ret: str | None


class NetRequestRecord(_Model):
    headers: dict[str, str]
    body_size: int
    body_sha256: str | None


class NetResponseRecord(_Model):
    status: int | None
    headers: dict[str, str] = Field(default_factory=dict)
    size: int
    sha256: str | None


class NetworkRecord(_Model):
    seq: int
    stage: str
    kind: Literal["dns", "http", "tcp", "udp"]
    host: str
    port: int | None
    method: str | None
    url: str | None
    request: NetRequestRecord
    response: NetResponseRecord
    responder: str
    blocked: bool
    error: str | None = None


class FileRecord(_Model):
    seq: int
    stage: str
    op: str
    path: str
    size: int | None = None
    sha256: str | None = None


class RegistryRecord(_Model):
    seq: int
    stage: str
    op: str
    path: str
    value_name: str | None = None
    value: str | None = None


class SyncRecord(_Model):
    seq: int
    stage: str
    op: str
    object_type: str
    name: str
    existed: bool


class MemoryRecord(_Model):
    seq: int
    stage: str
    op: Literal["alloc", "protect"]
    address: str
    size: int
    protect: str | None


class BufferRecord(_Model):
    """Bytes that entered the process (file read, network read, decryption output): provenance evidence."""

    seq: int
    stage: str
    source: str
    ref: str
    address: str
    size: int
    sha256: str
    input_sha256: str | None = None
    api: str | None = None


class ThreadRecord(_Model):
    seq: int
    stage: str
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


class Containment(_Model):
    """What the replay tried outside its sandbox. See docs/containment.md."""

    host_sockets_opened: int = Field(
        0, description="Host sockets that connected: 0, the audit hook refuses every attempt before the call."
    )
    host_name_lookups: int = Field(0, description="Host name lookups that ran: 0, refused like connects.")
    writes_outside_outdir: int = Field(
        0, description="Files changed outside the output folder: 0, refused like connects."
    )
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


class RunRecord(_Model):
    kind: str
    start: str
    instructions: int | None = Field(description="Instructions emulated; null in fast mode, which does not count.")
    api_calls: int
    error: str | None = None
    error_detail: str | None = None


class Stats(_Model):
    instructions: int | None = Field(description="Instructions emulated; null in fast mode, which does not count.")
    api_calls: int
    events: int
    network_exchanges: int
    seed: int


class Note(_Model):
    seq: int
    what: str
    detail: str


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
    graph: dict[str, Any] = Field(default_factory=dict, description="networkx node-link data of the stage graph.")
    attack: list[Technique] = Field(default_factory=list)
    attack_release: str = Field(ATTACK_RELEASE, description="The ATT&CK release of the technique IDs.")
    virtual_time: VirtualTime
    containment: Containment
    responders: dict[str, Any] = Field(default_factory=dict, description="Final state of stateful responders.")
    runs: list[RunRecord] = Field(default_factory=list)
    notes: list[Note] = Field(default_factory=list)
    stats: Stats

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, by_alias=True) + "\n"
