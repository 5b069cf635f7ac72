"""Responder data that is broken on purpose: the 3CX chain fetches an icon it cannot use.

Issue 6: a malformed ICO, a trailer that is not base64, and a trailer whose AES-GCM tag is
wrong. The chain's second stage must then fail to find its C2 address and stop; the replay must
still end normally (exit 0, report.json written, no traceback) with what happened on record:
the icon fetched, no beacon, no further stage.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import E_OK, main

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "3cx"
ICONS = Path("github") / "IconStorages" / "images" / "main"


def _malformed_ico(data: bytes) -> bytes:
    return b"\x00\x01not an icon at all"


def _bad_base64(data: bytes) -> bytes:
    return data[: data.rindex(b"$")] + b"$!!*** not base64 ***!!"


def _wrong_gcm_tag(data: bytes) -> bytes:
    marker = data.rindex(b"$")
    blob = bytearray(base64.b64decode(data[marker + 1 :].strip()))
    blob[-1] ^= 0x01  # the tag is the last 16 bytes
    return data[: marker + 1] + base64.b64encode(bytes(blob))


BREAKERS: dict[str, Callable[[bytes], bytes]] = {
    "malformed_ico": _malformed_ico,
    "bad_base64": _bad_base64,
    "wrong_gcm_tag": _wrong_gcm_tag,
}


@pytest.mark.parametrize("name", sorted(BREAKERS))
def test_unusable_icon_ends_the_chain_cleanly(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "3cx"
    shutil.copytree(SCENARIO, scenario, ignore=shutil.ignore_patterns("build"))
    for icon in (scenario / ICONS).glob("*.ico"):
        icon.write_bytes(BREAKERS[name](icon.read_bytes()))
    out = tmp_path / "out"
    code = main(["run", str(scenario), "-o", str(out), "-q", "--allow-unverified"])
    err = capsys.readouterr().err
    assert code == E_OK, err
    assert "Traceback" not in err
    report: dict[str, Any] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "completed", report["outcome"]
    fetched = [n for n in report["network"] if n.get("url", "") and n["url"].endswith(".ico")]
    assert fetched and all(n["response"]["status"] == 200 for n in fetched)
    hosts = {n.get("host") for n in report["network"]}
    assert "raw.githubusercontent.com" in hosts
    assert not any(n.get("responder") == "c2" for n in report["network"]), "beaconed without a C2 address"
    assert [s["kind"] for s in report["stages"]] == ["pe", "shellcode", "pe_in_memory"]
    assert not any(e["type"] == "beacons_to" for e in report["graph"]["edges"])
