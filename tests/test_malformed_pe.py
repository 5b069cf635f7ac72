"""Malformed PE samples run with ``python -m emulator run FILE -o DIR``: each ends, within its
timeout, with exit 2 and one line naming the file and what is wrong, or with a report whose
outcome (or note) names the cause. Never a traceback, never a fault at an address nobody wrote.

Every sample is one the project built with mingw-w64 (tests/bins), corrupted here with Python.
Before emulator.pe checked what the loader reads past the headers (section data, overlaps, the
entry point, data directories, imports, TLS callbacks, relocations), most of these replayed to a
``fault`` at the entry point or at an import's RVA, or to an engine error quoting pefile.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator import pe

REPO = Path(__file__).resolve().parent.parent
BINS = REPO / "tests" / "bins"
HELLO = BINS / "hello.dll"  # x64 DLL: .text .rdata .edata .idata; export Greet
HELLO32 = BINS / "hello32.dll"  # x86 DLL, with .reloc
EXE = BINS / "hello_exe.exe"  # x64 EXE: .text, .idata (RVA 0x2000, file 0x600)
TLS = BINS / "fidelity" / "tls.exe"  # x64 EXE with a TLS callback array and .reloc
# A run of a refused file takes well under this; a replay of a corrupt one ends by its timeout.
RUN_TIMEOUT = 10
WALL_SECONDS = 60


def _offsets(data: bytes | bytearray) -> dict[str, int]:
    nt = struct.unpack_from("<I", data, 0x3C)[0]
    optional_size = struct.unpack_from("<H", data, nt + 20)[0]
    return {"file": nt + 4, "optional": nt + 24, "sections": nt + 24 + optional_size}


def _patch(source: Path, *edits: tuple[Any, ...]) -> bytes:
    """``source`` with each (place, offset from it, struct format, values...) written."""
    data = bytearray(source.read_bytes())
    places = _offsets(data)
    for place, offset, fmt, *values in edits:
        at = offset if place == "file_offset" else places[place] + offset
        struct.pack_into(fmt, data, at, *values)
    return bytes(data)


def _section(index: int, field: int) -> int:
    """Offset of a field of section header ``index`` from the section table (8 VirtualSize,
    12 VirtualAddress, 16 SizeOfRawData, 20 PointerToRawData)."""
    return 40 * index + field


def _directory(index: int, pe32plus: bool = True) -> int:
    """Offset of data directory ``index`` from the optional header."""
    return (112 if pe32plus else 96) + 8 * index


def _without_nul_after_dll_name() -> bytes:
    data = bytearray(EXE.read_bytes())
    name = struct.unpack_from("<I", data, 0x600 + 12)[0] - 0x2000 + 0x600
    data[name:0x800] = b"A" * (0x800 - name)  # to the end of .idata's raw data
    return bytes(data)


def _garbage_relocations(dynamic_base: bool = True) -> bytes:
    data = bytearray(TLS.read_bytes())
    data[0xC00:0xE00] = bytes((i * 37) & 0xFF for i in range(0x200))
    if not dynamic_base:  # DllCharacteristics without IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE (0x40)
        at = struct.unpack_from("<I", data, 0x3C)[0] + 24 + 70
        struct.pack_into("<H", data, at, struct.unpack_from("<H", data, at)[0] & ~0x40)
    return bytes(data)


TLS_DIRECTORY_FILE = 0x840  # tls.exe's IMAGE_TLS_DIRECTORY64 (RVA 0x3040 in .rdata)
TLS_CALLBACKS_FILE = 0x600  # its callback array (RVA 0x2000, .data)
OUTSIDE_TLS_IMAGE = 0x1_4100_0000  # past tls.exe's image (0x140000000 + 0x7000)

# (id, the corrupt file, extra run options, exit code, what the line or the outcome says)
CASES: list[tuple[str, Callable[[], bytes], list[str], int, list[str]]] = [
    ("truncated-headers", lambda: EXE.read_bytes()[:0x100], [], 2, ["SizeOfHeaders 0x400 is larger than the file"]),
    (
        "truncated-section-table",
        lambda: HELLO.read_bytes()[: _offsets(HELLO.read_bytes())["sections"] + 20],
        [],
        2,
        ["truncated section table"],
    ),
    ("size-of-image-huge", lambda: _patch(EXE, ("optional", 56, "<I", 0x7FFFF000)), [], 2, ["SizeOfImage 0x7ffff000"]),
    ("size-of-image-zero", lambda: _patch(EXE, ("optional", 56, "<I", 0)), [], 2, ["SizeOfImage 0x0 is out of range"]),
    (
        "raw-data-past-the-end",
        lambda: _patch(HELLO, ("sections", _section(0, 20), "<I", 0x100000)),
        [],
        2,
        ["section '.text' raw data (offset 0x100000, 0x200 bytes) runs past the end of the file (0xc00 bytes)"],
    ),
    (
        "raw-size-past-the-end",
        lambda: _patch(HELLO, ("sections", _section(0, 16), "<I", 0x10000)),
        [],
        2,
        ["section '.text' raw data (offset 0x400, 0x10000 bytes) runs past the end of the file"],
    ),
    (
        "overlapping-sections",
        lambda: _patch(EXE, ("sections", _section(1, 12), "<I", 0x1000)),
        [],
        2,
        ["sections '.text' (0x1000-0x1200) and '.idata' (from 0x1000) overlap"],
    ),
    ("no-sections", lambda: _patch(EXE, ("file", 2, "<H", 0)), [], 2, ["NumberOfSections is 0 (expected 1..96)"]),
    ("96-sections-declared", lambda: _patch(EXE, ("file", 2, "<H", 96)), [], 2, ["truncated section table"]),
    ("97-sections", lambda: _patch(EXE, ("file", 2, "<H", 97)), [], 2, ["NumberOfSections is 97 (expected 1..96)"]),
    (
        "import-directory-outside",
        lambda: _patch(EXE, ("optional", _directory(1), "<I", 0x7FFF0000)),
        [],
        2,
        ["import directory (RVA 0x7fff0000, 0xb0 bytes) lies outside the image (SizeOfImage 0x3000)"],
    ),
    (
        "import-dll-name-outside",
        lambda: _patch(EXE, ("file_offset", 0x600 + 12, "<I", 0x7FFFFFF0)),
        [],
        2,
        ["import descriptor 0: DLL name (RVA 0x7ffffff0) lies outside the image"],
    ),
    (
        "import-lookup-table-outside",
        lambda: _patch(EXE, ("file_offset", 0x600, "<I", 0x7FFFFFF0), ("file_offset", 0x600 + 16, "<I", 0x7FFFFFF0)),
        [],
        2,
        ["imports of 'KERNEL32.dll': lookup table (RVA 0x7ffffff0) runs outside the image"],
    ),
    (
        "import-function-name-outside",
        lambda: _patch(EXE, ("file_offset", 0x600 + 0x28, "<Q", 0x7FFFFF00)),
        [],
        2,
        ["imports of 'KERNEL32.dll': function name (RVA 0x7fffff02) lies outside the image"],
    ),
    (
        "import-dll-name-without-nul",
        _without_nul_after_dll_name,
        [],
        2,
        ["import descriptor 0: DLL name", "is not NUL-terminated within 256 bytes"],
    ),
    (
        "tls-callback-array-outside",
        lambda: _patch(TLS, ("file_offset", TLS_DIRECTORY_FILE + 0x18, "<Q", OUTSIDE_TLS_IMAGE)),
        [],
        2,
        ["TLS callback array entry 0 at 0x141000000 lies outside the image (0x140000000-0x140007000)"],
    ),
    (
        "tls-callback-outside",
        lambda: _patch(TLS, ("file_offset", TLS_CALLBACKS_FILE, "<Q", OUTSIDE_TLS_IMAGE)),
        [],
        2,
        ["TLS callback 0 (0x141000000) lies outside the image"],
    ),
    (
        "tls-directory-outside",
        lambda: _patch(TLS, ("optional", _directory(9), "<I", 0x7FFF0000)),
        [],
        2,
        ["TLS directory (RVA 0x7fff0000, 0x28 bytes) lies outside the image"],
    ),
    (
        "entry-point-between-sections",
        lambda: _patch(EXE, ("optional", 16, "<I", 0x1800)),
        [],
        2,
        ["entry point 0x1800 is in no section"],
    ),
    (
        "entry-point-in-the-headers",
        lambda: _patch(EXE, ("optional", 16, "<I", 0x10)),
        [],
        2,
        ["entry point 0x10 is in no section (it is in the headers)"],
    ),
    (
        "garbage-relocations",
        _garbage_relocations,
        [],
        2,
        ["relocation block at RVA 0x6000: SizeOfBlock", "does not fit the directory (0x18 bytes)"],
    ),
    (
        # Windows never reads the relocations of an image that does not ask for ASLR and loads
        # at its preferred base: the file runs
        "garbage-relocations-no-aslr",
        lambda: _garbage_relocations(dynamic_base=False),
        [],
        0,
        ['"status": "completed"'],
    ),
    (
        "relocation-block-size-zero",
        lambda: _patch(TLS, ("file_offset", 0xC04, "<I", 0)),
        [],
        2,
        ["relocation block at RVA 0x6000: SizeOfBlock 0x0"],
    ),
    (
        "relocation-type-unknown",
        lambda: _patch(HELLO32, ("file_offset", 0xC08, "<H", 0xB123)),
        ["--export", "Greet"],
        2,
        ["relocation block at RVA 0x5000: relocation type 11 is not one a loader applies"],
    ),
    (
        "x86-image-claiming-x64",
        lambda: _patch(HELLO32, ("file", 0, "<H", 0x8664)),
        ["--export", "Greet"],
        2,
        ["a PE32 optional header (magic 0x10b) contradicts machine type 0x8664"],
    ),
    (
        "x64-image-claiming-x86",
        lambda: _patch(HELLO, ("file", 0, "<H", 0x14C)),
        ["--export", "Greet"],
        2,
        ["a PE32+ optional header (magic 0x20b) contradicts machine type 0x14c"],
    ),
    (
        "dll-without-exports-run-with-export",
        lambda: _patch(HELLO, ("optional", _directory(0), "<II", 0, 0)),
        ["--export", "Greet"],
        2,
        ["export 'Greet' not found (exports: none)"],
    ),
    (
        "dotnet-looking-header",
        lambda: _patch(EXE, ("optional", _directory(14), "<II", 0x2000, 0x48)),
        [],
        0,
        ["managed_code", "is a .NET assembly (CLR runtime header)"],
    ),
]


def _run(sample: Path, outdir: Path, extra: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "run", str(sample), "-o", str(outdir), "-q", "--timeout", str(RUN_TIMEOUT)]
        + extra,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=WALL_SECONDS,
        stdin=subprocess.DEVNULL,
    )
    return done, time.monotonic() - began


@pytest.mark.parametrize(("label", "make", "extra", "code", "said"), CASES, ids=[case[0] for case in CASES])
def test_a_malformed_pe_ends_naming_the_cause(
    label: str, make: Callable[[], bytes], extra: list[str], code: int, said: list[str], tmp_path: Path
) -> None:
    suffix = ".dll" if extra else ".exe"
    sample = tmp_path / f"{label}{suffix}"
    sample.write_bytes(make())
    outdir = tmp_path / "out"
    done, took = _run(sample, outdir, extra)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    assert done.returncode == code, (done.returncode, done.stderr)
    assert took < WALL_SECONDS
    if code == 2:
        assert done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"chainreplay: error: {sample}: "), done.stderr
        for needle in said:
            assert needle in done.stderr, done.stderr
        assert not outdir.exists(), "a refused sample must not create the output folder"
        return
    report: dict[str, Any] = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    named = json.dumps([report["outcome"], report["notes"]])
    for needle in said:
        assert needle in named, named


def test_an_import_table_without_end_is_refused_at_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Descriptors that never reach the null one (a table that loops or runs on) are followed
    only up to MAX_IMPORT_DESCRIPTORS; lowered here below the three evasion.exe holds."""
    data = (BINS / "fidelity" / "evasion.exe").read_bytes()
    monkeypatch.setattr(pe, "MAX_IMPORT_DESCRIPTORS", 3)
    pe.check_file(data)  # three, then the null descriptor: accepted
    monkeypatch.setattr(pe, "MAX_IMPORT_DESCRIPTORS", 2)
    with pytest.raises(pe.PeError, match="import directory has no end within 2 descriptors"):
        pe.check_file(data)


def test_every_pe_the_project_ships_passes_the_layout_checks() -> None:
    """No sample the project builds is refused by the checks of what the loader reads."""
    shipped = [
        path
        for folder in (REPO / "scenarios", BINS)
        for path in folder.rglob("*")
        if path.suffix.lower() in {".exe", ".dll"} and path.is_file() and path.read_bytes()[:2] == b"MZ"
    ]
    assert len(shipped) > 50
    for path in shipped:
        pe.check_file(path.read_bytes())
