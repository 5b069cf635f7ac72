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
import marshal
import struct
import zlib
from pathlib import Path
from typing import Any

import speakeasy.winenv.arch as se_arch
from speakeasy.config import get_default_config_dict
from speakeasy.windows.api_image import ApiModuleLoader
from speakeasy.windows.loaders import ExportEntry, LoadedImage, MemoryRegion, PeMetadata, SectionEntry

from emulator.backends.speakeasy.compat import SPEAKEASY_VERSION, shipped_table

DATA_FILE = Path(__file__).resolve().parent.parent.parent / "data" / "speakeasy-images.bin"
FORMAT = 1
# A template holds: image size, regions (rva, bytes, name, perms; the headers first, their
# ImageBase zeroed), sections, exports (name, rva, ordinal, kind, forwarder), PE metadata, the
# handler's digest.
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
        exports=[ExportEntry(n, base + rva, o, kind=k, forwarder=f) for n, rva, o, k, f in exports],
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
        _templates[key] = None if blob is None else marshal.loads(zlib.decompress(blob))
    return _templates[key]


def make_image(loader: ApiModuleLoader) -> LoadedImage:
    """``ApiModuleLoader.make_image``, from a shipped template when one fits."""
    name = loader._name
    found = template((name, arch_name(loader._arch)))
    if found is None or not name.isascii() or found[5] != handler_digest(loader._api):
        return _ORIGINAL_MAKE_IMAGE(loader)
    image = place(found, name=name, arch=loader._arch, base=loader._base, emu_path=loader._emu_path)
    image.loader = loader
    return image


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
    blobs = {key: zlib.compress(marshal.dumps(table[key]), 9) for key in sorted(table)}
    return marshal.dumps((SPEAKEASY_VERSION, FORMAT, blobs))


def decode(data: bytes) -> dict[Key, Template]:
    """Every template of a file's bytes (for tests and comparisons)."""
    _, _, blobs = marshal.loads(data)
    return {key: marshal.loads(zlib.decompress(blob)) for key, blob in blobs.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description="Rebuild emulator/data/speakeasy-images.bin")
    parser.parse_args()
    DATA_FILE.write_bytes(encode(build()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
