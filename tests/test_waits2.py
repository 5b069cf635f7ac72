"""Waits, timers and window messages as Windows does them (emulator/backends/speakeasy/signals.py,
waits.py, messages.py, wndprocs.py).

tests/bins/fidelity/waits2.c (x64 and x86, ``make -C tests/bins/fidelity`` rebuilds it byte for
byte) checks each answer itself and prints one verdict per check (``check NAME: pass|FAIL``).
Before this work 31 of its 41 checks failed on each architecture: finite waits on an event
nobody set, or an event reset, answered WAIT_OBJECT_0 at once with the clock unmoved; waits on a
closed or made-up handle succeeded; a waitable timer's routine ran before it was due, once (no
period) and even after CancelWaitableTimer, and a wait on the timer itself never waited;
SendMessage answered 0; PostMessage / PostThreadMessage / PostQuitMessage posted nothing, so
GetMessage, PeekMessage and DispatchMessage never saw them; a window's WM_TIMER reached no
procedure.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.analysis.pipeline import analyse
from emulator.events import ApiCall, Note
from emulator.plan import ReplayPlan
from emulator.replay import Recording, emulate
from emulator.trace import freeze

ROOT = Path(__file__).resolve().parent.parent
BINS = ROOT / "tests" / "bins" / "fidelity"
SAMPLES = ["waits2.exe", "waits2_32.exe"]
# Each check of waits2.c, by what it is about.
WAIT_CHECKS = [
    "thread_wait_times_out",
    "event_wait_times_out",
    "event_poll_times_out",
    "set_event_signals",
    "reset_event_unsignals",
    "auto_reset_event_once",
    "event_set_by_thread",
    "wait_any_times_out",
    "wait_any_second_signalled",
    "wait_all_one_unsignalled_times_out",
    "wait_all_signalled",
    "msg_wait_times_out",
    "signal_and_wait_times_out",
    "nt_wait_relative_times_out",
]
HANDLE_CHECKS = [
    "wait_closed_handle_fails",
    "wait_bogus_handle_fails",
    "wait_many_bogus_handle_fails",
    "nt_wait_bogus_handle_fails",
    "close_twice_fails",
]
TIMER_CHECKS = [
    "timer_routine_not_before_due",
    "timer_routine_when_due",
    "timer_routine_once",
    "timer_absolute_due",
    "timer_periodic_repeats",
    "timer_cancel_stops",
    "timer_wait_before_due_times_out",
    "timer_wait_until_due",
]
MESSAGE_CHECKS = [
    "send_message_returns_answer",
    "get_message_posted",
    "dispatch_runs_procedure",
    "peek_no_remove",
    "peek_remove",
    "peek_dispatch",
    "thread_message",
    "set_timer_procedure",
    "set_timer_window",
    "quit_ends_get_message",
]
HOOK_CHECKS = ["hooks_set", "call_next_hook", "no_invented_input", "unhook"]
CHECKS = WAIT_CHECKS + HANDLE_CHECKS + TIMER_CHECKS + MESSAGE_CHECKS + HOOK_CHECKS
_CACHE: dict[str, Recording] = {}


def _plan(sample: str) -> ReplayPlan:
    return ReplayPlan(
        name=Path(sample).stem,
        target_path=str(BINS / sample),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
        mode="fast",
    )


def _emulate(sample: str) -> Recording:
    if sample not in _CACHE:
        _CACHE[sample] = emulate(_plan(sample))
    return _CACHE[sample]


def _verdicts(recording: Recording) -> dict[str, str]:
    out: dict[str, str] = {}
    for event in recording.events:
        if isinstance(event, ApiCall) and event.api == "kernel32.OutputDebugStringA" and event.args:
            text = event.args[0]
            if text.startswith("check "):
                name, _, rest = text[len("check ") :].partition(": ")
                out[name] = rest
    return out


@pytest.mark.parametrize("sample", SAMPLES)
def test_the_probe_runs_every_check_to_its_end(sample: str) -> None:
    recording = _emulate(sample)
    assert recording.status == "completed", recording.detail
    assert sorted(_verdicts(recording)) == sorted(CHECKS)


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("sample", SAMPLES)
def test_each_wait_timer_and_message_check_passes(sample: str, check: str) -> None:
    """One verdict of waits2.c: ``pass`` (its detail says what it measured: the milliseconds a
    timed-out wait took on the virtual clock, the last error, an answer)."""
    verdict = _verdicts(_emulate(sample)).get(check, "missing")
    assert verdict.startswith("pass"), f"{check}: {verdict}"


@pytest.mark.parametrize("sample", SAMPLES)
def test_a_finite_wait_nothing_satisfies_moves_the_clock_by_its_timeout(sample: str) -> None:
    """The elapsed time each timed-out wait measured with GetTickCount: its 100 ms timeout (a
    tick of API calls more at most), not 0 (Speakeasy answered at once) and not more."""
    verdicts = _verdicts(_emulate(sample))
    for check in ("event_wait_times_out", "wait_any_times_out", "msg_wait_times_out", "nt_wait_relative_times_out"):
        elapsed = int(verdicts[check].rsplit(" ", 1)[-1])
        assert 100 <= elapsed <= 102, (check, elapsed)
    # the timer routines ran once the clock reached their due times (200 ms, 300 ms absolute)
    assert verdicts["timer_routine_when_due"].endswith("elapsed 200")
    assert verdicts["timer_absolute_due"].endswith("elapsed 300")


@pytest.mark.parametrize("sample", SAMPLES)
def test_window_hooks_are_noted_and_a_keyboard_hook_is_keylogging(sample: str) -> None:
    """SetWindowsHookExA of WH_KEYBOARD_LL, WH_MOUSE_LL and WH_GETMESSAGE: one ``window_hook``
    note each naming the hook type and its procedure; ATT&CK T1056.001 from the keyboard hook
    alone (its note is the evidence)."""
    recording = _emulate(sample)
    notes = [e for e in recording.events if isinstance(e, Note) and e.what == "window_hook"]
    assert [n.detail.split("(", 1)[1].split(",", 1)[0] for n in notes] == [
        "WH_KEYBOARD_LL",
        "WH_MOUSE_LL",
        "WH_GETMESSAGE",
    ]
    hooks = [e for e in recording.events if isinstance(e, ApiCall) and e.api == "user32.SetWindowsHookExA"]
    assert len(hooks) == 3
    procedure = int(hooks[0].args[1], 16)
    assert all(f"procedure {procedure:#x}" in n.detail for n in notes)
    analysis = analyse(freeze(_plan(sample), recording, "0" * 64))
    keylogging = [t for t in analysis.techniques if t.technique == "T1056.001"]
    assert len(keylogging) == 1
    assert keylogging[0].evidence == [notes[0].seq]


@pytest.mark.parametrize("name", ["postmsg-dispatch", "postmsg-dispatch-x86"])
def test_a_payload_reached_through_the_message_queue_runs_from_dispatch_message(
    scenario_report: Callable[[str], dict[str, Any]], name: str
) -> None:
    """scenarios/postmsg-dispatch(-x86): a window procedure that is the payload, reached only
    by a posted message and by a window timer with no TIMERPROC, runs from DispatchMessageA
    (``via: callback``), whose answer is the procedure's TRUE (the loader exits 6 otherwise);
    the loop ends at PostQuitMessage's WM_QUIT (exit 0). Before: PostMessageA posted nothing,
    DispatchMessageA called no window procedure, and neither payload ran."""
    report = scenario_report(name)
    assert not [n for n in report["notes"] if n["what"] == "signature_emulated"]
    s1, s2 = report["stages"][1:]
    assert [(s["via"], s["parent"]) for s in (s1, s2)] == [("callback", "s0"), ("callback", "s0")]
    dispatches = [c for c in report["api_calls"] if c["api"] == "user32.DispatchMessageA"]
    assert [c["args"][0].split("message: ", 1)[1].split(",", 1)[0] for c in dispatches] == ["0x400", "0x113"]
    # each payload ran inside the DispatchMessageA that dispatched its message
    assert dispatches[0]["seq"] < s1["seq_range"][0] <= s1["seq_range"][1] < dispatches[1]["seq"]
    assert dispatches[1]["seq"] < s2["seq_range"][0]
    assert [c["ret"] for c in report["api_calls"] if c["api"] == "user32.GetMessageA"] == ["0x1", "0x1", "0x0"]
    assert [c["args"][0] for c in report["api_calls"] if c["api"] == "kernel32.ExitProcess"] == ["0x0"]
