r"""Chains nobody here wrote, probed, round 5 (issue: lineage5). What each probe showed before its fix:

* ``txf-section-exec`` (x64, x86): transacted hollowing's staging in the loader's own process.
  ``CreateTransaction`` (ktmw32) and ``CreateFileTransactedA`` had no handler: served from their
  signature, the file handle named nothing, ``WriteFile`` failed and the loader stopped (exit
  code 4, outcome ``completed``, one stage) with nothing said but two ``signature_emulated``
  notes. Transactions are now objects (``txf.py``): ``CreateFileTransacted`` opens the file as
  ``CreateFile`` does, ``RollbackTransaction`` / ``NtRollbackTransaction`` delete what the
  transaction created (a file ``delete`` event) and put back what it changed, and the section's
  view keeps the bytes: the payload runs, lineage ``image, xor, file_write``.
* ``mailslot-xor`` (x64, x86): ``CreateMailslotA`` and ``GetMailslotInfo`` were served from their
  signature and ``CreateFileA`` of ``\\.\mailslot\NAME`` found no file (exit code 2, one stage).
  A mailslot is now a pipe object with its messages' sizes (``mailslots.py``): a writing end is a
  second handle to it, ``GetMailslotInfo`` answers the next size and the count, a ``ReadFile``
  takes one message, and the pipe taps trace what goes through (keyed by the pipe, not the
  handle): lineage ``image, copy, xor``, the copy ``kernel32.ReadFile (mailslot)``.
* ``phantom-hollow``: phantom DLL hollowing (``LoadLibraryExA(DONT_RESOLVE_DLL_REFERENCES)`` of
  dbghelp.dll, its .text overwritten) was right. Module overloading (version.dll's file mapped as
  an image section: ``NtCreateSection(SEC_IMAGE)`` + ``NtMapViewOfSection(PAGE_EXECUTE_WRITECOPY)``)
  faulted: Speakeasy maps a copy-on-write protection with no access at all, so the loader's first
  read of the view's headers ended the replay (``fault``). Mapped readable and writable now; then
  the payload written over the view's code ran as a ``pe_in_memory`` stage "version.dll" whose
  origin was the DLL's file: an image section's view whose code at the entry is no longer the
  file's is a ``shellcode`` stage (lineage ``image, xor``), as a stomped module's is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Report = dict[str, Any]


def _calls(report: Report, api: str) -> list[dict[str, Any]]:
    return [c for c in report["api_calls"] if c["api"] == api]


@pytest.mark.parametrize(
    ("name", "create", "rollback"),
    [
        ("txf-section-exec", "ktmw32.CreateTransaction", "ktmw32.RollbackTransaction"),
        ("txf-section-exec-x86", "ntdll.NtCreateTransaction", "ntdll.NtRollbackTransaction"),
    ],
)
def test_a_payload_in_a_rolled_back_transacted_file_runs_from_its_section(
    name: str, create: str, rollback: str, scenario_report: Callable[[str], Report]
) -> None:
    report = scenario_report(name)
    path = "C:\\Users\\analyst\\AppData\\Local\\Temp\\~tx5821.tmp"
    assert [n["what"] for n in report["notes"] if n["what"] == "signature_emulated"] == []
    (created,) = _calls(report, create)
    (rolled,) = _calls(report, rollback)
    (opened,) = _calls(report, "kernel32.CreateFileTransactedA")
    assert opened["ret"] not in ("0x0", "0xffffffff", "0xffffffffffffffff")
    ops = [(f["op"], f["seq"]) for f in report["files"] if f["path"] == path]
    assert [op for op, _ in ops] == ["create", "write", "read", "delete"]
    # the rollback deleted the file (recorded while the call ran, just before the call's own
    # record), before the loader looked for it (it exits 7 if the file is there)
    assert created["seq"] < ops[0][1] and ops[3][1] == rolled["seq"] - 1
    (attributes,) = _calls(report, "kernel32.GetFileAttributesA")
    assert attributes["seq"] > ops[3][1] and attributes["ret"] == "0xffffffff"
    assert [c["args"][0] for c in _calls(report, "kernel32.ExitProcess")] == ["0x0"]
    s1 = report["stages"][1]
    assert (s1["kind"], s1["via"], s1["parent"]) == ("shellcode", "call", "s0")
    assert [(h["source"], h["transform"]) for h in s1["lineage"]] == [
        ("image", "source"),
        ("memory", "xor"),
        ("file_write", "file_write"),
    ]
    assert s1["lineage"][2]["ref"] == path
    assert path not in {d["path"] for d in report["dropped"]}


@pytest.mark.parametrize("name", ["mailslot-xor", "mailslot-xor-x86"])
def test_a_payload_posted_to_a_mailslot_is_read_back_one_message_a_read(
    name: str, scenario_report: Callable[[str], Report]
) -> None:
    report = scenario_report(name)
    assert [n["what"] for n in report["notes"] if n["what"] == "signature_emulated"] == []
    (slot,) = _calls(report, "kernel32.CreateMailslotA")
    (writer,) = [c for c in _calls(report, "kernel32.CreateFileA") if c["args"][0].startswith("\\\\.\\mailslot\\")]
    assert slot["ret"] != writer["ret"] and writer["ret"] not in ("0xffffffff", "0xffffffffffffffff")
    posts = [c for c in _calls(report, "kernel32.WriteFile") if c["args"][0] == writer["ret"]]
    reads = [c for c in _calls(report, "kernel32.ReadFile") if c["args"][0] == slot["ret"]]
    sizes = [int(c["args"][2], 16) for c in posts]
    assert sizes == [int(c["args"][2], 16) for c in reads] and sizes[0] == 160
    assert sum(sizes) == report["stages"][1]["size"]
    assert all(c["ret"] == "0x1" for c in posts + reads)
    assert len(_calls(report, "kernel32.GetMailslotInfo")) == 3  # two messages, then none
    assert [c["args"][0] for c in _calls(report, "kernel32.ExitProcess")] == ["0x0"]
    s1 = report["stages"][1]
    assert (s1["via"], s1["parent"]) == ("thread", "s0")
    assert [(h["source"], h["transform"], h["detail"]) for h in s1["lineage"]][1:] == [
        ("api", "copy", "kernel32.ReadFile (mailslot)"),
        ("memory", "xor", "repeating key 5bc719"),
    ]


def test_a_mailslot_read_takes_one_message_or_fails_as_windows_does() -> None:
    """A read takes the oldest message whole; a buffer smaller than it fails with
    ERROR_INSUFFICIENT_BUFFER and leaves it; with none waiting the read fails (ERROR_SEM_TIMEOUT)."""
    from emulator.backends.speakeasy import mailslots

    slots = mailslots.Mailslots(se=None, emu=None, memory=None)  # type: ignore[arg-type]
    slot = mailslots.Mailslot("\\\\.\\mailslot\\x", pipe=None, max_message=0, timeout=0)
    slots.readers[0x400] = slots.writers[0x404] = slot
    slots.posted(0x404, 10)
    slots.posted(0x404, 3)
    slots.posted(0x400, 5)  # not a writing end: no message
    assert slots.read_limit(0x400, 9) == (0, mailslots.ERROR_INSUFFICIENT_BUFFER)
    assert slots.read_limit(0x400, 100) == (10, None)
    slots.taken(0x400)
    assert slots.read_limit(0x400, 100) == (3, None)
    slots.taken(0x400)
    assert slots.read_limit(0x400, 100) == (0, mailslots.ERROR_SEM_TIMEOUT)
    assert slots.read_limit(0x999, 100) == (100, None)  # any other handle: as asked


def test_code_written_over_a_mapped_image_section_is_the_payload_not_the_dll(
    scenario_report: Callable[[str], Report],
) -> None:
    report = scenario_report("phantom-hollow")
    assert report["outcome"]["status"] == "completed"
    (section,) = _calls(report, "ntdll.NtCreateSection")
    assert int(section["args"][5], 16) & 0x1000000 and section["ret"] == "0x0"  # SEC_IMAGE
    (mapped,) = _calls(report, "ntdll.NtMapViewOfSection")
    assert mapped["ret"] == "0x0"
    stages = {s["id"]: s for s in report["stages"]}
    assert [(s["kind"], s["size"]) for s in report["stages"][1:]] == [("shellcode", 224), ("shellcode", 224)]
    assert (stages["s1"]["via"], stages["s2"]["via"]) == ("thread", "call")
    for sid in ("s1", "s2"):
        assert stages[sid]["origin"]["type"] == "image"
        assert [h["transform"] for h in stages[sid]["lineage"]] == ["source", "xor"]
    assert not [s for s in report["stages"] if s["kind"] == "pe_in_memory"]
