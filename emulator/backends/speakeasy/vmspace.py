"""The guest's address space as Windows describes it, for ``VirtualQuery`` and its kin
(emulator/apis/memory.py), and the allocation calls that change what it says.

Speakeasy keeps a list of maps (tagged, with the protection first asked for) and Unicorn the
pages. What ``VirtualQuery`` reports is built from both, and from what the guest asked for:

* **Allocations.** An image (any module Speakeasy loaded) is ``MEM_IMAGE`` from its base to the
  end of its image, allocation protection ``PAGE_EXECUTE_WRITECOPY``; a view of a section
  (``MapViewOfFile``) ``MEM_MAPPED``; every other map (``VirtualAlloc``, heaps, stacks, process
  blocks) ``MEM_PRIVATE``, maps smaller than a page sharing the page block they were cut from.
  Pages Unicorn maps that no Speakeasy map describes are private allocations of their own; a map
  the guest freed is free. Everything else below the end of user space is ``MEM_FREE``.
* **Protection, per page.** What the guest last asked for (``VirtualAlloc`` committing,
  ``VirtualProtect``), else for an image its section's protection (headers ``PAGE_READONLY``,
  code ``PAGE_EXECUTE_READ``, data ``PAGE_READWRITE``: Speakeasy gives Unicorn the same
  protections, so the report and the engine agree), else the protection the page has in the
  guest's view (the memory watch's, which keeps non-image memory non-executable in Unicorn to
  see stages start, memwatch.py), without execute for the emulator's own maps (heaps, process
  blocks), which Windows never makes executable.
* **Reserved pages.** ``VirtualAlloc(MEM_RESERVE)`` without ``MEM_COMMIT`` leaves its pages
  ``MEM_RESERVE`` and inaccessible (Unicorn protection none: a touch faults, as on Windows, and
  a handler committing the page and retrying works); ``VirtualAlloc(MEM_COMMIT)`` over them
  commits them with the protection asked for (Speakeasy returns the address and leaves the pages
  as they were); ``VirtualFree(MEM_DECOMMIT)`` makes pages reserved again (Speakeasy marked the
  whole allocation free).

* **Write watch.** An allocation made with ``MEM_WRITE_WATCH`` has its pages write-protected
  in Unicorn until the guest writes one: the write faults, the page is noted written and made
  writable, and the write runs (as Windows' dirty-page tracking); ``GetWriteWatch`` lists the
  pages written, ``ResetWriteWatch`` / ``WRITE_WATCH_FLAG_RESET`` protect them again (Speakeasy
  has neither: its signature stub reported no page ever written). Writes an API makes on the
  guest's behalf (``ReadFile`` into the buffer) do not fault and are not seen.

The engine's pages keep the protections Speakeasy and the memory watch give them: only reserved
pages are made inaccessible and write-watched ones read-only until written, so fast mode's
dispatch and the watches see what they saw before.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import speakeasy.memmgr as se_memmgr
import speakeasy.windows.fileman as se_fileman
import speakeasy.windows.loaders as se_loaders
import unicorn as uc

from emulator.apis.core import MemoryRegion
from emulator.apis.memory import (
    MEM_COMMIT,
    MEM_DECOMMIT,
    MEM_FREE,
    MEM_IMAGE,
    MEM_MAPPED,
    MEM_PRIVATE,
    MEM_RELEASE,
    MEM_RESERVE,
    PAGE_EXECUTE,
    PAGE_EXECUTE_READ,
    PAGE_EXECUTE_READWRITE,
    PAGE_EXECUTE_WRITECOPY,
    PAGE_NOACCESS,
    PAGE_READONLY,
    PAGE_READWRITE,
    PAGE_WRITECOPY,
    USER_END_X64,
    USER_END_X86,
)
from emulator.backends.speakeasy import compat, compat_guest
from emulator.backends.speakeasy.compat import _incompatible, _require_params

PAGE = 0x1000
ERROR_INVALID_ADDRESS = 487
# Speakeasy's protection bits (speakeasy.common.PERM_MEM_*) and Unicorn's (UC_PROT_*).
PERM_READ, PERM_WRITE, PERM_EXEC = 0x2, 0x4, 0x10
UC_READ, UC_WRITE, UC_EXEC = 0x1, 0x2, 0x4
# Tags of the maps the guest allocated itself (their protection is what the guest asked for),
# and of views of a section.
GUEST_ALLOCATION_TAGS = ("api.VirtualAlloc",)
VIEW_TAGS = ("api.MapViewOfFile",)
READ_ONLY_TAGS = ("emu.struct.KUSER_SHARED_DATA",)
FILE_MAP_COPY, FILE_MAP_WRITE, FILE_MAP_EXECUTE = 0x1, 0x2, 0x20
MEM_WRITE_WATCH = 0x200000
WRITE_WATCH_FLAG_RESET = 0x1
ERROR_INVALID_PARAMETER = 87
ERROR_NOACCESS = 998
WRITABLE = (PAGE_READWRITE, PAGE_EXECUTE_READWRITE)
WRITABLE_SECTIONS = (PAGE_READWRITE, PAGE_EXECUTE_READWRITE)
# Protections a write succeeds under (copy-on-write included).
WRITABLE_PROTECTIONS = (PAGE_READWRITE, PAGE_EXECUTE_READWRITE, 0x08, 0x80)
EXECUTABLE_SECTIONS = (PAGE_EXECUTE, PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_WRITECOPY)


def _check_installed() -> None:
    _require_params(se_fileman.FileMap, "add_view", ("base", "offset", "size", "protect"))
    _require_params(se_fileman.MapView, "__init__", ("base", "offset", "size", "protect"))
    _require_params(se_memmgr.MemMap, "__init__", ("base", "size", "tag", "prot", "flags", "block_base", "block_size"))
    fields = getattr(se_loaders.SectionEntry, "__dataclass_fields__", {})
    for name in ("virtual_address", "virtual_size", "perms"):
        if name not in fields:
            raise _incompatible(f"speakeasy.windows.loaders.SectionEntry has no {name}")


_check_installed()


def _up(address: int) -> int:
    return (address + PAGE - 1) & ~(PAGE - 1)


def windows_protection(perms: int) -> int:
    """The PAGE_* value of Speakeasy protection bits."""
    if perms & PERM_EXEC:
        if perms & PERM_WRITE:
            return PAGE_EXECUTE_READWRITE
        return PAGE_EXECUTE_READ if perms & PERM_READ else PAGE_EXECUTE
    if perms & PERM_WRITE:
        return PAGE_READWRITE
    return PAGE_READONLY if perms & PERM_READ else PAGE_NOACCESS


def _from_unicorn(perms: int) -> int:
    return (
        (PERM_READ if perms & UC_READ else 0)
        | (PERM_WRITE if perms & UC_WRITE else 0)
        | (PERM_EXEC if perms & UC_EXEC else 0)
    )


@dataclass
class _Allocation:
    base: int
    end: int
    type: int
    tag: str = ""
    module: Any = None
    view_protect: int | None = None


@dataclass
class _View:
    """One query's snapshot of the engine: the allocations and Unicorn's regions, sorted."""

    allocations: list[_Allocation]
    starts: list[int]
    regions: list[tuple[int, int, int]] = field(default_factory=list)  # (begin, end exclusive, perms)
    region_starts: list[int] = field(default_factory=list)


class AddressSpace:
    """Answers :meth:`query` (``VirtualQuery``); its hooks keep the guest's requests."""

    def __init__(self, emu: Any, x64: bool, guest_perms: dict[int, int]) -> None:
        self.emu = emu
        self.end = USER_END_X64 if x64 else USER_END_X86
        self.mask = (1 << 64) - 1 if x64 else 0xFFFFFFFF
        # page index -> Speakeasy perms of watched pages (the memory watch's ``armed``).
        self.guest_perms = guest_perms
        self.protect: dict[int, int] = {}  # page index -> PAGE_* the guest last asked for
        self.allocated: dict[int, int] = {}  # base of a guest allocation -> its PAGE_* at allocation
        # base of an allocation with reserved pages -> page indexes of it committed.
        self.committed: dict[int, set[int]] = {}
        self._sections: dict[int, tuple[Any, dict[int, int]]] = {}
        # The last view and what it was made from (Unicorn's regions, the maps and modules):
        # queries between two changes of the address space share it.
        self._last_view: tuple[tuple[bytes, int, int, int], _View] | None = None
        # base of a MEM_WRITE_WATCH allocation -> (its end, page indexes written since the reset)
        self.watched: dict[int, tuple[int, set[int]]] = {}

    def install(self, se: Any) -> None:
        se.add_api_hook(self._get_write_watch, "kernel32", "GetWriteWatch", argc=6)
        se.add_api_hook(self._reset_write_watch, "kernel32", "ResetWriteWatch", argc=2)
        compat.intercept_protection_fault(self.emu, uc.UC_MEM_WRITE_PROT, self._on_write_fault, unhooked=False)
        for name in ("VirtualAlloc", "VirtualAllocEx"):
            se.add_api_hook(self._virtual_alloc, "kernel32", name)
        for name in ("VirtualProtect", "VirtualProtectEx"):
            se.add_api_hook(self._virtual_protect, "kernel32", name)
        se.add_api_hook(self._virtual_free, "kernel32", "VirtualFree")

    # -- the query -----------------------------------------------------------------------------

    def query(self, address: int) -> MemoryRegion | None:
        address &= self.mask
        if address >= self.end:
            return None
        page = address & ~(PAGE - 1)
        view = self._view()
        i = bisect.bisect_right(view.starts, page) - 1
        if i >= 0 and view.allocations[i].end > page:
            return self._region(view, view.allocations[i], page)
        following = view.starts[i + 1] if i + 1 < len(view.starts) else self.end
        return MemoryRegion(page, 0, 0, min(following, self.end) - page, MEM_FREE, PAGE_NOACCESS, 0)

    def _region(self, view: _View, allocation: _Allocation, page: int) -> MemoryRegion:
        first = self._page(view, allocation, page)
        end = page + PAGE
        while end < allocation.end and self._page(view, allocation, end) == first:
            end += PAGE
        state, protect = first
        return MemoryRegion(
            page,
            allocation.base,
            self._allocation_protect(view, allocation),
            end - page,
            state,
            protect if state == MEM_COMMIT else 0,
            allocation.type,
        )

    def _allocation_protect(self, view: _View, allocation: _Allocation) -> int:
        if allocation.base in self.allocated:
            return self.allocated[allocation.base]
        if allocation.type == MEM_IMAGE:
            return PAGE_EXECUTE_WRITECOPY
        if allocation.type == MEM_MAPPED:
            return self._view_protect(view, allocation)
        return self._derived(view, allocation, allocation.base)

    def _page(self, view: _View, allocation: _Allocation, page: int) -> tuple[int, int]:
        index = page // PAGE
        committed = self.committed.get(allocation.base)
        if committed is not None and index not in committed:
            return MEM_RESERVE, 0
        protect = self.protect.get(index)
        if protect is not None:
            return MEM_COMMIT, protect
        if allocation.module is not None:
            return MEM_COMMIT, self._section_protect(allocation.module, index)
        if allocation.base in self.allocated:
            return MEM_COMMIT, self.allocated[allocation.base]
        if allocation.type == MEM_MAPPED:
            return MEM_COMMIT, self._view_protect(view, allocation)
        return MEM_COMMIT, self._derived(view, allocation, page)

    def _view_protect(self, view: _View, allocation: _Allocation) -> int:
        """A view's protection as Windows derives it from the access asked for and the
        section's protection (Speakeasy makes FILE_MAP_ALL_ACCESS views executable)."""
        if allocation.view_protect is None:
            allocation.view_protect = self._derived(view, allocation, allocation.base)
            maps = getattr(self.emu.get_file_manager(), "file_maps", None) or {}
            for mapping in list(maps.values()):
                found = mapping.views.get(allocation.base)
                if found is None:
                    continue
                access, section = int(found.protect or 0), int(mapping.prot or 0) & 0xFF
                write = bool(access & FILE_MAP_WRITE) and section in WRITABLE_SECTIONS
                execute = bool(access & FILE_MAP_EXECUTE) and section in EXECUTABLE_SECTIONS
                if execute:
                    allocation.view_protect = PAGE_EXECUTE_READWRITE if write else PAGE_EXECUTE_READ
                elif write:
                    allocation.view_protect = PAGE_READWRITE
                else:
                    allocation.view_protect = PAGE_WRITECOPY if access == FILE_MAP_COPY else PAGE_READONLY
                break
        return allocation.view_protect

    def _derived(self, view: _View, allocation: _Allocation, page: int) -> int:
        """The protection of a page nobody asked a protection for: the guest's view of it."""
        if allocation.tag.startswith(READ_ONLY_TAGS):
            return PAGE_READONLY
        perms = self.guest_perms.get(page // PAGE)
        if perms is None:
            i = bisect.bisect_right(view.region_starts, page) - 1
            found = i >= 0 and view.regions[i][1] > page
            perms = _from_unicorn(view.regions[i][2]) if found else 0
        if allocation.type != MEM_MAPPED and not allocation.tag.startswith(GUEST_ALLOCATION_TAGS):
            perms &= ~PERM_EXEC  # heaps, stacks and process blocks are never executable on Windows
        return windows_protection(perms)

    def _section_protect(self, module: Any, index: int) -> int:
        cached = self._sections.get(module.base)
        if cached is None or cached[0] is not module:
            cached = (module, self._section_pages(module))
            self._sections[module.base] = cached
        return cached[1].get(index, PAGE_READONLY)

    @staticmethod
    def _section_pages(module: Any) -> dict[int, int]:
        """Page index -> PAGE_* of an image's sections (pages two sections share take both)."""
        perms: dict[int, int] = {}
        for section in getattr(module, "sections", None) or []:
            start = (module.base + section.virtual_address) // PAGE
            end = _up(module.base + section.virtual_address + max(section.virtual_size, 1)) // PAGE
            for index in range(start, end):
                perms[index] = perms.get(index, 0) | section.perms
        return {index: windows_protection(p) for index, p in perms.items()}

    def _view(self) -> _View:
        emu = self.emu
        raw = compat.mem_regions_raw(compat.unicorn_of(emu))
        modules = list(getattr(emu, "modules", None) or [])
        maps = emu.get_mem_maps()
        # A map, an unmap or a protection change moves Unicorn's regions; a map freed without
        # an unmap, or a module listed, only Speakeasy's lists.
        key = (raw, len(maps), sum(1 for mm in maps if mm.free), len(modules))
        if self._last_view is not None and self._last_view[0] == key:
            return self._last_view[1]
        view = self._make_view(modules, maps, compat.regions_of_raw(raw))
        self._last_view = (key, view)
        return view

    def _make_view(self, modules: list[Any], maps: list[Any], unicorn_regions: list[tuple[int, int, int]]) -> _View:
        found: dict[int, _Allocation] = {}
        freed: list[tuple[int, int]] = []
        for module in modules:
            base = int(module.base)
            if base < self.end:
                found[base] = _Allocation(base, _up(base + int(module.image_size)), MEM_IMAGE, module=module)
        for mm in maps:
            if mm.base >= self.end:
                continue
            if mm.base % PAGE or mm.size < PAGE:
                start, end = mm.block_base, mm.block_base + max(mm.block_size, PAGE)
            else:
                start, end = mm.base, _up(mm.base + mm.size)
            if mm.free:
                freed.append((start, end))
                continue
            existing = found.get(start)
            if existing is not None:
                existing.end = max(existing.end, end)
                continue
            tag = str(mm.tag or "")
            kind = MEM_MAPPED if mm.shared or tag.startswith(VIEW_TAGS) else MEM_PRIVATE
            found[start] = _Allocation(start, end, kind, tag=tag)
        allocations: list[_Allocation] = []
        for allocation in sorted(found.values(), key=lambda a: a.base):
            if allocations and allocation.base < allocations[-1].end:
                allocations[-1].end = max(allocations[-1].end, allocation.end)  # one inside another
            else:
                allocations.append(allocation)
        regions = sorted((begin, end + 1, perms) for begin, end, perms in unicorn_regions)
        self._add_undescribed(allocations, freed, regions)
        for allocation in allocations:
            allocation.end = min(allocation.end, self.end)
        return _View(allocations, [a.base for a in allocations], regions, [r[0] for r in regions])

    def _add_undescribed(
        self, allocations: list[_Allocation], freed: list[tuple[int, int]], regions: list[tuple[int, int, int]]
    ) -> None:
        """Pages Unicorn maps that no map describes (nor a freed one): private allocations."""
        covered = sorted([(a.base, a.end) for a in allocations] + freed)
        pieces: list[tuple[int, int]] = []
        first = 0  # covered spans ending at or before the current region are behind the sweep
        for begin, end, _perms in regions:
            if begin >= self.end:
                break
            while first < len(covered) and covered[first][1] <= begin:
                first += 1
            at = begin
            for start, stop in covered[first:]:
                if start >= end:
                    break
                if stop <= at:
                    continue
                if start > at:
                    pieces.append((at, start))
                at = max(at, stop)
                if at >= end:
                    break
            if at < end:
                pieces.append((at, end))
        extra: list[_Allocation] = []
        for begin, end in pieces:
            if extra and extra[-1].end == begin:
                extra[-1].end = end
            else:
                extra.append(_Allocation(begin, end, MEM_PRIVATE))
        if extra:
            allocations.extend(extra)
            allocations.sort(key=lambda a: a.base)

    # -- the calls that change it --------------------------------------------------------------

    def through(self, api: str, call: Callable[[list[int]], Any], argv: list[int]) -> Any:
        """kernel32's ``api`` (VirtualAllocEx, VirtualProtectEx or VirtualFree) run as ``call(argv)``
        with this space's bookkeeping, as a guest call of it is (ntdll's Nt*VirtualMemory, ntmemory.py)."""
        hook = {
            "VirtualAllocEx": self._virtual_alloc,
            "VirtualProtectEx": self._virtual_protect,
            "VirtualFree": self._virtual_free,
        }[api]
        return hook(self.emu, f"kernel32.{api}", call, argv)

    def _guest_allocation(self, address: int) -> Any:
        mm = self.emu.get_address_map(address) if address else None
        if mm is None or mm.free or not str(mm.tag or "").startswith(GUEST_ALLOCATION_TAGS):
            return None
        return mm

    def _virtual_alloc(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        args = list(argv[1:5]) if api_name.endswith("Ex") else list(argv[:4])
        address, size, kind, protect = (args + [0, 0, 0, 0])[:4]
        kind, protect = kind & 0xFFFFFFFF, protect & 0xFFFFFFFF  # DWORDs: a register's upper half is junk
        if not size and not address:
            emu.set_last_error(ERROR_INVALID_PARAMETER)  # Speakeasy failed without an error
            return 0
        inside = self._guest_allocation(address)
        rv = orig(argv)
        if not rv or not size:
            return rv
        if inside is not None:
            # Pages of an allocation already made: MEM_COMMIT commits them with the protection
            # asked for, and the result is the first page's address, as on Windows.
            start, end = address & ~(PAGE - 1), _up(address + size)
            if kind & MEM_COMMIT:
                self._commit(int(inside.base), start, end, protect)
                return start
            return rv
        base, end = int(rv), _up(int(rv) + size)
        self.allocated[base] = protect
        for index in range(base // PAGE, end // PAGE):
            self.protect.pop(index, None)
        self.watched.pop(base, None)
        if kind & MEM_COMMIT:
            self.committed.pop(base, None)
        else:
            self.committed[base] = set()
            compat_guest.protect_like_virtual_protect(emu, base, end - base, PAGE_NOACCESS)
        if kind & MEM_WRITE_WATCH:
            self.watched[base] = (end, set())
            self._protect_writes(base, end)
        return rv

    def _commit(self, base: int, start: int, end: int, protect: int) -> None:
        compat_guest.protect_like_virtual_protect(self.emu, start, end - start, protect)
        if base in self.watched:
            self._protect_writes(start, end)
        pages = range(start // PAGE, end // PAGE)
        for index in pages:
            self.protect[index] = protect
        committed = self.committed.get(base)
        if committed is not None:
            committed.update(pages)

    def _virtual_protect(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """The old protection written back is the page's as :meth:`query` says (Speakeasy writes
        the protection its whole map was first given); free and reserved pages are refused."""
        args = list(argv[1:5]) if api_name.endswith("Ex") else list(argv[:4])
        address, size, protect, old_pointer = (args + [0, 0, 0, 0])[:4]
        protect &= 0xFFFFFFFF
        region = self.query(address)
        if region is None or region.state != MEM_COMMIT:
            emu.set_last_error(ERROR_INVALID_ADDRESS)
            return 0
        if not self._writable(old_pointer):
            # Windows' kernel probes lpflOldProtect first: NULL or unmapped fails the call,
            # nothing changed (Speakeasy changed the protection and returned TRUE).
            emu.set_last_error(ERROR_NOACCESS)
            return 0
        rv = orig(argv)
        if rv and old_pointer:
            emu.mem_write(old_pointer, region.protect.to_bytes(4, "little"))
            for index in range(address // PAGE, _up(address + max(size, 1)) // PAGE):
                self.protect[index] = protect
        return rv

    def _writable(self, address: int) -> bool:
        region = self.query(address) if address else None
        return region is not None and region.state == MEM_COMMIT and region.protect & 0xFF in WRITABLE_PROTECTIONS

    def _virtual_free(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        address, size, kind = (list(argv) + [0, 0, 0])[:3]
        kind &= 0xFFFFFFFF
        mm = self._guest_allocation(address)
        if mm is None:
            if address and emu.get_address_map(address) is None:
                # nothing is allocated there: Windows fails (Speakeasy answered TRUE)
                emu.set_last_error(ERROR_INVALID_ADDRESS)
                return 0
            return orig(argv)
        base, whole_end = int(mm.base), _up(int(mm.base) + int(mm.size))
        if kind & MEM_DECOMMIT:
            start = address & ~(PAGE - 1)
            end = _up(address + size) if size else whole_end
            committed = self.committed.setdefault(base, set(range(base // PAGE, whole_end // PAGE)))
            for index in range(start // PAGE, end // PAGE):
                committed.discard(index)
                self.protect.pop(index, None)
            compat_guest.protect_like_virtual_protect(emu, start, end - start, PAGE_NOACCESS)
            return 1
        rv = orig(argv)
        if kind & MEM_RELEASE and address == base:
            self.watched.pop(base, None)
            self.allocated.pop(base, None)
            self.committed.pop(base, None)
            for index in range(base // PAGE, whole_end // PAGE):
                self.protect.pop(index, None)
        return rv

    # -- write watch -----------------------------------------------------------------------------

    def _watch_of(self, address: int) -> tuple[int, int, set[int]] | None:
        for base, (end, written) in self.watched.items():
            if base <= address < end:
                return base, end, written
        return None

    def _protect_writes(self, start: int, end: int) -> None:
        """Take write access from the pages in [start, end) in Unicorn only (the guest's view keeps it)."""
        unicorn = compat.unicorn_of(self.emu)
        for begin, last, perms in list(unicorn.mem_regions()):
            low, high = max(begin, start), min(last + 1, end)
            if low < high and perms & uc.UC_PROT_WRITE:
                unicorn.mem_protect(low, high - low, perms & ~uc.UC_PROT_WRITE)

    def _on_write_fault(self, address: int) -> bool | None:
        """A write to a write-watched page the guest may write: note it, let it through."""
        found = self._watch_of(address)
        if found is None:
            return None
        page = address & ~(PAGE - 1)
        region = self.query(page)
        if region is None or region.state != MEM_COMMIT or region.protect not in WRITABLE:
            return None  # the guest's own protection forbids it: an access violation
        found[2].add(page // PAGE)
        unicorn = compat.unicorn_of(self.emu)
        for begin, last, perms in unicorn.mem_regions():
            if begin <= page <= last:
                unicorn.mem_protect(page, PAGE, perms | uc.UC_PROT_WRITE)
                # Unicorn drops the faulting store: the instruction runs again from its start.
                self.emu.set_pc(compat.guest_pc(self.emu))
                return True
        return None

    def _get_write_watch(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        """UINT GetWriteWatch(flags, base, size, addresses, count, granularity): 0 on success."""
        flags, base, size, addresses, count_pointer, granularity = (list(argv) + [0] * 6)[:6]
        flags &= 0xFFFFFFFF
        found = self._watch_of(base)
        ptr = 8 if self.mask > 0xFFFFFFFF else 4
        if found is None or not addresses or not count_pointer or base + size > found[1]:
            emu.set_last_error(ERROR_INVALID_PARAMETER)
            return ERROR_INVALID_PARAMETER
        try:
            room = int.from_bytes(bytes(emu.mem_read(count_pointer, ptr)), "little")
            pages = sorted(i for i in found[2] if base <= i * PAGE < base + size)[:room]
            for n, index in enumerate(pages):
                emu.mem_write(addresses + n * ptr, (index * PAGE).to_bytes(ptr, "little"))
            emu.mem_write(count_pointer, len(pages).to_bytes(ptr, "little"))
            if granularity:
                emu.mem_write(granularity, PAGE.to_bytes(4, "little"))
        except Exception:
            emu.set_last_error(998)  # ERROR_NOACCESS
            return 998
        if flags & WRITE_WATCH_FLAG_RESET:
            self._reset(found[2], [index * PAGE for index in pages])
        return 0

    def _reset_write_watch(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> int:
        """UINT ResetWriteWatch(base, size): 0 on success."""
        base, size = (list(argv) + [0, 0])[:2]
        found = self._watch_of(base)
        if found is None or base + size > found[1]:
            emu.set_last_error(ERROR_INVALID_PARAMETER)
            return ERROR_INVALID_PARAMETER
        self._reset(found[2], [i * PAGE for i in found[2] if base <= i * PAGE < base + size])
        return 0

    def _reset(self, written: set[int], pages: list[int]) -> None:
        for page in pages:
            written.discard(page // PAGE)
            self._protect_writes(page, page + PAGE)
