"""Speakeasy's observations -> the project's typed events, as they happen.

Two sources: every API call Speakeasy logs (with its rendered arguments and return value), and
the profiler records Speakeasy makes while a call runs (file, registry, process, network). The
records of a call are queued and translated when its API call is logged, so each event carries
the call's API name and the stage it ran in. One small function per kind of record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from speakeasy.profiler_events import (
    FILE_CREATE,
    FILE_OPEN,
    FILE_READ,
    FILE_WRITE,
    MEM_ALLOC,
    MEM_PROTECT,
    REG_CREATE,
    REG_LIST,
    REG_OPEN,
    REG_READ,
    REG_WRITE,
    THREAD_CREATE,
    THREAD_INJECT,
)

from emulator.apis import GuestApi
from emulator.apis.core import GuestMemory
from emulator.backends.base import ReplayStop
from emulator.backends.speakeasy import compat
from emulator.events import (
    ApiCall,
    FileAccess,
    MemoryAlloc,
    MemoryProtect,
    NetResponse,
    NetworkExchange,
    RegistryAccess,
    SyncObject,
    ThreadStart,
)
from emulator.limits import MAX_RENDERED_STRING
from emulator.outcome import Status
from emulator.plan import ReplayPlan
from emulator.recorder import Recorder
from emulator.services import ReplayServices


@dataclass(frozen=True)
class SyncApi:
    object_type: Literal["event", "mutex", "semaphore", "timer"]
    op: Literal["create", "open"]
    name_arg: int  # index of the object's name (lpName) among the API's arguments


# Every API that creates or opens a named synchronisation object, by its name without the A/W
# suffix, with the argument that holds the name (Win32 prototypes).
SYNC_API_TABLE = {
    "CreateEvent": SyncApi("event", "create", 3),  # (lpEventAttributes, bManualReset, bInitialState, lpName)
    "CreateEventEx": SyncApi("event", "create", 1),  # (lpEventAttributes, lpName, dwFlags, dwDesiredAccess)
    "OpenEvent": SyncApi("event", "open", 2),  # (dwDesiredAccess, bInheritHandle, lpName)
    "CreateMutex": SyncApi("mutex", "create", 2),  # (lpMutexAttributes, bInitialOwner, lpName)
    "CreateMutexEx": SyncApi("mutex", "create", 1),  # (lpMutexAttributes, lpName, dwFlags, dwDesiredAccess)
    "OpenMutex": SyncApi("mutex", "open", 2),  # (dwDesiredAccess, bInheritHandle, lpName)
    "CreateSemaphore": SyncApi("semaphore", "create", 3),  # (lpAttributes, lInitialCount, lMaximumCount, lpName)
    "CreateSemaphoreEx": SyncApi("semaphore", "create", 3),  # (... lMaximumCount, lpName, dwFlags, dwDesiredAccess)
    "OpenSemaphore": SyncApi("semaphore", "open", 2),  # (dwDesiredAccess, bInheritHandle, lpName)
    "CreateWaitableTimer": SyncApi("timer", "create", 2),  # (lpTimerAttributes, bManualReset, lpTimerName)
    "CreateWaitableTimerEx": SyncApi("timer", "create", 1),  # (lpTimerAttributes, lpTimerName, dwFlags, dwAccess)
    "OpenWaitableTimer": SyncApi("timer", "open", 2),  # (dwDesiredAccess, bInheritHandle, lpTimerName)
}
# Looked up by the lower-cased API name, A and W forms (wide: the name is UTF-16).
SYNC_APIS = {
    f"{name.lower()}{suffix}": (api, suffix == "w") for name, api in SYNC_API_TABLE.items() for suffix in ("a", "w")
}
# Every API _derived_events makes an event from (by its lower-cased name).
DERIVED_APIS = frozenset((*SYNC_APIS, "virtualprotect"))
# The recorder's own emit: an API call is then recorded through emit_api directly (what
# emit(ApiCall, ...) does); a replaced emit (tests/test_lifecycle.py) sees every call.
STOCK_EMIT = Recorder.emit
# Native calls on another process whose process-handle argument (by index) is shown as the
# process's image path, as Speakeasy's own handlers show kernel32's (CreateRemoteThread,
# VirtualAllocEx): the stage graph names the process from it.
PROCESS_HANDLE_ARGUMENTS = {
    f"{prefix}{name}": index
    for prefix in ("nt", "zw")
    for name, index in (
        ("createthreadex", 3),
        ("allocatevirtualmemory", 0),
        ("protectvirtualmemory", 0),
        ("freevirtualmemory", 0),
        ("readvirtualmemory", 0),
        ("queueapcthread", 0),
        ("mapviewofsection", 1),
    )
} | {"rtlcreateuserthread": 0}
ERROR_ALREADY_EXISTS = 183
REGISTRY_OPS = {REG_OPEN: "open", REG_CREATE: "create", REG_READ: "read", REG_WRITE: "write", REG_LIST: "list"}

Fail = Callable[[Status, str, str | None], ReplayStop]


@dataclass
class Observed:
    """What the translation learns that the memory watch needs to name a new stage."""

    protect_ranges: list[tuple[int, int]] = field(default_factory=list)  # made executable by the guest
    thread_starts: dict[int, str] = field(default_factory=dict)  # start address -> creating stage
    # Where an exception handler sent a faulting thread (a CONTEXT resumed at another pc) -> the
    # stage that was running: code first run there was started by that handler.
    exception_resumes: dict[int, str | None] = field(default_factory=dict)
    # Where a CONTEXT the guest loaded itself (NtContinue, RtlRestoreContext) resumed its thread.
    context_loads: dict[int, str | None] = field(default_factory=dict)


class Translator:
    def __init__(
        self,
        plan: ReplayPlan,
        services: ReplayServices,
        memory: GuestMemory,
        emu: Any,
        observed: Observed,
        fail: Fail,
    ) -> None:
        self.plan = plan
        self.services = services
        self.recorder = services.recorder
        self.memory = memory
        self.emu = emu
        self.observed = observed
        self.fail = fail
        self.known_files: set[str] = {f.emu_path.lower() for f in plan.files}
        self.created_files: set[str] = set()
        self.written_bytes = 0
        self._pending: list[tuple[str, dict[str, Any]]] = []
        # "module.Function" as Speakeasy names an API -> (the name the trace shows, the function in lower case)
        self._api_names: dict[str, tuple[str, str]] = {}
        self._records: dict[str, Callable[[str, str, dict[str, Any]], None]] = {
            "record_file_access_event": self._file_access,
            "record_registry_access_event": self._registry_access,
            "record_process_event": self._process_event,
            "record_dns_event": self._builtin_network,
            "record_http_event": self._builtin_network,
            "record_network_event": self._builtin_network,
        }

    def queue_record(self, method: str, params: dict[str, Any]) -> None:
        """A profiler record made during the API call being executed."""
        self._pending.append((method, {**params, "_method": method}))

    def api_call(self, pc: int, imp_api: str, rv: int | None, args: list[Any]) -> None:
        recorder = self.recorder
        stage = recorder.stage_at(pc) or recorder.current_stage
        recorder.current_stage = stage
        names = self._api_names.get(imp_api)
        if names is None:
            module, _, func = imp_api.partition(".")
            names = self._api_names[imp_api] = (f"{module.lower()}.{func}", func.lower())
        api, func_lower = names
        rendered = [render_arg(a) for a in args] if args else []
        if func_lower in PROCESS_HANDLE_ARGUMENTS:
            self._show_process(rendered, PROCESS_HANDLE_ARGUMENTS[func_lower])
        ret = hex(rv) if rv is not None else None
        if type(recorder) is Recorder and Recorder.emit is STOCK_EMIT:
            recorder.emit_api(stage, pc, api, rendered, ret)  # what emit(ApiCall, ...) records, directly
        else:
            recorder.emit(ApiCall, stage=stage, api=api, args=rendered, ret=ret, pc=pc)
        recorder.api_count += 1
        self.services.clock.on_api_call()
        if not self._pending and func_lower not in DERIVED_APIS:
            recorder.call_pc = None  # as after the records below: this call caused none
            return
        pending, self._pending = self._pending, []
        recorder.call_pc = pc  # the events this call caused share its call site
        try:
            for method, params in pending:
                self._records[method](stage, api, params)
            self._derived_events(stage, func_lower, args, rv)
        finally:
            recorder.call_pc = None

    def _show_process(self, rendered: list[Any], index: int) -> None:
        if index >= len(rendered) or not isinstance(rendered[index], str) or not rendered[index].startswith("0x"):
            return
        try:
            handle = int(rendered[index], 16)
        except ValueError:
            return
        path = compat.process_path(self.emu, handle)
        if path:
            rendered[index] = path

    # -- profiler records ----------------------------------------------------------------------

    def _file_access(self, stage: str, api: str, params: dict[str, Any]) -> None:
        path = str(params.get("path"))
        event_type = params.get("event_type")
        if event_type == FILE_READ:
            self._file_read(stage, api, path, params)
        elif event_type == FILE_WRITE:
            self._file_write(stage, path, params)
        elif event_type in (FILE_CREATE, FILE_OPEN, "create", "open"):
            op = "create" if event_type in (FILE_CREATE, "create") else "open"
            existed = path.lower() in self.known_files or path.lower() in self.created_files
            if op == "create":
                self.created_files.add(path.lower())
            self.recorder.emit(FileAccess, stage=stage, op=op, path=path, existed=existed)

    def _file_read(self, stage: str, api: str, path: str, params: dict[str, Any]) -> None:
        buffer, size = params.get("buffer") or 0, params.get("size") or 0
        data = self._read(buffer, size) if buffer and size else b""
        recorder = self.recorder
        digest = recorder.put_blob(data) if data else None
        recorder.emit(
            FileAccess, stage=stage, op="read", path=path, size=len(data), data_sha256=digest, address=buffer or None
        )
        if data:
            recorder.remember_buffer("file_read", buffer, data, ref=path, api=api)

    def _file_write(self, stage: str, path: str, params: dict[str, Any]) -> None:
        data = params.get("data") or b""
        self.written_bytes += len(data)
        limit = self.plan.limits.max_dropped_bytes
        if self.written_bytes > limit:
            raise self.fail(Status.LIMIT, f"sample wrote more than {limit} bytes", "max_dropped_bytes")
        self.recorder.emit(
            FileAccess,
            stage=stage,
            op="write",
            path=path,
            size=len(data),
            data_sha256=self.recorder.put_blob(data) if data else None,
            address=params.get("buffer") or None,
        )

    def _registry_access(self, stage: str, api: str, params: dict[str, Any]) -> None:
        value = params.get("data")
        op = REGISTRY_OPS.get(str(params.get("event_type")), "open")
        path = str(params.get("path"))
        value_name = params.get("value_name")
        self.recorder.emit(
            RegistryAccess,
            stage=stage,
            op=op,
            path=path,
            value_name=value_name,
            value=render_value(value, _wide_api(api)) if value is not None else None,
            # What a later read of the value may bring back: the lineage runs on through the write.
            data_sha256=self.recorder.put_blob(bytes(value))
            if op == "write" and isinstance(value, bytes | bytearray) and value
            else None,
        )
        buffer = params.get("buffer") or 0
        if op == "read" and buffer and isinstance(value, bytes | bytearray) and value:
            # The exact bytes the guest received, for the lineage of what it does with them.
            ref = f"{path}\\{value_name}" if value_name else path
            self.recorder.remember_buffer("registry_read", buffer, bytes(value), ref=ref, api=api)

    def _process_event(self, stage: str, api: str, params: dict[str, Any]) -> None:
        event_type = params.get("event_type")
        extra = params.get("kwargs") or {}
        base, size = extra.get("base", 0), extra.get("size", 0)
        if event_type == MEM_ALLOC:
            protect = str(extra.get("protect"))
            self.recorder.emit(MemoryAlloc, stage=stage, address=base, size=size, protect=protect, api=api)
        elif event_type == MEM_PROTECT:
            protect = str(extra.get("protect"))
            executable = "EXECUTE" in protect.upper()
            if executable:
                self.observed.protect_ranges.append((base, size))
            self.recorder.emit(
                MemoryProtect, stage=stage, address=base, size=size, protect=protect, executable=executable
            )
        elif event_type in (THREAD_CREATE, THREAD_INJECT):
            start = extra.get("start_addr", 0)
            self.observed.thread_starts[start] = stage
            self.recorder.emit(ThreadStart, stage=stage, start=start, param=extra.get("param", 0) or 0, api=api)

    def _builtin_network(self, stage: str, api: str, params: dict[str, Any]) -> None:
        # Network APIs the project does not handle itself: answered by Speakeasy's canned data,
        # never the host network, and recorded as blocked so nothing looks like a real exchange.
        method = params["_method"]
        kind = "dns" if method == "record_dns_event" else ("http" if method == "record_http_event" else "tcp")
        self.recorder.emit(
            NetworkExchange,
            stage=stage,
            kind=kind,
            host=str(params.get("domain") or params.get("server") or ""),
            port=params.get("port"),
            method=api,
            response=NetResponse(),
            responder="speakeasy-builtin",
            blocked=True,
        )

    # -- events derived from the API call itself ---------------------------------------------

    def _derived_events(self, stage: str, func: str, args: list[Any], rv: int | None) -> None:
        # Only the APIs in DERIVED_APIS (api_call skips the others).
        if func in SYNC_APIS and rv:
            self._sync_object(stage, func, args)
        elif func == "virtualprotect" and rv and len(args) >= 3:
            self._virtual_protect(stage, args)

    def _sync_object(self, stage: str, func: str, args: list[Any]) -> None:
        api, wide = SYNC_APIS[func]
        name = self._string_arg(args, api.name_arg, wide)
        if name:
            existed = api.op == "open" or self.emu.get_last_error() == ERROR_ALREADY_EXISTS
            self.recorder.emit(
                SyncObject, stage=stage, op=api.op, object_type=api.object_type, name=name, existed=existed
            )

    def _virtual_protect(self, stage: str, args: list[Any]) -> None:
        # Speakeasy records protection changes only for VirtualProtectEx.
        address, size, protect = (int(getattr(a, "value", 0) or 0) for a in args[:3])
        executable = bool(protect & 0xF0)
        if executable:
            self.observed.protect_ranges.append((address, size))
        self.recorder.emit(
            MemoryProtect,
            stage=stage,
            address=address,
            size=size,
            protect=render_arg(args[2]),
            executable=executable,
        )

    def _string_arg(self, args: list[Any], index: int, wide: bool) -> str | None:
        if index >= len(args):
            return None
        value = getattr(args[index], "value", None)
        if not value:
            return None
        return GuestApi(self.memory, self.services, "").read_string(value, wide, max_chars=260)

    def _read(self, address: int, size: int) -> bytes:
        try:
            return self.memory.read(address, size)
        except Exception:
            return b""


def _wide_api(api: str) -> bool | None:
    """True for a wide API (``RegSetValueExW``), False for an ANSI one, None if the name does not say."""
    name = api.rpartition(".")[2]
    return True if name.endswith("W") else False if name.endswith("A") else None


def render_arg(arg: Any) -> str:
    display = getattr(arg, "display", None)
    text = str(display) if display is not None else str(arg)
    return text[:MAX_RENDERED_STRING]


def render_value(value: Any, wide: bool | None = None) -> str:
    """A value's text: bytes as the string they hold (UTF-16LE for a wide API, ANSI for an ``A``
    one; unknown: UTF-16LE if a NUL lies inside them), else hex. An even-length ANSI string
    also decodes as UTF-16LE, to CJK text: the API decides, not which decoding succeeds first."""
    if isinstance(value, bytes | bytearray):
        if wide is None:
            wide = b"\0" in bytes(value).rstrip(b"\0")
        for encoding in ("utf-16-le", "latin-1") if wide else ("latin-1", "utf-16-le"):
            try:
                text = bytes(value).decode(encoding).rstrip("\0")
            except UnicodeDecodeError:
                continue
            if text.isprintable():
                return text[:MAX_RENDERED_STRING]
        return bytes(value).hex()[:MAX_RENDERED_STRING]
    return str(value)[:MAX_RENDERED_STRING]
