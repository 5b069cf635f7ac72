"""The XPRESS formats ([MS-XCA] 2.3-2.4: Plain LZ77, LZ77+Huffman) as ntdll!RtlDecompressBuffer(Ex)
decompresses them (emulator/apis/xpress.py).

Known answers are [MS-XCA]'s own examples ("abc" * 100 compressed both ways, and the 26 letters
as Plain LZ77 literals); the compressor side is the generality suite's build tool
(scenarios/lineage-common/tool.py), which compresses file-xpress's payloads.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from emulator.apis.xpress import XpressError, huffman_decompress, plain_decompress

TOOL = Path(__file__).resolve().parent.parent / "scenarios" / "lineage-common" / "tool.py"
# [MS-XCA] 3.1 / 3.2: "abc" repeated 100 times.
PLAIN_ABC = bytes.fromhex("ffffff1f61626317000fff2601")
HUFFMAN_ABC = bytes.fromhex(
    "00" * 48 + "30230000000000000000000000000000" + "00" * 64 + "02" + "00" * 14 + "20" + "00" * 16 + "00" * 96
    + "a8dc0000ff2601"
)  # fmt: skip


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("lineage_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_specifications_examples() -> None:
    assert plain_decompress(PLAIN_ABC, 1000) == b"abc" * 100
    assert plain_decompress(b"\x3f\x00\x00\x00" + bytes(range(97, 123)), 1000) == bytes(range(97, 123))
    assert len(HUFFMAN_ABC) == 256 + 7
    assert huffman_decompress(HUFFMAN_ABC, 1000) == b"abc" * 100
    # the output stops at the buffer's size, as Windows' does
    assert plain_decompress(PLAIN_ABC, 10) == b"abcabcabca"
    assert huffman_decompress(HUFFMAN_ABC, 10) == b"abcabcabca"


def _inputs() -> list[bytes]:
    rng = random.Random(11)
    found = [b"", b"a", b"abc" * 5, b"a" * 4096, (b"hello world, " * 700)[:8191], bytes(40000)]
    for size in (17, 300, 5000, 30000):
        found.append(bytes(rng.randrange(256) for _ in range(size)))
        found.append(bytes(rng.choice(b"abcd") for _ in range(size)))
    return found


@pytest.mark.parametrize("data", _inputs(), ids=lambda d: f"{len(d)}-{d[:3]!r}")
def test_round_trips(data: bytes) -> None:
    tool = _tool()
    assert plain_decompress(tool.xpress(data), len(data) + 100) == data
    assert huffman_decompress(tool.xpress_huff(data), len(data) + 100) == data


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00\x00\x00\x80\x08\x00",  # a match before anything was written
        b"\x00\x00\x00\x80\x07",  # a truncated match
        b"\x00\x00\x00\x80\x07\x00\x0f\xff\x05\x00",  # a long length below its minimum
    ],
)
def test_malformed_plain_input_is_an_xpress_error(bad: bytes) -> None:
    with pytest.raises(XpressError):
        plain_decompress(bad, 1000)


@pytest.mark.parametrize(
    "bad",
    [
        bytes(256 + 4),  # no code at all
        b"\x11" * 256 + b"\x00\x00\x00\x00",  # 512 codes of one bit: over-subscribed
        HUFFMAN_ABC[:200],  # a truncated table
        bytes(128) + b"\x10" + bytes(127) + bytes(4),  # one code, a match, before anything was written
    ],
)
def test_malformed_huffman_input_is_an_xpress_error(bad: bytes) -> None:
    with pytest.raises(XpressError):
        huffman_decompress(bad, 1000)
