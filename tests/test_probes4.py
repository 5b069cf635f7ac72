"""Chains nobody here wrote, probed, round 4 (issue: probes4). What each probe showed before its fix:

* ``apc-completion`` (x64, x86): ``SetWaitableTimer``'s completion routine was ignored by
  Speakeasy's handler (TRUE, nothing queued): the loader's ``SleepEx(INFINITE, TRUE)`` slept
  49.7 days of virtual time, returned 0 and the payload never ran, with no note. ``ReadFileEx``
  and ``RegisterWaitForSingleObject`` had no handler at all. A completion routine is now an APC
  queued to the calling thread (delivered at its next alertable moment: ``via: apc``), the read
  is made at the OVERLAPPED's offset and recorded as ``ReadFile``'s, and a registered wait's
  callback runs on a pool thread (``via: thread``).
* ``com-download`` (x64, x86): ``CoCreateInstance(WinHttp.WinHttpRequest.5.1)`` answered
  ``REGDB_E_CLASSNOTREG`` with nothing in the report; the loader fell back to WinINet. The class
  is now made (``winhttpcom.IWinHttpRequest_*``), and a class nobody makes is a
  ``com_class_not_emulated`` note (the BITS manager here).
* ``callbacks-more`` (x64, x86): 12 of 13 callback-execution APIs probed were served from their
  signature (success, the payload never ran, only ``signature_emulated``): a signature-emulated
  call handed code the guest made executable and has not run is a ``callback_not_called`` note;
  the commonest now call back.
* ``persist-lolbins``: ``sc.exe create ... binPath=`` and ``reg.exe add ...\\Run`` (through
  ``cmd /c``) were process nodes with no technique, ``schtasks.exe /create /tr`` had its technique
  but nobody said what the task runs; each is a ``persistence_command`` note naming what would
  run and whether it is one of the guest's files (T1547.001, T1053.005, T1543.003).
* ``fls-hidden-iat`` (x64, x86): ``FlsAlloc``'s callback was dropped by Speakeasy's handler (the
  payload never ran at ``FlsFree``); ``NtCreateThreadEx`` with ``THREAD_CREATE_FLAGS_HIDE_FROM_DEBUGGER``
  ran but said nothing (no T1622). The callback runs at ``FlsFree`` with the slot's value; a hidden
  thread is a ``thread_hidden_from_debugger`` note (T1622). The patched import slot was right.
* ``wndproc-run`` (x64, x86): a window class's procedure never ran (``CreateWindowEx`` calls
  nothing in Speakeasy, ``RegisterClassW`` was signature-emulated) and a subclassed window's
  procedure ran with none of ``SendMessage``'s arguments (Speakeasy jumped to it): both are called
  back now, with Windows' messages and arguments.
* ``pool-fiber`` (x64, x86): thread-pool work and timer callbacks ran only after the loader's run:
  ``WaitForThreadpoolWorkCallbacks`` / ``...TimerCallbacks`` / ``...WaitCallbacks`` returned at
  once, so a loader using what its callback made found nothing. They run inside the wait now.
  ``TrySubmitThreadpoolCallback``, ``CreateFiberEx`` and ``ConvertThreadToFiberEx`` were right.
* ``com-xmlhttp`` (x64, x86): ``CoCreateInstance(MSXML2.XMLHTTP.6.0)`` answered
  ``REGDB_E_CLASSNOTREG``; MSXML's XMLHTTP and ServerXMLHTTP are now the same object behind
  ``msxml6.IXMLHTTPRequest_*``, and ``get_responseText``'s BSTR is a network source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from emulator.backends.speakeasy.persistence import persistence_commands, split_arguments

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
    # no virtual day skipped: the loader never slept for ever; its first alertable sleep lasted
    # the 1 s the timer took to fall due (its routine is queued then), then Sleep(100)
    assert report["virtual_time"]["skipped_ms"] == 1100
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


def test_persistence_set_up_by_system_programs_names_what_would_run(
    scenario_report: Callable[[str], Report],
) -> None:
    report = scenario_report("persist-lolbins")
    dropped = "C:\\Users\\analyst\\AppData\\Roaming\\SyncHost\\synchost.exe"
    notes = [n["detail"] for n in report["notes"] if n["what"] == "persistence_command"]
    assert [d.split(":", 1)[0] for d in notes] == ["reg.exe add", "schtasks.exe /create", "sc.exe create"]
    assert all(f"program {dropped} (one of the guest's files)" in d for d in notes)
    assert "'SyncHost' (HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run)" in notes[0]
    assert f'(/sc onlogon, /rl highest) runs "{dropped}" --update' in notes[1]
    assert f"'SyncHostSvc' (start= auto) runs {dropped} --service" in notes[2]
    # the techniques of reg.exe and sc.exe come from the notes (before: none)
    by_id = {t["technique"]: t["evidence"] for t in report["attack"]}
    seqs = {n["seq"]: n["detail"] for n in report["notes"] if n["what"] == "persistence_command"}
    assert any(seq in by_id["T1543.003"] for seq in seqs)
    assert any(seqs.get(seq, "").startswith("reg.exe") for seq in by_id["T1547.001"])
    # nothing ran the dropped file
    assert [s["id"] for s in report["stages"]] == ["s0"]


def test_persistence_command_lines_are_read_as_the_programs_read_them() -> None:
    assert split_arguments('/tr "\\"C:\\a b\\x.exe\\" --up" /f') == ["/tr", '"C:\\a b\\x.exe" --up', "/f"]
    assert split_arguments('a\\\\"b c"') == ["a\\b c"]
    same = lambda text: text  # noqa: E731
    (task,) = persistence_commands("SCHTASKS", 'schtasks /Create /SC minute /TN t /TR "calc.exe 1"', same)
    assert (task.mechanism, task.name, task.when, task.command, task.target) == (
        "task",
        "t",
        "/sc minute",
        "calc.exe 1",
        "calc.exe",
    )
    (svc,) = persistence_commands("sc.exe", "sc.exe \\\\host create S binpath=C:\\s.exe", same)
    assert (svc.verb, svc.name, svc.command, svc.when) == ("create", "S", "C:\\s.exe", "start= demand")
    (value,) = persistence_commands(
        "cmd.exe",
        'cmd /c echo x & reg add "HKLM\\Software\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon" '
        '/v Userinit /d "C:\\u.exe," /f',
        same,
    )
    assert (value.name, value.when, value.command) == (
        "Userinit",
        "HKEY_LOCAL_MACHINE\\Software\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon",
        "C:\\u.exe,",
    )
    # not persistence: a query, another key, a task without /tr, a service without binPath=
    for program, line in (
        ("schtasks.exe", "schtasks /query /tn t"),
        ("schtasks.exe", "schtasks /create /tn t /xml t.xml"),
        ("reg.exe", "reg add HKCU\\Software\\Vendor /v a /d b"),
        ("reg.exe", "reg query HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run"),
        ("sc.exe", "sc start S"),
        ("notepad.exe", "notepad schtasks /create /tr x"),
    ):
        assert persistence_commands(program, line, same) == []


@pytest.mark.parametrize("name", ["fls-hidden-iat", "fls-hidden-iat-x86"])
def test_fls_callback_hidden_thread_and_patched_import_slot(
    scenario_report: Callable[[str], Report], name: str
) -> None:
    report = scenario_report(name)
    assert [(s["via"], s["parent"]) for s in report["stages"][1:]] == [
        ("callback", "s0"),
        ("thread", "s0"),
        ("call", "s0"),
    ]
    s1 = report["stages"][1]
    # the FLS callback ran inside FlsFree, with the value the thread stored (its context block)
    (free,) = _calls(report, "kernel32.FlsFree")
    after = min(c["seq"] for c in report["api_calls"] if c["seq"] > free["seq"] and c["stage"] == "s0")
    assert free["seq"] < s1["seq_range"][0] <= s1["seq_range"][1] < after
    (note,) = [n for n in report["notes"] if n["what"] == "thread_hidden_from_debugger"]
    assert note["detail"].startswith("ntdll.NtCreateThreadEx started thread ")
    assert "THREAD_CREATE_FLAGS_HIDE_FROM_DEBUGGER" in note["detail"] and note["stage"] == "s0"
    (t1622,) = [t for t in report["attack"] if t["technique"] == "T1622"]
    assert note["seq"] in t1622["evidence"]
    assert [c["args"][0] for c in _calls(report, "kernel32.ExitProcess")] == ["0x0"]


@pytest.mark.parametrize(
    ("name", "subclass"), [("wndproc-run", "SetWindowLongPtrA"), ("wndproc-run-x86", "SetWindowLongA")]
)
def test_window_procedures_run_at_creation_and_on_a_sent_message(
    scenario_report: Callable[[str], Report], name: str, subclass: str
) -> None:
    report = scenario_report(name)
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    assert [(s["via"], s["parent"]) for s in report["stages"][1:]] == [("callback", "s0"), ("callback", "s0")]
    s1, s2 = report["stages"][1:]
    # the class's procedure ran inside CreateWindowExA (WM_NCCREATE, then WM_CREATE)
    (create,) = _calls(report, "user32.CreateWindowExA")
    after = min(c["seq"] for c in report["api_calls"] if c["seq"] > create["seq"] and c["stage"] == "s0")
    assert create["seq"] < s1["seq_range"][0] <= s1["seq_range"][1] < after
    assert len([f for f in report["files"] if f["path"].endswith("lineage_wndclass.txt") and f["op"] == "write"]) == 2
    # the other window's own class procedure (DefWindowProcW) answered WM_NCCREATE with TRUE
    assert [(c["args"][1], c["ret"]) for c in _calls(report, "user32.DefWindowProcW")] == [
        ("0x81", "0x1"),
        ("0x1", "0x0"),
    ]
    # subclassing returned the procedure it replaced, and SendMessageA ran the new one
    (replaced,) = _calls(report, f"user32.{subclass}")
    (send,) = _calls(report, "user32.SendMessageA")
    assert replaced["seq"] < send["seq"] < s2["seq_range"][0]
    assert [c["args"][0] for c in _calls(report, "kernel32.ExitProcess")] == ["0x0"]


@pytest.mark.parametrize("name", ["pool-fiber", "pool-fiber-x86"])
def test_pool_callbacks_run_inside_the_wait_for_them(scenario_report: Callable[[str], Report], name: str) -> None:
    report = scenario_report(name)
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    s1, s2, s3, s4 = report["stages"][1:]
    assert [s["via"] for s in (s1, s2, s3, s4)] == ["thread", "thread", "callback", "thread"]
    for api, stage, closed in (
        ("WaitForThreadpoolWorkCallbacks", s1, "CloseThreadpoolWork"),
        ("WaitForThreadpoolTimerCallbacks", s2, "CloseThreadpoolTimer"),
        ("SwitchToFiber", s3, "ExitProcess"),
    ):
        (wait,) = _calls(report, f"kernel32.{api}")
        (after,) = _calls(report, f"kernel32.{closed}")
        assert wait["seq"] < stage["seq_range"][0] <= stage["seq_range"][1] < after["seq"], api
    # the simple callback nobody waited for runs after the loader's run, as before
    (exit_call,) = _calls(report, "kernel32.ExitProcess")
    assert s4["seq_range"][0] > exit_call["seq"]


@pytest.mark.parametrize("name", ["com-xmlhttp", "com-xmlhttp-x86"])
def test_msxml_xmlhttp_fetches_text_that_lineage_follows(scenario_report: Callable[[str], Report], name: str) -> None:
    report = scenario_report(name)
    assert not [n for n in report["notes"] if n["what"] in ("signature_emulated", "com_class_not_emulated")]
    methods = [c["api"].split(".", 1)[1] for c in report["api_calls"] if c["api"].startswith("msxml6.")]
    assert methods == [
        f"IXMLHTTPRequest_{m}" for m in ("open", "send", "get_readyState", "get_status", "get_responseText", "Release")
    ]
    (exchange,) = report["network"]
    assert exchange["request"]["headers"]["User-Agent"].startswith("Mozilla/4.0 (compatible; MSIE 7.0;")
    s1 = report["stages"][1]
    assert [(h["source"], h["transform"], h["detail"]) for h in s1["lineage"]] == [
        ("network", "source", "msxml6.IXMLHTTPRequest_get_responseText"),
        ("api", "decode", "CryptStringToBinaryW"),
        ("memory", "xor", "key 0x71"),
    ]
