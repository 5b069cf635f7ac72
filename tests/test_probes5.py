"""Chains nobody here wrote, probed, round 5 (issue: lineage5). What each probe showed before its fix:

* ``txf-section-exec`` (x64, x86): transacted hollowing's staging in the loader's own process.
  ``CreateTransaction`` (ktmw32) and ``CreateFileTransactedA`` had no handler: served from their
  signature, the file handle named nothing, ``WriteFile`` failed and the loader stopped (exit
  code 4, outcome ``completed``, one stage) with nothing said but two ``signature_emulated``
  notes. Transactions are now objects (``txf.py``): ``CreateFileTransacted`` opens the file as
  ``CreateFile`` does, ``RollbackTransaction`` / ``NtRollbackTransaction`` delete what the
  transaction created (a file ``delete`` event) and put back what it changed, and the section's
  view keeps the bytes: the payload runs, lineage ``image, xor, file_write``.
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
