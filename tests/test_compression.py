"""LZNT1 ([MS-XCA] 2.5) as ntdll!RtlDecompressBuffer decompresses it (emulator/apis/compression.py).

The compressor side is the generality suite's build tool (scenarios/lineage-common/tool.py, which
compresses file-lznt1's payload); the ``lznt1`` package Speakeasy depends on is an independent
decompressor to agree with.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import lznt1
import pytest

from emulator.apis.compression import Lznt1Error, lznt1_decompress

TOOL = Path(__file__).resolve().parent.parent / "scenarios" / "lineage-common" / "tool.py"


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("lineage_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inputs() -> list[bytes]:
    rng = random.Random(7)
    found = [b"", b"a", b"abc" * 5, b"a" * 4096, b"a" * 9000, (b"hello world, " * 700)[:8191]]
    for size in (17, 300, 4096, 4097, 12000):
        found.append(bytes(rng.randrange(256) for _ in range(size)))  # incompressible: stored chunks
        found.append(bytes(rng.choice(b"abcd") for _ in range(size)))  # long and short matches
    return found


@pytest.mark.parametrize("data", _inputs(), ids=lambda d: f"{len(d)}-{d[:3]!r}")
def test_round_trip_agrees_with_an_independent_decompressor(data: bytes) -> None:
    compressed = _tool().lznt1(data)
    assert lznt1_decompress(compressed) == data
    if data:
        assert lznt1.decompress(compressed[:-2]) == data  # without the end-of-stream marker
        assert lznt1_decompress(compressed, limit=len(data) // 2) == data[: len(data) // 2]


def test_compressed_chunks_are_used_when_they_are_smaller() -> None:
    compressed = _tool().lznt1(b"a" * 4096)
    assert compressed[1] & 0x80 and len(compressed) < 16


@pytest.mark.parametrize(
    "bad",
    [
        b"\x05\xb0\x01",  # chunk longer than the buffer
        b"\x02\xb0\x01\x00\x10",  # back reference with nothing written yet
        b"\x03\xb0\x02\x41\x00\xf0",  # displacement past the chunk start
        bytes([0xFF, 0xBF]) + b"\xff" * 10,
    ],
)
def test_malformed_input_is_an_error_not_an_exception_of_another_kind(bad: bytes) -> None:
    with pytest.raises(Lznt1Error):
        lznt1_decompress(bad)
