"""Private Speakeasy names the process blocks rely on (guest.py ProcessBlocks): the PEB when a
process's first becomes active, each thread's TEB when its run starts, the process heap that
``GetProcessHeap`` returns, a thread's last error, the process list, and the modules' TLS
directories and each thread's implicit TLS (tls.py).

A part of compat.py kept in a module of its own, under the same rules: every name is checked
when this module is imported.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import speakeasy.windows.loaders as se_loaders
import speakeasy.windows.objman as se_objman
import speakeasy.windows.win32 as se_win32
import speakeasy.windows.winemu as se_winemu
import speakeasy.winenv.arch as se_arch
import speakeasy.winenv.defs.nt.ntoskrnl as se_nt
from speakeasy.windows.api_registry import module_name as se_module_name

from emulator.backends.speakeasy.compat import TEB_TAIL_TAG, _incompatible, _require_params, is_teb_tail

# LoadedImage.source of Speakeasy's decoy DLLs (its API images), as opposed to the guest's own.
SYNTHETIC_IMAGE = "synthetic"
# Speakeasy's HandleAllocator's counter of kernel object ids (processes, threads, loader entries).
ID_COUNTER = "_kernel_object_id"


def _check() -> None:
    _require_params(se_win32.Win32Emulator, "alloc_peb", ("proc",))
    _require_params(se_win32.Win32Emulator, "init_teb", ("thread", "peb"))
    _require_params(se_win32.Win32Emulator, "set_last_error", ("code",))
    _require_params(se_win32.Win32Emulator, "get_last_error", ())
    _require_params(se_win32.Win32Emulator, "get_processes", ())
    _require_params(se_objman.Thread, "init_teb", ("teb_addr", "peb_addr"))
    _require_params(se_win32.Win32Emulator, "init_tls", ("thread",))
    _require_params(se_winemu.WindowsEmulator, "_setup_gdt", ("arch",))
    _require_params(se_win32.Win32Emulator, "_ordered_peb_modules", ("proc", "include_defaults"))
    _require_params(se_winemu.WindowsEmulator, "_attach_module_to_current_process", ("module",))
    if not isinstance(getattr(se_objman.HandleAllocator(), ID_COUNTER, None), int):
        raise _incompatible(f"speakeasy's HandleAllocator has no {ID_COUNTER}")
    if "tls_directory_va" not in getattr(se_loaders.LoadedImage, "__dataclass_fields__", {}):
        raise _incompatible("speakeasy's LoadedImage has no tls_directory_va")
    peb, teb = se_nt.PEB(8), se_nt.TEB(8)
    for struct, names in (
        (
            peb,
            (
                "ProcessHeap",
                "NumberOfProcessors",
                "OSPlatformId",
                "NumberOfHeaps",
                "MaximumNumberOfHeaps",
                "ProcessHeaps",
                "ImageBaseAddress",
                "ProcessParameters",
                "ImageSubsystem",
                "ImageSubsystemMajorVersion",
                "ImageSubsystemMinorVersion",
                "ActiveProcessAffinityMask",
                "SessionId",
            ),
        ),
        (teb, ("ClientId", "pad0", "LastErrorValue", "ThreadLocalStoragePointer", "WOW32Reserved", "CurrentLocale")),
        (se_nt.PEB_LDR_DATA(8), ("Length", "Initialized")),
        (se_nt.LDR_DATA_TABLE_ENTRY(8), ("DllBase", "EntryPoint")),
    ):
        for name in names:
            if not hasattr(struct, name):
                raise _incompatible(f"speakeasy's {type(struct).__name__} has no {name}")


_check()


def on_new_peb(emu: Any, after: Callable[[Any], None]) -> None:
    """``after(process)`` once each process's PEB is written (Speakeasy's ``alloc_peb``)."""
    original = emu.alloc_peb

    def alloc_peb(proc: Any) -> Any:
        fresh = not proc.is_peb_active
        peb = original(proc)
        if fresh and proc.is_peb_active:
            after(proc)
        return peb

    emu.alloc_peb = alloc_peb


def on_new_teb(emu: Any, after: Callable[[Any], None]) -> None:
    """``after(thread)`` each time a thread's TEB is written (each run Speakeasy starts)."""
    original = emu.init_teb

    def init_teb(thread: Any, peb: Any) -> Any:
        result = original(thread, peb)
        after(thread)
        return result

    emu.init_teb = init_teb


def on_thread_tls(emu: Any, set_up: Callable[[Any], bool]) -> None:
    """``set_up(thread)`` in place of Speakeasy's implicit TLS set-up (``init_tls``, each time a
    thread's run starts, after its TEB); Speakeasy's own runs when it returns False."""
    original = emu.init_tls

    def init_tls(thread: Any) -> Any:
        if thread is not None and getattr(thread, "teb", None) is not None and set_up(thread):
            return None
        return original(thread)

    emu.init_tls = init_tls


def modules_in_load_order(emu: Any) -> list[tuple[int, int, str]]:
    """(base, TLS directory address, path) of each loaded image with a TLS directory, in load order."""
    found = []
    for module in emu.modules:
        image = getattr(module, "_image", None)
        directory = getattr(image, "tls_directory_va", None)
        if directory:
            found.append((int(module.base), int(directory), str(getattr(module, "emu_path", "") or "")))
    return found


def thread_key(thread: Any) -> int:
    """A thread's identity for as long as the emulation lasts."""
    tid = getattr(thread, "tid", None)
    return int(tid) if isinstance(tid, int) and tid else id(thread)


def set_fields(block: Any, fields: dict[str, int]) -> None:
    """Set fields of a Speakeasy struct wrapper (a PEB, a TEB) and write it to guest memory."""
    for name, value in fields.items():
        setattr(block.object, name, value)
    block.write_back()


def set_stack_limit(emu: Any, thread: Any) -> None:
    """TEB.NtTib.StackLimit: the lowest committed address of the thread's stack, as on Windows
    (Speakeasy writes the stack's commit size there, an address below the stack: a check that
    the stack pointer lies between StackLimit and StackBase, or a VirtualQuery of StackLimit,
    told). Speakeasy commits its whole stack map, so that is the map's base."""
    tib = thread.teb.object.NtTib
    top = int(tib.StackBase or 0)
    mm = emu.get_address_map(top - 1) if top else None
    if mm is not None and not int(mm.base) <= int(tib.StackLimit) < top:
        tib.StackLimit = int(mm.base)


def loader_list_as_loaded(emu: Any, always: frozenset[str]) -> None:
    """A new process's loader lists hold the program, the DLLs every process has (``always``:
    module names), the decoy DLLs the guest's own images import, and what was loaded into the
    process since; Speakeasy lists each of the forty-odd decoys it maps before the program
    (a fresh Windows process lists 5-25 modules). A decoy left out stays mapped and joins the
    lists when LoadLibrary asks for it (Speakeasy's ``load_library`` attaches it)."""
    original = emu._ordered_peb_modules

    def ordered(proc: Any = None, *, include_defaults: bool = False) -> Any:
        modules = original(proc, include_defaults=include_defaults)
        if not include_defaults:
            return modules
        process = proc or emu.get_current_process()
        attached = set(getattr(process, "_peb_modules", ()) or ())
        shared = emu._shared_peb_modules
        wanted = set(always)
        for module in emu.modules:
            image = getattr(module, "_image", None)
            if image is not None and image.source != SYNTHETIC_IMAGE:
                wanted |= {se_module_name(entry.dll_name) for entry in image.imports}

        def listed(module: Any) -> bool:
            image = getattr(module, "_image", None)
            if module.is_exe() or module.base in attached or module.base not in shared:
                return True
            if image is None or image.source != SYNTHETIC_IMAGE:
                return True
            return se_module_name(str(module.name or module.get_base_name() or "")) in wanted

        kept = [module for module in modules if listed(module)]
        # Speakeasy numbers processes, threads and loader entries from one counter: the ids the
        # left-out entries would have taken are taken now and given to their entries if they are
        # loaded later, so process and thread ids stay bare Speakeasy's whatever is loaded
        # (bench/run.py compares the traces; a child's pid does not depend on the DLLs loaded)
        allocate: Callable[[], Any] | None = getattr(
            getattr(emu, "handle_allocator", None), "allocate_kernel_object_id", None
        )
        if allocate is not None and process is not None:
            left_out = [module for module in modules if not listed(module)]
            reserved[id(process)] = (
                {int(module.base) for module in left_out},
                [int(allocate()) for _ in left_out],
            )
        return kept

    reserved: dict[int, tuple[set[int], list[int]]] = {}  # id(process) -> (bases left out, ids)
    original_attach = emu._attach_module_to_current_process

    def attach(module: Any) -> Any:
        process = emu.get_current_process()
        bases, ids = reserved.get(id(process), (set(), []))
        allocator = getattr(emu, "handle_allocator", None)
        counter = getattr(allocator, ID_COUNTER, None)
        entries = list(getattr(process, "ldr_entries", None) or [])
        result = original_attach(module)
        if int(getattr(module, "base", 0) or 0) in bases and ids and isinstance(counter, int):
            new = [entry for entry in getattr(process, "ldr_entries", None) or [] if entry not in entries]
            if len(new) == 1 and getattr(allocator, ID_COUNTER, None) == counter + 4:
                new[0].id = ids.pop(0)
                setattr(allocator, ID_COUNTER, counter)
                bases.discard(int(module.base))
        return result

    emu._ordered_peb_modules = ordered
    emu._attach_module_to_current_process = attach


def teb_whole_from_the_start(emu: Any, sizes: dict[bool, int]) -> None:
    """Map the TEB's pages past Speakeasy's one (whole_teb_mapped) as soon as Speakeasy maps
    the TEB's page (``_setup_gdt``), before anything else takes the page after it (on x64 the
    C runtime's command line did, so the TEB's fields past 0x1000 had no place).
    ``sizes``: the TEB's size by x64."""
    original = emu._setup_gdt

    def setup_gdt(arch: Any) -> Any:
        result = original(arch)
        x64 = arch == se_arch.ARCH_AMD64
        whole_teb_mapped(emu, sizes[x64], int(emu.gs_addr if x64 else emu.fs_addr))
        return result

    emu._setup_gdt = setup_gdt


def whole_teb_mapped(emu: Any, size: int, teb: int | None = None) -> None:
    """Map the pages of the TEB past Speakeasy's one page at its address (when free), so the
    fields there (x64: DeallocationStack, TlsSlots) are the TEB's, and saved with it when a
    wait runs a thread (compat._saved_state)."""
    if teb is None:
        teb = int(emu.fs_addr if emu.get_ptr_size() == 4 else emu.gs_addr)
    mapped = emu.get_address_map(teb) if teb else None
    if mapped is None:
        return
    end = int(mapped.base) + int(mapped.size)
    want = (teb + size + 0xFFF) & ~0xFFF
    if end < want and all(emu.get_address_map(page) is None for page in range(end, want, 0x1000)):
        with contextlib.suppress(Exception):
            emu.mem_map(want - end, base=end, tag=TEB_TAIL_TAG)


def teb_holds(emu: Any, teb: int, offset: int) -> bool:
    """Whether TEB + ``offset`` is the TEB's own memory: its first page, or pages mapped for it
    (whole_teb_mapped). On x64 the page after Speakeasy's one TEB page usually holds other
    structures unless the TEB's second page was mapped at once (teb_whole_from_the_start), so
    TlsSlots and DeallocationStack may have no place (they are left alone)."""
    mapped = emu.get_address_map(teb + offset) if teb else None
    if mapped is None:
        return False
    return mapped is emu.get_address_map(teb) or is_teb_tail(mapped)


def set_deallocation_stack(emu: Any, thread: Any, offset: int) -> None:
    """TEB.DeallocationStack: the base of the stack's allocation (GetCurrentThreadStackLimits'
    low limit, VirtualQuery's AllocationBase of the stack). Speakeasy's TEB structure stops
    before it: written at its offset."""
    top = int(thread.teb.object.NtTib.StackBase or 0)
    mm = emu.get_address_map(top - 1) if top else None
    if mm is None or not teb_holds(emu, int(thread.teb.address), offset):
        return
    try:
        emu.mem_write(int(thread.teb.address) + offset, int(mm.base).to_bytes(emu.get_ptr_size(), "little"))
    except Exception:
        return


def set_loader_data(process: Any, length: int) -> None:
    """PEB_LDR_DATA.Length and Initialized as the loader leaves them (Speakeasy's are zero)."""
    ldr = process.peb_ldr_data
    ldr.object.Length = length
    ldr.object.Initialized[0] = 1
    ldr.write_back()


def entry_points_as_headers(emu: Any, process: Any) -> None:
    """A loader entry's EntryPoint is NULL for an image without one (ntdll's header says 0),
    not its base as Speakeasy writes it: now, and for each image added to the list later."""

    def fix(entries: list[Any]) -> None:
        for entry in entries:
            base = int(entry.object.DllBase or 0)
            if base and int(entry.object.EntryPoint or 0) == base:
                entry.object.EntryPoint = 0
                entry.write_back()

    fix(process.ldr_entries)
    original = process.add_module_to_peb

    def add_module_to_peb(module: Any) -> Any:
        result = original(module)
        fix(process.ldr_entries[-1:])
        return result

    process.add_module_to_peb = add_module_to_peb


def process_parameters_size(emu: Any) -> int:
    """The size of Speakeasy's RTL_USER_PROCESS_PARAMETERS structure (its strings follow it)."""
    return int(se_nt.RTL_USER_PROCESS_PARAMETERS(emu.get_ptr_size()).sizeof())


def set_client_id(thread: Any, pid: int, x64: bool) -> None:
    """TEB.ClientId: Speakeasy's CLIENT_ID holds two 32-bit ids; on x64 the thread id is at
    +0x48 (``pad0`` in its layout), as Windows' two pointer-sized ids."""
    client = thread.teb.object.ClientId
    client.UniqueProcess = pid
    if x64:
        client.UniqueThread = 0
        thread.teb.object.pad0 = thread.tid
    else:
        client.UniqueThread = thread.tid
    thread.teb.write_back()


def process_heaps(emu: Any) -> list[int]:
    """The heaps kernel32's handlers hand out; the first is what ``GetProcessHeap`` returns."""
    heaps: list[int] = emu.api.load_api_handler("kernel32").heaps
    return heaps


def mirror_last_error(emu: Any, teb_address: Callable[[], int | None], offset: int) -> None:
    """The last error lives in TEB.LastErrorValue, as on Windows: ``SetLastError`` writes it,
    ``GetLastError`` reads it, so guest code reading or writing ``fs:[0x34]`` / ``gs:[0x68]``
    sees the same value the APIs do."""
    set_original, get_original = emu.set_last_error, emu.get_last_error

    def set_last_error(code: int) -> None:
        set_original(code)
        address = teb_address()
        if address and emu.curr_thread is not None:
            try:
                emu.mem_write(address + offset, (code & 0xFFFFFFFF).to_bytes(4, "little"))
            except Exception:
                return

    def get_last_error() -> Any:
        address = teb_address()
        if address and emu.curr_thread is not None:
            try:
                value = int.from_bytes(bytes(emu.mem_read(address + offset, 4)), "little")
            except Exception:
                return get_original()
            set_original(value)
            return value
        return get_original()

    emu.set_last_error = set_last_error
    emu.get_last_error = get_last_error


def current_ids(emu: Any) -> tuple[int, int]:
    """(process id, thread id) of the running thread, as GetCurrentProcessId / ThreadId say."""
    process, thread = emu.get_current_process(), emu.get_current_thread()
    return (process.id if process else 0), (thread.id if thread else 0)


def processes(emu: Any) -> list[Any]:
    return list(emu.get_processes())


def os_version(emu: Any) -> tuple[int, int, int]:
    """(major, minor, build) of the guest's Windows, from the configuration every API reads."""
    version = emu.config.os_ver
    return version.major or 0, version.minor or 0, version.build or 0


def own_process_listed(emu: Any, parent_of: Callable[[str, dict[str, int]], int]) -> None:
    """The process list (Toolhelp, EnumProcesses) holds the running process itself, once, with
    the id GetCurrentProcessId gives: bare Speakeasy lists a copy of the configuration's main
    process under another id instead (or, for a DLL's host, both). Each process gets
    ``ppid`` from ``parent_of(image name, {image name lower-cased: process id})``."""
    original = emu.get_processes

    def get_processes() -> Any:
        listed = original()
        own = emu.get_current_process()
        if own is not None and getattr(own, "path", None):
            path = own.path.lower()
            copies = [p for p in listed if p is not own and (getattr(p, "path", "") or "").lower() == path]
            for copy in copies:
                listed.remove(copy)
            if own not in listed:
                listed.append(own)
            if not own.image:
                own.image = own.path.replace("/", "\\").rsplit("\\", 1)[-1]
        pids = {(p.image or p.name or "").lower(): p.pid for p in reversed(listed)}
        for process in listed:
            if not hasattr(process, "ppid"):
                process.ppid = parent_of(process.image or process.name or "", pids)
        return listed

    emu.get_processes = get_processes


def is_process(obj: Any) -> bool:
    return isinstance(obj, se_objman.Process)


def is_thread(obj: Any) -> bool:
    return isinstance(obj, se_objman.Thread)


def is_registry_key(emu: Any, handle: int) -> bool:
    return bool(emu.reg_get_key(handle=handle))


def enum_processes(emu: Any, argv: list[int]) -> int:
    """``K32EnumProcesses``: Speakeasy's psapi ``EnumProcesses`` (kernel32 has no handler)."""
    result: int = emu.api.load_api_handler("psapi").EnumProcesses(emu, argv)
    return result


def peb_address(process: Any) -> int:
    """The PEB of ``process`` (0 for a listed process that never ran: it has none in this guest)."""
    return int(process.peb.address or 0) if process.is_peb_active else 0


def command_line_buffer(emu: Any, process: Any) -> int:
    """ProcessParameters.CommandLine.Buffer of ``process``'s PEB (0: none)."""
    peb = getattr(process, "peb", None) if process is not None and process.is_peb_active else None
    parameters = int(getattr(getattr(peb, "object", None), "ProcessParameters", 0) or 0)
    if not parameters:
        return 0
    ptr = emu.get_ptr_size()
    at = parameters + (0x70 if ptr == 8 else 0x40) + ptr  # CommandLine: Length, MaximumLength, (pad), Buffer
    try:
        return int.from_bytes(bytes(emu.mem_read(at, ptr)), "little")
    except Exception:
        return 0
