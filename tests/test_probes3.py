"""Chains nobody here wrote, probed, round 3 (issue: probes3). What each probe showed before its fix:

* ``native-apc-continue``: ntdll's ``NtQueueApcThread``, ``NtTestAlert`` and ``NtContinue`` were
  signature-emulated (0, nothing done): neither the APC queued to the loader's own thread nor the
  CONTEXT whose Rip was the payload ran. An APC to the calling thread now waits for an alertable
  moment (``NtTestAlert``, an alertable ``SleepEx``) and runs there (``via: apc``); ``NtContinue``
  / ``RtlRestoreContext`` resume the thread with the CONTEXT (``via: context``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Report = dict[str, Any]


def _calls(report: Report, api: str) -> list[dict[str, Any]]:
    return [c for c in report["api_calls"] if c["api"] == api]


def test_an_apc_to_the_own_thread_runs_at_nt_test_alert_and_nt_continue_loads_a_context(
    scenario_report: Callable[[str], Report],
) -> None:
    report = scenario_report("native-apc-continue")
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    s1, s2 = report["stages"][1:]
    assert (s1["via"], s1["parent"], s2["via"], s2["parent"]) == ("apc", "s0", "context", "s0")
    # the APC was kept until NtTestAlert, and ran before NtTestAlert returned to the loader
    alert = _calls(report, "ntdll.NtTestAlert")[0]
    queued = _calls(report, "ntdll.NtQueueApcThread")[0]
    assert queued["seq"] < alert["seq"] < s1["seq_range"][0]
    after = min(c["seq"] for c in report["api_calls"] if c["seq"] > alert["seq"] and c["stage"] == "s0")
    assert s1["seq_range"][1] < after
    # NtContinue never returned: the payload's calls follow it, then the return address it was given
    resumed = _calls(report, "ntdll.NtContinue")[0]
    assert resumed["seq"] < s2["seq_range"][0]
    assert [c["api"] for c in report["api_calls"] if c["seq"] > s2["seq_range"][1]] == ["kernel32.ExitProcess"]
    assert [c["args"][0] for c in _calls(report, "kernel32.ExitProcess")] == ["0x0"]
