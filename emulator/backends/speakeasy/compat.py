"""Every use of a private Speakeasy or Unicorn name, checked against the installed engine.

chainreplay relies on a few of Speakeasy's internals that have no public hook (the deferred
code hook, the API log, the memory manager, the export run queue, the invalid-memory
dispatcher). Each is reached only through a function here, and each is checked when this
module is imported: a renamed method, a changed signature or a missing attribute stops the
import with one line naming the installed Speakeasy version and what changed, instead of a
replay that silently records less. Attributes that only exist on a live emulator are checked
the same way when a backend attaches to it (:func:`check_emulator`). The names the exception
dispatcher and the guest machine rely on are in compat_guest.py, fast mode's in compat_fast.py,
the start-up work's in compat_start.py, all under the same rules.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import gc
import inspect
import ntpath
import struct
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pefile
import speakeasy
import speakeasy.common as se_common
import speakeasy.engines.unicorn_eng as se_engine
import speakeasy.memmgr as se_memmgr
import speakeasy.profiler as se_profiler
import speakeasy.windows.common as se_wincommon
import speakeasy.windows.regman as se_regman
import speakeasy.windows.win32 as se_win32
import speakeasy.windows.winemu as se_winemu
import speakeasy.winenv.api.usermode.kernel32 as se_kernel32
import speakeasy.winenv.api.usermode.msvcrt as se_msvcrt
import speakeasy.winenv.arch as se_arch
import speakeasy.winenv.defs.registry.reg as se_regdefs
import unicorn as uc
import unicorn.unicorn_py3.unicorn as uc_binding
from speakeasy.profiler import Run
from speakeasy.profiler_events import THREAD_CREATE, THREAD_INJECT, TracePosition
from speakeasy.report import ErrorInfo
from speakeasy.windows.api_registry import module_name as se_module_name
from speakeasy.windows.loaders import PeLoader

from emulator import installed
from emulator import pe as pe_headers

ENGINE_PACKAGE = "speakeasy-emulator"


def _installed_version() -> str:
    # As importlib.metadata.version, without importing it in the cold child (emulator/installed.py).
    return installed.version(ENGINE_PACKAGE) or "unknown"


SPEAKEASY_VERSION = _installed_version()
ENGINE_NAME = f"speakeasy {SPEAKEASY_VERSION}"


def shipped_table(path: Path, version: str, data_format: int) -> Any | None:
    """The table in a data file the project ships (``marshal`` of ``(Speakeasy version, format,
    table)``), or None when it is missing, unreadable, or built for another version or format."""
    import marshal

    try:
        built_for, fmt, table = marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return table if built_for == version and fmt == data_format else None


PERM_EXEC: int = se_common.PERM_MEM_EXEC
PERM_READ: int = se_common.PERM_MEM_READ
PERM_RWX: int = se_common.PERM_MEM_RWX
PERM_WRITE: int = se_common.PERM_MEM_WRITE
# Allocations made for the guest under these Speakeasy memory tags are watched for execution.
WATCHED_TAG_PREFIXES = (
    "api.virtalloc",
    "api.heap",
    "api.pool",
    "emu.process_heap",
    "api.VirtualAlloc",
    "api.msvcrt.operator_new",
)
# Of those, the allocations whose guest writes the flow watch follows (emulator/backends/speakeasy/flow.py):
# VirtualAlloc / VirtualAllocEx / NtAllocateVirtualMemory, where loaders put code.
FLOW_TAG_PREFIXES = ("api.VirtualAlloc", "api.virtalloc")
# And the heap blocks it follows within its heap bounds: HeapAlloc, LocalAlloc, GlobalAlloc, their
# ReAllocs, msvcrt malloc / calloc (all "api.heap.<api>"), and msvcrt operator new.
HEAP_FLOW_TAG_PREFIXES = ("api.heap", "api.msvcrt.operator_new")
# The profiler records chainreplay translates into events, and the parameters it reads of each.
PROFILER_RECORDS: dict[str, tuple[str, ...]] = {
    "record_file_access_event": ("path", "event_type", "data", "buffer", "size"),
    "record_registry_access_event": ("path", "event_type", "value_name", "data", "buffer"),
    "record_process_event": ("event_type", "kwargs"),
    "record_dns_event": ("domain",),
    "record_http_event": ("server", "port"),
    "record_network_event": ("server", "port"),
}


class EngineIncompatible(ImportError):
    """The installed Speakeasy lacks something chainreplay relies on."""


def _incompatible(what: str) -> EngineIncompatible:
    return EngineIncompatible(f"chainreplay does not support speakeasy-emulator {SPEAKEASY_VERSION}: {what}")


def _require_params(owner: object, name: str, params: tuple[str, ...]) -> None:
    label = f"{getattr(owner, '__name__', owner)}.{name}"
    member = getattr(owner, name, None)
    if not callable(member):
        raise _incompatible(f"{label} is missing")
    try:
        have = inspect.signature(member).parameters
    except (TypeError, ValueError):
        return
    missing = [p for p in params if p not in have]
    if missing:
        raise _incompatible(f"{label} no longer takes {', '.join(missing)}")


def _check_installed() -> None:
    _require_params(speakeasy.Speakeasy, "_init_emulator", ("path", "data", "is_raw_code"))
    _require_params(se_engine.EmuEngine, "mem_protect", ("addr", "size", "perms"))
    _require_params(se_engine.EmuEngine, "mem_write", ("addr", "data"))
    winemu = se_winemu.WindowsEmulator
    _require_params(winemu, "on_run_complete", ())
    _require_params(winemu, "add_run", ("run",))
    _require_params(winemu, "handle_import_func", ("dll", "name"))
    _require_params(winemu, "emulate_api_from_signature", ("dll", "name", "sig", "call_pc"))
    _require_params(winemu, "get_profiler", ())
    _require_params(winemu, "get_module_from_addr", ("addr",))
    _require_params(winemu, "add_mem_invalid_hook", ("cb",))
    _require_params(winemu, "get_object_from_handle", ("handle",))
    _require_params(winemu, "get_object_handle", ("obj",))
    _require_params(winemu, "get_cd", ())
    _require_params(winemu, "get_module_data_from_emu_file", ("file_path",))
    _require_params(winemu, "_make_image_at_free_base", ("make_loader", "base"))
    _require_params(winemu, "load_image", ("image",))
    _require_params(winemu, "start_api_callback", ("frame", "function", "args"))
    _require_params(winemu, "_continue_api_callback", ())
    _require_params(winemu, "create_thread", ("addr", "ctx", "proc_obj", "thread_type", "is_suspended"))
    _require_params(PeLoader, "__init__", ("data", "base_override", "emu_path"))
    prepare_params = ("module", "all_entrypoints", "entry_point")
    _require_params(se_win32.Win32Emulator, "prepare_module_for_emulation", prepare_params)
    memmgr = se_memmgr.MemoryManager
    _require_params(memmgr, "mem_map", ("size", "base", "perms", "tag", "flags", "shared", "process"))
    _require_params(memmgr, "mem_protect", ("addr", "size", "perms"))
    _require_params(memmgr, "mem_free", ("base",))
    _require_params(se_regman.RegistryManager, "get_key_from_config", ("path",))
    for method, params in PROFILER_RECORDS.items():
        _require_params(se_profiler.Profiler, method, params)
    for field in ("type", "pc", "count"):
        if field not in ErrorInfo.model_fields:
            raise _incompatible(f"speakeasy.report.ErrorInfo has no field {field!r}")
    for attr in ("start_addr", "type", "args", "error", "instr_cnt", "num_apis", "unique_apis", "api_hash"):
        if not hasattr(Run(), attr):
            raise _incompatible(f"speakeasy.profiler.Run has no attribute {attr!r}")
    if not hasattr(se_common, "HOOK_MEM_INVALID"):
        raise _incompatible("speakeasy.common.HOOK_MEM_INVALID is missing")
    for name in ("UC_HOOK_CODE", "UC_HOOK_MEM_READ", "UC_HOOK_MEM_WRITE", "UC_MEM_FETCH_PROT", "UcError"):
        if not hasattr(uc, name):
            raise _incompatible(f"unicorn.{name} is missing")
    for name in ("hook_add", "hook_del", "ctl_flush_tb", "mem_write"):
        if not hasattr(uc.Uc, name):
            raise _incompatible(f"unicorn.Uc.{name} is missing")
    for name in ("HOOK_MEM_ACCESS_CFUNC", "HOOK_CODE_CFUNC", "uc_hook_h"):
        if not hasattr(uc_binding, name):
            raise _incompatible(f"unicorn's binding has no {name} (flow watch hooks)")
    sources = inspect.getsource(se_kernel32) + inspect.getsource(se_win32) + inspect.getsource(se_msvcrt)
    for prefix in ("api.heap", "emu.process_heap", "api.VirtualAlloc", "api.msvcrt.operator_new"):
        if f'"{prefix}' not in sources:
            raise _incompatible(f"memory tag {prefix!r} is no longer used for guest allocations")


_check_installed()


def check_emulator(emu: Any) -> None:
    """Attributes of a live emulator chainreplay reads or replaces."""
    for attr in (
        "emu_eng",
        "tmp_code_hook",
        "api_registry",
        "run_queue",
        "suspended_runs",
        "get_mem_maps",
        "curr_run",
        "return_hook",
        "exit_hook",
        "emu_complete",
        "hooks",
        "mem_map",
        "mem_protect",
        "mem_free",
        "modules",
        "_load_depth",
    ):
        if not hasattr(emu, attr):
            raise _incompatible(f"the emulator has no attribute {attr!r}")
    if not hasattr(emu.api_registry, "traps") or not hasattr(emu.emu_eng, "emu"):
        raise _incompatible("the emulator's API trap table or Unicorn engine moved")


# ---- loading ---------------------------------------------------------------------------------


@contextlib.contextmanager
def writes_without_invalidation(se: Any) -> Iterator[None]:
    """While loading images, host writes skip the translated-code invalidation.

    Speakeasy invalidates translated code after every host write (about 15 us through ctypes);
    loading the decoy system DLLs makes ~17,000 writes before anything is translated. Only the
    engine this Speakeasy instance creates is affected, and only until the block ends.
    """
    engines: list[Any] = []
    original_init = se._init_emulator

    def init_emulator(*args: Any, **kwargs: Any) -> None:
        original_init(*args, **kwargs)
        engine = se.emu.emu_eng
        # The Unicorn instance is created later, when the image is mapped.
        engine.mem_write = lambda addr, data: engine.emu.mem_write(addr, data)
        engines.append(engine)

    se._init_emulator = init_emulator
    try:
        yield
    finally:
        del se._init_emulator
        for engine in engines:
            engine.__dict__.pop("mem_write", None)


def wrap_api_handler(handler_class: Any, name: str, wrapper: Callable[[Any], Any]) -> None:
    """Put ``wrapper(handler)`` in place of Speakeasy's API handler ``name`` of ``handler_class``
    (before its handler classes are scanned; several wrappers of one handler chain)."""
    func = getattr(handler_class, name, None)
    attrs = getattr(func, "__apihook__", None)
    if attrs is not None:
        func.__apihook__ = (attrs[0], wrapper(attrs[1]), *attrs[2:])  # type: ignore[union-attr]


def unicorn_of(emu: Any) -> Any:
    return emu.emu_eng.emu


# Unicorn's ``uc_mem_region``: begin, end (inclusive), perms, padded to 8 bytes.
_MEM_REGION = struct.Struct("<QQI4x")


def mem_regions_raw(unicorn: Any) -> bytes:
    """Unicorn's mapped regions as its C API gives them (``uc_mem_region`` records, in its
    order), in one call: unicorn's own ``mem_regions`` builds a tuple per region through ctypes,
    ~25 us a region, which a query per API call over hundreds of regions made most of a replay."""
    uc_mem_region = uc_binding.uc_mem_region
    uclib = uc_binding.uclib
    regions = ctypes.POINTER(uc_mem_region)()
    count = ctypes.c_uint32()
    status = uclib.uc_mem_regions(unicorn._uch, ctypes.byref(regions), ctypes.byref(count))
    if status != uc.UC_ERR_OK:
        raise uc_binding.UcError(status)
    try:
        return ctypes.string_at(regions, count.value * ctypes.sizeof(uc_mem_region))
    finally:
        uclib.uc_free(regions)


def regions_of_raw(raw: bytes) -> list[tuple[int, int, int]]:
    """:func:`mem_regions_raw`'s records as (begin, end inclusive, perms), unicorn's form."""
    return list(_MEM_REGION.iter_unpack(raw))


# ---- memory --------------------------------------------------------------------------------


MemMap = Callable[..., int]


def wrap_memory_manager(
    emu: Any,
    mem_map: Callable[[MemMap, int, int | None, int, str | None, int, bool, Any], int],
    mem_protect: Callable[[Callable[[int, int, int], None], int, int, int], None],
    mem_free: Callable[[Callable[[int], None], int], None],
) -> None:
    """Route the emulator's map / protect / free through the given wrappers (original first arg)."""
    original_map, original_protect, original_free = emu.mem_map, emu.mem_protect, emu.mem_free

    def map_(
        size: int,
        base: int | None = None,
        perms: int = PERM_RWX,
        tag: str | None = None,
        flags: int = 0,
        shared: bool = False,
        process: Any = None,
    ) -> int:
        return mem_map(original_map, size, base, perms, tag, flags, shared, process)

    emu.mem_map = map_
    emu.mem_protect = lambda addr, size, perms: mem_protect(original_protect, addr, size, perms)
    emu.mem_free = lambda base: mem_free(original_free, base)


def set_engine_protection(emu: Any, address: int, size: int, perms: int) -> bool:
    """Change protection in Unicorn only (Speakeasy's map keeps the guest's view); False if refused."""
    try:
        emu.emu_eng.mem_protect(address, size, perms)
    except uc.UcError:
        return False
    return True


def intercept_fetch_from_protected(emu: Any, handler: Callable[[int], bool | None]) -> None:
    """Call ``handler(address)`` first on a fetch from non-executable memory.

    It returns True to resume, False to stop, None to let Speakeasy handle the fault. It runs
    before every other invalid-memory hook, so a watched page never reaches Speakeasy's fault
    handling.
    """
    intercept_protection_fault(emu, uc.UC_MEM_FETCH_PROT, handler, unhooked=True)


def intercept_protection_fault(
    emu: Any, access_kind: int, handler: Callable[[int], bool | None], *, unhooked: bool
) -> None:
    """Call ``handler(address)`` first on an invalid-memory access of ``access_kind`` (a
    ``UC_MEM_*`` value): True resumes, False stops, None passes it on to the hooks already there
    (``unhooked`` is what the run does with the access when Speakeasy has none)."""
    hooks = emu.hooks.get(se_common.HOOK_MEM_INVALID)
    if not hooks:
        emu.add_mem_invalid_hook(lambda *a: unhooked)
        hooks = emu.hooks.get(se_common.HOOK_MEM_INVALID)
    dispatch = hooks[0]
    original_dispatch = dispatch.cb

    def on_invalid(uc_emu: Any, access: int, address: int, size: int, value: int) -> bool:
        if access == access_kind:
            handled = handler(address)
            if handled is not None:
                return handled
        return bool(original_dispatch(uc_emu, access, address, size, value))

    dispatch.cb = on_invalid


def guest_pc(emu: Any) -> int:
    """The guest instruction being executed (inside a memory hook: the accessing instruction)."""
    return int(emu.get_pc())


class RangeHooks:
    """Unicorn memory read or write hooks (or code hooks) on address ranges, added and removed
    through the C API with one shared callback: the binding's ``hook_add`` builds a ctypes thunk
    per call (~50 us), and its ``hook_del`` frees the thunk, which must not happen inside the
    thunk's own call. A hook removed from inside its callback is only marked deleted by Unicorn,
    which is safe. ``on_access(address, size)`` must not change memory protection (Unicorn's
    store path keeps a pointer into its TLB across the callback).
    """

    def __init__(self, emu: Any, on_access: Callable[[int, int], None], kind: str = "read") -> None:
        binding = uc_binding
        self._ctypes = ctypes
        self._binding = binding
        self._unicorn = unicorn_of(emu)
        self._kind = {"read": uc.UC_HOOK_MEM_READ, "write": uc.UC_HOOK_MEM_WRITE, "code": uc.UC_HOOK_CODE}[kind]

        # An exception must not cross the C boundary. (try/except rather than
        # contextlib.suppress: these run on every hooked access, a thousand times a replay.)
        def callback(_handle: Any, _access: int, address: int, size: int, _value: int, _key: Any) -> None:
            try:  # noqa: SIM105
                on_access(address, size)
            except Exception:  # noqa: BLE001
                pass

        def code_callback(_handle: Any, address: int, size: int, _key: Any) -> None:
            try:  # noqa: SIM105
                on_access(address, size)
            except Exception:  # noqa: BLE001
                pass

        if kind == "code":
            self._thunk = binding.HOOK_CODE_CFUNC(code_callback)
        else:
            self._thunk = binding.HOOK_MEM_ACCESS_CFUNC(callback)
        self._uch = self._unicorn._uch
        self._hook_add, self._hook_del = binding.uclib.uc_hook_add, binding.uclib.uc_hook_del
        self._handle = binding.uc_hook_h()
        self._handle_ref = ctypes.byref(self._handle)

    def add(self, begin: int, end: int) -> int:
        """A hook on accesses to ``[begin, end]`` (inclusive); its handle. (The C call's
        arguments as plain integers, converted by the binding's declared argument types, and
        one handle buffer reused: the flow watch adds and removes ~1,300 hooks a 3CX replay.)"""
        handle = self._handle
        status = self._hook_add(self._uch, self._handle_ref, self._kind, self._thunk, None, begin, end)
        if status != uc.UC_ERR_OK:
            raise uc.UcError(status)
        return int(handle.value)

    def remove(self, handle: int) -> None:
        self._hook_del(self._uch, handle)


# ---- API calls and profiler records --------------------------------------------------------


def after_each_api_call(emu: Any, callback: Callable[[int, str, int | None, list[Any]], None]) -> None:
    """``callback(pc, "module.Function", return value, args)`` after Speakeasy logs each call."""
    original_log_api = emu.log_api

    def log_api(pc: int, imp_api: str, rv: int | None, args: list[Any], *, run: Any = None) -> None:
        original_log_api(pc, imp_api, rv, args, run=run)
        callback(pc, imp_api, rv, args)

    # What this wrapper calls, for a caller that calls them itself (fast mode's dispatch).
    log_api.unwrapped = (original_log_api, callback)  # type: ignore[attr-defined]
    emu.log_api = log_api


def on_signature_emulation(emu: Any, callback: Callable[[str, int, int | None, list[tuple[str, int]]], None]) -> None:
    """``callback("module.Function", call site, return value, parameters)`` after Speakeasy
    served a call from the API's declared signature alone: no handler ran, out-only pointer
    parameters were zeroed and the return is a type's "success" (0 for HRESULT / NTSTATUS /
    counts / pointers, TRUE, a fresh handle), whatever the call asked for. ``parameters``: each
    declared parameter's name and value as the call passed it (empty if they could not be read)."""
    original = emu.emulate_api_from_signature

    def emulate_api_from_signature(dll: str, name: str, sig: Any, call_pc: int) -> Any:
        try:  # read before the call returns (its stack is popped then)
            ptr_size = emu.get_ptr_size()
            conv = se_arch.CALL_CONV_CDECL if sig.conv == "cdecl" else se_arch.CALL_CONV_STDCALL
            values = sig.values_from_slots(emu.get_func_argv(conv, sig.slot_count(ptr_size)), ptr_size)
            params = [(str(p.name), int(v)) for p, v in zip(sig.params, values, strict=False) if isinstance(v, int)]
        except Exception:
            params = []
        rv = original(dll, name, sig, call_pc)
        callback(f"{dll}.{name}", call_pc, rv, params)
        return rv

    emu.emulate_api_from_signature = emulate_api_from_signature


def callback_address(emu: Any, module: str, name: str) -> int:
    """The address of a trap that, called by guest code, is the API ``module.name`` (a COM
    method of an object the project makes: its handler is registered under that name). One trap
    per name, made once."""
    made: dict[tuple[str, str], int] = emu.__dict__.setdefault("_chainreplay_callbacks", {})
    key = (module, name)
    if key not in made:
        made[key] = int(emu.add_callback(module, name))
    return made[key]


def before_each_api_call(emu: Any, callback: Callable[..., None], *, with_site: bool = False) -> None:
    """``callback()`` when guest code has called an API, before its handler runs;
    ``callback(site)`` with ``with_site``: the call site as :func:`call_site` gives it then.

    A dispatch that runs such callbacks itself (fast mode's, ``add_before_call`` on the object
    whose method is the emulator's ``handle_import_func``) takes it instead of a wrapper: it
    runs it where the wrapper would have, first of those registered so far."""
    original = emu.handle_import_func
    add = getattr(getattr(original, "__self__", None), "add_before_call", None)
    if add is not None:
        add(callback, with_site=with_site)
        return

    def handle_import_func(dll: str, name: str) -> Any:
        if with_site:
            callback(call_site(emu))
        else:
            callback()
        return original(dll, name)

    emu.handle_import_func = handle_import_func


def call_site(emu: Any) -> int:
    """Call site of the API call being handled, as Speakeasy's ``log_api`` will report it."""
    previous = getattr(emu, "prev_pc", 0)
    if previous:
        return int(previous)
    # Speakeasy's get_ret_address: the word at the stack pointer, read straight from the engine
    # (a failing read goes Speakeasy's way, which reports the fault).
    try:
        read_word = getattr(emu.emu_eng, "read_word", None)  # fast mode's (compat_fast)
        if read_word is not None:
            return int(read_word(emu.get_stack_ptr()))
        size = int(emu.ptr_size)
        return int.from_bytes(emu.emu_eng.mem_read(emu.get_stack_ptr(), size), "little")
    except Exception:
        return int(emu.get_ret_address())


def on_profiler_records(emu: Any, callback: Callable[[str, dict[str, Any]], None]) -> None:
    """``callback(method, parameters by name)`` for each record in :data:`PROFILER_RECORDS`."""
    profiler = emu.get_profiler()
    for method in PROFILER_RECORDS:
        original = getattr(profiler, method)
        signature = inspect.signature(original)

        def wrapper(*args: Any, _m: str = method, _o: Any = original, _s: Any = signature, **kwargs: Any) -> Any:
            try:
                params = dict(_s.bind_partial(*args, **kwargs).arguments)
            except TypeError:
                params = dict(kwargs)
            callback(_m, params)
            return _o(*args, **kwargs)

        setattr(profiler, method, wrapper)


# ---- runs ----------------------------------------------------------------------------------


def schedule_exports(
    emu: Any, run_entry_point: bool, calls: list[tuple[str, int, list[int] | Callable[[], list[int]]]]
) -> None:
    """When Speakeasy prepares the module: keep or drop the entry point, then queue one run per
    export call, ``(kind, address, args)`` (args may be a function, called at that moment)."""
    original_prepare = emu.prepare_module_for_emulation

    def prepare(mod: Any, all_entrypoints: bool, entry_point: int | None = None) -> None:
        original_prepare(mod, all_entrypoints, entry_point=entry_point)
        if not run_entry_point:
            emu.run_queue.clear()
        for kind, address, args in calls:
            run = Run()
            run.start_addr = address
            run.type = kind
            run.args = args() if callable(args) else list(args)
            emu.add_run(run)

    emu.prepare_module_for_emulation = prepare


def finished_runs(emu: Any) -> list[Any]:
    return list(getattr(emu.get_profiler(), "runs", []) or [])


# ---- processes, modules and the guest's files (lineage) ------------------------------------


def object_of(emu: Any, handle: int) -> Any:
    """The kernel object a handle names (a pseudo handle: the current process or thread), or None."""
    handle &= 0xFFFFFFFFFFFFFFFF
    if handle in (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        return emu.get_current_process()
    if handle in (0xFFFFFFFE, 0xFFFFFFFFFFFFFFFE):
        return emu.get_current_thread()
    return object_of_handle(emu, handle)


def is_current_process(emu: Any, handle: int) -> bool:
    """Whether ``handle`` names the guest's own process (its pseudo handle, or a real one)."""
    obj = object_of(emu, handle)
    return obj is not None and obj is emu.get_current_process()


def process_path(emu: Any, handle: int) -> str | None:
    """The image path of the process a handle names, None for the current process or unknown."""
    obj = object_of(emu, handle)
    path = getattr(obj, "path", None)
    if not path or obj is emu.get_current_process():
        return None
    return str(path)


def module_name_at(emu: Any, address: int) -> str | None:
    module = emu.get_mod_from_addr(address)
    name = getattr(module, "emu_path", None) or getattr(module, "name", None)
    return str(name).rsplit("\\", 1)[-1] if name else None


ERROR_NOT_ENOUGH_MEMORY = 8


def queued_threads_up_to(emu: Any, limit: int) -> None:
    """At most ``limit`` threads queued to run (Speakeasy's ``max_runs``); one past it is refused
    as Windows refuses a thread it has no resources for: no handle, ERROR_NOT_ENOUGH_MEMORY."""
    emu.max_runs = limit
    original = emu.create_thread

    def create_thread(*args: Any, **kwargs: Any) -> Any:
        handle, thread = original(*args, **kwargs)
        if not thread:
            emu.set_last_error(ERROR_NOT_ENOUGH_MEMORY)
        return handle, thread

    emu.create_thread = create_thread


def binary_registry_values(emu: Any, values: dict[tuple[str, str], bytes]) -> None:
    """The scenario's REG_BINARY values as their bytes. Speakeasy's configuration carries a
    value's data as text and takes a REG_BINARY's as UTF-8, so each key it builds from its
    configuration gets the bytes put back (``values``: (key path, value name), lower case)."""
    if not values:
        return
    regman = emu.regman
    original = regman.get_key_from_config

    def get_key_from_config(path: str) -> Any:
        key = original(path)
        for value in getattr(key, "values", None) or []:
            data = values.get((str(key.get_path()).lower(), str(value.get_name() or "").lower()))
            if data is not None and value.get_type() == se_regdefs.REG_BINARY:
                value.data = base64.b64encode(data)
        return key

    regman.get_key_from_config = get_key_from_config


def crt_stream_path(emu: Any, stream: int) -> str | None:
    """The guest path of the file behind a C runtime ``FILE *`` (msvcrt fopen), if any."""
    try:
        handle = emu.api.mods["msvcrt"].file_streams.get(stream)
        path = getattr(emu.file_get(handle), "path", None) if handle is not None else None
    except Exception:
        return None
    return str(path) if path else None


def file_path_of_handle(emu: Any, handle: int) -> str | None:
    """The guest path of the file a handle (CreateFile's) names, if it names one."""
    try:
        path = getattr(emu.file_get(handle), "path", None)
    except Exception:
        return None
    return str(path) if path else None


def guest_file_data(emu: Any, path: str) -> bytes | None:
    """The current bytes of a file in the guest's file system (written by the guest or served)."""
    try:
        data = emu.get_module_data_from_emu_file(path)
        if not data:
            # A scenario file the guest has not opened yet exists only as its configuration.
            entry = emu.fileman.get_emu_file(path)
            host = getattr(entry, "path", None)
            if host:
                data = Path(host).read_bytes()
    except Exception:
        return None
    return bytes(data) if data else None


def _trace_position(emu: Any, pid: int) -> TracePosition:
    """Where a record the project makes for Speakeasy's profiler happened: the current pc."""
    return TracePosition(tick=0, tid=0, pid=pid, pc=emu.get_pc())


def write_guest_file(emu: Any, path: str, data: bytes) -> None:
    """Create (or replace) a file in the guest's file system, recorded as Speakeasy records a
    file the guest creates and writes (a create, then a write with the data)."""
    emu.fileman.create_file(path).add_data(data)
    profiler = emu.get_profiler()
    if profiler is None:
        return
    run = emu.get_current_run()
    position = _trace_position(emu, 0)
    profiler.record_file_access_event(run, position, path, se_profiler.FILE_CREATE)
    profiler.record_file_access_event(run, position, path, se_profiler.FILE_WRITE, data=data, size=len(data))


def start_guest_thread(
    emu: Any,
    function: int,
    param: int,
    suspended: bool = False,
    process_handle: int | None = None,
    args: tuple[int, ...] | None = None,
) -> tuple[int, int, int]:
    """(handle, thread id, process id) of a new thread running ``function(param)`` (or
    ``function(*args)``) in the current process (``process_handle`` None or the current-process
    pseudo handle) or in the process that handle names, recorded as Speakeasy records
    CreateThread / CreateRemoteThread; (0, 0, 0) for an unknown process handle or when the
    emulator runs no more threads."""
    current = emu.get_current_process()
    pseudo = (1 << (8 * emu.get_ptr_size())) - 1
    if process_handle is None or process_handle in (pseudo, 0xFFFFFFFF):
        process, run_type, event_type = current, "thread", THREAD_CREATE
    else:
        process = emu.get_object_from_handle(process_handle)
        if process is None or not hasattr(process, "path"):
            return 0, 0, 0
        if process is current:
            run_type, event_type = "thread", THREAD_CREATE
        else:
            name = ntpath.basename(str(process.path)).replace(".", "_")
            run_type, event_type = f"injected_thread_{name}_{process.id:x}", THREAD_INJECT
    handle, thread = emu.create_thread(function, param, process, thread_type=run_type, is_suspended=suspended)
    if not thread:
        return 0, 0, 0
    if args is not None:
        # Speakeasy's Run passes its ``args`` as the start routine's arguments (one by default).
        for run in (*emu.run_queue, *emu.suspended_runs):
            if run.thread is thread:
                run.args = tuple(args)
    profiler = emu.get_profiler()
    if profiler is not None:
        run = emu.get_current_run()
        position = _trace_position(emu, int(getattr(current, "id", 0) or 0))
        details = {"start_addr": function, "param": param, "tid": thread.id}
        profiler.record_process_event(run, position, process, event_type, details)
    return int(handle), int(thread.id), int(getattr(process, "id", 0) or 0)


SEC_IMAGE = 0x0100_0000


def pipe_key(emu: Any, handle: int) -> int:
    """What names the pipe a handle is an end of: two handles to one pipe (a mailslot and a
    writing end of it) give the same key; a handle that is no pipe's, itself."""
    try:
        pipe = emu.get_file_manager().get_pipe_from_handle(handle)
    except Exception:
        pipe = None
    return id(pipe) if pipe is not None else handle


def is_pipe(emu: Any, handle: int) -> bool:
    """Whether ``handle`` is one of Speakeasy's pipes (an anonymous pipe's ends are one handle)."""
    try:
        return emu.get_file_manager().get_pipe_from_handle(handle) is not None
    except Exception:
        return False


def open_named_mapping(emu: Any, name: str) -> int:
    """A new handle to the section ``name`` names (made by CreateFileMapping with that name), 0
    for none. Speakeasy has no OpenFileMapping: its declared signature answered a handle naming
    nothing, so mapping a view of it failed. Names compare without case; ``Local\\`` is the
    session's namespace a bare name is in."""

    def key(text: str) -> str:
        text = text.lower()
        return text[len("local\\") :] if text.startswith("local\\") else text

    try:
        fileman = emu.get_file_manager()
        found = next((m for m in list(fileman.file_maps.values()) if m.name and key(m.name) == key(name)), None)
        if found is None:
            return 0
        handle = int(found.get_handle())
        fileman.file_maps[handle] = found
        return handle
    except Exception:
        return 0


def mapped_file(emu: Any, mapping_handle: int) -> tuple[str, bool] | None:
    """(path, is an image section) of the file behind a file mapping handle, None for a
    mapping of the paging file or an unknown handle."""
    try:
        mapping = emu.get_file_manager().get_mapping_from_handle(mapping_handle)
    except Exception:
        return None
    backing = getattr(mapping, "backed_file", None)
    if backing is None or not getattr(backing, "path", None):
        return None
    return str(backing.path), _is_image_section(mapping)


IMAGE_SECTION_ATTR = "chainreplay_image"


def mark_image_section(emu: Any, section_handle: int) -> None:
    """Mark a section NtCreateSection made with SEC_IMAGE in its allocation attributes as an image
    section (Speakeasy keeps only its page protection, where CreateFileMapping's SEC_IMAGE is)."""
    try:
        mapping = emu.get_file_manager().get_mapping_from_handle(section_handle)
    except Exception:
        return
    if mapping is not None:
        setattr(mapping, IMAGE_SECTION_ATTR, True)


def _is_image_section(mapping: Any) -> bool:
    return bool(int(getattr(mapping, "prot", 0) or 0) & SEC_IMAGE) or bool(getattr(mapping, IMAGE_SECTION_ATTR, False))


def image_view_file(emu: Any, view: int) -> tuple[str, int] | None:
    """(path, offset in the file) of the image section (SEC_IMAGE) of a file whose view starts at
    ``view``, None for any other memory. Speakeasy maps an image section's view as the file's bytes
    from that offset on (the system's DLL files keep raw offsets equal to RVAs)."""
    try:
        fileman = emu.get_file_manager()
        for mapping in list(fileman.file_maps.values()):
            found = mapping.views.get(view)
            backing = getattr(mapping, "backed_file", None)
            if found is not None and backing is not None and _is_image_section(mapping):
                return str(backing.path), int(found.offset or 0)
    except Exception:
        return None
    return None


def alias_section_views(emu: Any, mapping_handle: int, view: int) -> None:
    """Views of one section at the same offset show the same bytes, as on Windows (a payload
    written through a writable view runs from an executable one). Speakeasy maps each view as
    memory of its own and copies the other views' bytes only when it maps it; here the views of a
    section with the same offset and size are put on one host buffer (Unicorn ``mem_map_ptr``),
    kept on the mapping object for as long as it lives."""
    try:
        mapping = emu.get_file_manager().get_mapping_from_handle(mapping_handle)
        mine = mapping.views[view]
    except Exception:
        return
    peers = [b for b, v in mapping.views.items() if v.offset == mine.offset and v.size == mine.size]
    if len(peers) < 2 or mine.size <= 0 or mine.size % 0x1000:
        return
    backings: dict[tuple[int, int], tuple[Any, set[int]]] = mapping.__dict__.setdefault("chainreplay_views", {})
    engine = unicorn_of(emu)
    buffer, remapped = backings.get((mine.offset, mine.size), (None, set()))
    if buffer is None:
        first = next(b for b in peers if b != view)
        buffer = ctypes.create_string_buffer(bytes(engine.mem_read(first, mine.size)), mine.size)
        backings[(mine.offset, mine.size)] = (buffer, remapped)
    for base in peers:
        if base in remapped:
            continue
        perms = next((p for begin, end, p in engine.mem_regions() if begin <= base <= end), None)
        if perms is None:
            continue
        engine.mem_unmap(base, mine.size)
        engine.mem_map_ptr(base, mine.size, perms, ctypes.addressof(buffer))
        remapped.add(base)


def call_guest_after_api(emu: Any, function: int, args: list[int], result_from_callback: bool = False) -> None:
    """Call guest ``function(*args)`` when the API being handled returns, then return to its
    caller with the API's value: Speakeasy's ``ApiHandler.setup_callback``, for the project's
    handlers. Several calls made by one API run one after the other. With
    ``result_from_callback``, a callback returning FALSE ends them and the API returns FALSE
    (``EnumWindows``)."""
    run = emu.get_current_run()
    frame = emu._active_api_frame
    if run is None or frame is None:
        raise RuntimeError("no API call is being handled")
    if result_from_callback:
        _take_callback_results(emu)
        frame.chainreplay_result_from_callback = True
    if any(item is frame for item in run.api_callbacks):
        frame.pending.append((function, tuple(args)))
        return
    emu.start_api_callback(frame, function, list(args))
    run.api_callbacks.append(frame)


def queue_api_callback(emu: Any, function: int, args: list[int]) -> None:
    """Call guest ``function(*args)`` after the callbacks of the API call whose callback is
    returning now (from :func:`after_each_api_callback`'s callback): one more of them."""
    run = emu.get_current_run()
    if run is None or not run.api_callbacks:
        raise RuntimeError("no API callback is returning")
    run.api_callbacks[-1].pending.append((function, tuple(args)))


def _take_callback_results(emu: Any) -> None:
    """Once per emulator: when a callback marked ``chainreplay_result_from_callback`` returns
    FALSE, the rest are dropped and the API returns FALSE."""
    if getattr(emu, "_chainreplay_callback_results", False):
        return
    original = emu._continue_api_callback

    def continue_api_callback() -> None:
        run = emu.get_current_run()
        frame = run.api_callbacks[-1] if run is not None and run.api_callbacks else None
        if frame is not None and getattr(frame, "chainreplay_result_from_callback", False):
            returned = int(emu.reg_read("eax")) & 0xFFFFFFFF  # a BOOL
            if not returned:
                frame.result = 0
                frame.pending.clear()
        original()

    emu._continue_api_callback = continue_api_callback
    emu._chainreplay_callback_results = True


# Where a callback started by an API returns to (Speakeasy's callback handler address).
API_CALLBACK_RETURN = se_wincommon.API_CALLBACK_HANDLER_ADDR


def called_back_function(emu: Any) -> int | None:
    """The function the innermost API callback of the current run called, or None."""
    run = emu.get_current_run()
    frames = getattr(run, "api_callbacks", None) if run is not None else None
    function = getattr(frames[-1], "function", None) if frames else None
    return int(function) if function is not None else None


def frame_function(emu: Any, ret: int) -> int | None:
    """The function whose frame code with return address ``ret`` runs in, when the engine made
    that frame: the function an API called back (``ret`` is the callback handler's address) or
    the function the current run started at (a thread's start routine, a TLS callback, an entry
    point: ``ret`` is the run's return hook). None for a return address guest code pushed."""
    if ret == API_CALLBACK_RETURN:
        return called_back_function(emu)
    if ret == getattr(emu, "return_hook", None):
        run = emu.get_current_run()
        start = getattr(run, "start_addr", None) if run is not None else None
        return int(start) if start is not None else None
    return None


# Speakeasy's run type of a module initialiser it runs before the program's entry point (a DllMain
# of a DLL the program imports, a TLS callback): ``dependency.<module>.dll_entry`` / ``.tls_callback``.
INITIALIZER_RUN_PREFIX = "dependency."


def initializer_start(emu: Any) -> int | None:
    """Where the current run starts if it is a module initialiser the loader runs before the
    program's entry point (an imported DLL's DllMain, a TLS callback), else None."""
    run = emu.get_current_run()
    if run is None or not str(getattr(run, "type", "") or "").startswith(INITIALIZER_RUN_PREFIX):
        return None
    start = getattr(run, "start_addr", None)
    return int(start) if start is not None else None


def tag_api_frame(emu: Any, tag: Any) -> None:
    """Mark the API call being handled (its callbacks) with ``tag``, for :func:`after_each_api_callback`."""
    frame = emu._active_api_frame
    if frame is not None:
        frame.chainreplay_tag = tag


def after_each_api_callback(emu: Any, callback: Callable[[Any, int], int | None]) -> None:
    """``callback(tag, returned)`` when a callback of an API call tagged by :func:`tag_api_frame`
    returns (``returned``: its value in the return register); a value it gives replaces the
    API's own result, when that callback was the last."""
    original = emu._continue_api_callback

    def continue_api_callback() -> None:
        run = emu.get_current_run()
        frame = run.api_callbacks[-1] if run is not None and run.api_callbacks else None
        tag = getattr(frame, "chainreplay_tag", None) if frame is not None else None
        if frame is not None and tag is not None:
            returned = int(emu.reg_read("eax")) & 0xFFFFFFFF
            result = callback(tag, returned)
            if result is not None and not frame.pending:
                frame.result = result
        original()

    emu._continue_api_callback = continue_api_callback


def return_from_callback(emu: Any, argc: int, value: int) -> None:
    """Return from the (stdcall) API call being handled, ``argc`` arguments, with ``value``, to
    where the API callback it was called from returns, not to its caller (``ExitThread`` in a
    thread a wait runs: that callback ends there). Speakeasy then leaves the call's return alone
    (the pc moved)."""
    emu.do_call_return(argc, API_CALLBACK_RETURN, value, conv=se_arch.CALL_CONV_STDCALL)


# Registers a function keeps for its caller (the Windows x64 and x86 conventions).
NONVOLATILE_REGISTERS = {
    8: ("rbx", "rbp", "rsi", "rdi", "r12", "r13", "r14", "r15"),
    4: ("ebx", "ebp", "esi", "edi"),
}


def nonvolatile_registers(emu: Any) -> dict[str, int]:
    return {name: int(emu.reg_read(name)) for name in NONVOLATILE_REGISTERS[emu.get_ptr_size()]}


def restore_registers(emu: Any, values: dict[str, int]) -> None:
    for name, value in values.items():
        emu.reg_write(name, value)


def queued_thread_runs(emu: Any) -> list[Any]:
    """The queued, not yet started runs of threads the current process started in itself
    (Speakeasy's "thread" runs), in the order they would run."""
    current = emu.get_current_process()
    return [
        run
        for run in emu.run_queue
        if run.type == "thread" and run.thread is not None and run.process_context in (None, current)
    ]


def queued_thread_run(emu: Any, thread: Any) -> Any:
    """The queued run of ``thread`` among :func:`queued_thread_runs`, or None."""
    if thread is None:
        return None
    return next((run for run in queued_thread_runs(emu) if run.thread is thread), None)


# Speakeasy's run types of a thread started in another process (compat.start_thread's, its own
# CreateRemoteThread's).
REMOTE_THREAD_RUN_PREFIXES = ("injected_thread_", "thread.")


def queued_remote_thread_run(emu: Any, thread: Any) -> tuple[Any, Any] | None:
    """(run, process) of a queued, not yet started thread the current process started in another
    process (CreateRemoteThread, NtCreateThreadEx, RtlCreateUserThread), or None."""
    if thread is None:
        return None
    current = emu.get_current_process()
    for run in emu.run_queue:
        process = run.process_context
        if (
            run.thread is thread
            and process is not None
            and process is not current
            and str(run.type).startswith(REMOTE_THREAD_RUN_PREFIXES)
        ):
            return run, process
    return None


def unqueue_run(emu: Any, run: Any) -> None:
    emu.run_queue[:] = [queued for queued in emu.run_queue if queued is not run]


CDECL = se_arch.CALL_CONV_CDECL


def end_thread_run(emu: Any) -> None:
    """End the current run as Speakeasy's ``ExitThread`` does (a thread's run: that thread)."""
    emu.exit_process()


def current_thread(emu: Any) -> Any:
    return emu.get_current_thread()


def current_process(emu: Any) -> Any:
    return emu.get_current_process()


def set_current_thread(emu: Any, thread: Any) -> None:
    emu.set_current_thread(thread)


class _NoCollection(types.ModuleType):
    """``gc`` as pefile sees it while :func:`pe_loads_without_collection` is active: the module's
    every attribute but ``collect``, which collects nothing."""

    def __getattr__(self, name: str) -> Any:
        return getattr(gc, name)

    @staticmethod
    def collect(generation: int = 2) -> int:
        return 0


_PEFILE_GC = _NoCollection("gc")


@contextlib.contextmanager
def pe_loads_without_collection() -> Iterator[None]:
    """pefile's explicit full collections skipped while Speakeasy loads a PE.

    pefile runs ``gc.collect()`` each time it replaces a PE's data (``set_data_bytes``: once per
    relocation, when a DLL loads away from its preferred base): ~4 ms in the emulation child, a
    walk of everything alive that is not frozen, to free memory a replay does not miss. The
    process's own collector still runs as it is configured; nothing else in pefile changes."""
    if getattr(pefile, "gc", None) is not gc:  # another pefile, or already active
        yield
        return
    pefile.gc = _PEFILE_GC  # type: ignore[attr-defined]
    try:
        yield
    finally:
        pefile.gc = gc  # type: ignore[attr-defined]


def map_guest_pe(emu: Any, data: bytes, emu_path: str) -> Any:
    """Map a PE the guest wrote as a loadable module, as Speakeasy maps a native DLL.

    Afterwards Speakeasy's own LoadLibrary finds it by name and runs its initialisers.
    """

    def make_loader(address: int | None) -> Any:
        # An image with no fixups to make is moved as it is (what ASLR does with one).
        moved = pe_headers.moved_without_fixups(data, address) if address is not None else None
        return PeLoader(data=moved or data, base_override=address, emu_path=emu_path)

    with pe_loads_without_collection():
        image = emu._make_image_at_free_base(make_loader, None)
    image.name = se_module_name(emu_path)
    module = emu.load_image(image)
    if module.is_dll() and getattr(image, "source", "") == "guest_pe" and hasattr(emu, "_guest_dependencies"):
        module._initialization = {}
        emu._guest_dependencies.append(module)
    return module


# ---- the guest CPU -------------------------------------------------------------------------


def add_cpuid_hook(unicorn: Any, callback: Callable[[Any, Any], bool]) -> int:
    """``callback(uc, user)`` on every CPUID; returning True skips the instruction."""
    from unicorn import x86_const

    return int(unicorn.hook_add(uc.UC_HOOK_INSN, callback, None, 1, 0, x86_const.UC_X86_INS_CPUID))


def loading_images(emu: Any) -> bool:
    """Whether an image load is in progress (Speakeasy's ``load_image`` counts its nesting): what
    the memory manager does meanwhile is the loader's, not the guest's."""
    return bool(getattr(emu, "_load_depth", 0))


def add_syscall_hook(unicorn: Any, callback: Callable[[Any, Any], None]) -> int:
    """``callback(uc, user)`` on every x64 ``syscall`` instruction (Unicorn continues after it,
    or where the callback moved the program counter)."""
    from unicorn import x86_const

    return int(unicorn.hook_add(uc.UC_HOOK_INSN, callback, None, 1, 0, x86_const.UC_X86_INS_SYSCALL))


def ntdll_function_exports(emu: Any) -> list[tuple[str, int, int]]:
    """(name, address, API trap) of each named function export of the guest's ntdll that has a
    trap (Speakeasy's synthetic image); empty when ntdll is not such an image."""
    registry = emu.api_registry
    for module in emu.modules:
        if ntpath.basename(str(getattr(module, "emu_path", "") or "")).lower() != "ntdll.dll":
            continue
        found = []
        for export in module.get_exports():
            entry = registry.entries.get(export.address) if export.address else None
            trap = getattr(entry, "trap", None)
            if export.name and trap and getattr(export, "kind", "function") == "function" and not export.forwarder:
                found.append((str(export.name), int(export.address), int(trap)))
        return found
    return []


def add_sysenter_hook(unicorn: Any, callback: Callable[[Any, Any], None]) -> int:
    """``callback(uc, user)`` on every x86 ``sysenter`` instruction (as ``add_syscall_hook``:
    Unicorn continues after it, or that far past where the callback moved the program counter)."""
    from unicorn import x86_const

    return int(unicorn.hook_add(uc.UC_HOOK_INSN, callback, None, 1, 0, x86_const.UC_X86_INS_SYSENTER))


def add_code_hook_over(unicorn: Any, begin: int, end: int, callback: Callable[[Any, int, int, Any], None]) -> int:
    """A code hook on each instruction from ``begin`` to ``end`` (inclusive); code elsewhere
    runs with no callback."""
    return int(unicorn.hook_add(uc.UC_HOOK_CODE, callback, None, begin, end))


def add_code_hook_at(unicorn: Any, address: int, callback: Callable[[Any, int, int, Any], None]) -> int:
    """A code hook on the one instruction at ``address`` (Unicorn checks the range when it
    translates, so other code runs with no callback)."""
    return int(unicorn.hook_add(uc.UC_HOOK_CODE, callback, None, address, address))


# ---- faults inside API handlers ------------------------------------------------------------


def watch_guest_memory_faults(emu: Any, on_fault: Callable[[int, int, str], None]) -> None:
    """``on_fault(pc, address, "read" | "write")`` when a host-side read or write of guest memory
    fails (an API handler following a bad pointer); ``address`` is the first unmapped byte."""
    original_read, original_write = emu.mem_read, emu.mem_write

    def first_unmapped(address: int, size: int) -> int:
        page = address & ~0xFFF
        while page < address + max(size, 1):
            if emu.get_address_map(max(page, address)) is None:
                return max(page, address)
            page += 0x1000
        return address

    def mem_read(addr: int, size: int) -> Any:
        try:
            return original_read(addr, size)
        except uc.UcError:
            on_fault(int(emu.get_pc()), first_unmapped(addr, size), "read")
            raise

    def mem_write(addr: int, data: bytes) -> Any:
        try:
            return original_write(addr, data)
        except uc.UcError:
            on_fault(int(emu.get_pc()), first_unmapped(addr, len(data)), "write")
            raise

    emu.mem_read = mem_read
    emu.mem_write = mem_write


def api_at_trap(emu: Any, pc: int) -> str | None:
    """``module.Function`` whose API stub sits at ``pc``, if any."""
    entry = emu.api_registry.traps.get(pc)
    if entry is None:
        return None
    module = getattr(getattr(entry, "module", None), "name", "") or ""
    return f"{str(module).lower()}.{entry.name}" if module else str(entry.name)


def resolve_export(emu: Any, module: Any, name: str) -> int:
    """The address an import of ``module!name`` binds to, forwarders followed (0 if none)."""
    return int(emu.resolve_export(module, name) or 0)


# ---- child processes (children.py) ------------------------------------------------------------


def process_objects(emu: Any) -> list[Any]:
    """Every process object the emulator made for the guest: those CreateProcess queued as
    children (``child_processes``, which Speakeasy runs only with ``emulate_children``) and the
    others (WinExec, ShellExecute)."""
    return [*getattr(emu, "child_processes", []), *getattr(emu, "processes", [])]


def set_process_command_line(process: Any, command_line: str) -> None:
    """The command line GetCommandLine returns in that process (Speakeasy: ``Process.cmdline``)."""
    process.cmdline = command_line


def crypt_hash(emu: Any, handle: int) -> Any:
    """The hashlib object behind a CryptoAPI hash handle (Speakeasy's advapi32 keeps them:
    ``CryptCreateHash`` / ``CryptHashData``), or None."""
    try:
        return emu.api.load_api_handler("advapi32").hash_objects.get(handle)
    except Exception:
        return None


def resolve_pseudo_handles(emu: Any) -> None:
    """Speakeasy's handle lookup (every handler's) resolves the pseudo handles: (HANDLE)-1 the
    current process, (HANDLE)-2 the current thread, at either width."""
    original = emu.get_object_from_handle

    def get_object_from_handle(handle: Any) -> Any:
        if (
            isinstance(handle, int)
            and handle & 0xFFFFFFFF in (0xFFFFFFFF, 0xFFFFFFFE)
            and handle >> 32 in (0, 0xFFFFFFFF)
        ):
            return emu.get_current_process() if handle & 1 else emu.get_current_thread()
        return original(handle)

    emu.get_object_from_handle = get_object_from_handle


def registry_value_missing(emu: Any, handle: int, name: str) -> bool:
    """Whether the open key ``handle`` names exists and has no value ``name`` ("" the default)."""
    try:
        key = emu.reg_get_key(handle=handle)
    except Exception:
        return False
    return key is not None and key.get_value(name) is None


def new_handle_to(emu: Any, obj: Any) -> int:
    """A new handle to a kernel object (a process, a thread, an event, ...), 0 when it is none."""
    try:
        return int(emu.get_object_handle(obj) or 0)
    except Exception:
        return 0


def current_directory(emu: Any) -> str:
    """The current directory as GetCurrentDirectory answers it."""
    return str(emu.get_cd() or "")


def highest_handle(emu: Any) -> int:
    """Past every handle value Speakeasy has given out so far (each kind counts up on its own)."""
    allocator = getattr(emu, "handle_allocator", None)
    values = [v for v in vars(allocator).values() if isinstance(v, int)] if allocator is not None else []
    return max(values, default=0)


def object_of_handle(emu: Any, handle: int) -> Any:
    """The object a real (not pseudo) handle names, or None."""
    try:
        return emu.get_object_from_handle(handle)
    except Exception:
        return None


def main_thread(process: Any) -> Any:
    threads = getattr(process, "threads", None) or []
    return threads[0] if threads else None


def thread_context(thread: Any) -> Any:
    """The context object of a thread (SetThreadContext replaces it: ``Thread.set_context``)."""
    return getattr(thread, "ctx", None)


def context_start(context: Any, x64: bool) -> int:
    """Where a resumed thread with this context starts, as Speakeasy's ``ResumeThread`` reads it:
    Rip (else Rcx, the entry RtlUserThreadStart is given) on x64, Eip (else Eax) on x86; 0 if
    the context has neither."""
    try:
        if x64:
            return int(getattr(context, "Rip", 0) or getattr(context, "Rcx", 0) or 0)
        return int(getattr(context, "Eip", 0) or getattr(context, "Eax", 0) or 0)
    except (TypeError, ValueError):
        return 0


def suspend_count(thread: Any) -> int:
    return int(getattr(thread, "suspend_count", 0) or 0)


def set_suspend_count(thread: Any, count: int) -> None:
    thread.suspend_count = count


def range_free(emu: Any, base: int, size: int) -> bool:
    """Whether nothing is mapped in [base, base + size)."""
    free, _ = emu.get_valid_ranges(size, addr=base)
    return bool(free == base)


def run_process_image(emu: Any, process: Any, module: Any, command_line: str) -> int | None:
    """Run a process's image mapped as ``module`` (TLS callbacks, then the entry point) in that
    process, with its command line, its main thread and a PEB of its own, until its runs (and
    the threads it starts) are done: what Speakeasy's ``run_module`` does for each child with
    ``emulate_children``, on chainreplay's run queue. The C runtime's ``main`` arguments come
    from the command line (``get_argv`` reads ``argv`` first: the parent's, emptied). The entry
    point's return value (Speakeasy's ``Run.ret_val``), None if it did not return."""
    _adopt_image(process, module)
    thread = main_thread(process)
    runs = []
    for kind, address, args in process_entry_calls(emu, module):
        run = Run()
        run.start_addr = address
        run.type = kind or f"child_process.{ntpath.basename(str(process.path))}"
        run.args = args
        run.process_context = process
        run.thread = thread
        emu.add_run(run)
        runs.append(run)
    emu.command_line = command_line
    emu.argv = []
    emu.start()
    returned = getattr(runs[-1], "ret_val", None)
    return int(returned) & 0xFFFFFFFF if returned is not None else None


@dataclass
class ProcessState:
    """What :func:`enter_process` changed, to put back: the process and thread that ran, the
    command line, and the TEB's bytes (one TEB address serves every thread)."""

    process: Any
    thread: Any
    command_line: Any
    argv: Any
    teb: int
    teb_bytes: bytes


# The tag of the TEB's pages past Speakeasy's first (compat_blocks.whole_teb_mapped); Speakeasy
# appends the address to a map's tag.
TEB_TAIL_TAG = "emu.segment.teb_tail"


def is_teb_tail(mapped: Any) -> bool:
    """Whether a Speakeasy memory map is the TEB's pages past its first."""
    return mapped is not None and str(getattr(mapped, "tag", "") or "").startswith(TEB_TAIL_TAG)


def _saved_state(emu: Any) -> ProcessState:
    teb = int(emu.fs_addr if emu.get_ptr_size() == 4 else emu.gs_addr)
    mapped = emu.get_address_map(teb)
    size = int(mapped.base + mapped.size - teb) if mapped is not None else 0
    tail = emu.get_address_map(teb + size) if size else None
    if tail is not None and is_teb_tail(tail):
        size += int(tail.size)  # the TEB's pages past the first (compat_blocks.whole_teb_mapped)
    return ProcessState(
        emu.get_current_process(),
        emu.get_current_thread(),
        getattr(emu, "command_line", None),
        getattr(emu, "argv", None),
        teb,
        bytes(emu.mem_read(teb, size)) if size else b"",
    )


def _new_teb(emu: Any, thread: Any, process: Any) -> None:
    """``thread`` becomes the current thread with a TEB of its own (at the one TEB address)."""
    emu.set_current_thread(thread)
    emu.init_teb(thread, process.peb)
    with contextlib.suppress(Exception):
        emu.init_tls(thread)


def enter_thread(emu: Any, thread: Any) -> ProcessState:
    """Make ``thread`` (of the current process) the current thread inside the API call being
    handled (a wait runs it there), with a TEB of its own, as Speakeasy's run set-up gives each
    thread: its exception list, TLS slots, last error and ids; :func:`leave_process` puts the
    caller's back."""
    state = _saved_state(emu)
    _new_teb(emu, thread, emu.get_current_process())
    return state


def enter_process(
    emu: Any, process: Any, module: Any = None, command_line: str | None = None, thread: Any = None
) -> ProcessState:
    """Make ``process`` the current process inside the API call being handled (a wait runs a
    child, or a thread injected into another process, there), ``thread`` (its main thread by
    default) the current thread: what :func:`run_process_image` gets from Speakeasy's run set-up,
    with the TEB the caller's to put back (:func:`leave_process`). A child's image ``module`` and
    ``command_line`` become the process's."""
    state = _saved_state(emu)
    if module is not None:
        _adopt_image(process, module)
    thread = thread if thread is not None else main_thread(process)
    emu.alloc_peb(process)
    emu.set_current_process(process)
    if thread is not None:
        _new_teb(emu, thread, process)
    if command_line is not None:
        emu.command_line = command_line
        emu.argv = []
    return state


def leave_process(emu: Any, state: ProcessState) -> None:
    """Undo :func:`enter_process` or :func:`enter_thread`."""
    if state.teb_bytes:
        emu.mem_write(state.teb, state.teb_bytes)
    emu.set_current_process(state.process)
    emu.set_current_thread(state.thread)
    emu.command_line = state.command_line
    emu.argv = state.argv


def _adopt_image(process: Any, module: Any) -> None:
    """``module`` is ``process``'s image (its PEB image base, ``GetModuleHandle(NULL)``)."""
    process.pe = module
    process.base = int(module.base)


def process_entry_calls(emu: Any, module: Any) -> list[tuple[str, int, list[int]]]:
    """(run kind, address, arguments) of what starting a process's image runs, in order: its TLS
    callbacks (DLL_PROCESS_ATTACH; kind ``child_tls_callback_N``), then its entry point (kind "")."""
    calls: list[tuple[str, int, list[int]]] = []
    for i, callback in enumerate(module.get_tls_callbacks() or []):
        if module.base < callback < module.base + module.image_size:
            calls.append((f"child_tls_callback_{i}", int(callback), [int(module.base), 1, 0]))
    args = [int(emu.mem_map(8, tag=f"emu.module_arg_{i}")) for i in range(4)]
    calls.append(("", int(module.base) + int(module.ep), args))
    return calls


def map_guest_dll_for_process(emu: Any, data: bytes, emu_path: str) -> Any:
    """Map a guest DLL a system program loads (rundll32, regsvr32): as :func:`map_guest_pe`, but
    its DllMain is the caller's to run in that program's process (not queued as a dependency of
    the current one)."""
    module = map_guest_pe(emu, data, emu_path)
    dependencies = getattr(emu, "_guest_dependencies", None)
    if dependencies is not None and module in dependencies:
        dependencies.remove(module)
    return module


def export_address(emu: Any, module: Any, name: str) -> int:
    """The address of a module's export ``name`` (``#n``: the ordinal n), forwarders followed;
    0 when it has none."""
    for entry in module.get_exports() or []:
        if name.startswith("#"):
            if str(getattr(entry, "ordinal", "")) != name[1:]:
                continue
        elif entry.name != name:
            continue
        if getattr(entry, "forwarder", None):
            return resolve_export(emu, module, str(entry.name)) if entry.name else 0
        return int(entry.address)
    return 0


def new_process(emu: Any, path: str, command_line: str) -> Any:
    """A process object for a program a system program started (``cmd /c x.exe``)."""
    return emu.create_process(path=f'"{path}"', cmdline=command_line)


def guest_string(emu: Any, text: str, wide: bool) -> int:
    """The address of ``text`` written (NUL-terminated) into new guest memory."""
    data = text.encode("utf-16-le") + b"\0\0" if wide else text.encode("latin-1", "replace") + b"\0"
    address = int(emu.mem_map(len(data) + 16, tag="emu.child_arg_string"))
    emu.mem_write(address, data)
    return address


def run_process_calls(emu: Any, process: Any, calls: list[tuple[str, int, list[int]]], command_line: str) -> None:
    """Run functions one after another in ``process`` (a DLL's DllMain, then the exports a system
    program calls), each ``(kind, address, arguments)``, with that process's command line and
    main thread: as :func:`run_process_image` runs a program's entry point."""
    thread = main_thread(process)
    for kind, address, args in calls:
        run = Run()
        run.start_addr = address
        run.type = kind
        run.args = list(args)
        run.process_context = process
        run.thread = thread
        emu.add_run(run)
    emu.command_line = command_line
    emu.argv = []
    emu.start()


def guest_environment(emu: Any) -> dict[str, str]:
    """The guest's environment variables, names lower-case (Speakeasy's ``env``)."""
    try:
        return {str(k).lower(): str(v) for k, v in (emu.get_env() or {}).items()}
    except Exception:
        return {}


def resume_thread(emu: Any, thread: Any) -> int:
    """Resume a thread as Speakeasy's ``ResumeThread`` does for one whose runs wait (a thread the
    guest created suspended): its previous suspend count."""
    count = suspend_count(thread)
    if count == 0 and any(r.thread is thread for r in getattr(emu, "suspended_runs", [])):
        count = 1  # Speakeasy keeps a thread created suspended as a waiting run, its count 0
    if count > 0:
        thread.suspend_count = count - 1
    if count <= 1:
        emu.resume_thread(thread)
    return count
