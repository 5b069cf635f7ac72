"""The project's own typed trace events.

A backend (Speakeasy, or a saved trace) yields these; everything above the backend (stage
analysis, graph, report, renderers) works on them only. Every event has a global ``seq`` (its
order in the replay) and the ``stage`` whose code caused it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# A guest address, size or pointer-sized value: what a 64-bit register holds. A trace edited by
# hand (or by a hostile sample's child) with anything else is refused where it is read.
MAX_WORD = (1 << 64) - 1
Word = Annotated[int, Field(ge=0, le=MAX_WORD)]
Port = Annotated[int, Field(ge=0, le=65535)]
HttpStatus = Annotated[int, Field(ge=0, le=999)]
ByteCount = Annotated[int, Field(ge=0)]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=0, strict=True, description="Position of the event in the replay, from 0.")
    stage: str = Field(description="Id of the stage whose code caused the event.")
    pc: Word | None = Field(default=None, description="Address of the call site of the API that caused it, if known.")


class ApiCall(_Event):
    type: Literal["api"] = "api"
    api: str = Field(description="MODULE.Function, e.g. kernel32.CreateFileW.")
    args: list[str] = Field(default_factory=list, description="Arguments as rendered by the emulator.")
    ret: str | None = Field(default=None, description="Return value in hex, None if the call did not return.")


class FileAccess(_Event):
    type: Literal["file"] = "file"
    op: Literal["open", "create", "read", "write", "delete"]
    path: str
    size: ByteCount | None = None
    data_sha256: str | None = Field(default=None, description="sha256 of the bytes read or written.")
    address: Word | None = Field(default=None, description="Emulated buffer the bytes were read into / written from.")
    existed: bool | None = Field(default=None, description="For create: whether the file existed before.")


class RegistryAccess(_Event):
    type: Literal["registry"] = "registry"
    op: Literal["open", "create", "read", "write", "list"]
    path: str
    value_name: str | None = None
    value: str | None = Field(default=None, description="Value read or written, rendered as text when printable.")
    data_sha256: str | None = Field(default=None, description="Writes: sha256 of the exact bytes written (blob store).")


class SyncObject(_Event):
    type: Literal["sync"] = "sync"
    op: Literal["create", "open"]
    object_type: Literal["event", "mutex", "semaphore", "timer"]
    name: str
    existed: bool = False


class MemoryAlloc(_Event):
    type: Literal["mem_alloc"] = "mem_alloc"
    address: Word
    size: Word
    protect: str | None = None
    api: str


class MemoryProtect(_Event):
    type: Literal["mem_protect"] = "mem_protect"
    address: Word
    size: Word
    protect: str
    executable: bool


class ThreadStart(_Event):
    type: Literal["thread"] = "thread"
    start: Word
    param: Word
    api: str


class DataBuffer(_Event):
    """Bytes that entered the emulated process, remembered for provenance."""

    type: Literal["buffer"] = "buffer"
    source: Literal[
        "file_read",
        "network_read",
        "decrypt",
        "decode",
        "decompress",
        "registry_read",
        "resource",
        "api_copy",
        "process_write",
        "guest_write",
        "environment_read",
    ]
    address: Word
    size: Word
    sha256: str = Field(description="sha256 of the bytes; the bytes themselves are in the trace's blob store.")
    ref: str = Field(description="Where the bytes came from: a file path, a URL, or an API name.")
    input_sha256: str | None = Field(default=None, description="For decrypt/decompress: sha256 of the input bytes.")
    input_address: Word | None = Field(
        default=None, description="For copies (API or guest code): where the input bytes were read."
    )
    api: str | None = None


class StageStart(_Event):
    """A body of code started to run: the entry sample, or dynamic memory first executed."""

    type: Literal["stage_start"] = "stage_start"
    new_stage: str
    kind: Literal["pe", "shellcode", "pe_in_memory", "module"]
    name: str
    base: Word
    size: Word
    entry: Word
    sha256: str
    parent: str | None = Field(default=None, description="Stage whose code transferred control here, if known.")
    via: Literal["entry", "call", "thread", "callback", "exception", "context", "process", "unknown"] = Field(
        default="unknown",
        description="How control reached it; process: the entry point of a process the parent stage started; "
        "context: the pc of a CONTEXT the parent loaded (NtContinue, RtlRestoreContext; SetThreadContext then "
        "ResumeThread).",
    )
    image_base: Word | None = Field(default=None, description="For pe_in_memory: the address of the MZ header.")
    # Left out of the trace when None: traces of chains that start no program are as before.
    process: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="For a process the chain started from one of its files: its image path.",
    )
    system_program: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="For a file a system program ran (rundll32, regsvr32, cmd): the program the parent started.",
    )
    run_file: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="For a file a system program ran: that guest file (a DLL rundll32 loaded, a program cmd started).",
    )


class NetRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    headers: dict[str, str] = Field(default_factory=dict)
    body_size: ByteCount = 0
    body_sha256: str | None = None


class NetResponse(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    status: HttpStatus | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    size: ByteCount = 0
    sha256: str | None = None


class NetworkExchange(_Event):
    type: Literal["network"] = "network"
    kind: Literal["dns", "http", "tcp", "udp"]
    host: str
    port: Port | None = None
    method: str | None = None
    url: str | None = None
    request: NetRequest = Field(default_factory=NetRequest)
    response: NetResponse = Field(default_factory=NetResponse)
    responder: str
    blocked: bool = Field(False, description="No responder matched: answered by the default and not passed on.")
    error: str | None = Field(default=None, description="Responder error, if the responder raised.")


class Note(_Event):
    """Something the emulator did that the sample did not ask for: a limit, a skipped wait."""

    type: Literal["note"] = "note"
    what: str
    detail: str = ""
    # Left out of the trace when empty: notes that name no URL are as before.
    urls: list[str] = Field(
        default_factory=list,
        exclude_if=lambda value: not value,
        description="URLs the noted thing names without the replay contacting them (a script host's command line).",
    )


Event = Annotated[
    ApiCall
    | FileAccess
    | RegistryAccess
    | SyncObject
    | MemoryAlloc
    | MemoryProtect
    | ThreadStart
    | DataBuffer
    | StageStart
    | NetworkExchange
    | Note,
    Field(discriminator="type"),
]

# Built when first used (reading a saved trace), not at import: the command line imports this
# module before it forks the emulation child, and a replay never reads events back.
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event, config=ConfigDict(defer_build=True))
EVENT_LIST_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event], config=ConfigDict(defer_build=True))
