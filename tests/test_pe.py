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
