"""Setting a replay up in Speakeasy: loading the target, the project's API handlers, the runs."""

from __future__ import annotations

import functools
import ntpath
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pefile
import speakeasy
from speakeasy.config import get_default_config_dict
from speakeasy.winenv import arch as se_arch

from emulator import pe
from emulator.apis import HANDLERS, GuestApi, cryptoapi
from emulator.apis.core import ApiHandler, GuestObject, MemoryRegion
from emulator.backends.base import BackendInputError
from emulator.backends.speakeasy import (
    compat,
    compat_blocks,
    compat_dispatch,
    compat_fast,
    compat_start,
    disks,
    exceptions,
    guestdirs,
    images,
    lasterror,
    mailslots,
    ntmemory,
    printf,
    procapis,
    procview,
    regenum,
    signatures,
)
from emulator.backends.speakeasy.config import ALWAYS_LOADED, build_speakeasy_config
from emulator.backends.speakeasy.guest import TEB_SIZE
from emulator.backends.speakeasy.loader import DllSearch
from emulator.backends.speakeasy.sources import read_c_string
from emulator.backends.speakeasy.sysfiles import SystemFiles
from emulator.environment import machine_variables
from emulator.lifecycle import collector_paused
from emulator.limits import MAX_QUEUED_THREADS
from emulator.plan import ReplayPlan, StringArg, binary_value
from emulator.responders.router import NetworkLimitReached
from emulator.services import ReplayServices

# Registry APIs whose first argument may be a sign-extended predefined key.
PREDEFINED_KEY_APIS = (
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
)


# Object names longer than this (characters) are not read further (MAX_PATH).
MAX_OBJECT_NAME = 260
ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
MAX_VALUE_NAME = 16383  # a registry value name's characters at most
MAX_KEPT_VALUE_BYTES = 1 << 20  # of a missing value's buffer, put back as it was
ERROR_INVALID_PARAMETER = 87


# APIs that fail with INVALID_HANDLE_VALUE, which Speakeasy returns as 0xFFFFFFFF on x64 too.
INVALID_HANDLE_APIS = (
    "CreateFileA",
    "CreateFileW",
    "CreateNamedPipeA",
    "CreateNamedPipeW",
    "FindFirstFileA",
    "FindFirstFileW",
    "FindFirstFileExA",
    "FindFirstFileExW",
    "CreateToolhelp32Snapshot",
)
INVALID_HANDLE_32 = 0xFFFFFFFF
INVALID_HANDLE_64 = 0xFFFFFFFFFFFFFFFF


class SpeakeasyMemory:
    """Guest memory for the project's API handlers (:class:`emulator.apis.core.GuestMemory`)."""

    def __init__(self, emu: Any) -> None:
        self.emu = emu
        self.ptr_size = emu.get_ptr_size()
        # The address space VirtualQuery describes (vmspace.AddressSpace), set by the backend.
        self.space: Any = None
        # Told the pc a loaded CONTEXT resumes at (NtContinue), set by the backend.
        self.on_context_loaded: Callable[[int], None] | None = None

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.emu.mem_read(address, size))

    def write(self, address: int, data: bytes) -> None:
        self.emu.mem_write(address, data)

    def alloc(self, size: int, tag: str) -> int:
        return int(self.emu.mem_map(size, tag=tag))

    def set_last_error(self, code: int) -> None:
        self.emu.set_last_error(code)

    def write_file(self, path: str, data: bytes) -> None:
        compat.write_guest_file(self.emu, path, data)

    def object_of(self, handle: int) -> GuestObject | None:
        emu = self.emu
        obj = compat.object_of(emu, handle)
        if obj is None:
            return GuestObject("other") if compat_blocks.is_registry_key(emu, handle) else None
        if compat_blocks.is_process(obj):
            compat_blocks.processes(emu)  # gives every process its parent
            return GuestObject("process", obj.pid, getattr(obj, "ppid", 0), compat_blocks.peb_address(obj))
        if compat_blocks.is_thread(obj):
            owner = getattr(obj, "process", None) or emu.get_current_process()
            teb = getattr(obj, "teb", None)
            return GuestObject(
                "thread", obj.tid, int(getattr(owner, "pid", 0) or 0), teb=int(getattr(teb, "address", 0) or 0)
            )
        return GuestObject("other")

    def query_memory(self, address: int) -> MemoryRegion | None:
        return None if self.space is None else self.space.query(address)

    def current_thread_id(self) -> int:
        thread = self.emu.get_current_thread()
        return int(getattr(thread, "tid", 0) or 0)

    def load_context(self, address: int) -> bool:
        x64 = self.ptr_size == 8
        try:
            data = bytes(self.emu.mem_read(address, exceptions.context_size(x64)))
        except Exception:
            return False
        exceptions.load_context(compat.unicorn_of(self.emu), x64, data)
        if self.on_context_loaded is not None:
            self.on_context_loaded(int(self.emu.get_pc()))
        return True

    def call_guest(self, function: int, args: list[int], result_from_callback: bool = False) -> None:
        compat.call_guest_after_api(self.emu, function, args, result_from_callback)

    def start_thread(
        self,
        function: int,
        param: int,
        suspended: bool = False,
        process: int | None = None,
        args: tuple[int, ...] | None = None,
    ) -> tuple[int, int, int]:
        return compat.start_guest_thread(self.emu, function, param, suspended, process, args)


@dataclass
class LoadedTarget:
    se: Any
    emu: Any
    arch: str
    kind: str  # "pe" or "shellcode"
    name: str
    base: int
    size: int
    data: bytes
    module: Any = None
    shellcode_address: int = 0
    # A .NET assembly (CLR runtime header): only its native stub runs (pe.has_clr_runtime_header).
    managed: bool = False
    # Windows' DLL search over the guest's files (imports were bound through it).
    dll_search: DllSearch | None = None


def warm_steps(arches: tuple[str, ...] = ("x64", "x86")) -> Iterator[Callable[[], None]]:
    """Small steps that read the engine's once-per-process tables ahead of a replay: the
    signature database, then one decoy module of Speakeasy's default configuration (and the core
    DLLs) per step, every x64 module before x86, then the event models, the MIME types and the
    disassembler's library (a pre-started child stops between two steps when its plan arrives:
    emulator/prestart.py)."""
    modules = get_default_config_dict()["modules"]
    names = [entry["name"] for entry in (*modules["user_modules"], *modules["system_modules"])]
    names += [name for name in images.ALWAYS_BUILT if name not in names]
    yield compat_start.read_signature_database
    for arch in arches:
        for name in names:
            yield functools.partial(compat_start.read_engine_tables, name, arch)
    yield build_event_models
    yield read_mime_types
    yield load_disassembler


def build_event_models() -> None:
    """Build Speakeasy's event records' pydantic models (and those its profiler and artifact
    store name), which its import leaves to be built when first used (models.py): a replay
    builds those of what its guest does (a file written, a key opened...), ~1-2 ms each; built
    here, in a warm process, its forks find them built."""
    import speakeasy.artifacts
    import speakeasy.profiler
    from pydantic import BaseModel
    from speakeasy.profiler_events import Event

    # the event records, and the models the profiler and its artifact store name (DataArtifact)
    named = [v for m in (speakeasy.artifacts, speakeasy.profiler) for v in vars(m).values()]
    pending: list[type] = [Event, *(v for v in named if isinstance(v, type) and issubclass(v, BaseModel))]
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if not getattr(model, "__pydantic_complete__", True):
            model.model_rebuild()  # type: ignore[attr-defined]


def load_disassembler() -> None:
    """Load Capstone now, which the engine's import leaves to its first use (lazyimport.py):
    in a warm process, a replay that meets an error its forks disassemble finds it loaded."""
    from emulator.lazyimport import load

    module = sys.modules.get("capstone")
    if module is not None:
        load(module)


def read_mime_types() -> None:
    """Read the host's MIME type tables now (``mimetypes.init``, which the first
    ``guess_type`` of a process does otherwise: a served file's type, emulator/responders)."""
    import mimetypes

    if not mimetypes.inited:
        mimetypes.init()


def load_target(plan: ReplayPlan) -> LoadedTarget:
    with collector_paused():
        return _load_target(plan)


def _load_target(plan: ReplayPlan) -> LoadedTarget:
    data = Path(plan.target_path).read_bytes()
    images.install()
    lasterror.install()
    disks.wrap_create_file()
    mailslots.wrap_create_file()
    signatures.install()
    compat_start.scan_handlers_once()
    printf.install()
    # argv also reaches the C runtime's main() arguments (__getmainargs), as Speakeasy's --argv.
    se = speakeasy.Speakeasy(config=build_speakeasy_config(plan), argv=list(plan.guest.argv))
    searches: list[DllSearch] = []

    def on_created(emu: Any) -> None:
        system_files = SystemFiles(emu)
        system_files.install()
        search = DllSearch(emu, plan.emu_path)
        search.system_file = system_files.is_system_file
        search.install()
        searches.append(search)
        compat_fast.use_fast_address_search(emu)
        compat.queued_threads_up_to(emu, MAX_QUEUED_THREADS)
        compat_start.link_peb_once(emu)
        compat_blocks.teb_whole_from_the_start(emu, TEB_SIZE)
        compat_blocks.loader_list_as_loaded(emu, ALWAYS_LOADED)
        compat_start.map_sections_apart(emu)
        compat_start.register_modules_at_once(emu)
        compat_start.index_data_entries(emu)
        compat_start.find_modules_by_name(emu)
        compat_dispatch.handlers_of_forwarding_dlls(emu)
        compat_start.disassembler_when_first_used(emu)
        compat.binary_registry_values(
            emu,
            {
                (key.path.lower(), value.name.lower()): binary_value(value.data)
                for key in plan.registry
                for value in key.values
                if value.type == "REG_BINARY"
            },
        )

    compat_fast.on_emulator_created(se, on_created)
    name = ntpath.basename(plan.emu_path)
    loading: AbstractContextManager[None] = (
        compat.writes_without_invalidation(se) if plan.mode == "fast" else nullcontext()
    )
    with loading:
        if plan.target_kind == "shellcode":
            arch = {"x86": "x86", "x64": "amd64"}[plan.arch or "x64"]
            address = se.load_shellcode(data=data, arch=arch, filename=name)
            return LoadedTarget(
                se, se.emu, plan.arch or "x64", "shellcode", name, address, len(data), data, shellcode_address=address
            )
        try:
            pe.check_file(data)
            with compat.pe_loads_without_collection():
                module = se.load_module(data=data, filename=name)
        except (pe.PeError, speakeasy.errors.SpeakeasyError) as err:
            raise BackendInputError(str(err)) from err
        except pefile.PEFormatError as err:  # a table read only when the image is moved (relocations)
            raise BackendInputError(f"malformed PE: {err}") from err
    emu: Any = se.emu
    arch = "x86" if emu.get_arch() == se_arch.ARCH_X86 else "x64"
    # The system variables, for the architecture now known; the scenario's own values stay.
    for key, value in machine_variables(plan.guest, arch == "x64").items():
        emu.env.setdefault(key, value)
    managed = pe.has_clr_runtime_header(data)
    return LoadedTarget(
        se,
        emu,
        arch,
        "pe",
        name,
        module.base,
        module.image_size,
        data,
        module=module,
        managed=managed,
        dll_search=searches[-1] if searches else None,
    )


def install_api_handlers(
    se: Any,
    memory: SpeakeasyMemory,
    services: ReplayServices,
    on_network_limit: Callable[[str], None],
    left_to: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
) -> None:
    """The project's own API handlers (emulator/apis), then argument fixes for Speakeasy's. The
    handlers of ``left_to`` APIs are not installed: a module hooking those calls them itself
    (:func:`project_hooks`)."""
    for handler in HANDLERS:
        if (handler.module, handler.name) not in left_to:
            _install_handler(se, handler, memory, services, on_network_limit)

    def predefined_key(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # x64 code passes HKEY_LOCAL_MACHINE sign-extended (0xFFFFFFFF80000002); Speakeasy
        # only knows the 32-bit value.
        argv = list(argv)
        if argv and argv[0] >> 32 == 0xFFFFFFFF and argv[0] & 0xFFFFFFF0 == 0x80000000:
            argv[0] &= 0xFFFFFFFF
        if api_name.rsplit(".", 1)[-1].startswith("RegQueryValueEx") and len(argv) >= 6:
            return _query_value(emu, memory, api_name.endswith("W"), orig, argv)
        return orig(argv)

    for name in PREDEFINED_KEY_APIS:
        se.add_api_hook(predefined_key, "advapi32", name)

    def invalid_handle(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # INVALID_HANDLE_VALUE is (HANDLE)-1: all ones at the pointer size, not 0xFFFFFFFF on x64.
        rv = orig(argv)
        creating = api_name.rsplit(".", 1)[-1].startswith("CreateFile") and argv and argv[0]
        if rv == INVALID_HANDLE_32 and creating and emu.get_last_error() == ERROR_FILE_NOT_FOUND:
            # A path whose folder does not exist either: ERROR_PATH_NOT_FOUND (Speakeasy: FILE_NOT_FOUND).
            wide = api_name.endswith("W")
            path = read_c_string(memory, argv[0], wide, guestdirs.MAX_GUEST_PATH * (2 if wide else 1))
            error = guestdirs.not_found_error(emu, path.decode("utf-16-le" if wide else "latin-1", "replace"))
            if error is not None:
                emu.set_last_error(error)
        if rv == INVALID_HANDLE_32 and memory.ptr_size == 8:
            return INVALID_HANDLE_64
        return rv

    for name in INVALID_HANDLE_APIS:
        se.add_api_hook(invalid_handle, "kernel32", name)

    def get_last_error(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # Reading the last error leaves it as it is (Speakeasy's handler resets it to 0, so a
        # second GetLastError, or one after a call that sets none, read 0 where Windows repeats it).
        return emu.get_last_error()

    se.add_api_hook(get_last_error, "kernel32", "GetLastError")
    # Winsock's error is the thread's last error (ws2_32 reads and writes the TEB's field); the
    # socket APIs set it (emulator/apis/winsock.py), but WSAGetLastError, which Speakeasy has no
    # handler for, answered 0 from its signature: every failed call looked like success.
    se.add_api_hook(get_last_error, "ws2_32", "WSAGetLastError", argc=0)

    def wsa_set_last_error(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        emu.set_last_error(argv[0] & 0xFFFFFFFF if argv else 0)
        return 0

    se.add_api_hook(wsa_set_last_error, "ws2_32", "WSASetLastError", argc=1)

    def adapters_info(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # GetAdaptersInfo(pAdapterInfo, pOutBufLen): no size pointer is ERROR_INVALID_PARAMETER
        # (Speakeasy's handler read it: a fault in the call).
        if len(argv) < 2 or not argv[1]:
            return ERROR_INVALID_PARAMETER
        return orig(argv)

    se.add_api_hook(adapters_info, "iphlpapi", "GetAdaptersInfo", argc=2)

    def queue_user_apc(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # An APC to the calling thread waits for its next alertable moment (NtTestAlert, an
        # alertable SleepEx: emulator/apis/threads.py); Speakeasy starts every APC as a thread.
        routine, thread, data = argv[:3]
        current = emu.get_current_thread()
        if routine and current is not None and compat.object_of(emu, thread) is current:
            services.pending_apcs.setdefault(int(getattr(current, "tid", 0) or 0), []).append((routine, (data,)))
            return 1
        return orig(argv)

    se.add_api_hook(queue_user_apc, "kernel32", "QueueUserAPC")

    # Fiber-local storage callbacks: FlsFree calls the slot's callback with the value the thread
    # stored there, as Windows does (Speakeasy's FlsAlloc dropped the callback: a payload handed
    # as one never ran). Thread and fiber exits do not call it here.
    fls_callbacks: dict[int, int] = {}
    fls_values: dict[tuple[int, int], int] = {}

    def fls_alloc(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        index = orig(argv)
        if isinstance(index, int) and index != 0xFFFFFFFF and argv and argv[0]:
            fls_callbacks[index] = argv[0]
        return index

    def fls_set_value(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        if rv and len(argv) >= 2:
            fls_values[(memory.current_thread_id(), argv[0] & 0xFFFFFFFF)] = argv[1]
        return rv

    def fls_free(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        index = argv[0] & 0xFFFFFFFF if argv else -1
        callback = fls_callbacks.pop(index, None)
        slots = [slot for slot in fls_values if slot[1] == index]
        values = [value for value in (fls_values.pop(slot) for slot in slots) if value]
        rv = orig(argv)
        if callback:
            api = GuestApi(memory, services, "FlsFree", module="kernel32")
            for value in values:
                api.call_guest(callback, [value])
        return rv

    se.add_api_hook(fls_alloc, "kernel32", "FlsAlloc")
    se.add_api_hook(fls_set_value, "kernel32", "FlsSetValue")
    se.add_api_hook(fls_free, "kernel32", "FlsFree")

    def crypt_derive_key(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # Speakeasy derives RC4 keys only: an AES key is the project's (cryptoapi.derive_aes_key).
        if (argv[1] & 0xFFFF) not in cryptoapi.AES_ALGORITHMS:
            return orig(argv)
        base = compat.crypt_hash(emu, argv[2])
        if base is None:
            emu.set_last_error(ERROR_INVALID_HANDLE)
            return 0
        api = GuestApi(memory, services, "CryptDeriveKey", module="advapi32")
        return cryptoapi.derive_aes_key(api, base.name, base.digest(), list(argv[:5]))

    se.add_api_hook(crypt_derive_key, "advapi32", "CryptDeriveKey")

    def open_file_mapping(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        # OpenFileMapping(dwDesiredAccess, bInheritHandle, lpName): the section of that name.
        wide = api_name.endswith("W")
        raw = read_c_string(memory, argv[2], wide, MAX_OBJECT_NAME * (2 if wide else 1))
        name = raw.decode("utf-16-le" if wide else "latin-1", "replace")
        handle = compat.open_named_mapping(emu, name) if name else 0
        emu.set_last_error(ERROR_SUCCESS if handle else ERROR_FILE_NOT_FOUND)
        return handle

    for name in ("OpenFileMappingA", "OpenFileMappingW"):
        se.add_api_hook(open_file_mapping, "kernel32", name, argc=3, call_conv=se_arch.CALL_CONV_STDCALL)

    def final_path(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        return _final_path_by_handle(emu, memory, api_name.endswith("W"), argv)

    for name in ("GetFinalPathNameByHandleA", "GetFinalPathNameByHandleW"):
        se.add_api_hook(final_path, "kernel32", name, argc=4)

    printf.install_handlers(se)
    regenum.install(se, memory.ptr_size)
    procview.install(se, memory.ptr_size)
    procapis.install(se, se.emu, memory.ptr_size == 8)
    disks.install(se, services.guest)
    ntmemory.install(se, memory.ptr_size, memory.space)


# GetFinalPathNameByHandle's dwFlags: the volume part of the path (VOLUME_NAME_DOS is 0).
VOLUME_NAME_GUID, VOLUME_NAME_NT, VOLUME_NAME_NONE = 0x1, 0x2, 0x4
# The volume the guest's C: drive is, as VOLUME_NAME_NT and VOLUME_NAME_GUID name it.
SYSTEM_VOLUME_NT = "\\Device\\HarddiskVolume3"
SYSTEM_VOLUME_GUID = "\\\\?\\Volume{6b29fc40-ca47-1067-b31d-00dd010662da}"
ERROR_INVALID_HANDLE = 6
ERROR_PATH_NOT_FOUND = 3


def _final_path_by_handle(emu: Any, memory: SpeakeasyMemory, wide: bool, argv: list[int]) -> int:
    """DWORD GetFinalPathNameByHandle(HANDLE file, LPTSTR path, DWORD chars, DWORD flags): the
    path of the guest file the handle names (Speakeasy has no handler: its signature emulation
    returned 0 with an empty buffer, and Python's launchers then could not open themselves)."""
    handle, buffer, chars, flags = argv[0], argv[1], argv[2] & 0xFFFFFFFF, argv[3] & 0xFFFFFFFF
    path = compat.file_path_of_handle(emu, handle)
    if not path:
        memory.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    path = path.removeprefix("\\\\?\\")
    drive, rest = ntpath.splitdrive(path)
    if not drive:
        memory.set_last_error(ERROR_PATH_NOT_FOUND)
        return 0
    volume = flags & 0x7
    if volume == VOLUME_NAME_NONE:
        text = rest
    elif volume == VOLUME_NAME_NT:
        text = SYSTEM_VOLUME_NT + rest
    elif volume == VOLUME_NAME_GUID:
        text = SYSTEM_VOLUME_GUID + rest
    else:
        text = "\\\\?\\" + drive.upper() + rest
    if not buffer or chars <= len(text):
        return len(text) + 1  # the size needed, with the terminating NUL
    data = text.encode("utf-16-le" if wide else "latin-1", "replace") + (b"\0\0" if wide else b"\0")
    memory.write(buffer, data)
    return len(text)


def _query_value(emu: Any, memory: SpeakeasyMemory, wide: bool, orig: Any, argv: list[int]) -> Any:
    """RegQueryValueEx of a value the key does not have: ERROR_FILE_NOT_FOUND, the caller's
    buffers untouched, as on Windows (Speakeasy answered ERROR_SUCCESS with a buffer of zeros).
    The read is still recorded (Speakeasy's handler runs)."""
    key, name_ptr, size_ptr = argv[0], argv[1], argv[5]
    name = ""
    if name_ptr:
        raw = read_c_string(memory, name_ptr, wide, MAX_VALUE_NAME * (2 if wide else 1))
        name = raw.decode("utf-16-le" if wide else "latin-1", "replace")
    missing = compat.registry_value_missing(emu, key, name)
    size = data = b""
    try:
        size = memory.read(size_ptr, 4) if missing and size_ptr else b""
        length = min(int.from_bytes(size, "little"), MAX_KEPT_VALUE_BYTES)
        data = memory.read(argv[4], length) if missing and length and argv[4] else b""
    except Exception:
        pass  # Speakeasy's handler meets the bad pointer as before
    rv = orig(argv)
    if not missing or rv != ERROR_SUCCESS:
        return rv
    if size:
        memory.write(size_ptr, size)
    if data:
        memory.write(argv[4], data)
    return ERROR_FILE_NOT_FOUND


def _install_handler(
    se: Any,
    handler: ApiHandler,
    memory: SpeakeasyMemory,
    services: ReplayServices,
    on_network_limit: Callable[[str], None],
) -> None:
    conv = se_arch.CALL_CONV_CDECL if handler.conv == "cdecl" else se_arch.CALL_CONV_STDCALL
    callback = handler_hook(handler, memory, services, on_network_limit)
    se.add_api_hook(callback, handler.module, handler.name, argc=handler.argc, call_conv=conv)


def handler_hook(
    handler: ApiHandler,
    memory: SpeakeasyMemory,
    services: ReplayServices,
    on_network_limit: Callable[[str], None],
) -> Callable[[Any, str, Any, list[int]], int]:
    """The Speakeasy API hook that runs a project handler."""

    def callback(emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        api = GuestApi(memory, services, handler.name, module=handler.module)
        services.recorder.call_pc = compat.call_site(emu)
        try:
            rv = handler.func(api, list(argv))
        except NetworkLimitReached as err:
            on_network_limit(str(err))
            return 0
        finally:
            services.recorder.call_pc = None
        if memory.ptr_size == 4 and handler.ret64:
            # A 64-bit result on x86 (GetTickCount64, _time64) comes back in EDX:EAX.
            emu.reg_write(se_arch.X86_REG_EDX, (rv >> 32) & 0xFFFFFFFF)
            rv &= 0xFFFFFFFF
        return rv

    return callback


def project_hooks(
    memory: SpeakeasyMemory,
    services: ReplayServices,
    on_network_limit: Callable[[str], None],
    names: Iterable[tuple[str, str]],
) -> dict[tuple[str, str], Callable[[Any, str, Any, list[int]], int]]:
    """(module, name) -> the hook running the project's handler of that API, for those of
    ``names`` it has one for: for a module that hooks such an API and calls the project's handler
    itself (installed with ``left_to``: once, its value kept)."""
    wanted = set(names)
    return {
        (h.module, h.name): handler_hook(h, memory, services, on_network_limit)
        for h in HANDLERS
        if (h.module, h.name) in wanted
    }


def start(plan: ReplayPlan, target: LoadedTarget) -> None:
    """Run the target: shellcode from its first byte, a PE's entry point then its export calls."""
    if target.kind == "shellcode":
        target.se.run_shellcode(target.shellcode_address)
        return
    entries = {e.name: e for e in target.module.get_exports() if e.name}
    missing = [call.name for call in plan.exports if call.name not in entries]
    if missing:
        raise BackendInputError(f"export {missing[0]!r} not found (exports: {', '.join(sorted(entries)) or 'none'})")
    emu = target.emu
    exports: dict[str, int] = {}
    for call in plan.exports:
        entry = entries[call.name]
        if not entry.forwarder:
            exports[call.name] = entry.address
            continue
        # A forwarder's address is its "dll.function" string: run what it forwards to, as the
        # Windows loader would have bound it.
        address = compat.resolve_export(emu, target.module, call.name)
        if not address:
            raise BackendInputError(
                f"export {call.name!r} is forwarded to {entry.forwarder}, which does not resolve"
                " (a forwarder loop or a missing export)"
            )
        exports[call.name] = address

    def args_of(values: list[int | StringArg]) -> Callable[[], list[int]]:
        return lambda: [_export_arg(emu, value) for value in values]

    compat.schedule_exports(
        emu,
        plan.run_entry_point,
        [(f"export.{call.name}", exports[call.name], args_of(list(call.args))) for call in plan.exports],
    )
    target.se.run_module(target.module)


def _export_arg(emu: Any, arg: int | StringArg) -> int:
    if isinstance(arg, StringArg):
        data = arg.text.encode("utf-16-le") + b"\0\0" if arg.wide else arg.text.encode("latin-1") + b"\0"
        address = int(emu.mem_map(len(data) + 16, tag="emu.export_arg_string"))
        emu.mem_write(address, data)
        return address
    return arg


def dropped_files(se: Any) -> list[tuple[str, bytes]]:
    """Files the guest wrote, with their final content."""
    found: list[tuple[str, bytes]] = []
    for dropped in se.get_dropped_files() or []:
        stream = getattr(dropped, "data", None)
        data = stream.getvalue() if stream is not None and hasattr(stream, "getvalue") else None
        if data is not None:
            found.append((str(dropped.path), bytes(data)))
    return found
