"""Structural checks on a PE file before it reaches the emulator (cheap, no mapping)."""

from __future__ import annotations

import struct

from emulator.limits import MAX_PE_IMAGE_SIZE, MAX_PE_SECTION_VIRTUAL_SIZE, MAX_SAMPLE_FILE_SIZE

IMAGE_FILE_MACHINE_I386 = 0x14C
IMAGE_FILE_MACHINE_AMD64 = 0x8664
MAX_SECTIONS = 96


class PeCheckError(ValueError):
    """The file is not a PE chainreplay can emulate; the message says why."""


def check_pe(data: bytes) -> None:
    if len(data) > MAX_SAMPLE_FILE_SIZE:
        raise PeCheckError(f"file is {len(data)} bytes, larger than the {MAX_SAMPLE_FILE_SIZE}-byte limit")
    if len(data) < 2 or data[:2] != b"MZ":
        raise PeCheckError("not a PE file (no MZ header); for shellcode pass --arch x86|x64")
    if len(data) < 0x40:
        raise PeCheckError("truncated DOS header")
    e_lfanew = struct.unpack_from("<I", data, 0x3C)[0]
    if e_lfanew + 24 > len(data):
        raise PeCheckError(f"e_lfanew {e_lfanew:#x} points past the end of the file")
    if data[e_lfanew : e_lfanew + 4] != b"PE\0\0":
        raise PeCheckError("no PE signature at e_lfanew")
    machine, sections, _, _, _, opt_size, _ = struct.unpack_from("<HHIIIHH", data, e_lfanew + 4)
    if machine not in (IMAGE_FILE_MACHINE_I386, IMAGE_FILE_MACHINE_AMD64):
        raise PeCheckError(f"unsupported machine type {machine:#x} (x86 and x64 only)")
    if sections == 0 or sections > MAX_SECTIONS:
        raise PeCheckError(f"NumberOfSections is {sections} (expected 1..{MAX_SECTIONS})")
    optional = e_lfanew + 24
    if optional + max(opt_size, 0x60) > len(data):
        raise PeCheckError("truncated optional header")
    magic = struct.unpack_from("<H", data, optional)[0]
    if magic not in (0x10B, 0x20B):
        raise PeCheckError(f"unknown optional header magic {magic:#x}")
    entry = struct.unpack_from("<I", data, optional + 16)[0]
    size_of_image = struct.unpack_from("<I", data, optional + 56)[0]
    if size_of_image == 0 or size_of_image > MAX_PE_IMAGE_SIZE:
        raise PeCheckError(f"SizeOfImage {size_of_image:#x} is out of range")
    table = optional + opt_size
    if table + 40 * sections > len(data):
        raise PeCheckError("truncated section table")
    for index in range(sections):
        name, vsize, vaddr, raw_size, raw_ptr = struct.unpack_from("<8sIIII", data, table + 40 * index)
        if vsize > MAX_PE_SECTION_VIRTUAL_SIZE or raw_size > MAX_PE_SECTION_VIRTUAL_SIZE:
            label = name.rstrip(b"\0").decode("latin-1", "replace")
            raise PeCheckError(
                f"section {label!r} is {max(vsize, raw_size):#x} bytes, over the "
                f"{MAX_PE_SECTION_VIRTUAL_SIZE:#x}-byte limit"
            )
        if vaddr + vsize > size_of_image + 0x1000:
            raise PeCheckError(f"section {index} lies outside SizeOfImage")
    if entry and entry >= size_of_image:
        raise PeCheckError(f"entry point {entry:#x} is outside the image (SizeOfImage {size_of_image:#x})")


def _exports(data: bytes) -> tuple[str, dict[str, str | None]]:
    """The export directory's DLL name and each exported name -> its forwarder ("dll.name") or None."""
    import pefile

    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]])
    except pefile.PEFormatError as err:
        raise PeCheckError(f"malformed PE: {err}") from err
    exports = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    if exports is None:
        return "", {}
    dll = (getattr(exports, "name", b"") or b"").decode("latin-1")
    return dll, {
        s.name.decode("latin-1"): s.forwarder.decode("latin-1") if s.forwarder else None
        for s in exports.symbols
        if s.name
    }


def export_names(data: bytes) -> list[str]:
    """Names exported by a PE image (empty if it has no export directory)."""
    return list(_exports(data)[1])


# Forwarders followed inside one DLL at most (Speakeasy and the Windows loader give up too).
MAX_FORWARDER_CHAIN = 32


def check_exports(data: bytes, wanted: list[str]) -> None:
    if not wanted:
        return
    dll, exports = _exports(data)
    own = dll.lower().removesuffix(".dll")
    names = list(exports)
    for name in wanted:
        if name not in names:
            shown = ", ".join(sorted(names)[:20]) or "none"
            raise PeCheckError(f"export {name!r} not found (exports: {shown})")
        # A forwarder to this same DLL is followed here: a loop can never resolve.
        chain, current = [name], name
        while (target := exports.get(current)) is not None:
            module, _, function = target.rpartition(".")
            if module.lower().removesuffix(".dll") != own:
                break  # forwarded to another DLL: resolved by the emulator when the export is called
            chain.append(target)
            if function in chain[:-1] or len(chain) > MAX_FORWARDER_CHAIN:
                raise PeCheckError(f"export {name!r} is forwarded in a loop: {' -> '.join(chain)}")
            if function not in exports:
                raise PeCheckError(f"export {name!r} is forwarded to {target}, which this DLL does not export")
            current = function
