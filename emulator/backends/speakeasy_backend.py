"""The Speakeasy backend: the only module that imports speakeasy or touches Unicorn.

It configures Speakeasy from a :class:`ReplayPlan`, installs the project-side API handlers,
translates what Speakeasy observes into the project's typed events as it happens (so a replay
stopped midway keeps everything up to that point), and notices dynamic code by making
non-image memory non-executable: the first fetch from such memory traps once, is recorded as a
new stage, and the pages become executable again. No per-instruction Python hook is needed
for that, which keeps compute-heavy stages at Unicorn speed.
"""

from __future__ import annotations

import contextvars
import logging
import ntpath
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import speakeasy
import speakeasy.common as se_common
import speakeasy.engines.unicorn_eng as se_engine
import unicorn as uc
from speakeasy.config import get_default_config_dict
from speakeasy.profiler import Run
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
from speakeasy.report import ErrorInfo
from speakeasy.winenv import arch as se_arch

from emulator.apis import HANDLERS, GuestApi
from emulator.apis.core import ApiHandler
from emulator.events import (
    ApiCall,
    FileAccess,
    MemoryAlloc,
    MemoryProtect,
    ModuleLoad,
    NetResponse,
    NetworkExchange,
    RegistryAccess,
    SyncObject,
    ThreadStart,
)
from emulator.limits import MAX_RENDERED_STRING
from emulator.plan import SANDBOX_MARKER_NAME, SANDBOX_MARKER_VALUE, ReplayPlan, StringArg
from emulator.recorder import Recorder
from emulator.responders.router import NetworkLimitReached
from emulator.services import ReplayServices

ENGINE_NAME = f"speakeasy {getattr(speakeasy, '__version__', '2.0.0b9')}"
PAGE = 0x1000
# Allocations made for the guest by these Speakeasy tags are watched for execution.
WATCHED_TAG_PREFIXES = ("api.virtalloc", "api.heap", "api.pool", "emu.process_heap", "api.VirtualAlloc")
PERM_EXEC = se_common.PERM_MEM_EXEC
PERM_RWX = se_common.PERM_MEM_RWX
SYNC_APIS = {
    "createeventa": ("event", "create"),
    "createeventw": ("event", "create"),
    "createeventexa": ("event", "create"),
    "createeventexw": ("event", "create"),
    "openeventa": ("event", "open"),
    "openeventw": ("event", "open"),
    "createmutexa": ("mutex", "create"),
    "createmutexw": ("mutex", "create"),
    "createmutexexa": ("mutex", "create"),
    "createmutexexw": ("mutex", "create"),
    "openmutexa": ("mutex", "open"),
    "openmutexw": ("mutex", "open"),
    "createsemaphorea": ("semaphore", "create"),
    "createsemaphorew": ("semaphore", "create"),
}
LOAD_LIBRARY_APIS = {"loadlibrarya", "loadlibraryw", "loadlibraryexa", "loadlibraryexw"}
ERROR_ALREADY_EXISTS = 183
# Speakeasy's run error types, mapped to report outcome statuses.
# Speakeasy's run error -> (report outcome status, name of the limit in emulator/limits.py).
LIMIT_ERRORS = {
    "max_api_count": ("api_limit", "max_api_calls"),
    "max_instructions": ("instruction_limit", "max_instructions"),
    "timeout": ("timeout", "timeout"),
}

# Fast mode: a stretch of guest code between two API calls runs this long before Unicorn starts
# counting its instructions against max_instructions (counting costs a C call per instruction).
UNCOUNTED_SLICE_SECONDS = 0.25
# No Unicorn build runs faster than this, so an uncounted slice of limit / rate seconds cannot
# have run past the limit; a limit needing a slice shorter than the minimum is counted at once.
FASTEST_INSTRUCTIONS_PER_SECOND = 1_000_000_000
MIN_UNCOUNTED_SLICE_SECONDS = 0.05
# How often the fast-mode watchdog thread checks the wall-clock deadline.
WATCHDOG_POLL_SECONDS = 0.005

logging.getLogger("speakeasy").setLevel(logging.CRITICAL)

# Set while a fast-mode replay loads its images, before any guest code has run.
_LOADING_BEFORE_CODE: contextvars.ContextVar[bool] = contextvars.ContextVar("loading_before_code", default=False)
_ENGINE_MEM_WRITE = se_engine.EmuEngine.mem_write


def _mem_write(engine: Any, addr: int, data: bytes) -> Any:
    # Speakeasy invalidates translated code after every host write (about 15 us through
    # ctypes); loading the decoy system DLLs makes ~17,000 writes before anything is translated.
    if _LOADING_BEFORE_CODE.get():
        return engine.emu.mem_write(addr, data)
    return _ENGINE_MEM_WRITE(engine, addr, data)


se_engine.EmuEngine.mem_write = _mem_write  # type: ignore[method-assign]


class BackendInputError(ValueError):
    """The target cannot be emulated (not a PE, unsupported architecture, ...)."""


class ReplayStop(Exception):
    """Raised inside a hook to end the replay for a named reason."""

    def __init__(self, status: str, detail: str, limit: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.limit = limit


@dataclass
class RunSummary:
    kind: str
    start: int
    instructions: int | None
    api_calls: int
    error: str | None = None
    error_detail: str | None = None


@dataclass
class BackendResult:
    status: str = "completed"
    detail: str = ""
    limit: str | None = None
    runs: list[RunSummary] = field(default_factory=list)
    instructions: int | None = 0
    dropped: dict[str, str] = field(default_factory=dict)  # guest path -> sha256 of final content
    engine: str = ENGINE_NAME
    arch: str = ""
    emulation_seconds: float = 0.0


# ---- configuration -------------------------------------------------------------------------


def _user_dirs(plan: ReplayPlan) -> dict[str, str]:
    profile = f"C:\\Users\\{plan.user}"
    return {
        "userprofile": profile,
        "appdata": f"{profile}\\AppData\\Roaming",
        "localappdata": f"{profile}\\AppData\\Local",
        "temp": f"{profile}\\AppData\\Local\\Temp",
        "tmp": f"{profile}\\AppData\\Local\\Temp",
        "username": plan.user,
        "userdomain": plan.domain.split(".")[0].upper(),
        "computername": plan.hostname,
        "public": "C:\\Users\\Public",
        "programdata": "C:\\ProgramData",
    }


def build_speakeasy_config(plan: ReplayPlan) -> dict[str, Any]:
    config = get_default_config_dict()
    env = dict(config["env"])
    env.update(_user_dirs(plan))
    # Speakeasy looks names up lower-cased (GetEnvironmentVariable, ExpandEnvironmentStrings),
    # so every key is stored lower-cased, once.
    env.update({k.lower(): v for k, v in plan.env.items()})
    if plan.sandbox_marker:
        env[SANDBOX_MARKER_NAME.lower()] = SANDBOX_MARKER_VALUE
    config["env"] = env
    config["hostname"] = plan.hostname
    config["domain"] = plan.domain
    config["user"] = {**config["user"], "name": plan.user}
    config["current_dir"] = ntpath.dirname(plan.emu_path) or "C:\\"
    host = plan.host_process or ntpath.basename(plan.emu_path)
    config["command_line"] = host
    # The process the entry DLL lives in: its image sits beside the sample, as a side-loading
    # host would, so GetModuleFileName(NULL) points at the application folder.
    app_dir = ntpath.dirname(plan.emu_path)
    config["processes"] = [
        {**proc, "name": host, "path": ntpath.join(app_dir, host), "command_line": f'"{ntpath.join(app_dir, host)}"'}
        if proc.get("is_main_exe")
        else proc
        for proc in config["processes"]
    ]
    major, minor, build = plan.os_version
    config["os_ver"] = {**config["os_ver"], "major": major, "minor": minor, "build": build}
    # Only the scenario's files exist: no synthetic content for unknown paths.
    config["filesystem"] = {
        "files": [{"mode": "full_path", "emu_path": f.emu_path, "path": f.host_path} for f in plan.files]
    }
    config["registry"] = {
        "keys": [{"path": key.path, "values": [v.model_dump() for v in key.values]} for key in plan.registry]
    }
    config["timeout"] = plan.limits.timeout
    config["max_total_time"] = plan.limits.timeout
    config["max_api_count"] = plan.limits.max_api_calls
    # Speakeasy counts instructions with a per-instruction Python hook; fast mode counts natively.
    config["max_instructions"] = plan.limits.max_instructions if plan.mode == "faithful" else -1
    config["analysis"] = {"memory_tracing": False, "strings": False, "coverage": False}
    config["api_hammering"] = {"enabled": False, "threshold": 2000}
    return config


# ---- fast mode ----------------------------------------------------------------------------


class _NativeRunner:
    """Fast mode: guest code runs in Unicorn with no per-instruction callback at all.

    Speakeasy keeps one code hook installed for the work it defers after each API call (SEH
    dispatch, ending a run, unmapping temporary fault pages). "Disabling" it only flips a flag,
    so every guest instruction still crosses into Python. Here that work runs just before
    Unicorn resumes, which is exactly where the hook would first have fired; a native hook is
    installed only while Speakeasy wants the work repeated on every instruction (until a SEH
    handler has resumed). Work requested from inside a Unicorn callback yields to Python and
    resumes transparently.

    Unicorn's own timeout starts and joins a timer thread on every start (about 0.5 ms, once
    per API call); one watchdog thread per replay stops Unicorn at the deadline instead.
    Unicorn's instruction counter costs a C call per instruction (3x slower on RC4), so a
    stretch of guest code runs uncounted for its first ``UNCOUNTED_SLICE_SECONDS`` and only
    a stretch still running after that is counted against ``max_instructions`` (so a stretch
    may run up to about twice the limit before it is stopped; small limits are counted at once).
    """

    def __init__(self, emu: Any, instruction_limit: int) -> None:
        self.emu = emu
        self.engine = emu.emu_eng
        self.unicorn = emu.emu_eng.emu
        self.instruction_limit = instruction_limit
        self.pending = False
        self.in_native = False
        self.native_hook: int | None = None
        self.flush_needed = False
        self.stop_requested = False
        self.yielded = False
        self._engine_start = self.engine.start
        self._engine_stop = self.engine.stop
        self._lock = threading.Lock()
        self._stop_at: float | None = None
        self._watchdog_fired = False
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="chainreplay-watchdog", daemon=True)
        self._watchdog.start()
        # Speakeasy only enables its hook when one exists; this object stands in for it.
        emu.tmp_code_hook = self
        emu.enable_code_hook = self.enable
        emu.disable_code_hook = self.disable
        self.engine.start = self.start
        self.engine.stop = self.stop

    def close(self) -> None:
        self._closed.set()
        self._watchdog.join(timeout=1)

    def enable(self) -> None:
        if not self.in_native:
            self.pending = True
        elif self.native_hook is None and not self.pending:
            self.pending = True
            self.yielded = True
            self._engine_stop()

    def disable(self) -> None:
        self.pending = False
        if self.native_hook is not None:
            self.unicorn.hook_del(self.native_hook)
            self.native_hook = None
            self.flush_needed = True

    def stop(self) -> Any:
        self.stop_requested = True
        return self._engine_stop()

    def _watch(self) -> None:
        while not self._closed.wait(WATCHDOG_POLL_SECONDS):
            with self._lock:
                if self._stop_at is not None and time.monotonic() >= self._stop_at:
                    self._stop_at = None
                    self._watchdog_fired = True
                    self._engine_stop()

    def _on_code(self, _uc: Any, address: int, size: int, _user: Any) -> None:
        self.emu._hook_code_core(self.emu, address, size)

    def _run_deferred_work(self, address: int) -> int | None:
        """Speakeasy's deferred work at ``address``; the address to resume at, None to stay stopped."""
        self.stop_requested = False
        self.emu.set_pc(address)
        self.emu._hook_code_core(self.emu, address, 0)
        if self.stop_requested or self.emu.emu_complete:
            return None
        if self.pending and self.native_hook is None:
            self.native_hook = self.unicorn.hook_add(uc.UC_HOOK_CODE, self._on_code)
        return int(self.emu.get_pc())

    def _native(self, address: int, stop_at: float | None, count: int) -> None:
        if self.flush_needed:
            self.unicorn.ctl_flush_tb()
            self.flush_needed = False
        self.stop_requested = self.yielded = self._watchdog_fired = False
        with self._lock:
            self._stop_at = stop_at
        self.in_native = True
        try:
            self._engine_start(address, timeout=0, count=count)
        finally:
            self.in_native = False
            with self._lock:
                self._stop_at = None

    def start(self, address: int, timeout: float = 0, count: int = 0) -> Any:
        now = time.monotonic()
        deadline = now + timeout if timeout else None
        uncounted = min(UNCOUNTED_SLICE_SECONDS, self.instruction_limit / FASTEST_INSTRUCTIONS_PER_SECOND)
        counting = uncounted < MIN_UNCOUNTED_SLICE_SECONDS
        slice_end = now + uncounted
        while True:
            if self.pending:
                resume = self._run_deferred_work(address)
                if resume is None:
                    return None
                address = resume
            stop_at = deadline
            if self.instruction_limit and not counting:
                stop_at = slice_end if deadline is None else min(deadline, slice_end)
            self._native(address, stop_at, self.instruction_limit if counting else 0)
            if self.stop_requested:
                return None
            address = int(self.emu.get_pc())
            if self.yielded:
                continue
            if self._watchdog_fired:
                if deadline is not None and time.monotonic() >= deadline:
                    return None  # Speakeasy sees the deadline and ends the run as a timeout
                counting = True  # still running after the uncounted slice: count from here
                # Code translated without Unicorn's counting hook would never be counted.
                self.flush_needed = True
                continue
            if counting:
                self._instruction_limit_reached()
            return None

    def _instruction_limit_reached(self) -> None:
        emu = self.emu
        pc = emu.get_pc()
        if emu.api_registry.traps.get(pc) is not None or pc in (emu.return_hook, emu.exit_hook):
            return
        run = emu.curr_run
        if run is not None and run.error is None:
            run.error = ErrorInfo(type="max_instructions", pc=pc, count=self.instruction_limit)
        emu.on_run_complete()


# ---- guest memory adapter for the project's handlers --------------------------------------


class _GuestMemory:
    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.ptr_size = emu.get_ptr_size()

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.emu.mem_read(address, size))

    def write(self, address: int, data: bytes) -> None:
        self.emu.mem_write(address, data)

    def alloc(self, size: int, tag: str) -> int:
        return int(self.emu.mem_map(size, tag=tag))

    def set_last_error(self, code: int) -> None:
        self.emu.set_last_error(code)


# ---- the backend ----------------------------------------------------------------------------


class SpeakeasyBackend:
    def __init__(self, plan: ReplayPlan, services: ReplayServices) -> None:
        self.plan = plan
        self.services = services
        self.recorder: Recorder = services.recorder
        self.result = BackendResult()
        self.emu: Any = None
        self.se: Any = None
        self._pending: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._armed: dict[int, int] = {}  # page -> requested unicorn perms
        self._protect_ranges: list[tuple[int, int]] = []
        self._thread_starts: dict[int, str] = {}
        self._mapped_total = 0
        self._stop: ReplayStop | None = None
        self._entry_kind = "pe"
        self._known_files: set[str] = {f.emu_path.lower() for f in plan.files}
        self._created_files: set[str] = set()
        self._written_bytes = 0
        self._module: Any = None
        self._runner: _NativeRunner | None = None

    # -- public ------------------------------------------------------------------------------

    def run(self) -> BackendResult:
        started = time.perf_counter()
        try:
            self._load()
            self._install()
            self._start()
        except ReplayStop as stop:
            self._stop = stop
        except NetworkLimitReached as err:
            self._stop = ReplayStop("limit", str(err), "max_network_exchanges")
        finally:
            if self._runner is not None:
                self._runner.close()
            self.result.emulation_seconds = time.perf_counter() - started
            self._collect()
        return self.result

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> None:
        token = _LOADING_BEFORE_CODE.set(self.plan.mode == "fast")
        try:
            self._load_images()
        finally:
            _LOADING_BEFORE_CODE.reset(token)

    def _load_images(self) -> None:
        plan = self.plan
        data = Path(plan.target_path).read_bytes()
        self.se = speakeasy.Speakeasy(config=build_speakeasy_config(plan))
        name = ntpath.basename(plan.emu_path)
        if plan.target_kind == "shellcode":
            arch = {"x86": "x86", "x64": "amd64"}[plan.arch or "x64"]
            self._sc_addr = self.se.load_shellcode(data=data, arch=arch, filename=name)
            self.emu = self.se.emu
            self.result.arch = plan.arch or "x64"
            self._entry_kind = "shellcode"
            base, size = self._sc_addr, len(data)
        else:
            try:
                self._module = self.se.load_module(data=data, filename=name)
            except speakeasy.errors.SpeakeasyError as err:
                raise BackendInputError(str(err)) from err
            self.emu = self.se.emu
            self.result.arch = "x86" if self.emu.get_arch() == se_arch.ARCH_X86 else "x64"
            base, size = self._module.base, self._module.image_size
        self.memory = _GuestMemory(self.emu)
        self.recorder.start_stage(
            kind="pe" if self._entry_kind == "pe" else "shellcode",
            name=name,
            base=base,
            size=size,
            entry=base,
            data=data,
            parent=None,
            via="entry",
        )

    # -- hooks -------------------------------------------------------------------------------

    def _install(self) -> None:
        emu = self.emu
        profiler = emu.get_profiler()
        original_log_api = emu.log_api

        def log_api(pc: int, imp_api: str, rv: int | None, args: list[Any], *, run: Any = None) -> None:
            original_log_api(pc, imp_api, rv, args, run=run)
            self._on_api(pc, imp_api, rv, args)

        emu.log_api = log_api
        for method in (
            "record_file_access_event",
            "record_registry_access_event",
            "record_process_event",
            "record_dns_event",
            "record_http_event",
            "record_network_event",
        ):
            self._defer(profiler, method)

        original_mem_map = emu.mem_map
        original_mem_protect = emu.mem_protect
        original_mem_free = emu.mem_free

        def mem_map(
            size: int,
            base: int | None = None,
            perms: int = PERM_RWX,
            tag: str | None = None,
            flags: int = 0,
            shared: bool = False,
            process: Any = None,
        ) -> int:
            limits = self.plan.limits
            if size > limits.max_allocation:
                raise self._fail(
                    "limit", f"single allocation of {size} bytes exceeds {limits.max_allocation}", "max_allocation"
                )
            if self._mapped_total + size > limits.max_mapped_memory:
                raise self._fail(
                    "limit", f"mapped memory would exceed {limits.max_mapped_memory} bytes", "max_mapped_memory"
                )
            address = original_mem_map(
                size, base=base, perms=perms, tag=tag, flags=flags, shared=shared, process=process
            )
            self._mapped_total += size
            if tag and tag.startswith(WATCHED_TAG_PREFIXES):
                self._arm(address, size, perms)
            return int(address)

        def mem_protect(addr: int, size: int, perms: int) -> None:
            original_mem_protect(addr, size, perms)
            armed_pages = [p for p in _pages(addr, size) if p in self._armed]
            for page in armed_pages:
                self._armed[page] = perms
            self._set_pages(armed_pages, perms & ~PERM_EXEC)

        def mem_free(base: int) -> None:
            mm = self.emu.get_address_map(base)
            if mm is not None:
                for page in _pages(mm.base, mm.size):
                    self._armed.pop(page, None)
                self._mapped_total = max(0, self._mapped_total - mm.size)
            original_mem_free(base)

        emu.mem_map = mem_map
        emu.mem_protect = mem_protect
        emu.mem_free = mem_free

        hooks = emu.hooks.get(se_common.HOOK_MEM_INVALID)
        if not hooks:
            emu.add_mem_invalid_hook(lambda *a: True)
            hooks = emu.hooks.get(se_common.HOOK_MEM_INVALID)
        dispatch = hooks[0]
        original_dispatch = dispatch.cb

        def on_invalid(uc_emu: Any, access: int, address: int, size: int, value: int) -> bool:
            if access == uc.UC_MEM_FETCH_PROT and (address // PAGE) in self._armed:
                try:
                    self._on_dynamic_exec(address)
                except ReplayStop as stop:
                    self._stop = stop
                    self.emu.stop()
                    return False
                return True
            return bool(original_dispatch(uc_emu, access, address, size, value))

        dispatch.cb = on_invalid

        for handler in HANDLERS:
            self._install_handler(handler)
        self._install_compat_hooks()
        if self.plan.mode == "fast":
            self._runner = _NativeRunner(emu, self.plan.limits.max_instructions)

    def _install_compat_hooks(self) -> None:
        """Argument fixes for Speakeasy handlers that are right except for one detail."""

        def predefined_key(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
            # x64 code passes HKEY_LOCAL_MACHINE sign-extended (0xFFFFFFFF80000002); Speakeasy
            # only knows the 32-bit value.
            argv = list(argv)
            if argv and argv[0] >> 32 == 0xFFFFFFFF and argv[0] & 0xFFFFFFF0 == 0x80000000:
                argv[0] &= 0xFFFFFFFF
            return orig(argv)

        for name in (
            "RegOpenKeyExA",
            "RegOpenKeyExW",
            "RegOpenKeyA",
            "RegOpenKeyW",
            "RegCreateKeyExA",
            "RegCreateKeyExW",
            "RegCreateKeyA",
            "RegCreateKeyW",
            "RegGetValueA",
            "RegGetValueW",
            "RegQueryValueExA",
            "RegQueryValueExW",
            "RegSetValueExA",
            "RegSetValueExW",
        ):
            self.se.add_api_hook(predefined_key, "advapi32", name)

    def _fail(self, status: str, detail: str, limit: str | None = None) -> ReplayStop:
        """Remember why the replay stops: Speakeasy turns exceptions in handlers into run errors."""
        stop = ReplayStop(status, detail, limit)
        if self._stop is None:
            self._stop = stop
        return stop

    def _install_handler(self, handler: ApiHandler) -> None:
        conv = se_arch.CALL_CONV_CDECL if handler.conv == "cdecl" else se_arch.CALL_CONV_STDCALL
        services = self.services

        def callback(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
            api = GuestApi(self.memory, services, handler.name)
            try:
                return handler.func(api, list(argv))
            except NetworkLimitReached as err:
                self._stop = ReplayStop("limit", str(err), "max_network_exchanges")
                self.emu.stop()
                return 0

        self.se.add_api_hook(callback, handler.module, handler.name, argc=handler.argc, call_conv=conv)

    def _defer(self, profiler: Any, method: str) -> None:
        original = getattr(profiler, method)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self._pending.append((method, args, kwargs))
            return original(*args, **kwargs)

        setattr(profiler, method, wrapper)

    # -- memory watch ------------------------------------------------------------------------

    def _arm(self, address: int, size: int, perms: int) -> None:
        pages = list(_pages(address, size))
        for page in pages:
            self._armed[page] = perms
        self._set_pages(pages, perms & ~PERM_EXEC)

    def _set_pages(self, pages: list[int], perms: int) -> None:
        # One Unicorn call per contiguous run: each call splits regions and drops translated
        # code, and page by page a 1 MiB buffer cost 256 of them (0.3 s).
        for first, count in _runs(pages):
            try:
                self.emu.emu_eng.mem_protect(first * PAGE, count * PAGE, perms)
            except uc.UcError:
                for page in range(first, first + count):
                    try:
                        self.emu.emu_eng.mem_protect(page * PAGE, PAGE, perms)
                    except uc.UcError:
                        self._armed.pop(page, None)

    def _on_dynamic_exec(self, address: int) -> None:
        recorder = self.recorder
        if recorder.stage_count >= self.plan.limits.max_stages:
            raise ReplayStop("limit", f"more than {self.plan.limits.max_stages} stages", "max_stages")
        mm = self.emu.get_address_map(address)
        region_base, region_size = (mm.base, mm.size) if mm is not None else (address & ~0xFFF, PAGE)
        kind, base, size, image_base, name = "shellcode", region_base, region_size, None, ""
        # The range the sample itself made executable is the best statement of what the code is.
        for p_base, p_size in reversed(self._protect_ranges):
            if p_base <= address < p_base + p_size:
                base, size = p_base, p_size
                break
        for candidate in dict.fromkeys((base, region_base)):
            header = self._image_header_near(address, candidate)
            if header is not None:
                image_base, image_size, name = header
                kind, base, size = "pe_in_memory", image_base, image_size
                break
        data = self._read_region(base, size)
        parent, via = self._caller_of(address)
        # Make the whole stage executable again, so the trap fires once per stage.
        pages = [p for p in _pages(base, size) if p in self._armed] or [address // PAGE]
        by_perms: dict[int, list[int]] = {}
        for page in pages:
            by_perms.setdefault(self._armed.pop(page, PERM_RWX) | PERM_EXEC, []).append(page)
        for perms, same in by_perms.items():
            self._set_pages(same, perms)
        recorder.start_stage(
            kind=kind,
            name=name or f"{kind}@{address:#x}",
            base=base,
            size=size,
            entry=address,
            data=data,
            parent=parent,
            via=via,
            image_base=image_base,
        )

    def _read_region(self, base: int, size: int) -> bytes:
        try:
            return bytes(self.emu.mem_read(base, size))
        except Exception:
            return b""

    def _image_header_near(self, address: int, region_base: int) -> tuple[int, int, str] | None:
        """A mapped PE image at ``region_base`` whose executable section holds ``address``.

        A raw PE file read into a buffer also starts with MZ, but its code is not at the
        section's virtual address, so only a mapped image passes this check.
        """
        head = self._read_region(region_base, 0x1000)
        if len(head) < 0x40 or head[:2] != b"MZ":
            return None
        try:
            e_lfanew = struct.unpack_from("<I", head, 0x3C)[0]
            if head[e_lfanew : e_lfanew + 4] != b"PE\0\0":
                return None
            sections, opt_size = struct.unpack_from("<H12xH", head, e_lfanew + 6)
            size_of_image = struct.unpack_from("<I", head, e_lfanew + 0x50)[0]
            table = e_lfanew + 24 + opt_size
            for index in range(min(sections, 96)):
                vsize, vaddr = struct.unpack_from("<II", head, table + 40 * index + 8)
                characteristics = struct.unpack_from("<I", head, table + 40 * index + 36)[0]
                if characteristics & 0x20000000 and vaddr <= address - region_base < vaddr + max(vsize, 1):
                    name = _export_name(self._read_region(region_base, size_of_image)) or ""
                    return region_base, size_of_image, name
        except struct.error:
            return None
        return None

    def _caller_of(self, address: int) -> tuple[str | None, str]:
        if address in self._thread_starts:
            return self._thread_starts[address], "thread"
        try:
            sp = self.emu.get_stack_ptr()
            ret = int.from_bytes(self.emu.mem_read(sp, self.memory.ptr_size), "little")
        except Exception:
            ret = 0
        stage = self.recorder.stage_at(ret) if ret else None
        if stage is not None:
            return stage, "call"
        return self.recorder.current_stage, "unknown"

    # -- API calls ---------------------------------------------------------------------------

    def _on_api(self, pc: int, imp_api: str, rv: int | None, args: list[Any]) -> None:
        recorder = self.recorder
        stage = recorder.stage_at(pc) or recorder.current_stage
        recorder.current_stage = stage
        module, _, func = imp_api.partition(".")
        api = f"{module.lower()}.{func}"
        rendered = [_render_arg(a) for a in args]
        recorder.emit(ApiCall, stage=stage, api=api, args=rendered, ret=hex(rv) if rv is not None else None, pc=pc)
        recorder.api_count += 1
        self.services.clock.on_api_call()
        pending, self._pending = self._pending, []
        for method, p_args, p_kwargs in pending:
            self._translate(stage, api, method, p_args, p_kwargs, rv)
        self._derived_events(stage, func.lower(), args, rv)
        if recorder.api_count >= self.plan.limits.max_api_calls:
            self._stop = ReplayStop(
                "api_limit", f"{recorder.api_count} API calls (limit {self.plan.limits.max_api_calls})", "max_api_calls"
            )
            self.emu.stop()

    def _derived_events(self, stage: str, func: str, args: list[Any], rv: int | None) -> None:
        if func in SYNC_APIS and rv:
            object_type, op = SYNC_APIS[func]
            name_index = 1 if op == "open" and object_type != "event" else (2 if op == "open" else None)
            name = self._string_arg(args, func, name_index)
            if name:
                existed = op == "open" or self.emu.get_last_error() == ERROR_ALREADY_EXISTS
                self.recorder.emit(SyncObject, stage=stage, op=op, object_type=object_type, name=name, existed=existed)
        elif func == "virtualprotect" and rv and len(args) >= 3:
            # Speakeasy records protection changes only for VirtualProtectEx.
            address, size, protect = (int(getattr(a, "value", 0) or 0) for a in args[:3])
            executable = bool(protect & 0xF0)
            if executable:
                self._protect_ranges.append((address, size))
            self.recorder.emit(
                MemoryProtect,
                stage=stage,
                address=address,
                size=size,
                protect=_render_arg(args[2]),
                executable=executable,
            )
        elif func in LOAD_LIBRARY_APIS and rv:
            name = self._string_arg(args, func, 0) or ""
            mod = self.emu.get_module_from_addr(rv)
            path = getattr(mod, "emu_path", "") or name
            self.recorder.emit(
                ModuleLoad,
                stage=stage,
                name=ntpath.basename(name),
                path=path,
                base=rv,
                size=getattr(mod, "image_size", 0) or 0,
                from_file=path.lower() in self._known_files,
            )

    def _string_arg(self, args: list[Any], func: str, index: int | None) -> str | None:
        if index is None:
            # CreateEvent(sa, manual, initial, name) / CreateMutex(sa, owner, name) / Ex variants
            index = {
                "createeventa": 3,
                "createeventw": 3,
                "createmutexa": 2,
                "createmutexw": 2,
                "createeventexa": 1,
                "createeventexw": 1,
                "createmutexexa": 1,
                "createmutexexw": 1,
                "createsemaphorea": 3,
                "createsemaphorew": 3,
            }.get(func)
        if index is None or index >= len(args):
            return None
        value = getattr(args[index], "value", None)
        if not value:
            return None
        wide = func.endswith("w")
        return GuestApi(self.memory, self.services, func).read_string(value, wide, max_chars=260)

    def _translate(
        self, stage: str, api: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], rv: int | None
    ) -> None:
        recorder = self.recorder
        params = _bind(method, args, kwargs)
        if method == "record_file_access_event":
            path = str(params.get("path"))
            event_type = params.get("event_type")
            if event_type == FILE_READ:
                buffer, size = params.get("buffer") or 0, params.get("size") or 0
                data = self._read_region(buffer, size) if buffer and size else b""
                digest = recorder.put_blob(data) if data else None
                recorder.emit(
                    FileAccess,
                    stage=stage,
                    op="read",
                    path=path,
                    size=len(data),
                    data_sha256=digest,
                    address=buffer or None,
                )
                if data:
                    recorder.remember_buffer("file_read", buffer, data, ref=path, api=api)
            elif event_type == FILE_WRITE:
                data = params.get("data") or b""
                self._written_bytes += len(data)
                if self._written_bytes > self.plan.limits.max_dropped_bytes:
                    raise self._fail(
                        "limit",
                        f"sample wrote more than {self.plan.limits.max_dropped_bytes} bytes",
                        "max_dropped_bytes",
                    )
                recorder.emit(
                    FileAccess,
                    stage=stage,
                    op="write",
                    path=path,
                    size=len(data),
                    data_sha256=recorder.put_blob(data) if data else None,
                    address=params.get("buffer") or None,
                )
            elif event_type in (FILE_CREATE, FILE_OPEN, "create", "open"):
                op = "create" if event_type in (FILE_CREATE, "create") else "open"
                existed = path.lower() in self._known_files or path.lower() in self._created_files
                if op == "create":
                    self._created_files.add(path.lower())
                recorder.emit(FileAccess, stage=stage, op=op, path=path, existed=existed)
        elif method == "record_registry_access_event":
            op = {REG_OPEN: "open", REG_CREATE: "create", REG_READ: "read", REG_WRITE: "write", REG_LIST: "list"}.get(
                str(params.get("event_type")), "open"
            )
            value = params.get("data")
            rendered = _render_value(value) if value is not None else None
            recorder.emit(
                RegistryAccess,
                stage=stage,
                op=op,
                path=str(params.get("path")),
                value_name=params.get("value_name"),
                value=rendered,
            )
        elif method == "record_process_event":
            event_type = params.get("event_type")
            extra = params.get("kwargs") or {}
            if event_type == MEM_ALLOC:
                recorder.emit(
                    MemoryAlloc,
                    stage=stage,
                    address=extra.get("base", 0),
                    size=extra.get("size", 0),
                    protect=str(extra.get("protect")),
                    api=api,
                )
            elif event_type == MEM_PROTECT:
                protect = str(extra.get("protect"))
                if "EXECUTE" in protect.upper():
                    self._protect_ranges.append((extra.get("base", 0), extra.get("size", 0)))
                recorder.emit(
                    MemoryProtect,
                    stage=stage,
                    address=extra.get("base", 0),
                    size=extra.get("size", 0),
                    protect=protect,
                    executable="EXECUTE" in protect.upper(),
                )
            elif event_type in (THREAD_CREATE, THREAD_INJECT):
                start = extra.get("start_addr", 0)
                self._thread_starts[start] = stage
                recorder.emit(ThreadStart, stage=stage, start=start, param=extra.get("param", 0) or 0, api=api)
        elif method in ("record_dns_event", "record_http_event", "record_network_event"):
            # Network APIs the project does not handle itself: answered by Speakeasy's canned data,
            # never the host network, and recorded as blocked so nothing looks like a real exchange.
            host = str(params.get("domain") or params.get("server") or "")
            kind = "dns" if method == "record_dns_event" else ("http" if method == "record_http_event" else "tcp")
            recorder.emit(
                NetworkExchange,
                stage=stage,
                kind=kind,
                host=host,
                port=params.get("port"),
                method=api,
                response=NetResponse(),
                responder="speakeasy-builtin",
                blocked=True,
            )

    # -- running -----------------------------------------------------------------------------

    def _start(self) -> None:
        plan = self.plan
        if plan.target_kind == "shellcode":
            self.se.run_shellcode(self._sc_addr)
            return
        emu = self.emu
        module = self._module
        exports = {e.name: e.address for e in module.get_exports() if e.name}
        missing = [call.name for call in plan.exports if call.name not in exports]
        if missing:
            raise BackendInputError(
                f"export {missing[0]!r} not found (exports: {', '.join(sorted(exports)) or 'none'})"
            )
        original_prepare = emu.prepare_module_for_emulation

        def prepare(mod: Any, all_entrypoints: bool, entry_point: int | None = None) -> None:
            original_prepare(mod, all_entrypoints, entry_point=entry_point)
            if not plan.run_entry_point:
                emu.run_queue.clear()
            for call in plan.exports:
                run = Run()
                run.start_addr = exports[call.name]
                run.type = f"export.{call.name}"
                run.args = [self._export_arg(arg) for arg in call.args]
                emu.add_run(run)

        emu.prepare_module_for_emulation = prepare
        self.se.run_module(module)

    def _export_arg(self, arg: int | StringArg) -> int:
        if isinstance(arg, StringArg):
            data = arg.text.encode("utf-16-le") + b"\0\0" if arg.wide else arg.text.encode("latin-1") + b"\0"
            address = int(self.emu.mem_map(len(data) + 16, tag="emu.export_arg_string"))
            self.emu.mem_write(address, data)
            return address
        return arg

    # -- results -----------------------------------------------------------------------------

    def _collect(self) -> None:
        result = self.result
        emu = self.emu
        if emu is not None:
            # Only the faithful mode's per-instruction hook counts; fast mode does not know.
            counted = self.plan.mode == "faithful"
            result.instructions = 0 if counted else None
            profiler = emu.get_profiler()
            runs = list(getattr(profiler, "runs", []) or [])
            for run in runs:
                error = getattr(run, "error", None)
                summary = RunSummary(
                    kind=str(run.type),
                    start=run.start_addr or 0,
                    instructions=run.instr_cnt if counted else None,
                    api_calls=run.num_apis,
                    error=getattr(error, "type", None) if error else None,
                    error_detail=_error_detail(error) if error else None,
                )
                result.runs.append(summary)
                if result.instructions is not None:
                    result.instructions += run.instr_cnt
            self._collect_dropped()
        if self._stop is not None:
            result.status = self._stop.status
            result.detail = self._stop.detail
            result.limit = self._stop.limit
            return
        for summary in result.runs:
            if summary.error in LIMIT_ERRORS:
                result.status, result.limit = LIMIT_ERRORS[summary.error]
                result.detail = f"run {summary.kind}: {summary.error_detail or summary.error}"
                return
            if summary.error == "unsupported_api":
                result.status = "unsupported_api"
                result.detail = f"unsupported API {summary.error_detail} in run {summary.kind}"
                return
        faults = [s for s in result.runs if s.error]
        if faults:
            first = faults[0]
            result.status = "completed"
            result.detail = f"run {first.kind} ended with {first.error}: {first.error_detail or ''}".strip()

    def _collect_dropped(self) -> None:
        fileman = getattr(self.emu, "fileman", None)
        if fileman is None:
            return
        for dropped in fileman.get_dropped_files() if hasattr(fileman, "get_dropped_files") else []:
            stream = getattr(dropped, "data", None)
            data = stream.getvalue() if stream is not None and hasattr(stream, "getvalue") else None
            if data is None:
                continue
            self.result.dropped[str(dropped.path)] = self.recorder.put_blob(bytes(data))


# ---- helpers --------------------------------------------------------------------------------


_SIGNATURES = {
    "record_file_access_event": (
        "run",
        "pos",
        "path",
        "event_type",
        "data",
        "handle",
        "disposition",
        "access",
        "buffer",
        "size",
    ),
    "record_registry_access_event": (
        "run",
        "pos",
        "path",
        "event_type",
        "value_name",
        "data",
        "handle",
        "disposition",
        "access",
        "buffer",
        "size",
    ),
    "record_process_event": ("run", "pos", "proc", "event_type", "kwargs"),
    "record_dns_event": ("run", "pos", "domain", "ip"),
    "record_http_event": ("run", "pos", "server", "port", "proto", "headers", "body", "secure"),
    "record_network_event": ("run", "pos", "server", "port", "typ", "proto", "data", "method"),
}


def _bind(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    params = dict(zip(_SIGNATURES[method], args, strict=False))
    params.update(kwargs)
    return params


def _runs(pages: list[int]) -> list[tuple[int, int]]:
    """Sorted pages as (first page, page count) runs of consecutive pages."""
    runs: list[tuple[int, int]] = []
    for page in sorted(pages):
        if runs and runs[-1][0] + runs[-1][1] == page:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((page, 1))
    return runs


def _pages(address: int, size: int) -> range:
    return range(address // PAGE, (address + max(size, 1) + PAGE - 1) // PAGE)


def _render_arg(arg: Any) -> str:
    display = getattr(arg, "display", None)
    text = str(display) if display is not None else str(arg)
    return text[:MAX_RENDERED_STRING]


def _render_value(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        for encoding in ("utf-16-le", "latin-1"):
            try:
                text = bytes(value).decode(encoding).rstrip("\0")
            except UnicodeDecodeError:
                continue
            if text.isprintable():
                return text[:MAX_RENDERED_STRING]
        return bytes(value).hex()[:MAX_RENDERED_STRING]
    return str(value)[:MAX_RENDERED_STRING]


def _error_detail(error: Any) -> str:
    api_name = getattr(error, "api_name", None)
    if api_name:
        return str(api_name)
    pc = getattr(error, "pc", None)
    address = getattr(error, "address", None)
    parts = [str(getattr(error, "type", "error"))]
    if pc is not None:
        parts.append(f"pc={pc:#x}" if isinstance(pc, int) else f"pc={pc}")
    if address is not None:
        parts.append(f"address={address:#x}" if isinstance(address, int) else f"address={address}")
    return " ".join(parts)


def _export_name(image: bytes) -> str | None:
    """The DLL name in the export directory of a mapped image, if it has one."""
    try:
        e_lfanew = struct.unpack_from("<I", image, 0x3C)[0]
        magic = struct.unpack_from("<H", image, e_lfanew + 0x18)[0]
        dir_offset = e_lfanew + 0x18 + (0x70 if magic == 0x20B else 0x60)
        export_rva = struct.unpack_from("<I", image, dir_offset)[0]
        if not export_rva:
            return None
        name_rva = struct.unpack_from("<I", image, export_rva + 0x0C)[0]
        end = image.index(b"\0", name_rva)
        return image[name_rva:end].decode("latin-1")[:128] or None
    except (struct.error, ValueError):
        return None


def run_backend(plan: ReplayPlan, services: ReplayServices) -> BackendResult:
    return SpeakeasyBackend(plan, services).run()
