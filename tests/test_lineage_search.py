"""The lineage's XOR searches on Python's bytes and ints answer what numpy's answer (issue 18
target 2: numpy imported only for carriers large enough to pay for its import)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.analysis import lineage, lineage_numpy

ROOT = Path(__file__).resolve().parent.parent


def _rolling(data: bytes, k0: int, step: int) -> bytes:
    return bytes(b ^ ((k0 + step * i) & 0xFF) for i, b in enumerate(data))


def _repeating(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % len(key)] for i, b in enumerate(data))


def _cases() -> list[tuple[str, bytes, bytes]]:
    rng = random.Random(18)
    cases = []
    for n in range(40):
        probe = rng.randbytes(rng.choice((24, 40, 60, 100, 700, 4096)))
        if n % 5 == 0:  # a probe that starts uniform: zero runs in a carrier pass many columns
            probe = bytes(rng.randrange(2, 30)) + probe
        noise = rng.randbytes(rng.randrange(0, 20000))
        if n % 3 == 0:
            noise = bytes(rng.randrange(1, 9000)) + noise + bytes(rng.randrange(0, 3000))
        at = rng.randrange(0, len(noise) + 1)
        kind = n % 6
        if kind == 0:
            body = _rolling(probe, rng.randrange(256), 0)
        elif kind == 1:
            body = _rolling(probe, rng.randrange(256), rng.randrange(1, 256))
        elif kind == 2:
            body = _repeating(probe, rng.randbytes(rng.randrange(2, lineage.MAX_XOR_PERIOD + 1)))
        elif kind == 3:  # broken after a few bytes: a candidate that does not extend
            body = _rolling(probe, rng.randrange(256), rng.randrange(256))
            cut = rng.randrange(lineage.MIN_MATCH, lineage.MIN_MATCH * 2)
            body = body[:cut] + bytes(b ^ 0x55 for b in body[cut:])
        elif kind == 4:  # plain: identity is not an XOR
            body = probe
        else:  # more candidates before it than MAX_XOR_CANDIDATES: not found
            body = _rolling(probe, 7, 3) * 3
            noise = (_rolling(probe[: lineage.MIN_MATCH], 9, 0) + bytes(3)) * (lineage.MAX_XOR_CANDIDATES + 30)
            at = len(noise)
        data = noise[:at] + body + noise[at:]
        cases.append((f"{n}-{kind}", probe, data[: rng.choice((len(data), len(data), lineage.MIN_MATCH + 5))]))
    return cases


@pytest.mark.parametrize(("name", "probe", "data"), _cases(), ids=[c[0] for c in _cases()])
def test_xor_searches_answer_as_numpys(name: str, probe: bytes, data: bytes) -> None:
    assert lineage._find_affine(probe, data) == lineage_numpy._find_affine(probe, data)
    assert lineage._find_periodic(probe, data) == lineage_numpy._find_periodic(probe, data)


def test_the_cases_find_what_was_planted() -> None:
    """The comparison above is not between two searches that find nothing."""
    found = [lineage.find_xor(probe, data) for _, probe, data in _cases()]
    assert sum(m is not None for m in found) >= 10
    assert {m.detail.split()[0] for m in found if m is not None} == {"key", "rolling", "repeating"}


def test_prefixes_are_the_first_difference() -> None:
    rng = random.Random(5)
    for _ in range(300):
        a = rng.randbytes(rng.randrange(0, 200))
        b = bytearray(a + rng.randbytes(10))
        if a and rng.random() < 0.8:
            b[rng.randrange(len(a))] ^= 1 << rng.randrange(8)
        expected = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
        assert lineage._common_prefix(a, bytes(b), 0) == expected
        key = rng.randbytes(rng.randrange(1, 9))
        assert lineage._xor_prefix(a, _repeating(bytes(b), key), 0, key, len(key)) == expected


SEARCH = """
import json, sys
from emulator.analysis import lineage
probe = bytes(range(7, 250, 3)) * 3
encoded = bytes(b ^ ((0x3D + 7 * i) & 0xFF) for i, b in enumerate(probe))
noise = bytes((i * 73 + 11) & 0xFF for i in range(int(sys.argv[1])))
found = lineage.find_transformed(probe, noise + encoded)
print(json.dumps([found.offset if found else None, "numpy" in sys.modules]))
"""


@pytest.mark.parametrize(
    ("size", "numpy"), [(60_000, False), (lineage.PURE_SEARCH_BYTES + 1, True)], ids=["small", "large"]
)
def test_numpy_is_imported_for_large_carriers_only(size: int, numpy: bool) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SEARCH, str(size)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert json.loads(done.stdout) == [size, numpy]


def test_many_small_carriers_move_to_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past PURE_SEARCH_BUDGET bytes searched in pure Python, a process uses numpy from then on."""
    monkeypatch.setattr(lineage, "_searched_without_numpy", 0)
    monkeypatch.delitem(sys.modules, "emulator.analysis.lineage_numpy")
    chunk = lineage.PURE_SEARCH_BUDGET // 4
    assert [lineage._vectorised(chunk) for _ in range(5)] == [False, False, False, False, True]
