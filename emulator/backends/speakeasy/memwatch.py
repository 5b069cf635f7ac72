"""The memory watch: dynamic code becomes a new stage the first time it runs.

Memory Speakeasy maps for the guest's allocations is made non-executable in Unicorn (the
guest's own view of the protection is unchanged). The first fetch from such memory traps once,
is recorded as a new stage (its bytes, where it came from, which stage called it) and the pages
become executable again. No per-instruction Python hook is needed, which keeps compute-heavy
stages at Unicorn speed. The watch also enforces the memory limits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from emulator import pe
from emulator.apis.core import GuestMemory
from emulator.backends.base import ReplayStop
from emulator.backends.speakeasy import compat, compat_guest
from emulator.backends.speakeasy.flow import FlowWatch
from emulator.backends.speakeasy.guest import code_ranges
from emulator.backends.speakeasy.translate import Fail, Observed
from emulator.outcome import Status
from emulator.plan import ReplayPlan
from emulator.recorder import Recorder

PAGE = 0x1000
# Bytes compared at a fetch from a watched module page (an x64 API stub is 16).
STOMP_PROBE = 16
# Changed bytes of a module's code at most this long, in one span, are a patch (an AMSI or ETW
# bypass is 1-8 bytes, an inline hook's absolute jump 12-14), not a payload written over it
# (module stomping): run, they are the module's code as patched, not a stage of their own.
MAX_PATCH_BYTES = 32
# Unchanged bytes between two changed ones that still join them into one span.
PATCH_SPAN_GAP = 4
# The note naming a change the guest made to another module's code.
MODULE_CODE_PATCHED = "module_code_patched"
logger = logging.getLogger(__name__)


class MemoryWatch:
    def __init__(
        self,
        emu: Any,
        plan: ReplayPlan,
        recorder: Recorder,
        memory: GuestMemory,
        observed: Observed,
        fail: Fail,
        stop_now: Callable[[ReplayStop], None],
    ) -> None:
        self.emu = emu
        self.plan = plan
        self.recorder = recorder
        self.memory = memory
        self.observed = observed
        self.fail = fail
        self.stop_now = stop_now
        self.armed: dict[int, int] = {}  # page -> requested perms
        self.mapped_total = 0
        self.guest_modules: list[tuple[int, int, str]] = []  # PEs the guest wrote and loaded
        self.module_notes: dict[int, tuple[str, str]] = {}  # module base -> note at its first run
        # Told (base, size) of each new stage's code just before it runs.
        self.on_new_code: Callable[[int, int], None] | None = None
        # Flow through guest code (:mod:`.flow`): told of allocations and of stages starting.
        self.flow: FlowWatch | None = None
        # Told (address, size) of memory mapped or given another protection, once it is done.
        self.on_protection_change: Callable[[int, int], None] | None = None
        # The sample's own image (base, size): its pages made writable are not watched here.
        self.own_image: tuple[int, int] | None = None
        # Pages of another module's image the guest made writable -> their bytes then (module
        # stomping: code written over a loaded DLL's runs from its image, where no allocation
        # of the guest's holds it). Code run there is a stage only if the bytes differ.
        self.module_pages: dict[int, bytes] = {}
        self._module_code: dict[int, list[tuple[int, int]]] = {}  # module base -> its code ranges
        self._noted_patches: set[tuple[int, bytes]] = set()  # (address, bytes) noted

    def install(self) -> None:
        compat.wrap_memory_manager(self.emu, self._mem_map, self._mem_protect, self._mem_free)
        compat.intercept_fetch_from_protected(self.emu, self._on_fetch)

    # -- the guest's memory operations --------------------------------------------------------

    def _mem_map(
        self,
        original: compat.MemMap,
        size: int,
        base: int | None,
        perms: int,
        tag: str | None,
        flags: int,
        shared: bool,
        process: Any,
    ) -> int:
        limits = self.plan.limits
        if size > limits.max_allocation:
            raise self.fail(
                Status.LIMIT, f"single allocation of {size} bytes exceeds {limits.max_allocation}", "max_allocation"
            )
        if self.mapped_total + size > limits.max_mapped_memory:
            raise self.fail(
                Status.LIMIT, f"mapped memory would exceed {limits.max_mapped_memory} bytes", "max_mapped_memory"
            )
        address = original(size, base=base, perms=perms, tag=tag, flags=flags, shared=shared, process=process)
        self.mapped_total += size
        if tag and tag.startswith(compat.WATCHED_TAG_PREFIXES):
            self._arm(address, size, perms)
            if self.flow is not None and tag.startswith(compat.FLOW_TAG_PREFIXES):
                self.flow.watch_region(int(address), size)
            elif self.flow is not None and tag.startswith(compat.HEAP_FLOW_TAG_PREFIXES):
                self.flow.watch_heap(int(address), size)
        if self.on_protection_change is not None:
            self.on_protection_change(int(address), size)
        return int(address)

    def _mem_protect(self, original: Callable[[int, int, int], None], addr: int, size: int, perms: int) -> None:
        original(addr, size, perms)
        if perms & compat.PERM_WRITE and not compat.loading_images(self.emu):
            self._watch_module_pages(addr, size, perms)
        elif self.module_pages:
            self.note_patches(list(pages_of(addr, size)))  # protection restored after the writes
        armed_pages = [p for p in pages_of(addr, size) if p in self.armed]
        for page in armed_pages:
            self.armed[page] = perms
        self._set_pages(armed_pages, perms & ~compat.PERM_EXEC)
        if self.on_protection_change is not None:
            self.on_protection_change(addr, size)

    def _mem_free(self, original: Callable[[int], None], base: int) -> None:
        mm = self.emu.get_address_map(base)
        if mm is not None and self.flow is not None:
            self.flow.forget_region(mm.base)
        if mm is not None:
            # Speakeasy packs small blocks (heap blocks, HeapCreate's heaps) into shared pages: a
            # page stays watched while another live block of the guest's lies on it, or freeing
            # one heap block would let code in its neighbour run unseen.
            shared = self._live_neighbours(mm) if mm.base % PAGE or mm.size % PAGE else set()
            for page in pages_of(mm.base, mm.size):
                if page not in shared:
                    self.armed.pop(page, None)
            self.mapped_total = max(0, self.mapped_total - mm.size)
        original(base)

    def before_own_process_write(self, addr: int, size: int) -> None:
        """WriteProcessMemory into the guest's own process is about to write [addr, addr+size):
        pages of another module's code there are watched as if made writable first (Windows
        writes through a code page's protection for this call), so a patch is seen."""
        if not compat.loading_images(self.emu):
            self._watch_module_pages(addr, size, compat.PERM_READ | compat.PERM_EXEC)

    def _live_neighbours(self, mm: Any) -> set[int]:
        """Pages of ``mm`` that another live, watched map (a block packed beside it) also covers."""
        pages = set(pages_of(mm.base, mm.size))
        shared: set[int] = set()
        for other in self.emu.get_mem_maps():
            if other is mm or other.free or not (other.tag or "").startswith(compat.WATCHED_TAG_PREFIXES):
                continue
            if other.base < (max(pages) + 1) * PAGE and other.base + other.size > min(pages) * PAGE:
                shared.update(pages.intersection(pages_of(other.base, other.size)))
        return shared

    def _watch_module_pages(self, addr: int, size: int, perms: int) -> None:
        """Pages of a loaded module's image (not the sample's own, not one the guest wrote) made
        writable: their bytes are kept and they are watched like an allocation, writes followed."""
        fresh = []
        for page in pages_of(addr, size):
            at = page * PAGE
            if page in self.armed or page in self.module_pages or self._own(at):
                continue
            module = compat_guest.module_base_at(self.emu, at)
            # only its code sections: the loader makes data sections writable for every module
            if module is None or not any(start <= at < end for start, end in self._code_of(module)):
                continue
            try:
                self.module_pages[page] = self.memory.read(at, PAGE)
            except Exception:  # noqa: BLE001 - a page that cannot be read is left alone
                continue
            fresh.append(page)
        if not fresh:
            return
        for first, count in page_runs(fresh):
            self._arm(first * PAGE, count * PAGE, perms)
            if self.flow is not None:
                self.flow.watch_region(first * PAGE, count * PAGE)

    def _code_of(self, module: int) -> list[tuple[int, int]]:
        """The executable sections of the module image at ``module`` (from its headers in memory)."""
        ranges = self._module_code.get(module)
        if ranges is None:
            try:
                headers = self.memory.read(module, PAGE)
            except Exception:  # noqa: BLE001 - no headers to read: no code known
                headers = b""
            ranges = code_ranges(headers, module, 0)  # no image headers: one empty range
            self._module_code[module] = ranges
        return ranges

    def _own(self, address: int) -> bool:
        own = self.own_image
        if own is not None and own[0] <= address < own[0] + own[1]:
            return True
        return any(b <= address < b + s for b, s, _ in self.guest_modules)

    def _watched_run(self, page: int) -> list[int]:
        """The watched module pages contiguous with ``page`` (itself included), in order."""
        first = last = page
        while first - 1 in self.module_pages and first - 1 in self.armed:
            first -= 1
        while last + 1 in self.module_pages and last + 1 in self.armed:
            last += 1
        return list(range(first, last + 1))

    def _changed_spans(self, page: int) -> list[tuple[int, int]]:
        """[start, end) of the runs of bytes the guest changed on a watched module page (runs
        fewer than PATCH_SPAN_GAP unchanged bytes apart are one)."""
        before = self.module_pages.get(page)
        if before is None:
            return []
        try:
            now = self.memory.read(page * PAGE, PAGE)
        except Exception:  # noqa: BLE001 - a page that cannot be read shows no change
            return []
        if now == before:
            return []
        spans: list[tuple[int, int]] = []
        for offset in (i for i in range(PAGE) if now[i] != before[i]):
            at = page * PAGE + offset
            if spans and at - spans[-1][1] < PATCH_SPAN_GAP:
                spans[-1] = (spans[-1][0], at + 1)
            else:
                spans.append((at, at + 1))
        return spans

    def note_patches(self, pages: list[int] | None = None) -> dict[int, list[tuple[int, int]]]:
        """A ``module_code_patched`` note for each change the guest made to the code on watched
        module ``pages`` (all of them if None) not noted yet: where (module!export+offset), the
        bytes written and those they replaced. Returns each page's changed spans."""
        found: dict[int, list[tuple[int, int]]] = {}
        for page in sorted(self.module_pages) if pages is None else pages:
            found[page] = spans = self._changed_spans(page)
            for start, end in spans:
                try:
                    data = bytes(self.memory.read(start, end - start))
                except Exception:  # noqa: BLE001
                    continue
                if (start, data) in self._noted_patches:
                    continue
                self._noted_patches.add((start, data))
                offset = start - page * PAGE
                old = self.module_pages[page][offset : offset + len(data)]
                shown = min(len(data), MAX_PATCH_BYTES)
                self.recorder.note(
                    MODULE_CODE_PATCHED,
                    f"{compat_guest.symbol_at(self.emu, start)}: {len(data)} byte(s) of its code changed by the "
                    f"guest at {start:#x}, now {data[:shown].hex(' ')}{' ...' if shown < len(data) else ''} "
                    f"(was {old[:shown].hex(' ')}{' ...' if shown < len(data) else ''})",
                )
        return found

    def arm_module(self, base: int, size: int, name: str, note: tuple[str, str] | None = None) -> None:
        """Watch a module mapped from a file the guest wrote: its first execution is a stage
        (recording ``note`` (what, detail), if given, as the stage's first event)."""
        self.guest_modules.append((base, size, name))
        if note is not None:
            self.module_notes[base] = note
        self._arm(base, size, compat.PERM_RWX)

    def arm_view(self, address: int) -> None:
        """Watch a view of a section the guest mapped (MapViewOfFile, of a file or of the paging
        file): code run from it is a stage, and guest code writing it is followed, as for an
        allocation. Speakeasy tags a file's view only after mapping it, so the map wrapper
        cannot tell it from the emulator's own bookkeeping."""
        mm = self.emu.get_address_map(address)
        if mm is None or mm.base // PAGE in self.armed:
            return
        self._arm(mm.base, mm.size, int(mm.prot))
        if self.flow is not None:
            self.flow.watch_region(int(mm.base), int(mm.size))

    def _arm(self, address: int, size: int, perms: int) -> None:
        pages = list(pages_of(address, size))
        for page in pages:
            self.armed[page] = perms
        self._set_pages(pages, perms & ~compat.PERM_EXEC)

    def _set_pages(self, pages: list[int], perms: int) -> None:
        # One Unicorn call per contiguous run: each call splits regions and drops translated
        # code, and page by page a 1 MiB buffer cost 256 of them (0.3 s).
        for first, count in page_runs(pages):
            if compat.set_engine_protection(self.emu, first * PAGE, count * PAGE, perms):
                continue
            for page in range(first, first + count):
                if not compat.set_engine_protection(self.emu, page * PAGE, PAGE, perms):
                    self.armed.pop(page, None)

    # -- the trap ------------------------------------------------------------------------------

    def _on_fetch(self, address: int) -> bool | None:
        page = address // PAGE
        if page not in self.armed:
            return None
        if page in self.module_pages:
            run = self._watched_run(page)
            # the changed span holding the address, or starting within STOMP_PROBE bytes after it
            span = next(
                (
                    (start, end)
                    for start, end in self.note_patches(run)[page]
                    if start <= address < end or address <= start < address + STOMP_PROBE
                ),
                None,
            )
            if span is None or span[1] - span[0] <= MAX_PATCH_BYTES:
                # The module's own code, as it was or as patched: runs on, and the pages watched
                # with it are let go together (what changed on them is noted above). Unicorn
                # must not split a memory region inside this hook (the CPU still points into
                # it: a SIGSEGV), so protection changes here cover whole runs the guest's own
                # VirtualProtect made, never a page inside one.
                by_perms: dict[int, list[int]] = {}
                for watched in run:
                    by_perms.setdefault(self.armed.pop(watched) | compat.PERM_EXEC, []).append(watched)
                    self.module_pages.pop(watched, None)
                for perms, pages in by_perms.items():
                    self._set_pages(pages, perms)
                return True
        try:
            self._on_dynamic_exec(address)
        except ReplayStop as stop:
            self.stop_now(stop)
            return False
        return True

    def _on_dynamic_exec(self, address: int) -> None:
        recorder = self.recorder
        if recorder.stage_count >= self.plan.limits.max_stages:
            raise ReplayStop(Status.LIMIT, f"more than {self.plan.limits.max_stages} stages", "max_stages")
        mm = self.emu.get_address_map(address)
        region_base, region_size = (mm.base, mm.size) if mm is not None else (address & ~0xFFF, PAGE)
        kind, base, size, image_base, name = "shellcode", region_base, region_size, None, ""
        # The range the sample itself made executable is the best statement of what the code is.
        for p_base, p_size in reversed(self.observed.protect_ranges):
            if p_base <= address < p_base + p_size:
                base, size = p_base, p_size
                break
        module = next(((b, s, n) for b, s, n in self.guest_modules if b <= address < b + s), None)
        if module is not None:
            kind, base, size, name = "module", module[0], module[1], module[2]
            image_base = base
        # Code written over a loaded module's (stomped) is shellcode, not that module's image.
        stomped = address // PAGE in self.module_pages
        if stomped and (base, size) == (region_base, region_size):
            base, size = address & ~(PAGE - 1), PAGE  # no protected range names it: its page
        # Code written over an image section's view (module overloading) is shellcode too.
        stomped = stomped or (module is None and self._overwritten_image_view(address, region_base))
        for candidate in dict.fromkeys((base, region_base)) if module is None and not stomped else ():
            header = self._image_header_near(address, candidate)
            if header is not None:
                image_base, image_size, name = header
                kind, base, size = "pe_in_memory", image_base, image_size
                break
        data = self.read_region(base, size)
        parent, via = self._caller_of(address)
        if self.flow is not None:
            # What guest code wrote up to here (the stage's own bytes among it) is recorded first.
            self.flow.stage_starts(address)
            self.flow.forget_region(region_base)
        # Make the whole stage executable again, so the trap fires once per stage.
        pages = [p for p in pages_of(base, size) if p in self.armed] or [address // PAGE]
        by_perms: dict[int, list[int]] = {}
        for page in pages:
            by_perms.setdefault(self.armed.pop(page, compat.PERM_RWX) | compat.PERM_EXEC, []).append(page)
        for perms, same in by_perms.items():
            self._set_pages(same, perms)
        logger.debug("execution at %#x: new %s stage, %d bytes at %#x (%s)", address, kind, size, base, via)
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
        if module is not None and module[0] in self.module_notes:
            recorder.note(*self.module_notes.pop(module[0]))
        if self.on_new_code is not None:
            self.on_new_code(base, size)

    def read_region(self, base: int, size: int) -> bytes:
        try:
            return self.memory.read(base, size)
        except Exception:
            return b""

    def _overwritten_image_view(self, address: int, view: int) -> bool:
        """Whether the code at ``address`` in the view at ``view`` of an image section of a file
        (NtCreateSection SEC_IMAGE, NtMapViewOfSection) is no longer the file's: more than a
        patch's worth of it changed since the view was mapped (module overloading: a payload
        written over a mapped system DLL's code). A view left as it was runs as that image."""
        backing = compat.image_view_file(self.emu, view)
        if backing is None:
            return False
        path, offset = backing
        at = offset + address - view
        original = (compat.guest_file_data(self.emu, path) or b"")[at : at + MAX_PATCH_BYTES + 1]
        return bool(original) and self.read_region(address, len(original)) != original

    def _image_header_near(self, address: int, region_base: int) -> tuple[int, int, str] | None:
        """A mapped PE image at ``region_base`` whose executable section holds ``address``.

        A raw PE file read into a buffer also starts with MZ, but its code is not at the
        section's virtual address, so only a mapped image passes this check.
        """
        headers = pe.mapped_headers(self.read_region(region_base, PAGE))
        if headers is None:
            return None
        offset = address - region_base
        for section in headers.sections[: pe.MAX_SECTIONS]:
            if section.executable and section.virtual_address <= offset < section.virtual_address + max(
                section.virtual_size, 1
            ):
                image = self.read_region(region_base, headers.size_of_image)
                return region_base, headers.size_of_image, pe.mapped_export_name(image) or ""
        return None

    def _caller_of(self, address: int) -> tuple[str | None, str]:
        if address in self.observed.thread_starts:
            return self.observed.thread_starts[address], "thread"
        if address in self.observed.exception_resumes:
            # a handler (vectored, frame-based, the unhandled-exception filter) sent a faulting
            # thread here by changing its CONTEXT's pc
            return self.observed.exception_resumes[address] or self.recorder.current_stage, "exception"
        if address in self.observed.context_loads:
            # the stage loaded a CONTEXT whose pc is here (NtContinue, RtlRestoreContext)
            return self.observed.context_loads[address] or self.recorder.current_stage, "context"
        try:
            sp = self.emu.get_stack_ptr()
            ret = int.from_bytes(self.memory.read(sp, self.memory.ptr_size), "little")
        except Exception:
            ret = 0
        if ret == compat.API_CALLBACK_RETURN and compat.called_back_function(self.emu) == address:
            # Called back by an API (EnumWindows, a window procedure): the stage that called it.
            # (Reached with that return address but elsewhere: a callback's jump to it.)
            return self.recorder.current_stage, "callback"
        stage = self.recorder.stage_at(ret) if ret else None
        if stage is not None:
            return stage, "call"
        if compat.initializer_start(self.emu) == address:
            # The loader called it before the program's entry point: an imported DLL's DllMain
            # (a DLL a LoadLibrary maps is called back by that API, above).
            return self.recorder.current_stage, "callback"
        function = compat.frame_function(self.emu, ret) if ret else None
        if function is not None and function != address and self.recorder.stage_at(function) is not None:
            # A tail call: a stage's function the engine called (a callback, a TLS callback, a
            # thread's start routine) jumped here, its frame and return address now this code's.
            # The jump was the last stage to run (a layer it jumped to may jump on in turn).
            return self.recorder.current_stage, "call"
        return self.recorder.current_stage, "unknown"


def page_runs(pages: list[int]) -> list[tuple[int, int]]:
    """Sorted pages as (first page, page count) runs of consecutive pages."""
    runs: list[tuple[int, int]] = []
    for page in sorted(pages):
        if runs and runs[-1][0] + runs[-1][1] == page:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((page, 1))
    return runs


def pages_of(address: int, size: int) -> range:
    return range(address // PAGE, (address + max(size, 1) + PAGE - 1) // PAGE)
