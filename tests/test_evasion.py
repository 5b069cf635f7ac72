"""What modern shellcode loaders do to stay unseen, on benign samples built here.

**API-based decryption** (emulator/apis/systemfunctions.py): tests/bins/apigaps/ciphers.c calls
advapi32's SystemFunction032 / 033 (RC4 in place over USTRINGs) against RC4's published test
vector and SystemFunction040 / 041 (RtlEncryptMemory / RtlDecryptMemory); the scenarios
``sysfunc032-rc4`` (x64) and ``sysfunc032-rc4-x86`` decrypt their payload from a file with them and
run it: the stage's lineage is the file, then a ``decrypt`` hop naming the API.

**System calls the guest makes itself** (emulator/backends/speakeasy/syscalls.py): in
``indirect-syscalls`` every call jumps to the ``syscall`` instruction of another function's stub
(NtDelayExecution's) with its own number: each is noted ``indirect_system_call`` (not
``direct_system_call``, whose pc would be ntdll's) and gives T1106. In ``wow64-syscalls-x86`` the
x86 guest calls the WoW64 gate in ``fs:[0xC0]``, executes ``sysenter`` itself and jumps into
NtClose's stub past its number: two direct calls, one indirect. A stub called as a function is
never noted (tests/test_native.py).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.events import ApiCall, Note
from emulator.plan import ReplayPlan
from emulator.replay import emulate

ROOT = Path(__file__).resolve().parent.parent
BINS = ROOT / "tests" / "bins" / "apigaps"
SCENARIOS = ROOT / "scenarios"
CIPHER_CHECKS = [
    "rc4_vector",
    "rc4_033_undoes",
    "rc4_empty_key",
    "encrypt_memory",
    "decrypt_memory",
    "memory_size_multiple_of_8",
]
Report = dict[str, Any]


def _rc4(key: bytes, data: bytes) -> bytes:
    sys.path.insert(0, str(SCENARIOS / "lineage-common"))
    try:
        import tool  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    return tool.rc4(key, data)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["fast", "faithful"])
@pytest.mark.parametrize("sample", ["ciphers.exe", "ciphers32.exe"])
def test_system_function_ciphers(sample: str, mode: str) -> None:
    plan = ReplayPlan(
        name="ciphers",
        target_path=str(BINS / sample),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
        mode=mode,  # type: ignore[arg-type]
    )
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    calls = [e for e in recording.events if isinstance(e, ApiCall)]
    said = [c.args[0] for c in calls if c.api == "kernel32.OutputDebugStringA"]
    assert said == [f"check {name}: pass" for name in CIPHER_CHECKS]
    assert [c.args[0] for c in calls if c.api == "kernel32.ExitProcess"] == ["0x0"]
    # served by handlers, not from their signatures
    notes = [e for e in recording.events if isinstance(e, Note) and e.what == "signature_emulated"]
    assert not [n for n in notes if "SystemFunction" in n.detail], notes


RC4_SCENARIOS = [("sysfunc032-rc4", "SystemFunction032"), ("sysfunc032-rc4-x86", "SystemFunction033")]


@pytest.mark.parametrize(("name", "api"), RC4_SCENARIOS)
def test_rc4_by_system_function_is_a_decrypt_hop(name: str, api: str, scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report(name)
    stage = next(s for s in report["stages"] if s["id"] == "s1")
    source, decrypt = stage["lineage"]
    assert (source["source"], source["ref"]) == ("file", "C:\\ProgramData\\ChainreplayDemo\\blob.bin")
    assert (decrypt["transform"], decrypt["detail"], decrypt["actor"]) == ("decrypt", f"advapi32.{api}", "s0")
    # the stage's bytes are the file's, decrypted with the sample's key
    blob = (SCENARIOS / name / "files" / "blob.bin").read_bytes()
    plain = _rc4(b"chainreplay-sf032-key", blob)
    assert stage["sha256"] == hashlib.sha256(plain).hexdigest()
    decrypted = [b for b in report["buffers"] if b["source"] == "decrypt"]
    assert [b["api"] for b in decrypted] == [f"advapi32.{api}"]
    assert decrypted[0]["ref"] == f"advapi32.{api} (RC4)"


def _notes(report: Report, what: str) -> list[dict[str, Any]]:
    return [n for n in report["notes"] if n["what"] == what]


def test_indirect_system_calls_are_noted_with_api_stub_and_pc(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("indirect-syscalls")
    assert _notes(report, "direct_system_call") == []
    notes = _notes(report, "indirect_system_call")
    apis = ["NtAllocateVirtualMemory", "NtProtectVirtualMemory", "NtCreateThreadEx", "NtWaitForSingleObject"]
    assert [n["detail"].split(" ")[0] for n in notes] == apis
    assert all("ntdll's NtDelayExecution stub" in n["detail"] for n in notes), notes
    # one instruction made them all: the stub's syscall; the stage is the loader's
    assert len({n["pc"] for n in notes}) == 1 and all(n["stage"] == "s0" for n in notes)
    calls = {c["seq"]: c for c in report["api_calls"]}
    for note in notes:  # each note comes right before the call it is about
        assert calls[note["seq"] + 1]["api"] == "ntdll." + note["detail"].split(" ")[0]
    assert any(t["technique"] == "T1106" and "s0" in str(t) for t in report["attack"])


def test_x86_system_calls_by_the_wow64_gate_sysenter_and_another_stub(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("wow64-syscalls-x86")
    direct = _notes(report, "direct_system_call")
    assert [n["detail"].split(" ")[0] for n in direct] == ["NtAllocateVirtualMemory", "NtProtectVirtualMemory"]
    indirect = _notes(report, "indirect_system_call")
    assert [n["detail"].split(" ")[0] for n in indirect] == ["NtCreateThreadEx"]
    assert "ntdll's NtClose stub" in indirect[0]["detail"]
    assert all(n["stage"] == "s0" for n in direct + indirect)
    calls = [c["api"] for c in report["api_calls"] if c["api"].startswith("ntdll.")]
    assert calls == ["ntdll.NtAllocateVirtualMemory", "ntdll.NtProtectVirtualMemory", "ntdll.NtCreateThreadEx"]


def test_a_section_view_mapped_into_another_process_is_the_injection(scenario_report: Callable[[str], Report]) -> None:
    """inject-section-syscalls maps one section in its own process (RW, decoded there) and in
    notepad (RX) by direct system calls: the remote view is what the thread runs, a stage in
    notepad, and the remote mapping is the write into notepad's memory."""
    report = scenario_report("inject-section-syscalls")
    calls = {c["seq"]: c for c in report["api_calls"]}
    maps = [c for c in report["api_calls"] if c["api"] == "ntdll.NtMapViewOfSection"]
    assert [c["args"][1] for c in maps] == ["0xffffffffffffffff", "C:\\Windows\\System32\\notepad.exe"]
    edge = next(e for e in report["graph"]["edges"] if e["type"] == "writes_memory")
    assert [calls[seq]["api"] for seq in edge["evidence"]] == ["ntdll.NtMapViewOfSection"]
    stage = report["stages"][1]
    assert stage["process"] == "C:\\Windows\\System32\\notepad.exe" and stage["kind"] == "shellcode"
    assert [n["detail"].split(" ")[0] for n in _notes(report, "direct_system_call")] == [
        "NtCreateSection",
        "NtMapViewOfSection",
        "NtCreateThreadEx",
    ]


def test_views_of_a_section_mapped_by_system_calls_share_bytes(scenario_report: Callable[[str], Report]) -> None:
    """section-map-indirect decodes into a read-write view and calls a read-execute view of the
    same section, both mapped by NtMapViewOfSection (indirect system calls): the code it runs is
    what it wrote (bare Speakeasy copied the bytes at mapping time: the call ran zeros)."""
    report = scenario_report("section-map-indirect")
    assert report["outcome"]["status"] == "completed"
    notes = _notes(report, "indirect_system_call")
    assert [n["detail"].split(" ")[0] for n in notes] == ["NtCreateSection", "NtMapViewOfSection", "NtMapViewOfSection"]
    assert all("NtYieldExecution stub" in n["detail"] for n in notes)
    stage = report["stages"][1]
    assert [h["transform"] for h in stage["lineage"]] == ["source", "xor"]
