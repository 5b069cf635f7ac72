"""Speakeasy's decoy DLL images, built once and shipped, instead of once per replay.

Every replay maps about 55 synthetic images of system DLLs (``ApiModuleLoader.make_image``):
each is built from the module's export manifest (a pydantic-validated JSON file) or its
declarations in the signature database, plus the API handler's own names, then laid out as a
PE (headers, stub code, export directory, data). None of it depends on the replay but the base
address, which appears only in the optional header's ImageBase and in the export addresses.

This module keeps each image as a position-independent template: built by Speakeasy's own
``make_image`` (:func:`build`), shipped in ``emulator/data/speakeasy-images.bin`` for the
installed Speakeasy version, decoded once per process and placed at any base in microseconds
(:func:`install` wraps ``make_image``). A template is used only when the Speakeasy version is
the one it was built with and the module's API handler declares the same names and ordinals
(the handler is the one input that is Python code rather than a data file); anything else is
built by Speakeasy as before. ``python -m emulator.backends.speakeasy.images`` rebuilds the
file; tests/test_startup.py checks it equals what the builder produces now and that every
image placed from it equals Speakeasy's own, byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import marshal
import operator
import struct
import sys
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import speakeasy.winenv.arch as se_arch
from speakeasy.config import get_default_config_dict
from speakeasy.windows.api_image import ApiModuleLoader
from speakeasy.windows.loaders import ExportEntry, LoadedImage, MemoryRegion, PeMetadata, SectionEntry

from emulator.backends.speakeasy.compat import SPEAKEASY_VERSION, shipped_table

DATA_FILE = Path(__file__).resolve().parent.parent.parent / "data" / "speakeasy-images.bin"
FORMAT = 2
# A template holds: image size, regions (rva, bytes, name, perms; the headers first, their
# ImageBase zeroed), sections, exports (name, rva, ordinal, kind, forwarder), PE metadata, the
# handler's digest. In the file each region's bytes are runs (:func:`runs`): most of an image is
# a repeated pattern (the stub slots of .text, the INT3 fill of .dyn, the zeroed .data), and
# decompressing it was most of a cold load's decoding (x64: 6 MB of images, 1.1 MB of them not a
# repetition).
Template = tuple[int, tuple[Any, ...], tuple[Any, ...], tuple[Any, ...], tuple[int, int, int, int], str]
# (module, "x86" | "x64")
Key = tuple[str, str]

_ORIGINAL_MAKE_IMAGE = ApiModuleLoader.make_image
_shipped: dict[Key, bytes] | None = None  # each template compressed, decoded when first used
_templates: dict[Key, Template | None] = {}


def arch_name(arch: int) -> str:
    return "x86" if arch == se_arch.ARCH_X86 else "x64"


def handler_digest(api: Any) -> str:
    """What ``make_image`` reads of a module's API handler (its names, ordinals and data
    exports, and ntdll's native services), as a digest."""
    names: list[tuple[str, int | None]] = []
    data: list[str] = []
    nt_handler = getattr(api, "_nt_handler", None)
    for handler in (api, nt_handler):
        if handler is None:
            continue
        for key, func in handler.funcs.items():
            if isinstance(key, int) or (handler is nt_handler and not key.startswith(("Nt", "Zw"))):
                continue
            names.append((key, func[4]))
        if handler is api:
            data.extend(handler.data)
    text = repr((sorted(names, key=lambda item: item[0]), sorted(data)))
    return hashlib.sha256(text.encode()).hexdigest()


def _image_base_offset(headers: bytes | bytearray) -> tuple[int, str]:
    optional = struct.unpack_from("<I", headers, 0x3C)[0] + 24
    magic = struct.unpack_from("<H", headers, optional)[0]
    return (optional + 24, "<Q") if magic == 0x20B else (optional + 28, "<I")


def template_of(image: LoadedImage, digest: str) -> Template:
    """``image`` (built by Speakeasy) without its base."""
    base = image.image_base
    headers = bytearray(image.regions[0].data)
    offset, layout = _image_base_offset(headers)
    struct.pack_into(layout, headers, offset, 0)
    assert image.pe_metadata is not None and image.regions[0].base == base
    meta = image.pe_metadata
    regions = [(r.base - base, r.data, r.name, r.perms) for r in image.regions]
    regions[0] = (0, bytes(headers), image.regions[0].name, image.regions[0].perms)
    return (
        image.image_size,
        tuple(regions),
        tuple((s.name, s.virtual_address, s.virtual_size, s.perms) for s in image.sections),
        tuple((e.name, e.address - base, e.ordinal, e.kind, e.forwarder) for e in image.exports),
        (meta.subsystem, meta.timestamp, meta.machine, meta.magic),
        digest,
    )


def place(template: Template, *, name: str, arch: int, base: int, emu_path: str) -> LoadedImage:
    """The image ``make_image`` builds for ``name`` at ``base``, from its template."""
    image_size, regions, sections, exports, meta, _ = template
    if base < 0 or base + image_size > 1 << arch:
        raise ValueError("Image exceeds the architecture address space")
    headers = bytearray(regions[0][1])
    offset, layout = _image_base_offset(headers)
    struct.pack_into(layout, headers, offset, base)
    _, _, headers_name, headers_perms = regions[0]
    return LoadedImage(
        arch=arch,
        module_type="dll",
        name=name,
        emu_path=emu_path,
        image_base=base,
        image_size=image_size,
        regions=[MemoryRegion(base, bytes(headers), headers_name, headers_perms)]
        + [MemoryRegion(base + rva, data, region, perms) for rva, data, region, perms in regions[1:]],
        imports=[],
        exports=[ExportEntry(n, base + rva, o, k, f) for n, rva, o, k, f in exports],
        entry_points=[],
        loader=None,
        sections=[SectionEntry(*section) for section in sections],
        pe_metadata=PeMetadata(*meta),
        source="synthetic",
    )


def shipped() -> dict[Key, bytes]:
    """The shipped templates, each still compressed (read once per process); none if they were
    built for another Speakeasy version or the file is missing."""
    global _shipped
    if _shipped is None:
        _shipped = shipped_table(DATA_FILE, SPEAKEASY_VERSION, FORMAT) or {}
    return _shipped


def template(key: Key) -> Template | None:
    """The shipped template of ``key`` (decoded once per process), if there is one."""
    if key not in _templates:
        blob = shipped().get(key)
        _templates[key] = None if blob is None else _unpacked(marshal.loads(zlib.decompress(blob)))
    return _templates[key]


# A region's bytes in the file: (unit, count) pairs, the bytes being each unit repeated count
# times, in order. A unit is one RUN_BLOCK-byte block repeated at least RUN_MIN times, or the
# literal bytes between such runs (count 1).
Runs = tuple[tuple[bytes, int], ...]
RUN_BLOCK = 32
RUN_MIN = 4


def runs(data: bytes) -> Runs:
    """``data`` as runs: ``b"".join(unit * count for unit, count in runs(data)) == data``."""
    found: list[tuple[bytes, int]] = []
    literal = bytearray()
    at, size = 0, len(data)
    while at < size:
        block = data[at : at + RUN_BLOCK]
        end = at + len(block)
        while end + RUN_BLOCK <= size and data[end : end + RUN_BLOCK] == block:
            end += RUN_BLOCK
        count = (end - at) // RUN_BLOCK
        if len(block) == RUN_BLOCK and count >= RUN_MIN:
            if literal:
                found.append((bytes(literal), 1))
                literal.clear()
            found.append((block, count))
        else:
            literal += data[at:end]
        at = end
    if literal:
        found.append((bytes(literal), 1))
    return tuple(found)


def _packed(template: Template) -> tuple[Any, ...]:
    """``template`` as the file holds it: each region's bytes as runs."""
    regions = tuple((rva, runs(data), name, perms) for rva, data, name, perms in template[1])
    return (template[0], regions, *template[2:])


def _unpacked(packed: tuple[Any, ...]) -> Template:
    regions = tuple(
        (rva, b"".join([unit * count for unit, count in parts]), name, perms) for rva, parts, name, perms in packed[1]
    )
    return (packed[0], regions, *packed[2:])  # type: ignore[return-value]


def make_image(loader: ApiModuleLoader) -> LoadedImage:
    """``ApiModuleLoader.make_image``, from a shipped template when one fits."""
    name = loader._name
    found = template((name, arch_name(loader._arch)))
    if found is None or not name.isascii() or found[5] != handler_digest(loader._api):
        return _ORIGINAL_MAKE_IMAGE(loader)
    image = place(found, name=name, arch=loader._arch, base=loader._base, emu_path=loader._emu_path)
    image.loader = loader
    # For the registry (compat_start.register_exports): which template, and the exports placed.
    image.__dict__[PLACED] = (found, image.exports, image.image_base)
    return image


# The attribute of an image placed from a template: (template, its exports list, its base).
PLACED = "_chainreplay_placed"
# A function export's stub slot in a synthetic image's .text (speakeasy.windows.api_image):
# 16 bytes of NOP, then the stub at API_ENTRY_OFFSET, the rest INT3.
SLOT_SIZE = 32
ENTRY_OFFSET = 16
STUB_PREFIX_X64 = b"\x66\x90\xff\x25\x00\x00\x00\x00"  # then the trap's address (8 bytes)
STUB_PREFIX_X86 = b"\x8b\xff\x0f\x1f\x00\xe9"  # then rel32 to the trap (4 bytes)


@dataclass(frozen=True)
class Registration:
    """What ``ApiRegistry.register_module`` does with a template's exports, worked out once per
    process (it does not depend on the base or the traps): the entries it creates, in export
    order, and the lookups it fills; and the image's .text with every stub but its trap."""

    firsts: tuple[int, ...]  # per entry: the index of the export that creates it
    rvas: tuple[int, ...]  # per entry: its address less the base
    names: tuple[tuple[str, ...], ...]  # per entry: its names, in order
    trapped: tuple[int, ...]  # the entries with a trap, in order (the n-th gets the n-th trap)
    data: tuple[int, ...]  # the entries of data exports, in order
    names_looked_up: tuple[str, ...]  # the module's name lookup, in its order...
    name_entries: tuple[int, ...]  # ... and the entry of each
    ordinals_looked_up: tuple[int, ...]  # the module's ordinal lookup, in its order...
    ordinal_entries: tuple[int, ...]  # ... and the entry of each
    sorted_rvas: tuple[int, ...]
    text_rva: int
    text: bytes  # the .text region as the template maps it
    stubbed: bytes  # the same with each slot's stub written but its trap (x64) or rel32 (x86)
    slot_traps: tuple[int, ...]  # per stub slot: the number of its trap within the module


_registrations: dict[tuple[int, int], tuple[Template, Registration | None]] = {}


def registration(template: Template, arch: int) -> Registration | None:
    """The registration of ``template``'s exports on ``arch`` (worked out once per process;
    None when its layout is not the one :class:`Registration` describes: then the registry's
    own loop runs)."""
    key = (id(template), arch)
    found = _registrations.get(key)
    if found is None or found[0] is not template:
        found = _registrations[key] = (template, _registration(template, arch))
    return found[1]


def _registration(template: Template, arch: int) -> Registration | None:
    _, regions, _, exports, _, _ = template
    text = next((data for rva, data, region, _ in regions if region == ".text"), None)
    text_rva = next((rva for rva, _, region, _ in regions if region == ".text"), 0)
    if text is None or sys.byteorder != "little":
        return None
    columns = tuple(zip(*exports, strict=True)) or ((), (), (), (), ())
    names_of, rvas_of, ordinals_of, kinds_of, forwarders_of = columns
    if len(set(rvas_of)) == len(exports):  # each export its own entry (every template so far)
        rvas: tuple[int, ...] = rvas_of
        firsts: tuple[int, ...] = tuple(range(len(exports)))
        names = tuple((name,) if name else () for name in names_of)
        kinds: tuple[str, ...] = kinds_of
        forwarders: tuple[str | None, ...] = forwarders_of
        named = list(map(bool, names_of))
        by_name = dict(zip(itertools.compress(names_of, named), itertools.compress(firsts, named), strict=True))
        by_ordinal = dict(zip(ordinals_of, firsts, strict=True))
    else:
        rvas, firsts, names, kinds, forwarders, by_name, by_ordinal = _shared_entries(exports)
    everything = range(len(rvas))
    # A new entry gets a trap when it is a function and no forwarder; traps numbered in order.
    functions = map(operator.eq, kinds, itertools.repeat("function"))
    trapped = tuple(itertools.compress(everything, map(operator.and_, functions, map(operator.not_, forwarders))))
    count = len(trapped)
    # Each trapped entry is a stub slot of .text, and every slot is one: the slots' offsets,
    # sorted, are exactly 0, 32, 64...
    offsets = [rvas[entry] - text_rva - ENTRY_OFFSET for entry in trapped]
    if sorted(offsets) != list(range(0, SLOT_SIZE * count, SLOT_SIZE)):
        return None
    empty = b"\x90" * ENTRY_OFFSET + b"\xcc" * (SLOT_SIZE - ENTRY_OFFSET)
    if text != empty * count + b"\xcc" * (len(text) - SLOT_SIZE * count) or len(text) % 8:
        return None
    prefix = STUB_PREFIX_X86 if arch == se_arch.ARCH_X86 else STUB_PREFIX_X64
    stub_slot = b"\x90" * ENTRY_OFFSET + prefix + b"\xcc" * (SLOT_SIZE - ENTRY_OFFSET - len(prefix))
    return Registration(
        firsts=firsts,
        rvas=rvas,
        names=names,
        trapped=trapped,
        data=tuple(itertools.compress(everything, map(operator.eq, kinds, itertools.repeat("data")))),
        names_looked_up=tuple(by_name),
        name_entries=tuple(by_name.values()),
        ordinals_looked_up=tuple(by_ordinal),
        ordinal_entries=tuple(by_ordinal.values()),
        sorted_rvas=tuple(sorted(rvas)),
        text_rva=text_rva,
        text=text,
        stubbed=stub_slot * count + text[SLOT_SIZE * count :],
        # the trap number (the place among the trapped entries) of each slot in turn
        slot_traps=tuple(sorted(range(count), key=offsets.__getitem__)),
    )


def _shared_entries(exports: tuple[Any, ...]) -> tuple[Any, ...]:
    """The entries of a template where exports share an address, one export at a time as
    ``register_module`` walks them: (rvas, firsts, names, kinds, forwarders (of each entry's
    first export), name lookup, ordinal lookup)."""
    first_of: dict[int, int] = {}
    firsts: list[int] = []
    names: list[list[str]] = []
    kinds: list[str] = []
    forwarders: list[str | None] = []
    by_name: dict[str, int] = {}
    by_ordinal: dict[int, int] = {}
    for index, (name, rva, ordinal, kind, forwarder) in enumerate(exports):
        entry = first_of.get(rva)
        if entry is None:
            entry = first_of[rva] = len(firsts)
            firsts.append(index)
            names.append([])
            kinds.append(kind)
            forwarders.append(forwarder)
        if name:
            if name not in names[entry]:
                names[entry].append(name)
            by_name[name] = entry
        by_ordinal[ordinal] = entry
    return tuple(first_of), tuple(firsts), tuple(tuple(n) for n in names), tuple(kinds), forwarders, by_name, by_ordinal


def stubbed_text(plan: Registration, arch: int, base: int, first_trap: int, stride: int) -> bytes:
    """``plan``'s .text at ``base`` with the stubs ``encode_api_stub`` writes when the module's
    traps start at ``first_trap``, ``stride`` apart."""
    count = len(plan.slot_traps)
    if arch == se_arch.ARCH_X86:
        words = array("H")
        words.frombytes(plan.stubbed)
        # rel32 = trap - entry - 10, at byte 22 of the slot: halfwords 11 and 12
        start = first_trap - base - plan.text_rva - ENTRY_OFFSET - 10
        rels = [(start + stride * trap - SLOT_SIZE * slot) & 0xFFFFFFFF for slot, trap in enumerate(plan.slot_traps)]
        words[11 : 16 * count : 16] = array("H", [rel & 0xFFFF for rel in rels])
        words[12 : 16 * count : 16] = array("H", [rel >> 16 for rel in rels])
        return words.tobytes()
    quads = array("Q")
    quads.frombytes(plan.stubbed)
    quads[3 : 4 * count : 4] = array("Q", [first_trap + stride * trap for trap in plan.slot_traps])
    return quads.tobytes()


def install() -> None:
    """Every synthetic image of this process from its template when one fits (idempotent)."""
    ApiModuleLoader.make_image = make_image  # type: ignore[method-assign,assignment]


# Modules Speakeasy builds images of by name besides those of its configuration: the core DLLs
# every process gets (win32.py's _ensure_core_dlls_loaded) and the callback module.
ALWAYS_BUILT = ("ntdll", "kernel32", "kernelbase", "speakeasy_callbacks")


def module_names() -> list[str]:
    """The modules templates are built for: Speakeasy's default configuration's user and system
    modules, the core DLLs, and every module Speakeasy has an API handler for (what LoadLibrary
    loads in practice). A module with only an export manifest is built by Speakeasy when loaded
    (it would double the file)."""
    from speakeasy.winenv.api.winapi import API_HANDLERS

    modules = get_default_config_dict()["modules"]
    names = [entry["name"].lower() for entry in (*modules["user_modules"], *modules["system_modules"])]
    names += [name.lower() for name, _ in API_HANDLERS]
    names += ALWAYS_BUILT
    return sorted(set(names))


def build() -> dict[Key, Template]:
    """Every template, built now by Speakeasy's own ``make_image`` in an emulator of each
    architecture (the one loading a replay's target)."""
    table: dict[Key, Template] = {}
    for arch in (se_arch.ARCH_AMD64, se_arch.ARCH_X86):
        emu = _probe_emulator(arch)
        for name in module_names():
            handler = emu.api.load_api_handler(name)
            if handler is not None and name == "ntdll":
                handler._nt_handler = emu.api.load_api_handler("ntoskrnl")
            loader = ApiModuleLoader(
                name=name,
                api=handler,
                arch=arch,
                base=0x6F000000,
                emu_path=f"C:\\Windows\\system32\\{name}.dll",
                signature_db=emu.get_signature_db(),
            )
            image = _ORIGINAL_MAKE_IMAGE(loader)
            table[(name, arch_name(arch))] = template_of(image, handler_digest(handler))
    return table


def _probe_emulator(arch: int) -> Any:
    """A Speakeasy emulator of ``arch`` with its API handlers (a one-byte shellcode loaded)."""
    import speakeasy

    se = speakeasy.Speakeasy(config=get_default_config_dict())
    se.load_shellcode(data=b"\xc3", arch="x86" if arch == se_arch.ARCH_X86 else "amd64")
    return se.emu


def encode(table: dict[Key, Template]) -> bytes:
    blobs = {key: zlib.compress(marshal.dumps(_packed(table[key])), 9) for key in sorted(table)}
    return marshal.dumps((SPEAKEASY_VERSION, FORMAT, blobs))


def decode(data: bytes) -> dict[Key, Template]:
    """Every template of a file's bytes (for tests and comparisons)."""
    _, _, blobs = marshal.loads(data)
    return {key: _unpacked(marshal.loads(zlib.decompress(blob))) for key, blob in blobs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description="Rebuild emulator/data/speakeasy-images.bin")
    parser.parse_args()
    DATA_FILE.write_bytes(encode(build()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
