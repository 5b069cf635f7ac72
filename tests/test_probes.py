"""Chains nobody here wrote, probed (issue: probes). Each scenario below was a gap before its fix:

* ``ads-heap-exec``: a payload decoded into a block of a HEAP_CREATE_ENABLE_EXECUTE heap ran
  unseen once the loader freed its read buffer, a heap block packed into the same page
  (memwatch: freeing a block no longer unwatches a page a live block shares); the NTFS stream
  it went through gives T1564.004.
* ``rpm-tpwait``: CreateThreadpoolWait was signature-emulated (a NULL wait) and the payload never
  ran; thread-pool callbacks now get Windows' arguments (instance, context, object, result).
* ``timer-msgloop-x86``: SetTimer's TIMERPROC never ran (Speakeasy's WM_TIMER named no procedure
  and its DispatchMessage did nothing).
* ``net-fallback-redirect``: WinINet did not follow a 302; the redirect is now followed and
  drawn (``redirects_to``).
* ``env-keyed-persist``: a Run value, ``schtasks /create`` and ``CreateServiceA`` gave no
  technique.

``timer-peekmsg`` polls with PeekMessage (Speakeasy's answered no message ever).

``veh-dispatch`` and ``uef-dispatch-x86`` were right before; they guard exception-dispatched
stages. Their [expect] tables (tests/test_scenarios.py, tests/test_lineage.py) check the graphs;
the tests here check what those tables cannot say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.apis.netapi import Connection, Request, Session, redirect_target
from emulator.responders.base import HttpResponse

Report = dict[str, Any]


def _edges(report: Report) -> set[tuple[str, str, str]]:
    graph = report["graph"]
    return {(e["source"], e["type"], e["target"]) for e in graph.get("links") or graph["edges"]}


def test_code_in_an_executable_heap_beside_a_freed_block_is_a_stage(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("ads-heap-exec")
    stages = report["stages"]
    assert [s["kind"] for s in stages] == ["pe", "shellcode"]
    s1 = stages[1]
    assert s1["parent"] == "s0"
    # The freed read buffer and the payload's block share a page (Speakeasy packs small blocks).
    freed = [int(c["args"][2], 16) for c in report["api_calls"] if c["api"] == "kernel32.HeapFree"]
    assert freed and freed[0] // 0x1000 == int(s1["entry"], 16) // 0x1000
    writes = [f for f in report["files"] if f["path"].lower().endswith("lineage_ads.txt") and f["op"] == "write"]
    assert [w["stage"] for w in writes] == ["s1"]


def test_an_alternate_data_stream_is_hidden_storage(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("ads-heap-exec")
    ads = [a for a in report["attack"] if a["technique"] == "T1564.004"]
    assert [a["stage"] for a in ads] == ["s0"]
    # the stream's create, write, open and read are the evidence; the main stream's are not
    stream = [f["seq"] for f in report["files"] if f["path"].lower() == "c:\\users\\public\\log.txt:blob"]
    assert ads[0]["evidence"] == stream


def test_a_thread_pool_wait_runs_its_callback_with_windows_arguments(
    scenario_report: Callable[[str], Report],
) -> None:
    report = scenario_report("rpm-tpwait")
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    s1 = report["stages"][1]
    assert s1["via"] == "thread"
    # The payload reads its context block from the second argument: it ran only if the
    # instance handle came first and the context second.
    assert any(d["path"].lower().endswith("lineage_tpwait.txt") for d in report["dropped"])


def test_a_timer_procedure_runs_from_the_message_loop(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("timer-msgloop-x86")
    s1 = report["stages"][1]
    assert s1["via"] == "callback" and s1["kind"] == "shellcode"
    assert any(d["path"].lower().endswith("lineage_timer.txt") for d in report["dropped"])
    # the timer's 250 ms period passed on the virtual clock before its WM_TIMER
    assert report["virtual_time"]["skipped_ms"] == 250


def test_a_redirect_is_followed_and_drawn(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("net-fallback-redirect")
    exchanges = [(n["url"], n["response"]["status"]) for n in report["network"]]
    assert exchanges == [
        ("http://update.c2-primary.example/p/blob.bin", None),
        ("http://mirror.example-cdn.net/get?id=7", 302),
        ("http://files.example-storage.net/store/blob.bin", 200),
    ]
    assert (
        "url:http://mirror.example-cdn.net/get?id=7",
        "redirects_to",
        "url:http://files.example-storage.net/store/blob.bin",
    ) in _edges(report)
    assert report["stages"][1]["origin"]["ref"] == "http://files.example-storage.net/store/blob.bin"


def _request(url_host: str, path: str, secure: bool, status: int, location: str) -> Request:
    request = Request(Connection(Session("ua"), url_host, 443 if secure else 80), "GET", path, secure)
    request.response = HttpResponse(status, {"location": location}, b"")
    return request


def test_redirect_targets() -> None:
    assert redirect_target(_request("a.example", "/x/y", False, 302, "z?q=1")) == ("a.example", 80, "/x/z?q=1", False)
    assert redirect_target(_request("a.example", "/", False, 307, "https://b.example:8443/p")) == (
        "b.example",
        8443,
        "/p",
        True,
    )
    # not a redirect, no Location, a downgrade from https, or redirects turned off: stay
    assert redirect_target(_request("a.example", "/", False, 200, "http://b.example/")) is None
    assert redirect_target(_request("a.example", "/", False, 302, "")) is None
    assert redirect_target(_request("a.example", "/", True, 302, "http://b.example/")) is None
    off = _request("a.example", "/", False, 302, "http://b.example/")
    off.follow_redirects = False
    assert redirect_target(off) is None


def test_persistence_steps_are_techniques(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("env-keyed-persist")
    techniques = {a["technique"]: a for a in report["attack"]}
    for technique in ("T1547.001", "T1053.005", "T1543.003"):
        assert techniques[technique]["stage"] == "s0", technique
    # a Run-key technique cites the value's write, not the key's opening
    run = techniques["T1547.001"]["evidence"]
    writes = [r for r in report["registry"] if r["op"] == "write"]
    assert run == [w["seq"] for w in writes]


def test_a_polling_loop_gets_a_timer_only_once_it_is_due(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("timer-peekmsg")
    peeks = [c for c in report["api_calls"] if c["api"] == "user32.PeekMessageA"]
    # five polls, at 0, 50, ..., 200 ms, find nothing; the sixth, 250 ms after SetTimer, its WM_TIMER
    assert [int(c["ret"], 16) for c in peeks] == [0, 0, 0, 0, 0, 1]
    assert report["virtual_time"]["skipped_ms"] == 250
    s1 = report["stages"][1]
    assert s1["via"] == "callback" and s1["parent"] == "s0"


def test_code_an_exception_handler_resumes_at_is_started_by_the_exception(
    scenario_report: Callable[[str], Report],
) -> None:
    for name in ("veh-dispatch", "uef-dispatch-x86"):
        s1 = scenario_report(name)["stages"][1]
        assert (s1["via"], s1["parent"]) == ("exception", "s0"), name
