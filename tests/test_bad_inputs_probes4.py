"""Hostile arguments to session 33's APIs (completion routines, registered waits, COM's
WinHttpRequest and the SAFEARRAY calls, fiber-local storage callbacks, window procedures): real
emulations of tests/bins/hostile/hostile4.c (``make -C tests/bins/hostile``; the case is the last
word of its command line). Each must end within its limits, completed or with an outcome naming
the cause, and answer as Windows does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.environment import GuestEnvironment
from emulator.events import ApiCall
from emulator.plan import ReplayPlan
from emulator.replay import Recording, emulate

REPO = Path(__file__).resolve().parent.parent
BINS = REPO / "tests" / "bins" / "hostile"
SAMPLES = ["hostile4.exe", "hostile4_32.exe"]


def _emulate(case: str, sample: str) -> Recording:
    plan = ReplayPlan(
        name=f"hostile4-{case}",
        target_path=str(BINS / sample),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
        guest=GuestEnvironment(argv=[case]),
    )
    return emulate(plan)


def _printed(recording: Recording) -> dict[str, int]:
    out = {}
    for event in recording.events:
        if isinstance(event, ApiCall) and event.api == "kernel32.OutputDebugStringA":
            name, _, value = event.args[0].rpartition("=")
            out[name] = int(value) & 0xFFFFFFFF if int(value) < 0 else int(value)
    return out


@pytest.mark.parametrize("sample", SAMPLES)
def test_completion_routines_and_registered_waits_refuse_bad_arguments(sample: str) -> None:
    """ReadFileEx without an OVERLAPPED, past the end, on a bad handle; SetWaitableTimer with an
    unreadable due time or a bad handle; one timer set 5000 times, due 100 ns on: one alertable
    SleepEx delivers one APC (a timer has one: setting it again removes the one queued, as
    NtSetTimer does; all 5000 ran when routines were queued at SetWaitableTimer);
    RegisterWaitForSingleObject without a pointer for the wait; UnregisterWait of nothing."""
    recording = _emulate("completion", sample)
    assert recording.status == "completed", recording.detail
    assert _printed(recording) == {
        "readex_nooverlapped": 0,
        "readex_nooverlapped_error": 87,
        "readex_eof": 0,
        "readex_eof_error": 38,
        "readex_badhandle": 0,
        "readex_badhandle_error": 6,
        "readex_noroutine": 1,
        "timer_baddue": 0,
        "timer_baddue_error": 998,
        "timer_badhandle": 0,
        "timer_badhandle_error": 6,
        "sleep": 0xC0,  # WAIT_IO_COMPLETION
        "apcs": 1,
        "sleep_again": 0,  # nothing left pending (ReadFileEx without a routine queued none)
        "regwait_null": 0,
        "regwait_null_error": 87,
        "unregister_bad": 0,
        "unregister_bad_error": 6,
        "end": 1,
    }
    bad = _emulate("readex_badbuf", sample)
    assert bad.status == "fault"
    assert "invalid_write address=0x10 in kernel32.ReadFileEx" in bad.detail


@pytest.mark.parametrize("sample", SAMPLES)
def test_the_com_http_client_answers_bad_calls_with_its_errors(sample: str) -> None:
    recording = _emulate("com", sample)
    assert recording.status == "completed", recording.detail
    assert _printed(recording) == {
        "create": 0,
        "create_other_iid": 0x80004002,  # E_NOINTERFACE, and the out pointer cleared
        "create_other_iid_out": 0,
        "qi_other": 0x80004002,
        "qi_other_out": 0,
        "status_before_open": 0x80072EF3,  # ERROR_WINHTTP_INCORRECT_HANDLE_STATE
        "open_null": 0x80072EE6,  # ERROR_WINHTTP_UNRECOGNIZED_SCHEME
        "open_ftp": 0x80072EE6,
        "open": 0x80072EE5,  # ERROR_WINHTTP_INVALID_URL (port 99999)
        "open_host": 0,
        "body_before_send": 0x80072EF3,
        "send_unresolved": 0x80072EE7,  # ERROR_WINHTTP_NAME_NOT_RESOLVED
        "status_after_failed_send": 0x80072EF3,
        "status_null": 0x80072EF3,
        "release": 0,
        "sa_null": 0x80070057,  # E_INVALIDARG
        "sa_ubound": 0,
        "sa_ubound_value": 14,  # lLbound 5 + 10 elements - 1
        "sa_dim2": 0x8002000B,  # DISP_E_BADINDEX
        "sa_lbound_null": 0x80070057,
        "strlen_null": 0,
        "end": 1,
    }
    assert not [e for e in recording.events if isinstance(e, ApiCall) and e.api.startswith("speakeasy")]


@pytest.mark.parametrize("sample", SAMPLES)
def test_fls_callbacks_run_once_for_a_stored_value(sample: str) -> None:
    """No callback, a slot freed twice, a slot with no value: only the slot holding 5 calls back."""
    recording = _emulate("fls", sample)
    assert recording.status == "completed", recording.detail
    assert _printed(recording) == {"free_empty": 1, "free": 1, "free_again": 1, "free_unset": 1, "calls": 5, "end": 1}


@pytest.mark.parametrize("sample", SAMPLES)
def test_window_procedures_with_odd_classes_and_windows(sample: str) -> None:
    """RegisterClassA(NULL), a class with no procedure, a class looked up in another case,
    CW_USEDEFAULT and a negative width, a message to a window nobody made, a NULL subclass."""
    recording = _emulate("windows", sample)
    assert recording.status == "completed", recording.detail
    assert _printed(recording) == {
        "register_null": 0,
        "register_null_error": 87,
        "register_noproc": 1,
        "create_noproc": 1,
        "register": 1,
        "created_calls": 2,  # WM_NCCREATE, WM_CREATE
        "send": 1,  # the procedure's answer
        "send_calls": 102,
        "send_unknown": 0,
        "subclass_zero": 1,  # returned the procedure it replaced
        "send_after_zero": 1,
        "calls": 202,  # a NULL procedure does not replace the window's
        "end": 1,
    }
