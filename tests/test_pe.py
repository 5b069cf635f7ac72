"""emulator/pe.py: one reader of PE headers, for sample files and for images mapped in memory.

A mapped image is what the memory watch finds when a sample maps a DLL itself (3CX's second
stage does): each section sits at its virtual address, so RVAs are offsets into the bytes.
pefile's own mapper (``get_memory_mapped_image``) lays a committed sample out that way here.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pefile
import pytest

from emulator import pe
from emulator.plan import ReplayPlan
from emulator.replay import emulate

BINS = Path(__file__).resolve().parent / "bins"
REPO = BINS.parent.parent


def _mapped(path: Path) -> bytes:
    return bytes(pefile.PE(data=path.read_bytes()).get_memory_mapped_image())


@pytest.mark.parametrize(("name", "arch"), [("hello.dll", "x64"), ("hello32.dll", "x86")])
def test_file_and_mapped_image_give_the_same_headers(name: str, arch: str) -> None:
    data = (BINS / name).read_bytes()
    headers = pe.check_file(data, ["Greet"])
    mapped = pe.mapped_headers(_mapped(BINS / name))
    assert mapped == headers
    assert headers.arch == arch
    assert [s.name for s in headers.sections if s.executable] == [".text"]
    # The section table is copied verbatim by a loader: it identifies the file a mapped image came from.
    table = pe.section_table(data)
    assert len(table) == 40 * len(headers.sections)
    assert pe.section_table(_mapped(BINS / name)) == table


def test_export_name_is_read_at_rvas_of_a_mapped_image() -> None:
    assert pe.mapped_export_name(_mapped(BINS / "hello.dll")) == "hello.dll"
    # In the file the export directory is not at its RVA: read as a mapped image it is not found.
    assert pe.mapped_export_name((BINS / "hello.dll").read_bytes()) != "hello.dll"
    assert pe.mapped_export_name(_mapped(BINS / "hello_exe.exe")) is None


@pytest.mark.parametrize("junk", [b"", b"MZ", b"MZ" + bytes(62), b"MZ" + b"\xff" * 4094, b"PE\0\0" * 100])
def test_mapped_junk_is_not_an_image(junk: bytes) -> None:
    assert pe.mapped_headers(junk) is None
    assert pe.mapped_export_name(junk) is None
    assert pe.section_table(junk) == b""


def test_contradictory_headers_reach_no_engine(tmp_path: Path) -> None:
    """A plan built without the CLI's check still ends with a one-line error, not an engine traceback."""
    data = bytearray((BINS / "hello.dll").read_bytes())
    e_lfanew = struct.unpack_from("<I", data, 0x3C)[0]
    struct.pack_into("<H", data, e_lfanew + 4, 0x14C)  # i386 machine, PE32+ optional header
    sample = tmp_path / "contradiction.dll"
    sample.write_bytes(bytes(data))
    plan = ReplayPlan(name="c", target_path=str(sample), emu_path="C:\\\\x\\\\contradiction.dll")
    recording = emulate(plan)
    assert recording.status == "error"
    assert recording.detail == (
        "contradiction.dll: a PE32+ optional header (magic 0x20b) contradicts machine type 0x14c"
    )
    assert recording.runs == []


# ---- the plain header reader (pe._plain_headers) agrees with pefile --------------------------

ROOT = BINS.parent.parent
SHIPPED_PES = sorted(
    path
    for folder in (ROOT / "scenarios", BINS)
    for path in folder.rglob("*")
    if path.suffix.lower() in {".exe", ".dll"} and path.read_bytes()[:2] == b"MZ"
)


def _pefile_headers(data: bytes) -> pe.PeHeaders:
    return pe._headers(pe._parse(data))


def test_the_project_ships_pes_to_compare() -> None:
    assert len(SHIPPED_PES) > 60


@pytest.mark.parametrize("path", SHIPPED_PES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plain_headers_are_pefiles_on_every_shipped_pe(path: Path) -> None:
    data = path.read_bytes()
    mapped = _mapped(path)
    for image in (data, mapped, mapped[:0x1000]):
        plain = pe._plain_headers(image)
        assert plain is not None, "a shipped PE is the plain case"
        assert plain == _pefile_headers(image)


def _with(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    changed = bytearray(data)
    struct.pack_into(fmt, changed, offset, value)
    return bytes(changed)


def _unusual_headers() -> dict[str, bytes]:
    data = (BINS / "hello.dll").read_bytes()
    nt = struct.unpack_from("<I", data, 0x3C)[0]
    optional = nt + 24
    table = optional + struct.unpack_from("<H", data, nt + 20)[0]
    return {
        "truncated section table": data[: table + 50],
        "optional header cut short (pefile pads it)": data[: optional + 80],
        "unknown optional header magic": _with(data, optional, "<H", 0x107),
        "null section header": data[:table] + bytes(40) + data[table + 40 :],
        # raw data past the end, not file-aligned, and a huge virtual size: pefile stops there
        "a section pefile stops at": _with(
            _with(_with(data, table + 20, "<I", 0x7FFFF001), table + 16, "<I", 0x1000), table + 8, "<I", 0x20000000
        ),
        "no sections": _with(data, nt + 6, "<H", 0),
        "e_lfanew past the end": _with(data, 0x3C, "<I", len(data) + 8),
        "no PE signature": _with(data, nt, "<I", 0x4550 + 0x10000),
    }


@pytest.mark.parametrize("case", list(_unusual_headers()))
def test_plain_headers_leave_unusual_headers_to_pefile(case: str) -> None:
    data = _unusual_headers()[case]
    assert pe._plain_headers(data) is None
    try:
        expected: pe.PeHeaders | None = _pefile_headers(data)
    except (pefile.PEFormatError, AttributeError, ValueError):
        expected = None
    assert pe.mapped_headers(data) == expected  # pefile's answer, through the fallback


def test_plain_headers_agree_with_pefile_on_mutated_headers() -> None:
    """Random bytes of hello.dll's and hello32.dll's headers changed: whenever the plain reader
    answers, pefile gives the same headers (seeded: the same mutations every run)."""
    import random

    rng = random.Random(27)
    answered = 0
    for name in ("hello.dll", "hello32.dll"):
        data = (BINS / name).read_bytes()
        nt = struct.unpack_from("<I", data, 0x3C)[0]
        end = nt + 24 + struct.unpack_from("<H", data, nt + 20)[0] + 40 * struct.unpack_from("<H", data, nt + 6)[0]
        for _ in range(600):
            changed = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                at = rng.choice((0x3C, nt + 6, nt + 20, nt + 24)) if rng.random() < 0.2 else rng.randrange(nt, end)
                changed[at] = rng.choice((0, 1, 0xFF, 0x7F, 0x10, rng.randrange(256)))
            plain = pe._plain_headers(bytes(changed))
            if plain is None:
                continue
            answered += 1
            assert plain == _pefile_headers(bytes(changed))
    assert answered > 300


def test_section_alignment_is_counted_as_pefile_counts_it() -> None:
    """The plain reader's copy of pefile's alignment for its VirtualAddress warning (seeded)."""
    import random

    adjust = pefile.cache_adjust_SectionAlignment
    rng = random.Random(27)
    for _ in range(20_000):
        address = rng.choice((rng.randrange(1 << 32), rng.randrange(0x20000000), rng.randrange(0x1000)))
        section = rng.choice((0, 1, 0x200, 0x1000, 0x10000, rng.randrange(1 << 32), rng.randrange(0x2000)))
        file = rng.choice((0, 0x200, 0x1000, rng.randrange(1 << 32), rng.randrange(0x2000)))
        assert pe._pefile_aligned(address, section, file) == adjust(address, section, file)


def _clr_directory_offset(data: bytes) -> int:
    import struct

    (nt,) = struct.unpack_from("<I", data, 0x3C)
    (magic,) = struct.unpack_from("<H", data, nt + 24)
    return nt + 24 + (112 if magic == 0x20B else 96) + 14 * 8


def _with_clr_header(data: bytes) -> bytes:
    """``data`` (a PE) with data directory 14, the CLR runtime header, pointing into its image."""
    import struct

    patched = bytearray(data)
    struct.pack_into("<II", patched, _clr_directory_offset(data), 0x1000, 0x48)
    return bytes(patched)


@pytest.mark.parametrize("name", ["hello.dll", "hello32.dll"])
def test_a_clr_runtime_header_is_found_on_pe32_and_pe32_plus(name: str) -> None:
    from emulator.pe import has_clr_runtime_header

    native = (BINS / name).read_bytes()
    assert not has_clr_runtime_header(native)
    assert has_clr_runtime_header(_with_clr_header(native))
    managed, directory = _with_clr_header(native), _clr_directory_offset(native)
    for cut in (0x40, 0x80, directory + 4):  # truncated headers: no, never an exception
        assert not has_clr_runtime_header(managed[:cut])
    assert has_clr_runtime_header(managed[: directory + 8])


def test_a_dotnet_assembly_replays_with_a_note_saying_its_il_is_not_emulated(tmp_path: Path) -> None:
    """A .NET assembly's managed code is not x86/x64 code: the replay runs what native code there
    is and says so, in report.json's notes and on the terminal, instead of a bare 'completed'."""
    import json
    import os
    import subprocess
    import sys

    sample = tmp_path / "managed.dll"
    sample.write_bytes(_with_clr_header((BINS / "hello.dll").read_bytes()))
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "run", str(sample), "-o", str(tmp_path / "out"), "--color", "never"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    notes = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))["notes"]
    assert [n["what"] for n in notes] == ["managed_code"], notes
    assert "managed.dll is a .NET assembly" in notes[0]["detail"]
    assert "note managed_code: managed.dll is a .NET assembly" in " ".join(done.stdout.split())


def test_an_aslr_image_without_fixups_is_moved_as_it_is() -> None:
    """What ASLR does with an image that asks for it and has no relocation to apply (x64 code
    that addresses everything relative to rip): the file with another preferred base. An image
    with relocations, without DYNAMIC_BASE, or marked RELOCS_STRIPPED is not moved so."""
    bins = Path(__file__).resolve().parent / "bins" / "waits"
    data = (bins / "waits.exe").read_bytes()
    moved = pe.moved_without_fixups(data, 0x1_8000_0000)
    assert moved is not None and len(moved) == len(data)
    parsed = pefile.PE(data=moved, fast_load=True)
    assert parsed.OPTIONAL_HEADER.ImageBase == 0x1_8000_0000
    assert sum(a != b for a, b in zip(moved, data, strict=True)) <= 8  # the base field, nothing else
    assert pe.moved_without_fixups((bins / "waits32.exe").read_bytes(), 0x500000) is None  # has relocations
    original = pefile.PE(data=data, fast_load=True)
    stripped = bytearray(data)
    at = original.FILE_HEADER.get_file_offset() + 18  # Characteristics
    stripped[at] |= 0x01
    assert pe.moved_without_fixups(bytes(stripped), 0x1_8000_0000) is None
    fixed = bytearray(data)
    at = original.OPTIONAL_HEADER.get_file_offset() + 70  # DllCharacteristics
    fixed[at] &= ~0x40 & 0xFF
    assert pe.moved_without_fixups(bytes(fixed), 0x1_8000_0000) is None
    assert pe.moved_without_fixups(b"MZ" + bytes(62), 0x1000) is None
