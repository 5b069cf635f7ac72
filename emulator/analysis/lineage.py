"""Data lineage: where the bytes of a stage came from, hop by hop, from behaviour alone.

Every body of bytes an API put into the guest is a *carrier* (a file read, a registry value, a
network response, a resource, the output of a decrypt/decode/decompress API, an API copy, a
write into another process, a file the guest wrote, the image of an earlier stage). When a
stage starts, its bytes are looked for in the carriers recorded before it, most recent first,
under transforms that can be recognised from the two byte strings alone:

* identity (the same bytes),
* XOR with a key stream ``a + b*i (mod 256)`` (a constant one-byte key when ``b == 0``, a
  rolling key otherwise) or with a repeating key of up to ``MAX_XOR_PERIOD`` bytes, recovered
  by known plaintext,
* base64 text, decoded, then either of the above.

A carrier that is itself the output of an API (CryptDecrypt, CryptStringToBinary, BCrypt,
RtlDecompressBuffer, ...) is traced on through that API's input, a write into another process
or into a file through the bytes written, so the lineage runs back to a file, registry value,
network response, resource, image or scenario input. A stage found inside a buffer read from a
file or the network but with different bytes was transformed in place by guest code (RC4,
say): that hop is recorded as "decoded by guest code".

Guest code that moves bytes itself is seen by the backend's flow watch, which records each
region it wrote (with the writing instruction's pc) together with the source bytes it read
meanwhile: a ``guest_write`` carrier. Those are searched only when no recognised transform
explains a stage (:func:`trace` with ``guest=True``); the hop then says "decoded by guest code
at pc X", and the lineage goes on through the bytes read. Nothing here knows any scenario.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from dataclasses import dataclass, field, replace

from emulator.pe import section_table as pe_section_table

# A section table this long found verbatim ties a mapped image to the file it came from.
MIN_SECTION_TABLE = 0x40
# Bytes of a stage used to look for it (longer stages are matched on this prefix, then extended:
# :func:`extended`).
PROBE_BYTES = 4096
# The shortest stage prefix that can be tied to a carrier: shorter runs match too much.
MIN_MATCH = 24
# A probe this uniform (few distinct byte values) would match any carrier under some XOR key.
MIN_DISTINCT_BYTES = 8
# Bytes guest code wrote unchanged from what it read, at least this many, make its write a copy.
MIN_COPY_EVIDENCE = 16
# Repeating XOR keys up to this long are recovered (longer keys: "decoded by guest code").
MAX_XOR_PERIOD = 32
# Carriers larger than this are searched for the same bytes only (XOR search is linear but heavy).
MAX_XOR_CARRIER = 8 * 1024 * 1024
# XOR candidates verified per carrier and period before giving up (zero runs match everywhere).
MAX_XOR_CANDIDATES = 64
# XOR searches run on Python's bytes and ints over carriers up to this size, until this many
# bytes were searched so in the process; past either, on numpy (emulator/analysis/lineage_numpy.py,
# imported then: ~0.12 s of CPU, more than a small trace's whole search, 5-10x faster per MiB).
PURE_SEARCH_BYTES = 256 * 1024
PURE_SEARCH_BUDGET = 1024 * 1024
# The affine search tests a key column over every offset at once until this few offsets are left.
AFFINE_COLUMNS_UNTIL = 4096
# Base64 runs at least this long are decoded and searched too.
MIN_BASE64_RUN = 32
# How many API / file / process hops a lineage follows back.
MAX_HOPS = 8

_ZERO_BYTE = re.compile(b"\x00")
_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/\r\n]{%d,}={0,2}" % MIN_BASE64_RUN)
_BASE64_LETTERS = re.compile(rb"[A-Za-z0-9+/]{%d}" % MIN_BASE64_RUN)
_WHITESPACE = re.compile(rb"\s")


@dataclass
class Piece:
    """One source's bytes in a buffer the guest filled from several (a file, then a registry
    value, then a download): ``size`` bytes at ``offset`` of the joined carrier."""

    kind: str
    ref: str
    node: str | None
    evidence: list[int]
    offset: int
    size: int
    api: str | None = None


@dataclass
class Carrier:
    """Bytes an API (or the loader) put into the guest, with where they came from."""

    data: bytes
    # file | network | registry | environment | resource | image | memory | scenario | api | process_write | file_write
    kind: str
    ref: str  # path, URL, key\\value, API name, stage id
    seq: int
    stage: str  # the stage whose action produced the carrier
    evidence: list[int] = field(default_factory=list)
    node: str | None = None  # graph node of the artifact (file:..., url:..., registry:..., image:s0)
    input: bytes | None = None  # API outputs: the API's input bytes
    api: str | None = None
    address: int | None = None
    # For api carriers: what the API did (decrypt | decode | decompress | copy | guest_code).
    transform: str = "identity"
    pc: int | None = None  # for guest_code carriers: the instruction that wrote the bytes
    input_address: int | None = None  # for copies (API or guest code): where the input was read
    # Reads of different sources joined into one buffer, in memory order (empty: one source,
    # described by kind, ref and node).
    pieces: list[Piece] = field(default_factory=list)


@dataclass
class Match:
    offset: int
    length: int
    transform: str  # identity | xor | base64+identity | base64+xor
    detail: str = ""
    key: bytes = b""  # xor: the key stream, repeating every ``period`` bytes
    period: int = 0


@dataclass
class Hop:
    """One step of a lineage: bytes moved from ``source`` by ``transform``."""

    source_kind: str
    source_ref: str
    # source | xor | base64 | decrypt | decode | decompress | copy | process_write | file_write | guest_code
    transform: str
    detail: str
    evidence: list[int]
    actor: str | None = None  # the stage that performed the hop
    node: str | None = None
    offset: int | None = None
    size: int | None = None
    # An origin of several sources: each one's piece of the bytes (the hop names the first).
    pieces: list[Piece] = field(default_factory=list)

    @property
    def decodes(self) -> bool:
        return self.transform in DECODING_TRANSFORMS


# Reads of what the replay may itself have written before: the lineage runs on through the write.
WRITES_OF = {"file": "file_write", "registry": "registry_write"}
# Carriers whose bytes an API put into a guest buffer that guest code may then decode in place.
IN_PLACE_KINDS = ("file", "network", "registry", "environment")
DECODING_TRANSFORMS = {"xor", "base64", "decrypt", "decode", "decompress", "guest_code"}
DECRYPTING_TRANSFORMS = {"decrypt", "guest_code"}


# ---- recognising transforms ---------------------------------------------------------------


def usable_probe(data: bytes) -> bytes:
    probe = data[:PROBE_BYTES]
    if len(probe) < MIN_MATCH or len(set(probe[:256])) < MIN_DISTINCT_BYTES:
        return b""
    return probe


def find_same(probe: bytes, data: bytes) -> Match | None:
    head = probe[: MIN_MATCH * 2] if len(probe) >= MIN_MATCH * 2 else probe
    offset = data.find(head)
    if offset < 0:
        return None
    return Match(offset, _common_prefix(probe, data, offset), "identity")


def find_xor(probe: bytes, data: bytes) -> Match | None:
    """``data[o + i] ^ key(i) == probe[i]`` for an affine or a short repeating key stream."""
    if len(data) > MAX_XOR_CARRIER or len(data) < MIN_MATCH:
        return None
    if _vectorised(len(data)):
        from emulator.analysis import lineage_numpy as search
    else:
        search = sys.modules[__name__]
    found = search._find_affine(probe, data)
    if found is not None:
        return found
    return search._find_periodic(probe, data)


_searched_without_numpy = 0


def _vectorised(size: int) -> bool:
    """Whether an XOR search over ``size`` bytes runs on numpy (imported then) rather than on
    Python's bytes and ints, which need no import but take 5-10x longer per MiB."""
    global _searched_without_numpy
    if "emulator.analysis.lineage_numpy" in sys.modules:
        return True
    if size > PURE_SEARCH_BYTES or _searched_without_numpy + size > PURE_SEARCH_BUDGET:
        return True
    _searched_without_numpy += size
    return False


def _byte_difference(x: int, y: int, high: int, low: int) -> int:
    """Byte by byte ``(x - y) mod 256`` of two byte strings of one length held as big-endian
    ints (``high``: 0x80 in every byte, ``low``: 0x7f): no borrow crosses a byte."""
    return ((x | high) - (y & low)) ^ ((x ^ y ^ high) & high)


def _affine_at(probe: bytes, data: bytes, offset: int) -> bool:
    """``data[offset + i] ^ probe[i]`` is ``a + b*i (mod 256)`` for every i < MIN_MATCH."""
    first = data[offset] ^ probe[0]
    step = ((data[offset + 1] ^ probe[1]) - first) & 0xFF
    previous = data[offset + 1] ^ probe[1]
    for j in range(2, MIN_MATCH):
        key = data[offset + j] ^ probe[j]
        if (key - previous) & 0xFF != step:
            return False
        previous = key
    return True


def _find_affine(probe: bytes, data: bytes) -> Match | None:
    """Every offset whose first MIN_MATCH key bytes ``data[o + j] ^ probe[j]`` step by one
    constant, a column j at a time over the whole carrier (as big-endian ints: one int operation
    handles every offset) until few offsets are left, then offset by offset."""
    width = MIN_MATCH
    count = len(data) - width + 1
    if count <= 0:
        return None
    whole = int.from_bytes(data, "big")
    mask = (1 << (8 * count)) - 1
    ones = mask // 0xFF  # 0x0101...01, one per offset
    high, low = ones * 0x80, ones * 0x7F

    def keys(j: int) -> int:  # data[o + j] ^ probe[j] for every offset o
        return ((whole >> (8 * (width - 1 - j))) & mask) ^ (ones * probe[j])

    previous = keys(1)
    step = _byte_difference(previous, keys(0), high, low)
    broken = 0  # non-zero bytes: offsets whose keys do not step by their own step
    for j in range(2, width):
        current = keys(j)
        broken |= _byte_difference(current, previous, high, low) ^ step
        previous = current
        offsets = broken.to_bytes(count, "big")
        left = offsets.count(0)
        if not left:
            return None
        if left <= AFFINE_COLUMNS_UNTIL:
            break
    tried = 0
    for zero in _ZERO_BYTE.finditer(offsets):
        offset = zero.start()
        if not _affine_at(probe, data, offset):
            continue  # left by the columns not run
        if tried == MAX_XOR_CANDIDATES:
            break
        tried += 1
        k0 = data[offset] ^ probe[0]
        match = affine_match(probe, data, offset, k0, ((data[offset + 1] ^ probe[1]) - k0) & 0xFF)
        if match is not None:
            return match
    return None


def affine_match(probe: bytes, data: bytes, offset: int, k0: int, b: int) -> Match | None:
    """The match at ``offset`` under the key ``k0 + b*i`` (a candidate of the affine search), if
    long enough; None for the identity key, handled elsewhere."""
    if k0 == 0 and b == 0:
        return None
    key = bytes((k0 + b * i) & 0xFF for i in range(256))
    length = _xor_prefix(probe, data, offset, key, 256)
    if length >= min(len(probe), MIN_MATCH * 2):
        detail = f"key {k0:#04x}" if b == 0 else f"rolling key {k0:#04x} + {b}*i"
        return Match(offset, length, "xor", detail, key, 256)
    return None


def _find_periodic(probe: bytes, data: bytes) -> Match | None:
    """A repeating key of ``period`` bytes leaves ``data[o + period + i] ^ data[o + i] ==
    probe[period + i] ^ probe[i]``: that pattern is looked for in the carrier XORed with itself
    shifted by ``period``."""
    whole = None
    size = len(data)
    for period in range(2, MAX_XOR_PERIOD + 1):
        width = MIN_MATCH + period
        if len(probe) < width + period or size < width + period:
            break
        pattern = bytes(a ^ b for a, b in zip(probe[period : period + width], probe[:width], strict=True))
        if whole is None:
            whole = int.from_bytes(data, "big")
        # diffs[period + i] == data[period + i] ^ data[i]; its first period bytes are not searched
        diffs = (whole ^ (whole >> (8 * period))).to_bytes(size, "big")
        index, tries = diffs.find(pattern, period), 0
        while index >= 0 and tries < MAX_XOR_CANDIDATES:
            match = periodic_match(probe, data, index - period, period)
            if match is not None:
                return match
            index, tries = diffs.find(pattern, index + 1), tries + 1
    return None


def periodic_match(probe: bytes, data: bytes, offset: int, period: int) -> Match | None:
    """The match at ``offset`` under the repeating key of ``period`` bytes that turns ``data``
    there into ``probe`` (a candidate of the periodic search), if long enough; None for the
    identity key."""
    key = bytes(data[offset + i] ^ probe[i] for i in range(period))
    if not any(key):
        return None
    length = _xor_prefix(probe, data, offset, key, period)
    if length >= min(len(probe), MIN_MATCH * 2):
        return Match(offset, length, "xor", f"repeating key {key.hex()}", key, period)
    return None


def base64_runs(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, decoded bytes) of every long base64 run in ``data``."""
    found = []
    for run in _BASE64_RUN.finditer(data):
        text = _WHITESPACE.sub(b"", run.group())
        # The run may start with letters that are not part of the encoding: try each alignment.
        for skip in range(4):
            part = text[skip:]
            part = part[: len(part) - len(part) % 4]
            try:
                decoded = base64.b64decode(part, validate=True)
            except (binascii.Error, ValueError):
                continue
            if len(decoded) >= MIN_MATCH:
                found.append((run.start() + skip, decoded))
    return found


def find_transformed(probe: bytes, data: bytes, xor: bool = True) -> Match | None:
    """The first transform under which ``probe`` is found in ``data``."""
    match = find_same(probe, data)
    if match is None and xor:
        match = find_xor(probe, data)
    if match is None and _looks_textual(data):
        for offset, decoded in base64_runs(data):
            inner = find_same(probe, decoded) or (find_xor(probe, decoded) if xor else None)
            if inner is not None:
                detail = "; ".join(x for x in ("base64", inner.detail) if x)
                return Match(offset, inner.length, f"base64+{inner.transform}", detail)
    return match


def extended(match: Match, stage: bytes, data: bytes) -> Match:
    """``match``, found for the first PROBE_BYTES of ``stage``, run on over the rest of it: a
    payload longer than the probe is as long as the carrier goes on explaining it."""
    if match.length < PROBE_BYTES or len(stage) <= match.length:
        return match
    if match.transform == "identity":
        length = _common_prefix(stage, data, match.offset)
    elif match.transform == "xor" and match.key:
        length = _xor_prefix(stage, data, match.offset, match.key, match.period)
    else:
        return match  # base64: the decoded run is not kept
    return replace(match, length=max(length, match.length))


def _looks_textual(data: bytes) -> bool:
    return b"==" in data or len(_BASE64_LETTERS.findall(data[:65536])) > 0


def _common_prefix(probe: bytes, data: bytes, offset: int) -> int:
    n = min(len(probe), len(data) - offset)
    return _same_length_prefix(probe[:n], data[offset : offset + n])


def _xor_prefix(probe: bytes, data: bytes, offset: int, key: bytes, period: int) -> int:
    n = min(len(probe), len(data) - offset)
    stream = int.from_bytes((key[:period] * (n // period + 1))[:n], "big")
    decoded = int.from_bytes(data[offset : offset + n], "big") ^ stream
    return _same_length_prefix(probe[:n], decoded.to_bytes(n, "big"))


def _same_length_prefix(a: bytes, b: bytes) -> int:
    """How many leading bytes two byte strings of one length share: the first difference is
    the highest set bit of their XOR as big-endian ints."""
    differs = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return len(a) - (differs.bit_length() + 7) // 8


# ---- tracing ------------------------------------------------------------------------------


def trace(
    probe: bytes,
    before_seq: int,
    carriers: list[Carrier],
    depth: int = 0,
    guest: bool = False,
    at: int | None = None,
) -> list[Hop] | None:
    """The hops that brought ``probe`` into the guest before ``before_seq``, origin first.

    Recognised transforms of recorded carriers first; with ``guest``, then the regions guest
    code wrote (its transform unnamed unless recognised further down). Carriers are searched for
    the first PROBE_BYTES of ``probe``; a match of all of them runs on over the rest. ``at``:
    where ``probe`` lies in guest memory; an API that put exactly these bytes there last is
    their carrier, before any other holding the same bytes elsewhere (one payload unpacked
    twice, from two sources, into two buffers run later)."""
    whole, probe = probe, usable_probe(probe)
    if not probe or depth > MAX_HOPS:
        return None
    earlier = sorted((c for c in carriers if c.seq < before_seq), key=lambda c: c.seq, reverse=True)
    if at is not None:
        here = next(
            (
                c
                for c in earlier
                if c.address is not None and c.transform != "guest_code" and c.address <= at < c.address + len(c.data)
            ),
            None,
        )
        offset = at - (here.address or 0) if here is not None else 0
        if here is not None and here.kind != "memory":
            length = _common_prefix(probe, here.data, offset)
            if length >= min(len(probe), MIN_MATCH * 2):
                placed = Match(offset, length, "identity")
                return _hops_through(here, extended(placed, whole, here.data), carriers, depth, guest)
    # The same bytes as an earlier stage say little when they were put there independently
    # (one payload decoded into several allocations): a carrier explaining them further back
    # wins, the earlier stage only when none does.
    same_as_stage: tuple[Carrier, Match] | None = None
    for carrier in earlier:
        if carrier.transform == "guest_code":
            continue
        match = find_transformed(probe, carrier.data, xor=True)
        if match is None:
            continue
        match = extended(match, whole, carrier.data)
        if carrier.kind == "memory" and match.transform == "identity":
            same_as_stage = same_as_stage or (carrier, match)
            continue
        return _hops_through(carrier, match, carriers, depth, guest)
    if same_as_stage is not None:
        return _hops_through(*same_as_stage, carriers, depth, guest)
    if not guest:
        return None
    # Guest code writes the same region once per source it read: the first whose input leads
    # back to an origin wins, else the most recent.
    fallback: list[Hop] | None = None
    for carrier in earlier:
        if carrier.transform != "guest_code":
            continue
        match = find_transformed(probe, carrier.data, xor=True)
        if match is None:
            continue
        hops = _hops_through(carrier, extended(match, whole, carrier.data), carriers, depth, guest)
        if hops[0].transform != "guest_code":
            return hops
        fallback = fallback or hops
    return fallback


def guest_code_detail(pc: int | None, actor: str | None, in_place: bool = False) -> str:
    where = f" at pc {pc:#x}" if pc is not None else ""
    return f"decoded{' in place' if in_place else ''} by guest code{where}" + (f" in {actor}" if actor else "")


def copied_unchanged(carrier: Carrier, match: Match) -> bool:
    """Whether guest code wrote the matched bytes exactly as it read them (a copy loop, an inlined
    memcpy): they stand, unchanged, in what it read. Too short a run, or one of zeros, says
    nothing either way."""
    written = carrier.data[match.offset : match.offset + match.length]
    return (
        carrier.input is not None
        and len(written) >= MIN_COPY_EVIDENCE
        and bool(written.strip(b"\0"))
        and written in carrier.input
    )


def _hops_through(carrier: Carrier, match: Match, carriers: list[Carrier], depth: int, guest: bool) -> list[Hop]:
    covered = _covered_pieces(carrier, match)
    if len(covered) == 1:
        # Bytes of one source of a buffer filled from several: that source's carrier, as if read
        # alone (a file the replay wrote itself still goes on through the write).
        piece = covered[0]
        return _hops_through(
            _piece_carrier(carrier, piece), replace(match, offset=match.offset - piece.offset), carriers, depth, guest
        )
    last = _match_hop(carrier, match)
    if carrier.transform == "guest_code":
        # a plain copy by guest code is a copy (no decoding, so no T1140 drawn from it)
        copied = copied_unchanged(carrier, match)
        hop = Hop(
            "memory",
            carrier.ref,
            "copy" if copied else "guest_code",
            guest_code_detail(carrier.pc, carrier.stage).replace("decoded", "copied", 1)
            if copied
            else guest_code_detail(carrier.pc, carrier.stage),
            list(carrier.evidence),
            actor=carrier.stage,
            offset=match.offset,
            size=match.length,
        )
        upstream = trace(carrier.input, carrier.seq, carriers, depth + 1, guest) if carrier.input else None
        upstream = _in_place_first(upstream, carrier, carriers, depth, guest)
        return [*(upstream or []), hop, *last]
    if carrier.kind == "api" and carrier.input:
        api_hop = Hop(
            "api",
            carrier.api or carrier.ref,
            carrier.transform,
            _api_detail(carrier),
            list(carrier.evidence),
            actor=carrier.stage,
            # What the API's output accounts for of the stage (its input may be shorter: a
            # compressed file, one of many strings).
            offset=match.offset,
            size=match.length,
        )
        upstream = _in_place_first(
            trace(carrier.input, carrier.seq, carriers, depth + 1, guest), carrier, carriers, depth, guest
        )
        if upstream is None:
            return [api_hop, *last]
        # The API's input is the upstream's output: the API hop starts where the upstream ends.
        return [*upstream, api_hop, *last]
    if carrier.kind in ("process_write", "file_write", "registry_write"):
        move = Hop(
            carrier.kind,
            carrier.ref,
            carrier.kind,
            carrier.api or "",
            list(carrier.evidence),
            actor=carrier.stage,
            node=carrier.node,
            # What the written bytes account for of the stage (the write's source may have come
            # in pieces: a download read chunk by chunk).
            offset=match.offset,
            size=match.length,
        )
        upstream = trace(carrier.data, carrier.seq, carriers, depth + 1, guest)
        if carrier.kind == "process_write":
            upstream = _in_place_first(upstream, carrier, carriers, depth, guest)
        return [*(upstream or []), move, *last]
    if covered:
        return [_pieces_origin(carrier, match, covered), *last]
    if carrier.kind in WRITES_OF:
        written = _writer_of(carrier, carriers)
        if written is not None:
            # The replay itself wrote this file (a drop, a download) or registry value (a stash):
            # its bytes came from wherever the write's did, so the lineage goes on through it.
            through = _hops_through(written, Match(0, len(written.data), "identity"), carriers, depth + 1, guest)
            through[-1].evidence = sorted({*through[-1].evidence, *carrier.evidence})  # the read too
            through[-1].offset, through[-1].size = match.offset, match.length  # of the stage, as read
            return [*through, *last]
    origin = Hop(
        carrier.kind,
        carrier.ref,
        "source",
        carrier.api or "",
        list(carrier.evidence),
        actor=carrier.stage,
        node=carrier.node,
        offset=match.offset,
        size=match.length,
    )
    return [origin, *last]


def _api_detail(carrier: Carrier) -> str:
    """The API of an API hop, and what it worked on when its ref names something else (a pipe)."""
    api = carrier.api or ""
    if api and carrier.ref and api.rpartition(".")[2].lower() not in carrier.ref.lower():
        return f"{api} ({carrier.ref})"
    return api


def _covered_pieces(carrier: Carrier, match: Match) -> list[Piece]:
    """The pieces of a buffer filled from several sources that the match covers."""
    end = match.offset + match.length
    return [p for p in carrier.pieces if p.offset < end and match.offset < p.offset + p.size] or carrier.pieces[:1]


def _piece_carrier(carrier: Carrier, piece: Piece) -> Carrier:
    return Carrier(
        carrier.data[piece.offset : piece.offset + piece.size],
        piece.kind,
        piece.ref,
        carrier.seq,
        carrier.stage,
        list(piece.evidence),
        piece.node,
        api=piece.api,
        address=carrier.address + piece.offset if carrier.address is not None else None,
    )


def _pieces_origin(carrier: Carrier, match: Match, covered: list[Piece]) -> Hop:
    """The origin of bytes matched in a buffer filled from several sources: the first piece the
    match covers, naming every one."""
    first = covered[0]
    return Hop(
        first.kind,
        first.ref,
        "source",
        first.api or "",
        sorted({seq for p in covered for seq in p.evidence}),
        actor=carrier.stage,
        node=first.node,
        offset=match.offset,
        size=match.length,
        pieces=list(covered),
    )


def _in_place_first(
    upstream: list[Hop] | None, carrier: Carrier, carriers: list[Carrier], depth: int, guest: bool
) -> list[Hop] | None:
    """A copy's upstream: where its input bytes were read decides over an earlier stage that
    merely holds the same bytes (one payload decoded, then copied into several allocations)."""
    if upstream is not None and upstream[0].source_kind != "memory":
        return upstream
    return _decoded_in_place(carrier, carriers, depth, guest) or upstream


def _decoded_in_place(carrier: Carrier, carriers: list[Carrier], depth: int, guest: bool) -> list[Hop] | None:
    """A copy's input no transform explains, read from a buffer an API last filled with a file,
    network, registry or environment read (or an API copy of one): guest code decoded it in place (in memory no
    flow watch follows: the stack, a global, a small heap block) before the copy. The read's
    lineage, then that hop."""
    at, data = carrier.input_address, carrier.input or carrier.data  # a write's input is what it wrote
    if at is None or not data or depth > MAX_HOPS:
        return None
    for read in sorted(carriers, key=lambda c: c.seq, reverse=True):
        if read.seq >= carrier.seq or read.address is None or read.transform == "guest_code":
            continue
        if not read.address <= at < read.address + len(read.data):
            continue
        # The most recent API output covering the copied bytes is what guest code worked on: a
        # read, or bytes an API copied there (a pipe's other end, memcpy into a stack buffer).
        if read.kind not in IN_PLACE_KINDS and (read.kind, read.transform) != ("api", "copy"):
            return None
        offset = at - read.address
        size = min(len(data), len(read.data) - offset)
        if read.kind == "api" and read.data[offset : offset + size] == data[:size]:
            return None  # an API's copy, copied on unchanged (a block moved twice): nothing decoded
        upstream = _hops_through(read, Match(offset, size, "identity"), carriers, depth + 1, guest)
        hop = Hop(
            "memory",
            "",
            "guest_code",
            guest_code_detail(None, carrier.stage, in_place=True),
            # The buffer decoded (the read that filled it) and the copy that read it decoded.
            sorted({*read.evidence, *carrier.evidence}),
            actor=carrier.stage,
            offset=offset,
            size=size,
        )
        return [*upstream, hop]
    return None


def _writer_of(read: Carrier, carriers: list[Carrier]) -> Carrier | None:
    """The most recent earlier write of the file or registry value ``read`` read, holding the
    bytes read."""
    probe = usable_probe(read.data)
    if not probe or read.node is None:
        return None
    write_kind = WRITES_OF[read.kind]
    for carrier in sorted(carriers, key=lambda c: c.seq, reverse=True):
        if (
            carrier.kind == write_kind
            and carrier.node == read.node
            and (write_kind == "file_write" or carrier.ref.lower() == read.ref.lower())
            and carrier.seq < read.seq
            and find_same(probe, carrier.data) is not None
        ):
            return carrier
    return None


def _match_hop(carrier: Carrier, match: Match) -> list[Hop]:
    """The guest-side transform between the carrier's bytes and the stage (none for identity)."""
    hops = []
    for part in match.transform.split("+"):
        if part == "identity":
            continue
        detail = match.detail if part == "xor" else "base64"
        if part == "xor" and "base64" in match.detail:
            detail = match.detail.split("; ", 1)[-1]
        hops.append(Hop("memory", "", part, detail, [], actor=None, offset=match.offset, size=match.length))
    return hops


def matched_length(hops: list[Hop]) -> int | None:
    """How many stage bytes the last hop accounts for (bounds the stage's bytes)."""
    for hop in reversed(hops):
        if hop.size:
            return hop.size
    return None


def section_table(image: bytes) -> bytes:
    """The section table of a PE image (see :func:`emulator.pe.section_table`), if long enough to tie an
    image to the file it came from."""
    probe = pe_section_table(image)
    return probe if len(probe) >= MIN_SECTION_TABLE else b""
