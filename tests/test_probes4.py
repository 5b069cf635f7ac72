"""Chains nobody here wrote, probed, round 4 (issue: probes4). What each probe showed before its fix:

* ``apc-completion`` (x64, x86): ``SetWaitableTimer``'s completion routine was ignored by
  Speakeasy's handler (TRUE, nothing queued): the loader's ``SleepEx(INFINITE, TRUE)`` slept
  49.7 days of virtual time, returned 0 and the payload never ran, with no note. ``ReadFileEx``
  and ``RegisterWaitForSingleObject`` had no handler at all. A completion routine is now an APC
  queued to the calling thread (delivered at its next alertable moment: ``via: apc``), the read
  is made at the OVERLAPPED's offset and recorded as ``ReadFile``'s, and a registered wait's
  callback runs on a pool thread (``via: thread``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

Report = dict[str, Any]


def _calls(report: Report, api: str) -> list[dict[str, Any]]:
    return [c for c in report["api_calls"] if c["api"] == api]


@pytest.mark.parametrize("name", ["apc-completion", "apc-completion-x86"])
def test_completion_routines_run_as_apcs_at_the_alertable_sleep(
    scenario_report: Callable[[str], Report], name: str
) -> None:
    report = scenario_report(name)
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    assert [(s["via"], s["parent"]) for s in report["stages"][1:]] == [("apc", "s0"), ("apc", "s0"), ("thread", "s0")]
    s1, s2, _s3 = report["stages"][1:]
    sleeps = _calls(report, "kernel32.SleepEx")
    # each routine ran inside its SleepEx (before the loader's next call), which said so
    assert [c["ret"] for c in sleeps] == ["0xc0", "0xc0"]
    for sleep, stage in zip(sleeps, (s1, s2), strict=True):
        after = min(c["seq"] for c in report["api_calls"] if c["seq"] > sleep["seq"] and c["stage"] == "s0")
        assert sleep["seq"] < stage["seq_range"][0] <= stage["seq_range"][1] < after
    # no virtual day skipped: the loader never slept for ever
    assert report["virtual_time"]["skipped_ms"] == 100
    # ReadFileEx read the loader's own file (recorded as a read of it) at offset 0
    reads = [f for f in report["files"] if f["path"].endswith("loader.exe") and f["op"] == "read"]
    assert [(f["size"], f["stage"]) for f in reads] == [(64, "s0")]
    read_ex = _calls(report, "kernel32.ReadFileEx")
    assert len(read_ex) == 1 and read_ex[0]["ret"] == "0x1"
    assert any(b["source"] == "file_read" and b["ref"].endswith("loader.exe") for b in report["buffers"])
    assert [c["args"][0] for c in _calls(report, "kernel32.ExitProcess")] == ["0x0"]


@pytest.mark.parametrize(
    ("name", "unlisted"),
    [("callbacks-more", "EnumerateLoadedModules64"), ("callbacks-more-x86", "EnumerateLoadedModules")],
)
def test_more_callbacks_run_and_one_not_called_back_is_named(
    scenario_report: Callable[[str], Report], name: str, unlisted: str
) -> None:
    report = scenario_report(name)
    assert [s["via"] for s in report["stages"][1:]] == ["callback"] * 4
    written = {f["path"].rsplit("\\", 1)[1] for f in report["files"] if f["op"] == "write"}
    assert written == {"lineage_oidinfo.txt", "lineage_graystring.txt", "lineage_linedda.txt", "lineage_wndproc.txt"}
    # the fifth copy was handed to an API no handler serves: the note says so, naming the code
    (call,) = _calls(report, f"dbghelp.{unlisted}")
    allocations = [c["ret"] for c in _calls(report, "kernel32.VirtualAlloc")]
    assert call["args"][1].split(" ", 1)[0] == allocations[-1]
    (note,) = [n for n in report["notes"] if n["what"] == "callback_not_called"]
    assert note["detail"].startswith(f"dbghelp.{unlisted} was given {allocations[-1]} as EnumLoadedModulesCallback")
    assert note["stage"] == "s0"
    # no note for the four APIs that called their callback, nor for memory that already ran
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated" and unlisted not in n["detail"]]


@pytest.mark.parametrize("name", ["com-download", "com-download-x86"])
def test_a_com_http_client_fetches_and_an_unknown_com_class_is_named(
    scenario_report: Callable[[str], Report], name: str
) -> None:
    report = scenario_report(name)
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    methods = [c["api"] for c in report["api_calls"] if c["api"].startswith("winhttpcom.")]
    assert methods == [
        f"winhttpcom.IWinHttpRequest_{m}"
        for m in ("Open", "SetRequestHeader", "Send", "get_Status", "get_ResponseBody", "Release")
    ]
    assert all(c["ret"] == "0x0" for c in report["api_calls"] if c["api"].startswith(("winhttpcom.", "oleaut32.Safe")))
    # the COM request is an exchange of its own: the header the guest set replaced the default agent
    (exchange,) = report["network"]
    assert (exchange["method"], exchange["url"]) == ("GET", "https://updates.example-cloudsync.net/agent/cfg.bin")
    assert exchange["request"]["headers"]["User-Agent"] == "CloudSync/2.4"
    # the body the SAFEARRAY held is the payload's origin, through the method that handed it over
    s1 = report["stages"][1]
    assert [(h["source"], h["transform"], h["detail"]) for h in s1["lineage"]] == [
        ("network", "source", "winhttpcom.IWinHttpRequest_get_ResponseBody"),
        ("memory", "xor", "key 0x3c"),
    ]
    # the BITS manager is a class nobody emulates: named, not silent
    (note,) = [n for n in report["notes"] if n["what"] == "com_class_not_emulated"]
    assert "{4991d34b-80a1-4291-83b6-3328366b9097} (BITS BackgroundCopyManager" in note["detail"]
    assert "0x80040154" in note["detail"]
