"""Collects the typed events of one replay, in order, with the bytes they refer to.

Engine independent: the Speakeasy backend and the project-side API handlers both write here.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.events import DataBuffer, Event, Note, StageStart

ENTRY_STAGE_ID = "s0"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class StageRegion:
    stage: str
    base: int
    end: int


@dataclass
class Recorder:
    """Assigns ``seq`` and ``stage`` to events and keeps the blob store (sha256 -> bytes)."""

    on_event: Callable[[Event], None] | None = None
    events: list[Event] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    current_stage: str = ENTRY_STAGE_ID
    _regions: list[StageRegion] = field(default_factory=list)
    _starts: list[int] = field(default_factory=list)
    stage_count: int = 0
    api_count: int = 0
    # Call site of the API call being handled: events emitted while it is set are that call's.
    call_pc: int | None = None

    def emit(self, cls: type[Any], stage: str | None = None, **fields: Any) -> Any:
        fields.setdefault("pc", self.call_pc)
        event = cls(seq=len(self.events), stage=stage or self.current_stage, **fields)
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def note(self, what: str, detail: str = "") -> None:
        self.emit(Note, what=what, detail=detail)

    def put_blob(self, data: bytes) -> str:
        digest = sha256_hex(data)
        self.blobs.setdefault(digest, bytes(data))
        return digest

    def remember_buffer(
        self,
        source: str,
        address: int,
        data: bytes,
        ref: str,
        *,
        input_data: bytes | None = None,
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
            api=api,
        )
        return event

    # ---- stages -------------------------------------------------------------------------

    def add_stage_region(self, stage: str, base: int, size: int) -> None:
        index = bisect.bisect(self._starts, base)
        self._starts.insert(index, base)
        self._regions.insert(index, StageRegion(stage, base, base + size))

    def stage_at(self, address: int) -> str | None:
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
        )
        self.current_stage = stage_id
        return event
