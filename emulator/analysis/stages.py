"""Stages and their provenance, derived from observed behaviour only.

A stage starts when code runs (the entry sample, or dynamic memory executed for the first
time). Its origin is found by looking back at the bytes that entered the process before it ran:
the same bytes, a buffer decrypted in place, the output of a decryption API, or a PE image
whose headers were copied from one of those.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass, field

from emulator.events import DataBuffer, Event, NetworkExchange, StageStart
from emulator.pe import section_table

# A header this long found verbatim in a buffer ties a mapped image to the file it came from.
MIN_HEADER_MATCH = 0x40


@dataclass
class Link:
    """How a stage's bytes are tied to an earlier input."""

    how: str  # same_bytes | decrypted_in_place | decrypt_api | mapped_image | executed_from | entry
    source_type: str  # file | network | memory | scenario
    source_ref: str
    evidence: list[int]
    decrypted: bool = False
    via_api: str | None = None


@dataclass
class Stage:
    id: str
    kind: str
    name: str
    sha256: str
    size: int
    base: int
    entry: int
    parent: str | None
    via: str
    start_seq: int
    first_seq: int = 0
    last_seq: int = 0
    link: Link | None = None
    order: int = 0

    @property
    def origin_type(self) -> str:
        return self.link.source_type if self.link else "memory"


@dataclass
class _Source:
    """A body of bytes seen before a stage started: a buffer, a response body, a stage."""

    data: bytes
    kind: str  # file | network | memory
    ref: str
    seq: int
    address: int | None = None
    evidence: list[int] = field(default_factory=list)


def derive_stages(events: list[Event], blobs: dict[str, bytes], entry_origin: tuple[str, str]) -> list[Stage]:
    stages: list[Stage] = []
    buffers: list[DataBuffer] = []
    bodies: list[tuple[NetworkExchange, bytes]] = []
    by_id: dict[str, Stage] = {}
    for event in events:
        if isinstance(event, DataBuffer):
            buffers.append(event)
        elif isinstance(event, NetworkExchange) and event.response.sha256 in blobs:
            bodies.append((event, blobs[event.response.sha256 or ""]))
        elif isinstance(event, StageStart):
            stage = Stage(
                id=event.new_stage,
                kind=event.kind,
                name=event.name,
                sha256=event.sha256,
                size=event.size,
                base=event.base,
                entry=event.entry,
                parent=event.parent,
                via=event.via,
                start_seq=event.seq,
                first_seq=event.seq,
                last_seq=event.seq,
                order=len(stages),
            )
            data = blobs.get(event.sha256, b"")
            if event.parent is None:
                stage.link = Link("entry", entry_origin[0], entry_origin[1], [event.seq])
            else:
                stage.link = _find_link(event, data, buffers, bodies, blobs, stages)
            stages.append(stage)
            by_id[stage.id] = stage
    for event in events:
        owner = by_id.get(event.stage)
        if owner is not None:
            owner.first_seq = min(owner.first_seq, event.seq)
            owner.last_seq = max(owner.last_seq, event.seq)
    return stages


def _find_link(
    event: StageStart,
    data: bytes,
    buffers: list[DataBuffer],
    bodies: list[tuple[NetworkExchange, bytes]],
    blobs: dict[str, bytes],
    stages: list[Stage],
) -> Link:
    sources = _sources(buffers, bodies, blobs, stages)
    probe = _probe(event, data)
    # 1. A decryption API produced these bytes (or the file a mapped image was copied from).
    for buffer in reversed(buffers):
        if buffer.source != "decrypt":
            continue
        output = blobs.get(buffer.sha256, b"")
        if probe and probe in output:
            origin = _origin_of_input(buffer, sources, blobs)
            evidence = sorted({buffer.seq, event.seq, *(origin.evidence if origin else [])})
            how = "mapped_image" if event.kind == "pe_in_memory" else "decrypt_api"
            if origin is None:
                return Link(how, "memory", buffer.ref, evidence, decrypted=True, via_api=buffer.api)
            return Link(how, origin.kind, origin.ref, evidence, decrypted=True, via_api=buffer.api)
    # 2. The same bytes arrived from a file, the network or an earlier stage.
    for source in reversed(sources):
        if probe and probe in source.data:
            how = "mapped_image" if event.kind == "pe_in_memory" else "same_bytes"
            return Link(how, source.kind, source.ref, sorted({*source.evidence, event.seq}))
    # 3. A buffer read from a file or the network was transformed in place, then executed.
    for buffer in reversed(buffers):
        if buffer.source not in ("file_read", "network_read"):
            continue
        if buffer.address <= event.entry < buffer.address + buffer.size:
            kind = "file" if buffer.source == "file_read" else "network"
            return Link("decrypted_in_place", kind, buffer.ref, sorted({buffer.seq, event.seq}), decrypted=True)
    return Link("executed_from", "memory", event.parent or "", [event.seq])


def _probe(event: StageStart, data: bytes) -> bytes:
    """The bytes to look for in earlier inputs: the stage itself, or a mapped image's headers."""
    if event.kind == "pe_in_memory":
        probe = section_table(data)
        return probe if len(probe) >= MIN_HEADER_MATCH else b""
    # Stage bytes run to the end of the page; the tail is padding the source never had.
    data = data.rstrip(b"\0")
    return data[:4096] if len(data) >= 16 else b""


def _sources(
    buffers: list[DataBuffer], bodies: list[tuple[NetworkExchange, bytes]], blobs: dict[str, bytes], stages: list[Stage]
) -> list[_Source]:
    sources: list[_Source] = []
    for buffer in buffers:
        if buffer.source in ("file_read", "network_read"):
            kind = "file" if buffer.source == "file_read" else "network"
            sources.append(
                _Source(blobs.get(buffer.sha256, b""), kind, buffer.ref, buffer.seq, buffer.address, [buffer.seq])
            )
    for exchange, body in bodies:
        sources.append(_Source(body, "network", exchange.url or exchange.host, exchange.seq, None, [exchange.seq]))
    for stage in stages:
        sources.append(
            _Source(blobs.get(stage.sha256, b""), "memory", stage.id, stage.start_seq, stage.base, [stage.start_seq])
        )
    sources.sort(key=lambda s: s.seq)
    return sources


def _origin_of_input(buffer: DataBuffer, sources: list[_Source], blobs: dict[str, bytes]) -> _Source | None:
    """Where the ciphertext of a decryption came from."""
    ciphertext = blobs.get(buffer.input_sha256 or "", b"")
    if len(ciphertext) < 8:
        return None
    needle = ciphertext[:256]
    for source in reversed(sources):
        if source.seq < buffer.seq and needle in source.data:
            return source
    # The ciphertext may have been decoded first (base64 in an image trailer): look for the
    # input in decoded forms of earlier bodies.
    for source in reversed(sources):
        if source.seq < buffer.seq and any(needle in decoded for decoded in decoded_trailers(source.data)):
            return _Source(source.data, source.kind, source.ref, source.seq, source.address, [*source.evidence])
    return None


def decoded_trailers(data: bytes) -> Iterator[bytes]:
    """Base64 text after each ``$`` marker, decoded: how an image carries a hidden payload."""
    for start in _trailer_starts(data):
        try:
            yield base64.b64decode(data[start:].split(b"\0", 1)[0], validate=False)
        except (binascii.Error, ValueError):
            continue


def _trailer_starts(data: bytes) -> list[int]:
    marks: list[int] = []
    index = data.find(b"$")
    while index != -1 and len(marks) < 8:
        marks.append(index + 1)
        index = data.find(b"$", index + 1)
    return marks
