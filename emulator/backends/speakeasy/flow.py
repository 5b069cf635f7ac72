"""Flow through guest code: which instruction wrote a region, and what it read meanwhile.

Bytes an API put into the guest are recorded as sources (:mod:`.sources`, the translator). When
guest code itself moves or transforms them into other memory (a decoder loop), no API sees it;
this watch does, without a per-instruction Python hook:

* **Write watch.** Each region the sample allocates where loaders put code (VirtualAlloc and
  kin, :data:`.compat.FLOW_TAG_PREFIXES`) carries a range-limited Unicorn write hook. Its first
  hit in a stretch of guest code between two API calls names the writing instruction's pc and
  removes the hook; the next API call puts it back (at most ``MAX_REARMS`` times per region), so
  each stretch names its own first writer. A region that starts running as a stage is dropped.
* **Heap blocks** (HeapAlloc, LocalAlloc, GlobalAlloc, malloc, calloc, operator new, ...,
  :data:`.compat.HEAP_FLOW_TAG_PREFIXES`) of ``HEAP_WATCH_MIN_BYTES`` or more are watched the
  same way, but bounded, since a program allocates many and any armed hook keeps Unicorn on its
  slow memory path: at most ``MAX_HEAP_WATCHES`` blocks and ``MAX_HEAP_WATCH_BYTES`` bytes at
  once (the oldest block stops being watched first), and a block guest code has not written for
  ``HEAP_WATCH_CALLS`` API calls stops being watched. What was recorded of a block stays.
* **Slow path bound.** A stretch runs at most ``SLOW_PATH_BYTES`` of translation blocks with
  any hook of this watch armed (counted by the runner's native block budget); then every hook
  goes until the next API call (:meth:`FlowWatch.let_go_for_now`).
* **API copies.** When an API copies bytes out of a region guest code wrote (``memcpy``,
  ``RtlMoveMemory``, ``WriteProcessMemory``), that region's record is written out then
  (:meth:`FlowWatch.copied_from`), so lineage can follow the copy back through guest code.
* **Read watch.** From a stretch's first watched write, range-limited read hooks sit on the
  most recent sources (API-written buffers, and the data sections of the code that ran: a
  sample's embedded payload), each removed at its first hit. The first region written keeps its
  write hook for ``READ_WINDOW`` writes (a decoder loop has read its input by then); then every
  read hook still armed goes, so a long computation that wrote watched memory early does not
  pay for them; so does the end of the stretch.

While any memory hook exists Unicorn translates code with its slow memory path, and code
translated then stays slow after the hook is gone (a hook removed inside a callback is only
marked deleted until Unicorn returns); so when a stretch's last hook goes, the runner stops at
the next block boundary and resumes there on a flushed translation cache
(:meth:`.runner.NativeRunner.retranslate`, through the native budget's exact preemption). A
stop requested directly from a memory hook would land after the access and Unicorn would run
the instruction again on resume (an in-place ``xor [mem], al`` twice); a code hook added while
its block is already translated does not fire in fast mode, so it cannot count the window.

At the end of a stretch (before the next API call runs, or when a stage starts) each region it
wrote keeps, in memory, its writer and the source bytes read meanwhile (the last stretch that
read a source wins over later ones that read none). Only when a stage starts in a region is that
recorded, as a ``guest_write`` buffer per source read: the region's bytes, the writing pc, the
source bytes as its input; a source that was itself a region guest code wrote is recorded first,
so lineage goes on through it. A transform lineage cannot name is "decoded by guest code at pc X".
Regions that never run cost no event and no blob.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator import pe
from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat
from emulator.events import DataBuffer, Event, StageStart
from emulator.recorder import Recorder

logger = logging.getLogger(__name__)

PAGE = 0x1000
# A region's write hook is put back after a stretch that wrote it at most this many times: a
# decoder writes its output in a few stretches, while a buffer rewritten between every two API
# calls would otherwise cost a hook and a callback per call for the whole replay.
MAX_REARMS = 16
# Read hooks on at most this many of the most recent sources: each armed hook costs every
# memory read of the stretch a range check in Unicorn's slow path.
MAX_READ_WATCHES = 8
# Writes into the first region a stretch writes before the read hooks still armed are removed.
READ_WINDOW = 64
# Sources remembered (most recent first when read hooks are armed): API-written buffers and
# guest-written regions, and separately the data sections of the stages that ran.
MAX_SOURCES = 32
# Sources shorter than this are not watched (structures and strings, not payloads).
MIN_SOURCE_BYTES = 24
# A guest-written region is recorded up to this many bytes.
MAX_FLOW_BYTES = 1024 * 1024
# Source bytes kept per read, from the first byte read on: lineage looks a carrier's input up by
# its first 4 KiB (emulator/analysis/lineage.py PROBE_BYTES).
MAX_INPUT_BYTES = 4096
# Regions whose last writer is remembered (the oldest is forgotten first).
MAX_RECORDS = 256
# Guest-written regions followed back from a stage's region, source by source.
MAX_CHAIN = 8
# Heap blocks smaller than this are not watched: the many small allocations of a program are
# structures and strings; a payload decoded into the heap is larger (the copy taps' floor,
# sources.MIN_COPY_BYTES, is the same).
HEAP_WATCH_MIN_BYTES = 64
# Heap blocks watched at once, and their bytes: past either, the oldest stops being watched.
MAX_HEAP_WATCHES = 32
MAX_HEAP_WATCH_BYTES = 16 * 1024 * 1024
# A heap block guest code has not written for this many API calls stops being watched (a decoder
# writes the block it allocated within a few calls; an idle hook would keep code on the slow path).
HEAP_WATCH_CALLS = 64
# Bytes of translation blocks a stretch of guest code runs while any hook of this watch is
# armed (counted by the runner's native block budget), after which every hook is removed until
# the next API call: Unicorn runs all code on its slow memory path while a memory hook exists,
# about 25x slower for compute (RC4), so a stretch that writes little and then computes for long,
# or computes while an allocation waits unwritten, must not stay there. About 300,000
# instructions, a few tenths of a second on the slow path.
SLOW_PATH_BYTES = 1024 * 1024
# Buffer sources whose bytes guest code may go on to decode (every DataBuffer kind is one).
SOURCE_BUFFERS = (
    "file_read",
    "network_read",
    "registry_read",
    "resource",
    "decrypt",
    "decode",
    "decompress",
    "api_copy",
    "guest_write",
    "environment_read",
)


@dataclass
class _Source:
    begin: int
    end: int  # exclusive
    image: bool  # a stage's own section rather than an API-written buffer
    region: int | None = None  # base of the watched region, when guest code wrote these bytes
    order: int = 0  # when it was (last) added


@dataclass
class _Record:
    """What guest code last did to a region: who wrote it, and the source bytes it read then."""

    size: int
    pc: int
    stage: str
    # (source bytes, base of the guest-written region they came from, address they were read at)
    inputs: list[tuple[bytes, int | None, int | None]]


@dataclass
class _Region:
    base: int
    size: int
    hook: int | None = None
    rearms: int = 0
    heap: bool = False
    deadline: int = 0  # heap blocks: the API call count at which an unwritten block is let go


@dataclass
class _Written:
    base: int
    size: int
    pc: int
    stage: str


@dataclass
class _Read:
    source: _Source
    address: int
    data: bytes  # the source's bytes from the first one read, as they were then (before an in-place decoder)


@dataclass
class _Stretch:
    written: dict[int, _Written] = field(default_factory=dict)
    reads: list[_Read] = field(default_factory=list)
    hooks: dict[int, _Source] = field(default_factory=dict)  # read hook handle -> source
    window: int | None = None  # the region first written: its write hook counts the read window
    runs: int = 0  # writes into it so far
    unhooked: bool = False  # a hook went in this stretch


def _untouched(stretch: _Stretch) -> bool:
    """Whether nothing happened in ``stretch`` (it is as :class:`_Stretch` makes it)."""
    return not (stretch.written or stretch.reads or stretch.hooks or stretch.unhooked) and (
        stretch.window is None and not stretch.runs
    )


class FlowWatch:
    def __init__(self, emu: Any, memory: GuestMemory, recorder: Recorder) -> None:
        self.emu = emu
        self.memory = memory
        self.recorder = recorder
        self.sources: list[_Source] = []  # buffers and guest-written regions, oldest first
        self.images: list[_Source] = []  # stages' data sections and shellcode, oldest first
        self._added = 0
        self.regions: dict[int, _Region] = {}
        self.records: dict[int, _Record] = {}  # region base -> its last writer
        self.emitted: set[int] = set()  # regions whose current record is already in the event stream
        self.heap: list[int] = []  # watched heap blocks, oldest first
        self.heap_bytes = 0
        self.heap_expiry: deque[tuple[int, int]] = deque()  # (deadline, base), in deadline order
        self.calls = 0  # API calls so far
        self.armed_regions = 0  # regions whose write hook is armed
        self.paused: list[int] = []  # regions whose hook went for the rest of a stretch (SLOW_PATH_BYTES)
        self.stretch = _Stretch()
        self.reads: compat.RangeHooks | None = None
        self.writes: compat.RangeHooks | None = None
        # Called when the last hook of a stretch is gone (the runner's retranslate), if any.
        self.on_unhooked: Callable[[], None] | None = None
        # Told when hooks were added: code Unicorn translated with no memory hook in place does
        # not call hooks added later, so the runner resumes on fresh translations if such code
        # may be cached (NativeRunner.hooks_added).
        self.on_hooked: Callable[[], None] | None = None

    def install(self) -> None:
        self.reads = compat.RangeHooks(self.emu, self._on_read)
        self.writes = compat.RangeHooks(self.emu, self._on_write, kind="write")
        compat.before_each_api_call(self.emu, self._before_api_call)

    # -- sources and regions -----------------------------------------------------------------------

    def observe(self, event: Event) -> None:
        """Told every recorded event: buffers and stages become watchable sources."""
        if isinstance(event, DataBuffer) and event.source in SOURCE_BUFFERS and event.size >= MIN_SOURCE_BYTES:
            self._add_source(event.address, event.address + event.size, image=False)
        elif isinstance(event, StageStart):
            self.add_code(event.base, event.size, event.kind)

    def add_code(self, base: int, size: int, kind: str) -> None:
        """A stage's bytes as a source: an image's sections that hold no code, or a shellcode's region."""
        if kind == "shellcode":
            self._add_source(base, base + size, image=True)
            return
        try:
            headers = pe.mapped_headers(self.memory.read(base, PAGE))
        except Exception:
            headers = None
        if headers is None:
            return
        for section in headers.sections[: pe.MAX_SECTIONS]:
            # Sections with no bytes in the file (.bss) hold only what the program computes.
            if not section.executable and section.raw_size and section.virtual_size >= MIN_SOURCE_BYTES:
                begin = base + section.virtual_address
                self._add_source(begin, begin + section.virtual_size, image=True)

    def _add_source(self, begin: int, end: int, image: bool, region: int | None = None) -> None:
        kept = self.images if image else self.sources
        kept[:] = [s for s in kept[-MAX_SOURCES:] if not (s.begin == begin and s.end == end)]
        self._added += 1
        kept.append(_Source(begin, end, image, region, self._added))

    def watch_region(self, base: int, size: int) -> None:
        """A new allocation where code may be written: its guest writes are watched."""
        self.forget_region(base)
        region = self.regions[base] = _Region(base, size)
        self._hook_region(region)

    def watch_heap(self, base: int, size: int) -> None:
        """A new heap block: watched like an allocation, within the heap bounds (module docstring)."""
        if size < HEAP_WATCH_MIN_BYTES or size > MAX_HEAP_WATCH_BYTES:
            return
        self.forget_region(base)
        deadline = self.calls + HEAP_WATCH_CALLS
        region = self.regions[base] = _Region(base, size, heap=True, deadline=deadline)
        self.heap.append(base)
        self.heap_bytes += size
        self.heap_expiry.append((deadline, base))
        while len(self.heap) > MAX_HEAP_WATCHES or self.heap_bytes > MAX_HEAP_WATCH_BYTES:
            self._let_go(self.heap[0])
        self._hook_region(region)

    def forget_region(self, base: int) -> None:
        self.records.pop(base, None)
        self.emitted.discard(base)
        self._let_go(base)

    def _let_go(self, base: int) -> None:
        """Stop watching a region (what was recorded of it stays)."""
        region = self.regions.pop(base, None)
        if region is None:
            return
        if region.heap:
            self.heap.remove(base)
            self.heap_bytes -= region.size
        if region.hook is not None:
            self._unhook(region)
            self.stretch.unhooked = True

    def _hook_region(self, region: _Region) -> None:
        if self.writes is None:
            return  # not installed
        try:
            region.hook = self.writes.add(region.base, region.base + region.size - 1)
        except Exception:
            region.hook = None
        else:
            self.armed_regions += 1
            if self.on_hooked is not None:
                self.on_hooked()

    def _unhook(self, region: _Region) -> None:
        if region.hook is not None:
            assert self.writes is not None
            self.writes.remove(region.hook)
            region.hook = None
            self.armed_regions -= 1

    # -- the hooks (inside Unicorn: record, remove the hook, never touch protection) -----------------

    def _on_write(self, address: int, size: int) -> None:
        assert self.writes is not None
        for region in self.regions.values():  # the first region holding the address
            if region.base <= address < region.base + region.size:
                break
        else:
            return
        if region.hook is None:
            return
        stretch = self.stretch
        if region.base not in stretch.written:
            pc = compat.guest_pc(self.emu)
            stage = self.recorder.stage_at(pc) or self.recorder.current_stage
            stretch.written[region.base] = _Written(region.base, region.size, pc, stage)
            logger.debug("guest write at %#x into %#x+%#x by pc %#x (%s)", address, region.base, region.size, pc, stage)
            if stretch.window is None:
                stretch.window = region.base
                self._arm_reads(region)
        # The first region written keeps its hook while read hooks wait, for READ_WINDOW writes.
        if stretch.window == region.base:
            stretch.runs += 1
            if stretch.hooks and stretch.runs < READ_WINDOW:
                return
            self._drop_reads(stretch)
        self._unhook(region)
        stretch.unhooked = True
        self._retranslate_if_unhooked(stretch)

    def _drop_reads(self, stretch: _Stretch) -> None:
        assert self.reads is not None
        for handle in stretch.hooks:
            self.reads.remove(handle)
        if stretch.hooks:
            stretch.unhooked = True
        stretch.hooks.clear()

    def _arm_reads(self, target: _Region) -> None:
        assert self.reads is not None
        for source in sorted([*self.sources, *self.images], key=lambda s: s.order, reverse=True):
            if len(self.stretch.hooks) >= MAX_READ_WATCHES:
                break
            if source.image and target.base <= source.begin < target.base + target.size:
                continue  # the region being written is not its own source
            try:
                handle = self.reads.add(source.begin, source.end - 1)
            except Exception:
                continue
            self.stretch.hooks[handle] = source
        if self.stretch.hooks and self.on_hooked is not None:
            self.on_hooked()

    def _on_read(self, address: int, size: int) -> None:
        assert self.reads is not None
        for handle, source in list(self.stretch.hooks.items()):
            if source.begin <= address < source.end:
                try:
                    data = self.memory.read(address, min(source.end, address + MAX_INPUT_BYTES) - address)
                except Exception:
                    data = b""
                self.stretch.reads.append(_Read(source, address, data))
                self.reads.remove(handle)
                del self.stretch.hooks[handle]
                self.stretch.unhooked = True
        self._retranslate_if_unhooked(self.stretch)

    # -- the end of a stretch ----------------------------------------------------------------------

    def hooks_armed(self) -> bool:
        """Whether any hook of this watch is armed (so code runs on Unicorn's slow memory path)."""
        return bool(self.stretch.hooks) or self.armed_regions > 0

    def let_go_for_now(self) -> None:
        """The stretch ran ``SLOW_PATH_BYTES`` with hooks armed: remove them all until the next API
        call (the runner resumes on fresh translations)."""
        self._drop_reads(self.stretch)
        for region in self.regions.values():
            if region.hook is not None:
                self._unhook(region)
                self.paused.append(region.base)

    def _before_api_call(self) -> None:
        self.calls += 1
        expiry = self.heap_expiry
        while expiry and expiry[0][0] <= self.calls:
            deadline, base = expiry.popleft()
            region = self.regions.get(base)
            if region is not None and region.heap and region.deadline == deadline:
                self._let_go(base)
        if self.paused or not _untouched(self.stretch):
            self.end_stretch()  # (an untouched stretch serves as the next one: nothing to end)

    def end_stretch(self, retranslate: bool = True) -> None:
        """Remember what guest code moved in the stretch that ends (before an API call runs, or
        with ``retranslate`` False when a stage starts)."""
        stretch = self.stretch
        if not self.paused and _untouched(stretch):
            return  # nothing moved: the stretch can serve as the next one
        self.stretch = _Stretch()
        if self.reads is None:
            return  # not installed
        self._drop_reads(stretch)
        for base in self.paused:
            paused = self.regions.get(base)
            if paused is not None and paused.hook is None and base not in stretch.written:
                self._hook_region(paused)
        self.paused.clear()
        if not stretch.written:
            if retranslate:
                self._retranslate_if_unhooked(stretch)
            return
        inputs = self._inputs(stretch.reads)
        for written in stretch.written.values():
            old = self.records.get(written.base)
            if inputs or old is None or not old.inputs:
                self.records.pop(written.base, None)  # now the most recent
                self.records[written.base] = _Record(written.size, written.pc, written.stage, inputs)
                while len(self.records) > MAX_RECORDS:
                    oldest = next(iter(self.records))
                    del self.records[oldest]
                    self.emitted.discard(oldest)
            self.emitted.discard(written.base)  # its bytes have changed since
            # The region's bytes are now a source for what guest code does next.
            self._add_source(written.base, written.base + written.size, image=False, region=written.base)
            region = self.regions.get(written.base)
            if region is not None and region.heap:
                region.deadline = self.calls + HEAP_WATCH_CALLS
                self.heap_expiry.append((region.deadline, region.base))
            if region is not None and region.hook is None and region.rearms < MAX_REARMS:
                region.rearms += 1
                self._hook_region(region)
        if retranslate:
            self._retranslate_if_unhooked(stretch)

    def _retranslate_if_unhooked(self, stretch: _Stretch) -> None:
        """With no hook left, resume on fresh translations: code translated while a hook existed
        keeps the slow path (the runner stops exactly at the next block boundary)."""
        if stretch.unhooked and not stretch.hooks and self.on_unhooked is not None and not self.armed_regions:
            self.on_unhooked()

    def stage_starts(self, address: int) -> None:
        """A stage starts at ``address``: record how guest code wrote its region (and, first, the
        regions that region's bytes were read from)."""
        self.end_stretch(retranslate=False)
        base = next((b for b, r in self.records.items() if b <= address < b + r.size), None)
        if base is not None:
            self._emit(base, 0, set())

    def copied_from(self, address: int, size: int) -> None:
        """An API is about to copy ``size`` bytes from ``address``: if guest code wrote them, record
        how (once per version of the region), so the copy's lineage goes on through guest code.
        Called from an API handler: the stretch before it has ended already."""
        base = next((b for b, r in self.records.items() if b <= address < b + r.size), None)
        if base is None:  # the copy starts before a guest-written region and runs into it
            base = next((b for b, r in self.records.items() if address < b < address + size), None)
        if base is not None:
            self._emit(base, 0, set())

    def _emit(self, base: int, depth: int, done: set[int]) -> None:
        record = self.records.get(base)
        if record is None or base in done or depth > MAX_CHAIN:
            return
        done.add(base)
        if base in self.emitted:
            return
        self.emitted.add(base)
        for _, upstream, _ in record.inputs:
            if upstream is not None:
                self._emit(upstream, depth + 1, done)
        try:
            data = self.memory.read(base, min(record.size, MAX_FLOW_BYTES))
        except Exception:
            return
        recorder = self.recorder
        digest = recorder.put_blob(data)
        for source, _, read_at in record.inputs or [(b"", None, None)]:
            recorder.emit(
                DataBuffer,
                stage=record.stage,
                pc=record.pc,
                source="guest_write",
                address=base,
                size=len(data),
                sha256=digest,
                ref=f"guest code at pc {record.pc:#x}",
                input_sha256=recorder.put_blob(source) if source else None,
                input_address=read_at if source else None,
            )

    def _inputs(self, reads: list[_Read]) -> list[tuple[bytes, int | None, int | None]]:
        """The source bytes the stretch read, from each first hit on, and where (the analysis
        decides which of them the written bytes came from)."""
        return [(hit.data, hit.source.region, hit.address) for hit in reads if len(hit.data) >= MIN_SOURCE_BYTES]
