"""PE headers, read with pefile: sample files before emulation, and images mapped in guest memory.

A file is checked before it reaches the engine (cheap, nothing is mapped): every refusal is one
line naming the field. A mapped image (the bytes of guest memory that start with MZ) is parsed
by the same code; its data directories are read at their RVAs, since mapping puts each section
at its virtual address.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pefile

from emulator.limits import MAX_PE_IMAGE_SIZE, MAX_PE_SECTION_VIRTUAL_SIZE, MAX_SAMPLE_FILE_SIZE

IMAGE_FILE_MACHINE_I386 = 0x14C
IMAGE_FILE_MACHINE_AMD64 = 0x8664
PE32_MAGIC = 0x10B
PE32_PLUS_MAGIC = 0x20B
MACHINE_OF_MAGIC = {PE32_MAGIC: IMAGE_FILE_MACHINE_I386, PE32_PLUS_MAGIC: IMAGE_FILE_MACHINE_AMD64}
IMAGE_SCN_MEM_EXECUTE = 0x20000000
SECTION_HEADER_SIZE = 40
MAX_SECTIONS = 96
MAX_EXPORT_NAME = 128
EXPORT_DIRECTORY = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]
# pefile's refusals, by the start of its message, in the words of the checks below.
PEFILE_ERRORS = (
    ("Unable to read the DOS Header", "truncated DOS header"),
    ("DOS Header magic not found", "not a PE file (no MZ header); for shellcode pass --arch x86|x64"),
    ("Invalid NT Headers signature", "no PE signature at e_lfanew"),
    ("NT Headers not found", "no PE signature at e_lfanew"),
    ("No Optional Header found", "truncated optional header"),
    ("Data length less than expected header length", "truncated section table"),
)


class PeError(ValueError):
    """The file is not a PE chainreplay can emulate; the message (one line) says why."""


@dataclass(frozen=True)
class Section:
    index: int  # position in the section table
    name: str
    virtual_address: int
    virtual_size: int
    raw_size: int
    executable: bool


@dataclass(frozen=True)
class PeHeaders:
    machine: int
    magic: int
    size_of_image: int
    size_of_headers: int
    entry_point: int
    declared_sections: int
    section_table_offset: int
    sections: tuple[Section, ...]

    @property
    def arch(self) -> Literal["x86", "x64"]:
        return "x64" if self.machine == IMAGE_FILE_MACHINE_AMD64 else "x86"


def _parse(data: bytes) -> pefile.PE:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pefile.PE(data=data, fast_load=True)


def _headers(pe: pefile.PE) -> PeHeaders:
    file_header, optional = pe.FILE_HEADER, pe.OPTIONAL_HEADER
    table = optional.get_file_offset() + file_header.SizeOfOptionalHeader
    sections = tuple(
        Section(
            index=(s.get_file_offset() - table) // SECTION_HEADER_SIZE,
            name=s.Name.rstrip(b"\0").decode("latin-1", "replace"),
            virtual_address=s.VirtualAddress,
            virtual_size=s.Misc_VirtualSize,
            raw_size=s.SizeOfRawData,
            executable=bool(s.Characteristics & IMAGE_SCN_MEM_EXECUTE),
        )
        for s in pe.sections
    )
    return PeHeaders(
        machine=file_header.Machine,
        magic=optional.Magic,
        size_of_image=optional.SizeOfImage,
        size_of_headers=optional.SizeOfHeaders,
        entry_point=optional.AddressOfEntryPoint,
        declared_sections=file_header.NumberOfSections,
        section_table_offset=table,
        sections=sections,
    )


# The plain case read with struct (``_plain_headers``): offsets and layouts of the PE format.
E_LFANEW_OFFSET = 0x3C
DOS_HEADER_SIZE = 64
PE_SIGNATURE = b"PE\0\0"
_FILE_HEADER = struct.Struct("<HHIIIHH")  # Machine, NumberOfSections, ..., SizeOfOptionalHeader
FILE_HEADER_SIZE = _FILE_HEADER.size
# The optional header as pefile unpacks it (no data directories): PE32 96 bytes, PE32+ 112.
OPTIONAL_HEADER_SIZE = {PE32_MAGIC: 96, PE32_PLUS_MAGIC: 112}
_OPTIONAL_START = struct.Struct("<H14xI12xII16xII")  # Magic, entry point, alignments, sizes
_SECTION_HEADER = struct.Struct("<8sIIII12xI")  # Name, VirtualSize, RVA, raw size, raw pointer, flags
# pefile's own limits in parse_sections: a section header with this many of its warnings ends
# the table there; sizes and addresses beyond this value each count as one.
PEFILE_SECTION_ERRORS_STOP = 3
PEFILE_SUSPICIOUS_SIZE = 0x10000000
PEFILE_SECTOR_MASK = ~0x1FF
PAGE_SIZE = 0x1000


def _plain_headers(data: bytes) -> PeHeaders | None:
    """The headers pefile's fast load reads, for a plain PE (the common case), with ``struct``:
    pefile builds a Python object per field (~0.4 ms a parse, more for a process's first ones);
    this takes ~0.02 ms.

    None for anything pefile would handle specially (a truncated or padded header, an unknown
    optional header magic, a null or truncated section header, a section table pefile would
    stop reading early, more than :data:`MAX_SECTIONS` sections): the caller asks pefile then,
    so refusals and odd files keep pefile's reading. tests/test_pe.py compares the two on every
    PE the project ships."""
    size = len(data)
    if size < DOS_HEADER_SIZE or data[:2] != b"MZ":
        return None
    (nt,) = struct.unpack_from("<I", data, E_LFANEW_OFFSET)
    if data[nt : nt + 4] != PE_SIGNATURE or nt + 4 + FILE_HEADER_SIZE > size:
        return None
    machine, count, _, _, _, optional_size, _ = _FILE_HEADER.unpack_from(data, nt + 4)
    optional = nt + 4 + FILE_HEADER_SIZE
    if optional + 2 > size:
        return None
    (magic,) = struct.unpack_from("<H", data, optional)
    if magic not in OPTIONAL_HEADER_SIZE or optional + OPTIONAL_HEADER_SIZE[magic] > size:
        return None
    _, entry_point, section_alignment, file_alignment, size_of_image, size_of_headers = _OPTIONAL_START.unpack_from(
        data, optional
    )
    table = optional + optional_size
    if not 0 < count <= MAX_SECTIONS or table + SECTION_HEADER_SIZE * count > size:
        return None
    unpacked = []
    for index in range(count):
        at = table + SECTION_HEADER_SIZE * index
        if not data[at : at + SECTION_HEADER_SIZE].strip(b"\0"):
            return None  # pefile stops at a null section header
        name, virtual_size, rva, raw_size, raw_pointer, flags = _SECTION_HEADER.unpack_from(data, at)
        errors = (
            (raw_size + raw_pointer > size)
            + ((raw_pointer & PEFILE_SECTOR_MASK) > size)
            + (virtual_size > PEFILE_SUSPICIOUS_SIZE)
            + (_pefile_aligned(rva, section_alignment, file_alignment) > PEFILE_SUSPICIOUS_SIZE)
            + (file_alignment != 0 and raw_pointer % file_alignment != 0)
        )
        if errors >= PEFILE_SECTION_ERRORS_STOP:
            return None
        unpacked.append(
            Section(
                index=index,
                name=name.rstrip(b"\0").decode("latin-1", "replace"),
                virtual_address=rva,
                virtual_size=virtual_size,
                raw_size=raw_size,
                executable=bool(flags & IMAGE_SCN_MEM_EXECUTE),
            )
        )
    unpacked.sort(key=_by_virtual_address)  # pefile's order (a stable sort)
    return PeHeaders(
        machine=machine,
        magic=magic,
        size_of_image=size_of_image,
        size_of_headers=size_of_headers,
        entry_point=entry_point,
        declared_sections=count,
        section_table_offset=table,
        sections=tuple(unpacked),
    )


def _pefile_aligned(address: int, section_alignment: int, file_alignment: int) -> int:
    """A section's address as pefile aligns it for its warning (``cache_adjust_SectionAlignment``,
    float division included: the warning must count as pefile counts it)."""
    alignment = file_alignment if section_alignment < PAGE_SIZE else section_alignment
    if alignment and address % alignment:
        return alignment * int(address / alignment)
    return address


def _by_virtual_address(section: Section) -> int:
    return section.virtual_address


def _e_lfanew(data: bytes) -> int:
    dos = pefile.Structure(pefile.PE.__IMAGE_DOS_HEADER_format__)
    dos.__unpack__(data[: dos.sizeof()])
    return int(dos.e_lfanew)


def read_file_headers(data: bytes) -> tuple[pefile.PE, PeHeaders]:
    """Parse a PE file's headers; :class:`PeError` with one line when it cannot be parsed."""
    if len(data) > MAX_SAMPLE_FILE_SIZE:
        raise PeError(f"file is {len(data)} bytes, larger than the {MAX_SAMPLE_FILE_SIZE}-byte limit")
    if len(data) < 2 or data[:2] != b"MZ":
        raise PeError("not a PE file (no MZ header); for shellcode pass --arch x86|x64")
    try:
        pe = _parse(data)
    except pefile.PEFormatError as err:
        message = str(err.value if hasattr(err, "value") else err)
        if message.startswith("Invalid e_lfanew"):
            raise PeError(f"e_lfanew {_e_lfanew(data):#x} points past the end of the file") from err
        for prefix, ours in PEFILE_ERRORS:
            if message.startswith(prefix):
                raise PeError(ours) from err
        raise PeError(f"malformed PE: {message}") from err
    return pe, _headers(pe)


def check_file(data: bytes, exports: Sequence[str] = ()) -> PeHeaders:
    """The headers of a PE file chainreplay can emulate, and the exports it must have."""
    plain = _plain_headers(data) if not exports and len(data) <= MAX_SAMPLE_FILE_SIZE else None
    if plain is not None:  # nothing but the headers is read: no pefile object needed
        _check(plain, len(data))
        check_layout(data, plain)
        return plain
    pe, headers = read_file_headers(data)
    _check(headers, len(data))
    check_layout(data, headers)
    if exports:
        names = _export_names(pe)
        for name in exports:
            if name not in names:
                shown = ", ".join(sorted(names)[:20]) or "none"
                raise PeError(f"export {name!r} not found (exports: {shown})")
        _check_forwarders(pe, exports)
    return headers


# Forwarders followed inside one DLL at most (Speakeasy and the Windows loader give up too).
MAX_FORWARDER_CHAIN = 32


def _check_forwarders(pe: pefile.PE, wanted: Sequence[str]) -> None:
    """A wanted export forwarded, within this same DLL, in a loop or to nothing can never run.

    Forwarders to other DLLs are resolved by the emulator when the export is called.
    """
    directory = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    if directory is None:
        return
    own = (getattr(directory, "name", b"") or b"").decode("latin-1").lower().removesuffix(".dll")
    forwards = {
        s.name.decode("latin-1"): s.forwarder.decode("latin-1") if s.forwarder else None
        for s in directory.symbols
        if s.name
    }
    for name in wanted:
        chain, current = [name], name
        while (target := forwards.get(current)) is not None:
            module, _, function = target.rpartition(".")
            if module.lower().removesuffix(".dll") != own:
                break
            chain.append(target)
            if function in chain[:-1] or len(chain) > MAX_FORWARDER_CHAIN:
                raise PeError(f"export {name!r} is forwarded in a loop: {' -> '.join(chain)}")
            if function not in forwards:
                raise PeError(f"export {name!r} is forwarded to {target}, which this DLL does not export")
            current = function


def _check(headers: PeHeaders, file_size: int) -> None:
    machine, magic = headers.machine, headers.magic
    if machine not in (IMAGE_FILE_MACHINE_I386, IMAGE_FILE_MACHINE_AMD64):
        raise PeError(f"unsupported machine type {machine:#x} (x86 and x64 only)")
    count = headers.declared_sections
    if count == 0 or count > MAX_SECTIONS:
        raise PeError(f"NumberOfSections is {count} (expected 1..{MAX_SECTIONS})")
    if magic not in MACHINE_OF_MAGIC:
        raise PeError(f"unknown optional header magic {magic:#x}")
    if MACHINE_OF_MAGIC[magic] != machine:
        kind = "PE32" if magic == PE32_MAGIC else "PE32+"
        raise PeError(f"a {kind} optional header (magic {magic:#x}) contradicts machine type {machine:#x}")
    size_of_image = headers.size_of_image
    if size_of_image == 0 or size_of_image > MAX_PE_IMAGE_SIZE:
        raise PeError(f"SizeOfImage {size_of_image:#x} is out of range")
    if headers.size_of_headers > min(size_of_image, file_size):
        raise PeError(
            f"SizeOfHeaders {headers.size_of_headers:#x} is larger than the "
            + ("image" if size_of_image < file_size else "file")
        )
    if headers.section_table_offset + SECTION_HEADER_SIZE * count > file_size or len(headers.sections) < count:
        raise PeError("truncated section table")
    for section in headers.sections:
        if max(section.virtual_size, section.raw_size) > MAX_PE_SECTION_VIRTUAL_SIZE:
            raise PeError(
                f"section {section.name!r} is {max(section.virtual_size, section.raw_size):#x} bytes, over the "
                f"{MAX_PE_SECTION_VIRTUAL_SIZE:#x}-byte limit"
            )
        if section.virtual_address + section.virtual_size > size_of_image + 0x1000:
            raise PeError(f"section {section.index} lies outside SizeOfImage")
    if headers.entry_point and headers.entry_point >= size_of_image:
        raise PeError(f"entry point {headers.entry_point:#x} is outside the image (SizeOfImage {size_of_image:#x})")


# ---- what the loader reads past the headers: section data, directories, imports, TLS, relocations

# Bounds of the walks below (a table with no end is refused at them, never followed further).
MAX_IMPORT_DESCRIPTORS = 4096
MAX_IMPORTS_PER_DLL = 65536
MAX_IMPORT_NAME = 256  # a DLL or function name (MAX_PATH is 260)
MAX_TLS_CALLBACKS = 256
# Data directories the loader (Windows', Speakeasy's) or the replay reads, by index.
CHECKED_DIRECTORIES = {
    0: "export",
    1: "import",
    3: "exception",
    5: "relocation",
    9: "TLS",
    12: "import address table",
    13: "delay import",
}
IMPORT_DIRECTORY, RELOCATION_DIRECTORY, TLS_DIRECTORY = 1, 5, 9
IMPORT_DESCRIPTOR_SIZE = 20
RELOCATION_BLOCK_HEADER = 8
# Relocation types a loader applies (IMAGE_REL_BASED_*): absolute (padding), high, low,
# highlow, dir64; anything else is refused.
RELOCATION_TYPES = frozenset({0, 1, 2, 3, 10})
_RAW_POINTER = struct.Struct("<I")  # PointerToRawData, at offset 20 of a section header
_IMAGE_BASE = {PE32_MAGIC: struct.Struct("<I"), PE32_PLUS_MAGIC: struct.Struct("<Q")}
_IMAGE_BASE_OFFSET = {PE32_MAGIC: 28, PE32_PLUS_MAGIC: 24}


class _Image:
    """A PE file read at RVAs, as a loader lays it out: the headers, then each section's raw
    data and zeros up to the end of its last page (or the next section); anything in no
    section reads as absent. :attr:`declared` are the sections' own extents (the larger of
    their virtual and raw sizes)."""

    def __init__(self, data: bytes, headers: PeHeaders) -> None:
        self.data = data
        self.headers = headers
        size_of_image = headers.size_of_image
        # (start RVA, end RVA, file offset of the raw data, raw size), in RVA order
        self.regions = [(0, min(headers.size_of_headers, size_of_image), 0, headers.size_of_headers)]
        self.declared: list[tuple[int, int]] = []
        self.raw_pointers = []
        sections = headers.sections
        for number, section in enumerate(sections):
            at = headers.section_table_offset + SECTION_HEADER_SIZE * section.index + 20
            (raw_pointer,) = _RAW_POINTER.unpack_from(data, at)
            self.raw_pointers.append(raw_pointer)
            start = section.virtual_address
            end = start + max(section.virtual_size, section.raw_size)
            self.declared.append((start, end))
            following = sections[number + 1].virtual_address if number + 1 < len(sections) else size_of_image
            paged = -(-end // PAGE_SIZE) * PAGE_SIZE
            self.regions.append((start, max(end, min(paged, following, size_of_image)), raw_pointer, section.raw_size))

    def _region(self, rva: int) -> tuple[int, int, int, int] | None:
        return next((region for region in self.regions if region[0] <= rva < region[1]), None)

    def read(self, rva: int, size: int) -> bytes | None:
        """``size`` bytes at ``rva``, or None if they are not all inside one region of the image."""
        region = self._region(rva)
        if region is None or rva + size > region[1]:
            return None
        start, _, raw_pointer, raw_size = region
        offset = rva - start
        present = (
            self.data[raw_pointer + offset : raw_pointer + min(raw_size, offset + size)] if offset < raw_size else b""
        )
        return present + bytes(size - len(present))

    def string(self, rva: int, limit: int) -> bytes | str:
        """The NUL-terminated string at ``rva`` (ended by its region's end, zero-filled in
        memory, too), or why it cannot be read (a str)."""
        region = self._region(rva)
        if region is None:
            return "lies outside the image"
        text = self.read(rva, min(limit + 1, region[1] - rva))
        assert text is not None
        end = text.find(b"\0")
        if end < 0 and len(text) > limit:
            return f"is not NUL-terminated within {limit} bytes"
        return text if end < 0 else text[:end]


def check_layout(data: bytes, headers: PeHeaders) -> None:
    """What the loader reads past the headers, checked against the file and the image (the
    headers themselves already checked): each section's raw data inside the file, sections that
    do not overlap, an entry point in a section (not in the headers), data directories inside the
    image, and the import, TLS and relocation tables well formed and bounded. :class:`PeError`
    names the first problem; Windows' loader refuses such files, and an emulator given one
    fails later without saying why (a fault at an address nobody wrote)."""
    file_size = len(data)
    image = _Image(data, headers)
    previous: Section | None = None
    for section, raw_pointer in zip(headers.sections, image.raw_pointers, strict=True):
        if section.raw_size and raw_pointer + section.raw_size > file_size:
            raise PeError(
                f"section {section.name!r} raw data (offset {raw_pointer:#x}, {section.raw_size:#x} bytes) runs past "
                f"the end of the file ({file_size:#x} bytes)"
            )
        if previous is not None:
            end = previous.virtual_address + max(previous.virtual_size, previous.raw_size)
            if end > section.virtual_address:
                raise PeError(
                    f"sections {previous.name!r} ({previous.virtual_address:#x}-{end:#x}) and {section.name!r} "
                    f"(from {section.virtual_address:#x}) overlap"
                )
        previous = section
    entry = headers.entry_point
    in_headers = entry < headers.size_of_headers
    # An image aligned below a page is mapped whole, headers included, executable: Windows runs
    # an entry point there (tiny PEs do); otherwise it is in no mapped code.
    low_alignment = _optional_u32(data, OPTIONAL_SECTION_ALIGNMENT) < PAGE_SIZE
    if entry and not any(start <= entry < end for start, end in image.declared) and not (in_headers and low_alignment):
        where = " (it is in the headers)" if in_headers else ""
        raise PeError(f"entry point {entry:#x} is in no section{where}")
    directories = _directories(data, headers)
    for index, kind in CHECKED_DIRECTORIES.items():
        rva, size = directories.get(index, (0, 0))
        if rva and size and rva + size > headers.size_of_image:
            raise PeError(
                f"{kind} directory (RVA {rva:#x}, {size:#x} bytes) lies outside the image "
                f"(SizeOfImage {headers.size_of_image:#x})"
            )
    if directories.get(IMPORT_DIRECTORY, (0, 0))[0]:
        _check_imports(image, directories[IMPORT_DIRECTORY][0])
    if directories.get(TLS_DIRECTORY, (0, 0))[0]:
        _check_tls(image, directories[TLS_DIRECTORY][0], _image_base(data, headers))
    rva, size = directories.get(RELOCATION_DIRECTORY, (0, 0))
    # Windows reads the relocations only to move the image: always for an image that asks for
    # ASLR (DYNAMIC_BASE); one loaded at its preferred base never reads them (a wrong table there
    # is no reason to refuse the file; a rebase the emulator must make anyway is checked then).
    if rva and size and _optional_u16(data, OPTIONAL_DLL_CHARACTERISTICS) & IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE:
        _check_relocations(image, rva, size)


# Offsets in the optional header (the same in PE32 and PE32+).
OPTIONAL_SECTION_ALIGNMENT = 32
OPTIONAL_DLL_CHARACTERISTICS = 70
IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE = 0x40


def _optional_u32(data: bytes, offset: int) -> int:
    (nt,) = struct.unpack_from("<I", data, E_LFANEW_OFFSET)
    return int(struct.unpack_from("<I", data, nt + 4 + FILE_HEADER_SIZE + offset)[0])


def _optional_u16(data: bytes, offset: int) -> int:
    (nt,) = struct.unpack_from("<I", data, E_LFANEW_OFFSET)
    return int(struct.unpack_from("<H", data, nt + 4 + FILE_HEADER_SIZE + offset)[0])


def _directories(data: bytes, headers: PeHeaders) -> dict[int, tuple[int, int]]:
    """The data directories the optional header declares: index -> (RVA, size)."""
    (nt,) = struct.unpack_from("<I", data, E_LFANEW_OFFSET)
    start = nt + 4 + FILE_HEADER_SIZE
    optional_size = _FILE_HEADER.unpack_from(data, nt + 4)[5]
    first = OPTIONAL_HEADER_SIZE[headers.magic]
    if first > optional_size:
        return {}
    (count,) = struct.unpack_from("<I", data, start + first - 4)
    count = min(count, (optional_size - first) // _DIRECTORY.size)
    return {
        index: _DIRECTORY.unpack_from(data, start + first + _DIRECTORY.size * index)
        for index in range(count)
        if start + first + _DIRECTORY.size * (index + 1) <= len(data)
    }


IMAGE_FILE_RELOCS_STRIPPED = 0x0001


def moved_without_fixups(data: bytes, base: int) -> bytes | None:
    """The PE file ``data`` with its preferred base set to ``base``, for an image Windows moves
    without a fixup: one that asks for ASLR (DYNAMIC_BASE), does not say its relocations were
    stripped, and has none (no relocation directory: its linker found no absolute address to
    fix, as in position-independent x64 code). Loaded there, it is what ASLR makes of it. None
    for any other image (or a file whose headers cannot be read)."""
    headers = _plain_headers(data)
    if headers is None:
        return None
    (nt,) = struct.unpack_from("<I", data, E_LFANEW_OFFSET)
    characteristics = _FILE_HEADER.unpack_from(data, nt + 4)[6]
    dynamic = _optional_u16(data, OPTIONAL_DLL_CHARACTERISTICS) & IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE
    rva, size = _directories(data, headers).get(RELOCATION_DIRECTORY, (0, 0))
    if not dynamic or characteristics & IMAGE_FILE_RELOCS_STRIPPED or (rva and size):
        return None
    at = nt + 4 + FILE_HEADER_SIZE + _IMAGE_BASE_OFFSET[headers.magic]
    field = _IMAGE_BASE[headers.magic]
    if base >= 1 << (8 * field.size):
        return None
    return data[:at] + field.pack(base) + data[at + field.size :]


def _image_base(data: bytes, headers: PeHeaders) -> int:
    (nt,) = struct.unpack_from("<I", data, E_LFANEW_OFFSET)
    at = nt + 4 + FILE_HEADER_SIZE + _IMAGE_BASE_OFFSET[headers.magic]
    (base,) = _IMAGE_BASE[headers.magic].unpack_from(data, at)
    return int(base)


def _check_imports(image: _Image, rva: int) -> None:
    thunk_size = 8 if image.headers.magic == PE32_PLUS_MAGIC else 4
    ordinal_flag = 1 << (8 * thunk_size - 1)
    for number in range(MAX_IMPORT_DESCRIPTORS + 1):
        at = rva + IMPORT_DESCRIPTOR_SIZE * number
        descriptor = image.read(at, IMPORT_DESCRIPTOR_SIZE)
        if descriptor is None:
            raise PeError(f"import descriptor {number} (RVA {at:#x}) lies outside the image: the table has no end")
        if not descriptor.strip(b"\0"):
            return
        if number == MAX_IMPORT_DESCRIPTORS:
            break
        lookup, _, _, name_rva, first_thunk = struct.unpack("<IIIII", descriptor)
        name = image.string(name_rva, MAX_IMPORT_NAME)
        if isinstance(name, str):
            raise PeError(f"import descriptor {number}: DLL name (RVA {name_rva:#x}) {name}")
        shown = name.decode("latin-1")
        for kind, table in (("lookup", lookup), ("address", first_thunk)):
            if not table:
                continue
            for entry in range(MAX_IMPORTS_PER_DLL + 1):
                thunk = image.read(table + thunk_size * entry, thunk_size)
                if thunk is None:
                    raise PeError(f"imports of {shown!r}: {kind} table (RVA {table:#x}) runs outside the image")
                value = int.from_bytes(thunk, "little")
                if not value:
                    break
                if entry == MAX_IMPORTS_PER_DLL:
                    raise PeError(f"imports of {shown!r}: {kind} table has no end within {MAX_IMPORTS_PER_DLL} entries")
                if (kind == "lookup" or not lookup) and not value & ordinal_flag:
                    function = image.string(value + 2, MAX_IMPORT_NAME)  # after the hint
                    if isinstance(function, str):
                        raise PeError(f"imports of {shown!r}: function name (RVA {value + 2:#x}) {function}")
    raise PeError(f"import directory has no end within {MAX_IMPORT_DESCRIPTORS} descriptors")


def _check_tls(image: _Image, rva: int, image_base: int) -> None:
    wide = image.headers.magic == PE32_PLUS_MAGIC
    pointer = 8 if wide else 4
    directory = image.read(rva, 6 * pointer if not wide else 40)
    if directory is None:
        raise PeError(f"TLS directory (RVA {rva:#x}) lies outside the image")
    callbacks = int.from_bytes(directory[3 * pointer : 4 * pointer], "little")  # AddressOfCallBacks
    if not callbacks:
        return
    end = image_base + image.headers.size_of_image
    for number in range(MAX_TLS_CALLBACKS + 1):
        at = callbacks + pointer * number
        entry = image.read(at - image_base, pointer) if image_base <= at < end else None
        if entry is None:
            raise PeError(
                f"TLS callback array entry {number} at {at:#x} lies outside the image ({image_base:#x}-{end:#x})"
            )
        callback = int.from_bytes(entry, "little")
        if not callback:
            return
        if number == MAX_TLS_CALLBACKS:
            break
        if not image_base <= callback < end:
            raise PeError(f"TLS callback {number} ({callback:#x}) lies outside the image ({image_base:#x}-{end:#x})")
    raise PeError(f"TLS callback array has no end within {MAX_TLS_CALLBACKS} entries")


def _check_relocations(image: _Image, rva: int, size: int) -> None:
    table = image.read(rva, size)
    if table is None:
        raise PeError(f"relocation directory (RVA {rva:#x}, {size:#x} bytes) lies outside the image")
    offset = 0
    while offset + RELOCATION_BLOCK_HEADER <= size:
        page, block = struct.unpack_from("<II", table, offset)
        if not page and not block:  # padding after the last block
            return
        where = f"relocation block at RVA {rva + offset:#x}"
        if block < RELOCATION_BLOCK_HEADER or block % 2 or offset + block > size:
            raise PeError(f"{where}: SizeOfBlock {block:#x} does not fit the directory ({size:#x} bytes)")
        if page >= image.headers.size_of_image:
            raise PeError(f"{where}: page RVA {page:#x} is outside the image")
        for (entry,) in struct.iter_unpack("<H", table[offset + RELOCATION_BLOCK_HEADER : offset + block]):
            kind = entry >> 12
            if kind not in RELOCATION_TYPES:
                raise PeError(f"{where}: relocation type {kind} is not one a loader applies")
            if kind and page + (entry & 0xFFF) + (8 if kind == 10 else 4) > image.headers.size_of_image:
                raise PeError(f"{where}: relocation at RVA {page + (entry & 0xFFF):#x} is outside the image")
        offset += block


# The data directories follow the optional header's fixed part (OPTIONAL_HEADER_SIZE), whose
# last field is NumberOfRvaAndSizes; the CLR runtime header (COR20, a .NET assembly's) is
# directory 14.
CLR_RUNTIME_HEADER_DIRECTORY = 14
_DIRECTORY = struct.Struct("<II")  # VirtualAddress, Size


def has_clr_runtime_header(data: bytes) -> bool:
    """Whether a PE (already checked: :func:`check_file`) declares a CLR runtime header: a .NET
    assembly, whose managed code (IL) no x86/x64 emulator runs; only its native stub does."""
    try:
        (nt,) = struct.unpack_from("<I", data, E_LFANEW_OFFSET)
        optional = nt + 4 + FILE_HEADER_SIZE
        optional_size = _FILE_HEADER.unpack_from(data, nt + 4)[5]  # SizeOfOptionalHeader
        (magic,) = struct.unpack_from("<H", data, optional)
        first = OPTIONAL_HEADER_SIZE[magic]
        (count,) = struct.unpack_from("<I", data, optional + first - 4)
        at = first + _DIRECTORY.size * CLR_RUNTIME_HEADER_DIRECTORY
        if count <= CLR_RUNTIME_HEADER_DIRECTORY or at + _DIRECTORY.size > optional_size:
            return False
        address, size = _DIRECTORY.unpack_from(data, optional + at)
    except (struct.error, KeyError):
        return False
    return address != 0 and size != 0


def _export_names(pe: pefile.PE) -> list[str]:
    try:
        pe.parse_data_directories(directories=[EXPORT_DIRECTORY])
    except pefile.PEFormatError as err:
        raise PeError(f"malformed PE: {err}") from err
    exports = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    if exports is None:
        return []
    return [s.name.decode("latin-1") for s in exports.symbols if s.name]


# ---- images mapped in guest memory -----------------------------------------------------------


def mapped_headers(image: bytes) -> PeHeaders | None:
    """The headers of a mapped PE image (its first page is enough); None if it is not one."""
    if len(image) < 0x40 or image[:2] != b"MZ":
        return None
    plain = _plain_headers(image)
    if plain is not None:
        return plain
    try:
        return _headers(_parse(image))
    except (pefile.PEFormatError, AttributeError, ValueError):
        return None


def export_name(data: bytes) -> str | None:
    """The DLL name in a PE file's export directory (the name it was linked as, which a renamed
    copy keeps), if it has one."""
    try:
        pe = _parse(data)
        pe.parse_data_directories(directories=[EXPORT_DIRECTORY])
    except (pefile.PEFormatError, AttributeError, ValueError):
        return None
    exports = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    name = getattr(exports, "name", None) if exports is not None else None
    if not name:
        return None
    return bytes(name).decode("latin-1")[:MAX_EXPORT_NAME] or None


def mapped_export_name(image: bytes) -> str | None:
    """The DLL name in a mapped image's export directory, if it has one."""
    try:
        pe = _parse(image)
        # Mapped: every RVA is an offset into the image; without sections pefile reads it so.
        pe.sections = []
        pe.parse_data_directories(directories=[EXPORT_DIRECTORY])
    except (pefile.PEFormatError, AttributeError, ValueError):
        return None
    exports = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
    name = getattr(exports, "name", None) if exports is not None else None
    if not name:
        return None
    return bytes(name).decode("latin-1")[:MAX_EXPORT_NAME] or None


def section_table(image: bytes) -> bytes:
    """The section table of a PE image, file or mapped (empty if there is none): loaders copy it
    verbatim and never patch it, so it identifies the file an image came from."""
    headers = mapped_headers(image)
    if headers is None:
        return b""
    start = headers.section_table_offset
    return image[start : start + SECTION_HEADER_SIZE * headers.declared_sections]


RESOURCE_DIRECTORY = 2
RT_MANIFEST = 24
# A manifest is read whole (it is in the file, which is at most MAX_SAMPLE_FILE_SIZE): cut at
# 64 KiB, a manifest naming Windows 10 after a long comment was read as naming nothing (6.2).
MAX_MANIFEST_SIZE = MAX_SAMPLE_FILE_SIZE
# supportedOS ids of an application manifest's compatibility section.
WINDOWS_10_ID = "8e0f7a12-bfb3-4fe8-b9a5-48fd50a15a9a"
WINDOWS_81_ID = "1f676c76-80e1-4239-95bb-83d0f6d0da78"


def is_dll(data: bytes) -> bool:
    """Whether the file header says DLL (IMAGE_FILE_DLL); False for what is not a PE."""
    try:
        at = _e_lfanew(data)
        return bool(int.from_bytes(data[at + 22 : at + 24], "little") & 0x2000)
    except Exception:
        return False


def manifest_supported_os(data: bytes) -> str:
    """The newest Windows the program's embedded manifest (RT_MANIFEST) declares support for:
    "10" (Windows 10/11), "8.1", or "" (no manifest, or none of those: Windows 8.1 and later
    then tell the program it runs on Windows 8, GetVersionEx 6.2 build 9200)."""
    try:
        pe = pefile.PE(data=data, fast_load=True)
        pe.parse_data_directories(directories=[RESOURCE_DIRECTORY])
        text = ""
        for kind in getattr(getattr(pe, "DIRECTORY_ENTRY_RESOURCE", None), "entries", []):
            if kind.id != RT_MANIFEST:
                continue
            for name in getattr(getattr(kind, "directory", None), "entries", []):
                for language in getattr(getattr(name, "directory", None), "entries", []):
                    entry = language.data.struct
                    text += pe.get_data(entry.OffsetToData, min(entry.Size, MAX_MANIFEST_SIZE)).decode(
                        "utf-8", "replace"
                    )
    except Exception:
        return ""
    text = text.lower()
    if WINDOWS_10_ID in text:
        return "10"
    if WINDOWS_81_ID in text:
        return "8.1"
    return ""
