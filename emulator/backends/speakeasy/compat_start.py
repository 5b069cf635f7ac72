"""Private Speakeasy names the start-up work relies on (setup.py, prestart.py): the PEB loader
list linked once, each image's sections mapped apart, and the once-per-process tables read ahead.

A part of compat.py kept in a module of its own, under the same rules: every name is checked
when this module is imported.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import itertools
import ntpath
import operator
import os
import struct
import sys
import types
from pathlib import Path
from typing import Any

import speakeasy.common as se_common
import speakeasy.windows.api_image as se_api_image
import speakeasy.windows.api_registry as se_api_registry
import speakeasy.windows.export_manifest as se_manifest
import speakeasy.windows.objman as se_objman
import speakeasy.windows.winemu as se_winemu
import speakeasy.winenv.api.api as se_api
import speakeasy.winenv.api.sigdb as se_sigdb
import speakeasy.winenv.arch as se_arch

from emulator.backends.speakeasy import disks, images, lasterror
from emulator.backends.speakeasy.compat import _incompatible, _require_params

# ---- start-up: the loader list of the PEB linked once ---------------------------------------


def _check_peb_links() -> None:
    _require_params(se_winemu.WindowsEmulator, "init_peb", ("user_mods", "proc"))
    _require_params(se_objman.Process, "init_peb", ("modules",))
    _require_params(se_objman.Process, "add_module_to_peb", ("module",))
    _require_params(se_objman.Process, "_sync_peb_module_links", ())
    _require_params(se_manifest, "get_export_manifest", ("module", "arch"))
    _require_params(se_sigdb, "get_default_database", ())
    _require_params(se_sigdb.SignatureDatabase, "get_functions", ("dll", "arch"))
    _require_params(se_sigdb.SignatureDatabase, "__init__", ("sources",))
    for name in ("ARCH_X86", "ARCH_X64"):
        if not hasattr(se_sigdb, name):
            raise _incompatible(f"speakeasy.winenv.api.sigdb.{name} is missing")
    _require_params(se_winemu.WindowsEmulator, "_load_image", ("image",))
    _require_params(se_api_registry.ApiRegistry, "register_module", ("module",))
    # index_data_entries: _load_image walks the registry's values for its data exports
    load_names = se_winemu.WindowsEmulator._load_image.__code__.co_names
    if not {"api_registry", "entries", "values", "export", "kind", "_initialize_api_data"} <= set(load_names):
        raise _incompatible("WindowsEmulator._load_image no longer walks the API registry for data exports")
    if "insort" not in vars(se_api_registry):
        raise _incompatible("speakeasy.windows.api_registry no longer keeps its addresses with insort")
    # images.py reads a loader's arguments back from these attributes
    _require_params(
        se_api_image.ApiModuleLoader, "__init__", ("name", "arch", "base", "emu_path", "signature_db", "api")
    )
    _require_params(se_api_image.ApiModuleLoader, "make_image", ())
    loader = se_api_image.ApiModuleLoader(name="x", arch=0, base=0, emu_path="x", signature_db=None)  # type: ignore[arg-type]
    for name in ("_name", "_arch", "_base", "_emu_path", "_api"):
        if not hasattr(loader, name):
            raise _incompatible(f"speakeasy.windows.api_image.ApiModuleLoader.{name} is missing")
    _require_params(se_winemu, "get_page_protection_runs", ("page_perms", "page_size"))


_check_peb_links()


def link_peb_once(emu: Any) -> None:
    """The process's loader list is linked once per ``init_peb``, not once per module.

    Speakeasy re-links every loader entry of the three PEB rings after adding each module (and
    writes each back through its struct layer): quadratic in the 50-odd decoy DLLs, about a
    fifth of its start-up. The last re-link writes every entry, so the guest memory is the same.
    """
    original = emu.init_peb

    def init_peb(user_mods: Any, proc: Any = None) -> Any:
        process = proc or emu.curr_process
        process._sync_peb_module_links = lambda: None
        try:
            return original(user_mods, proc)
        finally:
            del process._sync_peb_module_links
            process._sync_peb_module_links()

    emu.init_peb = init_peb


# ---- start-up: each image's sections mapped apart -----------------------------------------


def map_sections_apart(emu: Any) -> None:
    """Map each image as the Unicorn regions its section protections will cut it into, instead
    of one region that ``_load_image`` then splits with each protection change.

    Unicorn splits a region by copying it out, unmapping it and mapping the pieces again, about
    0.7 ms per call: ~290 calls for the 55 images of a replay. Mapped as pieces (with the
    mapping's own protection, so the loader's writes, the API stubs among them, go in as
    before), each protection change ``_load_image`` still makes (the memory manager's hooks see
    every one) finds its region already cut and costs microseconds. The regions, their
    protections and their bytes end the same (tests/test_startup.py compares them).
    """
    engine = emu.emu_eng
    original_load, original_map = emu._load_image, emu.mem_map
    pending: dict[str, tuple[str, list[int]]] = {}

    def _load_image(image: Any) -> Any:
        cuts = image_cuts(image, int(emu.page_size))
        if cuts is not None:
            pending["image"] = (f"emu.module.{image.name}", cuts)
        try:
            return original_load(image)
        finally:
            pending.clear()

    def mem_map(
        size: int,
        base: int | None = None,
        perms: int = se_common.PERM_MEM_RWX,
        tag: str | None = None,
        flags: int = 0,
        shared: bool = False,
        process: Any = None,
    ) -> Any:
        armed = pending.pop("image", None)
        if armed is None or tag != armed[0]:
            return original_map(size, base, perms, tag, flags, shared, process)
        cuts = armed[1]
        previous = engine.__dict__.get("mem_map")
        through = engine.mem_map
        used: list[int] = []

        def engine_map(at: int, length: int, perms: int = se_common.PERM_MEM_RWX) -> Any:
            if used or cuts[-1] != length:  # not the span the cuts were made for
                return through(at, length, perms=perms)
            used.append(at)
            for start, end in zip(cuts, cuts[1:], strict=False):
                through(at + start, end - start, perms=perms)
            return None

        engine.mem_map = engine_map
        try:
            return original_map(size, base, perms, tag, flags, shared, process)
        finally:
            if previous is None:
                del engine.mem_map
            else:
                engine.mem_map = previous

    emu._load_image = _load_image
    emu.mem_map = mem_map


def image_cuts(image: Any, page_size: int) -> list[int] | None:
    """The offsets from an image's base where ``_load_image``'s protection changes will cut its
    mapping (0 and the page-rounded size included); None when it makes none, or when one would
    reach outside the mapping (left to Speakeasy)."""
    if not image.sections or image.module_type == "shellcode":
        return None
    size = (int(image.image_size) + page_size - 1) & ~(page_size - 1)
    changes: list[tuple[int, int]] = []
    first_rva = min(section.virtual_address for section in image.sections)
    if first_rva:
        changes.append((0, (first_rva + page_size - 1) & ~(page_size - 1)))
    page_perms: dict[int, int] = {}
    for section in image.sections:
        start = section.virtual_address & ~(page_size - 1)
        end = (section.virtual_address + section.virtual_size + page_size - 1) & ~(page_size - 1)
        for page in range(start, end, page_size):
            page_perms[page] = page_perms.get(page, 0) | section.perms
    runs = se_winemu.get_page_protection_runs(page_perms, page_size)
    changes += [(start, start + length) for start, length, _ in runs]
    if any(start < 0 or end > size or start >= end for start, end in changes):
        return None
    return sorted({0, size, *(start for start, _ in changes), *(end for _, end in changes)})


# ---- start-up: a module's API stubs written at once --------------------------------------

# Stub writes closer than this are merged into one write (the bytes between are read back).
STUB_WRITE_GAP = 64


class _AppendingList(list[int]):
    """A list ``bisect.insort`` appends to (it calls ``insert`` on a list subclass); sorted once
    when the registration ends."""

    def insert(self, index: Any, value: int) -> None:
        self.append(value)


def register_modules_at_once(emu: Any) -> None:
    """Each module's API stubs go into guest memory in one write, and the registry's sorted
    address list is sorted once per module instead of kept sorted per export.

    ``ApiRegistry.register_module`` writes the ~19,000 stubs of a replay's decoy modules one by
    one and inserts each address into a sorted list. The stubs are collected while it runs and
    written afterwards, each run of nearby stubs in one write (the bytes between read back
    first), and the list is sorted at the end; Speakeasy's own code does everything else. The
    same bytes end in guest memory and the same entries in the registry (tests/test_startup.py).

    Where the installed Speakeasy's registration is the one :func:`register_exports` was
    written from (:func:`registration_matches`), that function does the per-export work in
    one loop instead (the same entries, traps, stubs and lookups, without a Python call per
    export); otherwise Speakeasy's own ``register_module`` runs as described above.
    """
    registry = emu.api_registry
    original = registry.register_module
    fast = registration_matches()

    def register_module(module: Any) -> None:
        writes: list[tuple[int, bytes]] = []
        if fast:
            try:
                register_exports(registry, module, writes)
            finally:
                _write_merged(emu, writes)
            return
        previous = emu.__dict__.get("mem_write")
        addresses = registry._addresses
        registry._addresses = _AppendingList(addresses)
        collect = writes.append
        emu.mem_write = lambda address, data: collect((address, data))
        try:
            original(module)
        finally:
            if previous is None:
                del emu.mem_write
            else:
                emu.mem_write = previous
            registry._addresses = sorted(registry._addresses)
            _write_merged(emu, writes)

    registry.register_module = register_module


# The SHA-256 of the Speakeasy source files register_exports does the work of
# (registration_digest): speakeasy/windows/api_registry.py and api_image.py.
REGISTRATION_DIGEST = "8f02c4d1418a84c98d4dc92b4350e460583fb4f77ae6e972671b8db2aaa6afe5"


@functools.cache
def registration_digest() -> str:
    """A digest of the source files of ``ApiRegistry.register_module`` and ``_allocate_trap``,
    ``ApiEntry`` and ``encode_api_stub`` ("" if one cannot be read)."""
    import hashlib

    digest = hashlib.sha256()
    for module in (se_api_registry, se_api_image):
        try:
            digest.update(Path(str(module.__file__)).read_bytes())
        except (OSError, TypeError):
            return ""
    return digest.hexdigest()


def registration_matches() -> bool:
    """Whether Speakeasy registers exports as :func:`register_exports` does."""
    return registration_digest() == REGISTRATION_DIGEST


_PACK_U32 = struct.Struct("<I").pack
_PACK_U64 = struct.Struct("<Q").pack
_STUB_X86 = b"\x8b\xff\x0f\x1f\x00\xe9"
_STUB_X64 = b"\x66\x90\xff\x25\x00\x00\x00\x00"


def register_exports(registry: Any, module: Any, writes: list[tuple[int, bytes]]) -> None:
    """``ApiRegistry.register_module(module)``, with the stub writes left in ``writes``.

    For every export with an address: a new entry (a trap and a stub for a synthetic module's
    function that is not a forwarder) or the one already at that address; its names and the
    module's name and ordinal lookups. Traps are handed out in export order, as
    ``_allocate_trap`` does (which still reserves the trap region and raises when it is full).
    """
    if register_template(registry, module, writes):
        return
    by_name = registry.names.setdefault(id(module), {})
    by_ordinal = registry.ordinals.setdefault(id(module), {})
    synthetic = module._image.source == "synthetic"
    entries = registry.entries
    indexed = type(entries) is _EntriesWithDataIndex
    data_entries = entries.data if indexed else None
    set_entry = dict.__setitem__ if indexed else type(entries).__setitem__
    traps = registry.traps
    new_entry = se_api_registry.ApiEntry
    x86 = module.arch == se_arch.ARCH_X86
    stride = registry.TRAP_STRIDE
    added: list[int] = []
    try:
        for export in module.get_exports():
            address = export.address
            if not address:
                continue
            entry = entries.get(address)
            if entry is None:
                entry = new_entry(module, export)
                if synthetic and export.kind == "function" and not export.forwarder:
                    offset = registry._trap_count * stride
                    if registry.trap_base is None or offset >= registry.TRAP_SIZE:
                        trap = registry._allocate_trap()
                    else:
                        registry._trap_count += 1
                        trap = registry.trap_base + offset
                    entry.trap = trap
                    if x86:
                        writes.append((address, _STUB_X86 + _PACK_U32((trap - address - 10) & 0xFFFFFFFF)))
                    else:
                        writes.append((address, _STUB_X64 + _PACK_U64(trap)))
                    traps[trap] = entry
                set_entry(entries, address, entry)
                if data_entries is not None and export.kind == "data":
                    data_entries[address] = entry
                added.append(address)
            name = export.name
            if name:
                if name not in entry.names:
                    entry.names.append(name)
                by_name[name] = entry
            by_ordinal[export.ordinal] = entry
    finally:
        if added:
            registry._addresses.extend(added)
            registry._addresses.sort()


def register_template(registry: Any, module: Any, writes: list[tuple[int, bytes]]) -> bool:
    """:func:`register_exports` for a decoy image placed from a shipped template (images.py),
    from what its registration does worked out once per process (``images.registration``):
    the same entries (created in the same order, each with its first export, names and trap),
    the same traps, lookups, sorted addresses and data index, and the stubs as one write of
    the image's .text. False (and nothing done) when the module is not such an image as placed,
    one of its addresses already has an entry, the trap region cannot hold its traps, or its
    .text in guest memory is not the template's: the loop does it then.
    """
    image = module._image
    placed = image.__dict__.get(images.PLACED)
    if placed is None or image.source != "synthetic":
        return False
    template, exports, base = placed
    plan = images.registration(template, module.arch)
    entries = registry.entries
    indexed = type(entries) is _EntriesWithDataIndex
    if plan is None or module.get_exports() is not exports or module.base != base or base <= 0:
        return False
    if not (indexed or type(entries) is dict) or len(exports) != len(template[3]):
        return False
    addresses = list(map(base.__add__, plan.rvas))
    if not entries.keys().isdisjoint(addresses):
        return False
    count, stride = len(plan.slot_traps), registry.TRAP_STRIDE
    start = registry._trap_count
    if count and (start + count) * stride > registry.TRAP_SIZE:
        return False  # the loop raises where Speakeasy's does
    text_at = base + plan.text_rva
    if registry.emu.mem_read(text_at, len(plan.text)) != plan.text:
        return False
    if count and registry.trap_base is None:
        registry._allocate_trap()  # reserves the trap region as the first trap would
        registry._trap_count = start
    first_trap = registry.trap_base + start * stride if count else 0
    trap_of: list[int | None] = [None] * len(plan.rvas)
    numbers = range(first_trap, first_trap + count * stride, stride)
    collections.deque(map(trap_of.__setitem__, plan.trapped, numbers), maxlen=0)
    made = list(
        map(
            se_api_registry.ApiEntry,
            itertools.repeat(module),
            map(exports.__getitem__, plan.firsts),
            map(list, plan.names),
            trap_of,
        )
    )
    registry._trap_count = start + count
    pick = made.__getitem__
    registry.traps.update(zip(numbers, map(pick, plan.trapped), strict=True))
    dict.update(entries, zip(addresses, made, strict=True))
    if indexed:
        entries.data.update(zip(map(addresses.__getitem__, plan.data), map(pick, plan.data), strict=True))
    by_name = registry.names.setdefault(id(module), {})
    by_name.update(zip(plan.names_looked_up, map(pick, plan.name_entries), strict=True))
    by_ordinal = registry.ordinals.setdefault(id(module), {})
    by_ordinal.update(zip(plan.ordinals_looked_up, map(pick, plan.ordinal_entries), strict=True))
    known = registry._addresses
    sort = bool(known) and bool(plan.sorted_rvas) and known[-1] >= base + plan.sorted_rvas[0]
    known.extend(map(base.__add__, plan.sorted_rvas))
    if sort:  # two sorted runs: the sort merges them
        known.sort()
    if count:
        writes.append((text_at, images.stubbed_text(plan, module.arch, base, first_trap, stride)))
    return True


def _write_merged(emu: Any, writes: list[tuple[int, bytes]]) -> None:
    """``writes`` as few writes, nearby ones merged; written one by one, in order, if any two
    overlap (the later must win)."""
    ordered = sorted(writes, key=operator.itemgetter(0))
    runs: list[list[tuple[int, bytes]]] = []
    end = -1
    for address, data in ordered:
        if address < end:
            for write in writes:
                emu.mem_write(*write)
            return
        if runs and address - end <= STUB_WRITE_GAP:
            runs[-1].append((address, data))
        else:
            runs.append([(address, data)])
        end = address + len(data)
    for run in runs:
        if len(run) == 1:
            emu.mem_write(*run[0])
            continue
        low = run[0][0]
        buffer = bytearray(emu.mem_read(low, end_of(run) - low))
        for address, data in run:
            buffer[address - low : address - low + len(data)] = data
        emu.mem_write(low, bytes(buffer))


def end_of(run: list[tuple[int, bytes]]) -> int:
    return run[-1][0] + len(run[-1][1])


# ---- start-up: the registry's data exports indexed -----------------------------------------


_LOAD_IMAGE_CODE = se_winemu.WindowsEmulator._load_image.__code__


class _EntriesWithDataIndex(dict[int, Any]):
    """The API registry's entries (address -> entry), with its data exports kept apart in the
    same order: ``_load_image`` gets those alone when it asks for the values, since it walks
    them for the data exports only; every other caller gets every entry."""

    def __init__(self, entries: dict[int, Any]) -> None:
        super().__init__(entries)
        self.data = {address: entry for address, entry in entries.items() if entry.export.kind == "data"}

    def values(self) -> Any:
        if sys._getframe(1).f_code is _LOAD_IMAGE_CODE:
            return self.data.values()
        return super().values()

    def __setitem__(self, address: int, entry: Any) -> None:
        super().__setitem__(address, entry)
        if entry.export.kind == "data":
            self.data[address] = entry
        else:
            self.data.pop(address, None)

    def __delitem__(self, address: int) -> None:
        super().__delitem__(address)
        self.data.pop(address, None)

    def pop(self, address: int, *default: Any) -> Any:
        self.data.pop(address, None)
        return super().pop(address, *default)

    def popitem(self) -> tuple[int, Any]:
        address, entry = super().popitem()
        self.data.pop(address, None)
        return address, entry

    def clear(self) -> None:
        super().clear()
        self.data.clear()

    def setdefault(self, address: int, entry: Any = None) -> Any:
        if address not in self:
            self[address] = entry
        return self[address]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for address, entry in dict(*args, **kwargs).items():
            self[address] = entry


def index_data_entries(emu: Any) -> None:
    """``_load_image`` initialises the data exports of the whole registry after each image (the
    ones without an initializer again each time): it walked all ~19,000 entries 55 times, about
    0.1 s of a replay, to find ~3,000. It now walks the data exports alone, in the same order;
    the same initializers run (tests/test_startup.py compares memory and registry)."""
    registry = emu.api_registry
    registry.entries = _EntriesWithDataIndex(registry.entries)


# ---- start-up: the disassembler made when first used ---------------------------------------

# What ``_load_image`` makes the disassembler with (``if not self.disasm_eng:`` then
# ``cs.Cs(cs.CS_ARCH_X86, cs.CS_MODE_64 if self.arch == ARCH_AMD64 else cs.CS_MODE_32)``).
_DISASSEMBLER_NAMES = {"disasm_eng", "arch", "ARCH_AMD64", "cs", "Cs", "CS_ARCH_X86", "CS_MODE_64", "CS_MODE_32"}
DISASSEMBLER_DEFERRABLE = _DISASSEMBLER_NAMES.issubset(_LOAD_IMAGE_CODE.co_names) and (
    getattr(getattr(se_winemu, "cs", None), "__name__", None) == "capstone"
)


class _Disassembler:
    """Stands for the Capstone disassembler ``_load_image`` gives an emulator (``disasm_eng``)
    until something uses it, then is that disassembler.

    Speakeasy disassembles only to describe an error or a hammering loop, which most replays
    never meet; importing Capstone (loading its library of every architecture) is ~22 ms of the
    cold child. ``_load_image`` asks ``not self.disasm_eng`` right where it would make the
    disassembler: :meth:`__bool__` takes the mode from the emulator's architecture then, as
    Speakeasy does, and the first attribute read or set makes the same ``Cs`` and puts it in
    the emulator's place."""

    __slots__ = ("_emu", "_x64")

    def __init__(self, emu: Any) -> None:
        object.__setattr__(self, "_emu", emu)
        object.__setattr__(self, "_x64", None)

    def __bool__(self) -> bool:
        if self._x64 is None:
            object.__setattr__(self, "_x64", self._emu.arch == se_arch.ARCH_AMD64)
        return True

    def _made(self) -> Any:
        # Before any image, Speakeasy has no disassembler (binemu.disasm asserts one).
        assert self._x64 is not None, "no image loaded: no disassembler yet"
        cs = se_winemu.cs
        made = cs.Cs(cs.CS_ARCH_X86, cs.CS_MODE_64 if self._x64 else cs.CS_MODE_32)
        if self._emu.disasm_eng is self:
            self._emu.disasm_eng = made
        return made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._made(), name, value)


def disassembler_when_first_used(emu: Any) -> None:
    """``emu``'s disassembler (and Capstone's import) made when first used (:class:`_Disassembler`);
    nothing changes when Capstone is already imported or ``_load_image`` makes it otherwise."""
    from emulator.lazyimport import is_waiting

    if DISASSEMBLER_DEFERRABLE and emu.disasm_eng is None and is_waiting("capstone"):
        emu.disasm_eng = _Disassembler(emu)


# ---- start-up: the once-per-process tables, read ahead ---------------------------------------


def read_engine_tables(module: str, arch: str) -> None:
    """Read what building ``module``'s decoy image on ``arch`` ("x86" or "x64") reads first in
    a process (cached for the process's life): its shipped template (images.py) and its
    registration (``images.registration``) or, when there is none, its export manifest or its
    declarations in the signature database; and its API handler class's hooks
    (:func:`class_hooks`)."""
    found = images.template((module.lower(), arch))
    handler = _handler_class(module)
    if handler is not None and handler_scan_matches():
        class_hooks(handler)
    if found is not None:
        images.registration(found, se_arch.ARCH_X86 if arch == "x86" else se_arch.ARCH_AMD64)
        return
    if se_manifest.get_export_manifest(module.lower(), arch) is None:
        signature_arch = se_sigdb.ARCH_X86 if arch == "x86" else se_sigdb.ARCH_X64
        se_sigdb.get_default_database().get_functions(module, signature_arch)


def _handler_class(module: str) -> type | None:
    from speakeasy.winenv.api.winapi import API_HANDLERS

    return next((handler for name, handler in API_HANDLERS if name.lower() == module.lower()), None)


def read_signature_database() -> None:
    """Read Speakeasy's signature database (once per process): the dispatch of an API call
    reads it for the handler's argument names, whatever the decoy images came from; from the
    shipped tables when they fit (signatures.py), which decode each entry when first read."""
    from emulator.backends.speakeasy import signatures

    signatures.install()
    for source in se_sigdb.get_default_database().sources:
        source.available  # noqa: B018 - loads the source


# ---- module lookups by name, memoised ------------------------------------------------------

# The SHA-256 of speakeasy/windows/winemu.py, whose WindowsEmulator.get_mod_by_name
# find_modules_by_name memoises (module_lookup_matches).
MODULE_LOOKUP_DIGEST = "3603ee36ccaf0d17f673d10d53b5e250b653a90f25ebd6540faaeacc88e94f69"


@functools.cache
def _source_digest(module_file: str) -> str:
    try:
        return hashlib.sha256(Path(module_file).read_bytes()).hexdigest()
    except OSError:
        return ""


def module_lookup_matches() -> bool:
    """Whether Speakeasy's ``get_mod_by_name`` is the one :func:`find_modules_by_name` memoises."""
    return _source_digest(str(se_winemu.__file__)) == MODULE_LOOKUP_DIGEST


@functools.lru_cache(maxsize=4096)
def module_names(emu_path: str, name: str | None) -> tuple[str, str | None]:
    """What ``get_mod_by_name`` compares of a module: the base name of its path without the
    extension, and its own name, both lower case (None for no name)."""
    base = os.path.splitext(ntpath.basename(emu_path))[0].lower()  # noqa: PTH122 - as Speakeasy compares
    return base, (name.lower() if name else None)


def find_modules_by_name(emu: Any) -> None:
    """``emu.get_mod_by_name``, with each module's names worked out once per process.

    Speakeasy splits every module's path (``ntpath.basename``, ``os.path.splitext``) at every
    lookup: ~100 lookups over ~55 modules per replay, ~5,500 path splits. The names are a pure
    function of the module's path and name (:func:`module_names`, memoised on them); the
    modules are walked in the same order and the first match is returned, as before. Only for
    the Speakeasy source it was written from (:func:`module_lookup_matches`).
    """
    if not module_lookup_matches():
        return
    modules_of = emu

    def get_mod_by_name(name: str) -> Any:
        name_lower = name.lower()
        for mod in modules_of.modules:
            base, own = module_names(mod.emu_path, mod.name)
            if base == name_lower or own == name_lower:
                return mod
        return None

    emu.get_mod_by_name = get_mod_by_name


# ---- API handlers: each class's hooks found once per process -------------------------------

# The SHA-256 of speakeasy/winenv/api/api.py, whose ApiHandler.__init__ and __get_hook_attrs__
# scan_handlers_once replaces (handler_scan_matches).
HANDLER_SCAN_DIGEST = "69236ffc71b10a715c2fce2cb550e72d4aa87fd545db1d9fb7d6fc2e1e5356cf"

_ORIGINAL_HANDLER_INIT = se_api.ApiHandler.__init__
_ORIGINAL_HOOK_ATTRS = se_api.ApiHandler.__get_hook_attrs__
# Hooks seen from an instance, per handler class: (name, __apihook__, __datahook__), in dir()'s order.
ClassHooks = tuple[tuple[str, Any, Any], ...]
_class_hooks: dict[type, ClassHooks | None] = {}
# Attributes every object has whose value an instance gives can carry no hook (a dict, a
# weak reference or None, bound built-in methods).
_BUILTIN_DESCRIPTORS = (
    types.WrapperDescriptorType,
    types.MethodDescriptorType,
    types.BuiltinFunctionType,
    types.ClassMethodDescriptorType,
)
_INSTANCE_SLOTS = ("__dict__", "__weakref__")


def handler_scan_matches() -> bool:
    """Whether Speakeasy's ``ApiHandler`` scans itself as :func:`scan_handlers_once` does."""
    return _source_digest(str(se_api.__file__)) == HANDLER_SCAN_DIGEST


def class_hooks(cls: type) -> ClassHooks | None:
    """What ``ApiHandler.__get_hook_attrs__`` finds on an instance of ``cls`` through its class
    (once per class): each name of ``dir(cls)`` whose value, read from an instance, carries
    ``__apihook__`` or ``__datahook__``. None when such a value could depend on the instance
    (a property or another descriptor, a slot): then every instance is scanned as before."""
    lasterror.install()  # their wrappers are what the scan must find
    disks.wrap_create_file()
    if cls in _class_hooks:
        return _class_hooks[cls]
    found: list[tuple[str, Any, Any]] = []
    cacheable = True
    # Each name's value in the first class of the MRO that has it (the later update wins).
    attributes: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        attributes.update(vars(klass))
    missing = object()
    for name in dir(cls):
        raw = attributes.get(name, missing)
        if raw is missing:
            cacheable = False
            break
        if isinstance(raw, types.FunctionType):
            seen: Any = raw  # a bound method reads its function's attributes
        elif isinstance(raw, staticmethod | classmethod):
            seen = raw.__func__
        elif name == "__class__":
            seen = cls
        elif isinstance(raw, _BUILTIN_DESCRIPTORS) or (
            name in _INSTANCE_SLOTS and isinstance(raw, types.GetSetDescriptorType | types.MemberDescriptorType)
        ):
            continue
        elif not hasattr(type(raw), "__get__"):
            seen = raw
        else:
            cacheable = False
            break
        if seen is None:
            continue
        func_attrs, data_attrs = getattr(seen, "__apihook__", None), getattr(seen, "__datahook__", None)
        if func_attrs or data_attrs:
            found.append((name, func_attrs, data_attrs))
    _class_hooks[cls] = hooks = tuple(found) if cacheable else None
    return hooks


def _hook_attrs(self: Any, obj: Any) -> None:
    """``ApiHandler.__get_hook_attrs__(obj)``: ``obj``'s class's hooks (:func:`class_hooks`),
    when none of its own attributes carries or hides one; otherwise Speakeasy's scan."""
    hooks = class_hooks(type(obj))
    own = getattr(obj, "__dict__", None)
    if hooks is None or own is None or type(own) is not dict:
        _ORIGINAL_HOOK_ATTRS(self, obj)
        return
    names = {name for name, _, _ in hooks}
    for name, value in own.items():
        if name in names or (
            value is not None and (getattr(value, "__apihook__", None) or getattr(value, "__datahook__", None))
        ):
            _ORIGINAL_HOOK_ATTRS(self, obj)
            return
    funcs, data = obj.funcs, obj.data
    for _, func_attrs, data_attrs in hooks:
        if func_attrs:
            name, func, argc, conv, ordinal = func_attrs
            funcs[name] = (name, func, argc, conv, ordinal)
            if ordinal:
                funcs[ordinal] = (name, func, argc, conv, ordinal)
        elif data_attrs:
            name, func = data_attrs
            data[name] = func


def _handler_init(self: Any, emu: Any) -> None:
    """``ApiHandler.__init__``, its scan of itself done by :func:`_hook_attrs`."""
    super(se_api.ApiHandler, self).__init__()
    self.funcs = {}
    self.data = {}
    self.emu = emu
    arch = self.emu.get_arch()
    if arch == se_arch.ARCH_X86:
        self.ptr_size = 4
    elif arch == se_arch.ARCH_AMD64:
        self.ptr_size = 8
    else:
        raise se_api.ApiEmuError("Invalid architecture")
    _hook_attrs(self, self)


def scan_handlers_once() -> None:
    """Every API handler of this process finds its hooks from its class's, found once.

    Speakeasy's ``ApiHandler`` lists ``dir()`` of each new handler and reads every attribute
    (twice for most handlers: its ``__init__`` and the subclass's ``__get_hook_attrs__``
    call), ~600 names each, ~64 handlers a replay. A hook is an attribute of a function of
    the class (``apihook`` / ``impdata``), the same for every instance: :func:`class_hooks`
    finds them once per class, in ``dir()``'s order, and each scan fills ``funcs`` and
    ``data`` from them in that order, unless an attribute of the instance itself carries or
    hides a hook (then Speakeasy's scan runs). Only for the Speakeasy source it was written
    from (:func:`handler_scan_matches`); idempotent.
    """
    if not handler_scan_matches():
        return
    se_api.ApiHandler.__init__ = _handler_init  # type: ignore[method-assign]
    se_api.ApiHandler.__get_hook_attrs__ = _hook_attrs  # type: ignore[method-assign]
