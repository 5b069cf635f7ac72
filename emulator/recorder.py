"""Collects the typed events of one replay, in order, with the bytes they refer to.

Engine independent: the Speakeasy backend and the project-side API handlers both write here.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator.eventlog import EventLog
from emulator.events import ApiCall, DataBuffer, Event, Note, StageStart
from emulator.limits import MAX_NOTES_PER_KIND

ENTRY_STAGE_ID = "s0"
# Addresses whose stage Recorder.stage_at remembers at most.
STAGE_MEMO_SIZE = 4096


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class StageRegion:
    stage: str
    base: int
    end: int


@dataclass
class Recorder:
    """Assigns ``seq`` and ``stage`` to events and keeps the blob store (sha256 -> bytes).

    ``on_event(event)`` sees every event that is not an API call, ``on_api(seq, stage, pc, api,
    args, ret)`` every API call (no model is built for it); the events are kept in ``events``
    unless it was made with ``keep=False`` (a streaming child keeps only the count).
    """

    on_event: Callable[[Event], None] | None = None
    on_api: Callable[[int, str, int | None, str, list[str], str | None], None] | None = None
    events: EventLog = field(default_factory=EventLog)
    blobs: dict[str, bytes] = field(default_factory=dict)
    # Digests stored since the last take_new_blobs(), in order.
    _new_blobs: list[str] = field(default_factory=list)
    current_stage: str = ENTRY_STAGE_ID
    _regions: list[StageRegion] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)
    # stage_at's answers until the next stage region is added (call sites repeat).
    _stage_memo: dict[int, str | None] = field(default_factory=dict)
    stage_count: int = 0
    api_count: int = 0
    # Call site of the API call being handled: events emitted while it is set are that call's.
    call_pc: int | None = None
    # Told (address, size) of guest bytes an API is about to copy elsewhere (a reallocation, a
    # copy API): the backend's flow watch records how guest code wrote them, if it did.
    on_copy_from: Callable[[int, int], None] | None = None
    # Notes recorded so far, by kind (``what``): at most MAX_NOTES_PER_KIND of each.
    _note_counts: dict[str, int] = field(default_factory=dict)

    def emit(self, cls: type[Any], stage: str | None = None, **fields: Any) -> Any:
        if cls is ApiCall:
            return self._emit_api(stage or self.current_stage, **fields)
        fields.setdefault("pc", self.call_pc)
        event = cls(seq=len(self.events), stage=stage or self.current_stage, **fields)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def _emit_api(
        self, stage: str, *, api: str, args: list[str] | None = None, ret: str | None = None, pc: Any = ...
    ) -> None:
        pc = self.call_pc if pc is ... else pc
        self.emit_api(stage, pc, api, args if args is not None else [], ret)

    def emit_api(self, stage: str, pc: int | None, api: str, args: list[str], ret: str | None) -> None:
        """What ``emit(ApiCall, ...)`` records (the backend goes through ``emit``: every event
        passes there, which tests/test_lifecycle.py relies on)."""
        seq = self.events.append_api(stage, pc, api, args, ret)
        if self.on_api is not None:
            self.on_api(seq, stage, pc, api, args, ret)

    def note(self, what: str, detail: str = "", pc: int | None = None, urls: Sequence[str] = ()) -> None:
        """A note, unless MAX_NOTES_PER_KIND of its kind were recorded: the last one allowed
        says the rest are left out (a guest repeating what is noted cannot flood the report)."""
        count = self._note_counts.get(what, 0)
        if count >= MAX_NOTES_PER_KIND:
            return
        self._note_counts[what] = count + 1
        if count + 1 == MAX_NOTES_PER_KIND:
            detail = f"{detail} (the last {what} note: at most {MAX_NOTES_PER_KIND} of a kind are recorded)"
        extra: dict[str, Any] = {"urls": list(urls)} if urls else {}
        if pc is None:
            self.emit(Note, what=what, detail=detail, **extra)
        else:
            self.emit(Note, what=what, detail=detail, pc=pc, **extra)

    def put_blob(self, data: bytes) -> str:
        digest = sha256_hex(data)
        if digest not in self.blobs:
            self.blobs[digest] = bytes(data)
            self._new_blobs.append(digest)
        return digest

    def take_new_blobs(self) -> dict[str, bytes]:
        """The blobs stored since the last call (what a streaming child has not sent yet)."""
        if not self._new_blobs:
            return {}
        fresh = {digest: self.blobs[digest] for digest in self._new_blobs}
        self._new_blobs.clear()
        return fresh

    def remember_buffer(
        self,
        source: str,
        address: int,
        data: bytes,
        ref: str,
        *,
        input_data: bytes | None = None,
        input_address: int | None = None,
        api: str | None = None,
    ) -> DataBuffer:
        digest = self.put_blob(data)
        input_digest = self.put_blob(input_data) if input_data is not None else None
        event: DataBuffer = self.emit(
            DataBuffer,
            source=source,
            address=address,
            size=len(data),
            sha256=digest,
            ref=ref,
            input_sha256=input_digest,
            input_address=input_address,
            api=api,
        )
        return event

    # ---- stages -------------------------------------------------------------------------

    def add_stage_region(self, stage: str, base: int, size: int) -> None:
        index = bisect.bisect(self._starts, base)
        self._starts.insert(index, base)
        self._regions.insert(index, StageRegion(stage, base, base + size))
        self._stage_memo.clear()

    def stage_at(self, address: int) -> str | None:
        memo = self._stage_memo
        if address in memo:
            return memo[address]
        if len(memo) >= STAGE_MEMO_SIZE:
            memo.clear()
        found = memo[address] = self._stage_at(address)
        return found

    def _stage_at(self, address: int) -> str | None:
        # Later (inner) regions win: a shellcode stage inside a file buffer of another stage.
        found: str | None = None
        best_size = None
        for region in self._regions:
            if region.base > address:
                break
            if region.base <= address < region.end:
                size = region.end - region.base
                if best_size is None or size <= best_size:
                    found, best_size = region.stage, size
        return found

    def start_stage(
        self,
        *,
        kind: str,
        name: str,
        base: int,
        size: int,
        entry: int,
        data: bytes,
        parent: str | None,
        via: str,
        image_base: int | None = None,
        process: str | None = None,
        system_program: str | None = None,
        run_file: str | None = None,
    ) -> StageStart:
        stage_id = f"s{self.stage_count}"
        self.stage_count += 1
        digest = self.put_blob(data)
        self.add_stage_region(stage_id, base, size)
        event: StageStart = self.emit(
            StageStart,
            stage=parent or stage_id,
            new_stage=stage_id,
            kind=kind,
            name=name,
            base=base,
            size=size,
            entry=entry,
            sha256=digest,
            parent=parent,
            via=via,
            image_base=image_base,
            process=process,
            system_program=system_program,
            run_file=run_file,
        )
        self.current_stage = stage_id
        return event
