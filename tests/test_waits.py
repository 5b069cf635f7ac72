"""Threads and child processes run when the guest waits for them
(emulator/backends/speakeasy/waits.py).

tests/bins/waits/waits.c (x64 and x86, ``make -C tests/bins/waits`` rebuilds it byte for byte)
starts threads and waits for them every way a loader does (WaitForSingleObject(Ex),
WaitForMultipleObjects wait-all and wait-any, NtWaitForSingleObject, NtWaitForMultipleObjects,
SignalObjectAndWait, zero-timeout polls, GetExitCodeThread), ends them with ExitThread,
RtlExitUserThread and _endthreadex from below their start routines, nests a wait inside a
waited thread and terminates one that never ran, sleeps (and yields) in a loop until a thread
sets a flag, sleeps forever, waits 5 s for a thread that never ends, and queues an APC to
itself that an alertable wait runs; it checks each answer
itself and prints one verdict per check.
The scenarios wait-worker(-x86) are the same on a chain: worker threads decode a payload the main
thread runs after its wait, then the payload runs as a thread (a stage ``via: thread``) whose
file the main thread finds after waiting for it. In wait-child(-x86) a parent drops a program,
starts it and polls for a file it writes in a sleep loop, starts it again, waits for it and
checks its exit code, then reads, decodes and runs what it stashed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.events import ApiCall
from emulator.plan import ReplayPlan
from emulator.replay import Recording, emulate

ROOT = Path(__file__).resolve().parent.parent
BINS = ROOT / "tests" / "bins" / "waits"
CHECKS = [
    "exit_code_still_active_before",
    "wait_single_runs_thread",
    "exit_code_after",
    "thread_id_is_its_own",
    "wait_again_returns",
    "poll_first_times_out",
    "poll_then_runs",
    "exit_thread_ends_thread_only",
    "exit_thread_code",
    "nt_wait_runs_thread",
    "rtl_exit_code",
    "crt_endthreadex_ends_thread_only",
    "crt_endthreadex_code",
    "wait_all_runs_both",
    "wait_all_codes",
    "wait_any_runs_first",
    "wait_any_second_later",
    "nt_wait_many_poll_times_out",
    "nt_wait_many_all",
    "nested_waits",
    "nested_exit_code",
    "tls_slot_is_the_threads",
    "tls_slot_kept_for_main",
    "signal_and_wait_runs_thread",
    "terminated_code",
    "terminated_never_runs",
    "finite_wait_times_out",
    "timed_out_thread_still_active",
    "apc_not_at_plain_wait",
    "apc_at_alertable_wait",
    "sleep_loop_runs_thread",
    "yield_loop_runs_thread",
    "sleep_forever_runs_threads",
    "one_sleep_is_not_a_wait",
    "own_thread_still_active",
    "own_process_still_active",
]
_CACHE: dict[tuple[str, str], Recording] = {}


def _emulate(sample: str, mode: str = "fast") -> Recording:
    if (sample, mode) not in _CACHE:
        plan = ReplayPlan(
            name=Path(sample).stem,
            target_path=str(BINS / sample),
            emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
            mode=mode,  # type: ignore[arg-type]
        )
        _CACHE[(sample, mode)] = emulate(plan)
    return _CACHE[(sample, mode)]


def _calls(recording: Recording, api: str) -> list[ApiCall]:
    return [e for e in recording.events if isinstance(e, ApiCall) and e.api == api]


@pytest.mark.parametrize("mode", ["fast", "faithful"])
@pytest.mark.parametrize("sample", ["waits.exe", "waits32.exe"])
def test_every_wait_runs_the_thread_it_waits_for(sample: str, mode: str) -> None:
    recording = _emulate(sample, mode)
    assert recording.status == "completed", recording.detail
    verdicts = {}
    for call in _calls(recording, "kernel32.OutputDebugStringA"):
        name, _, rest = str(call.args[0]).removeprefix("check ").partition(": ")
        verdicts[name] = rest
    assert verdicts == dict.fromkeys(CHECKS, "pass")
    assert [c.args[0] for c in _calls(recording, "kernel32.ExitProcess")] == ["0x0"]


@pytest.mark.parametrize("sample", ["waits.exe", "waits32.exe"])
def test_a_waited_thread_runs_inside_the_wait_as_itself(sample: str) -> None:
    """The first thread's calls come between its WaitForSingleObject and the next call of the
    main thread, under the thread's own id; only the threads nobody waited for run after main,
    one of them ended by _endthreadex (its run, cleanly)."""
    calls = [e for e in _emulate(sample).events if isinstance(e, ApiCall)]
    names = [c.api for c in calls]
    wait = names.index("kernel32.WaitForSingleObject")
    assert names[wait + 1] == "kernel32.GetCurrentThreadId"
    ids = [c.ret for c in calls if c.api == "kernel32.GetCurrentThreadId"]
    assert ids[0] != ids[1] and ids[2] == ids[0]  # main, the waited thread, main again
    runs = _emulate(sample).runs
    assert [(run["kind"], run["error"]) for run in runs] == [("module_entry", None), ("thread", None), ("thread", None)]


@pytest.mark.parametrize("name", ["wait-worker", "wait-worker-x86"])
def test_a_chain_that_waits_for_its_workers_runs_its_payload(
    name: str, scenario_report: Callable[[str], dict[str, Any]]
) -> None:
    report = scenario_report(name)
    exits = [c["args"][0] for c in report["api_calls"] if c["api"] == "kernel32.ExitProcess"]
    assert exits == ["0x0"]  # the sample's own checks of its waits and exit codes passed
    stages = {s["id"]: s for s in report["stages"]}
    assert [stages[s]["via"] for s in ("s1", "s2")] == ["call", "thread"]
    seqs = {c["api"]: c["seq"] for c in report["api_calls"] if c["stage"] == "s0"}
    written = [f["seq"] for f in report["files"] if f["path"].endswith("lineage_wait_thread.txt")]
    # the thread's file is written inside the wait, before the main thread looks for it
    assert seqs["kernel32.WaitForSingleObject"] < min(written) < seqs["kernel32.GetFileAttributesA"]


@pytest.mark.parametrize("name", ["wait-child", "wait-child-x86"])
def test_a_parent_that_waits_for_its_child_reads_what_the_child_wrote(
    name: str, scenario_report: Callable[[str], dict[str, Any]]
) -> None:
    report = scenario_report(name)
    calls = report["api_calls"]
    exits = [(c["stage"], c["args"][0]) for c in calls if c["api"] == "kernel32.ExitProcess"]
    # each child's code, then the parent's checks passed
    assert exits == [("s1", "0x8"), ("s2", "0x7"), ("s0", "0x0")]
    order = [(c["stage"], c["api"]) for c in calls]
    # the first child runs in the parent's sleep loop (at its second sleep), before it finds the file
    sleeps = [i for i, call in enumerate(order) if call == ("s0", "kernel32.Sleep")]
    assert len(sleeps) == 2 and {stage for stage, _ in order[sleeps[1] + 1 : sleeps[1] + 4]} == {"s1"}
    # the second inside the parent's wait for it
    wait = order.index(("s0", "kernel32.WaitForSingleObject"))
    exit_code = order.index(("s0", "kernel32.GetExitCodeProcess"))
    assert {stage for stage, _ in order[wait + 1 : exit_code]} == {"s2"}
    assert ("s2", "kernel32.WriteFile") in order[wait + 1 : exit_code]
    for child in report["stages"][1:3]:
        assert (child["via"], child["process"]) == ("process", "C:\\Users\\analyst\\AppData\\Local\\Temp\\helper.exe")
    # one run: both children ran inside the parent's, not after it
    assert [run["kind"] for run in report["runs"]] == ["module_entry"]
    # the child's XOR of its own data is its hop; the parent's XOR of the stash is the parent's
    hops = [(h["transform"], h["actor"]) for h in report["stages"][3]["lineage"]]
    assert hops == [("source", "s0"), ("xor", "s2"), ("file_write", "s2"), ("xor", "s0")]


def test_an_injector_that_waits_for_its_remote_thread_sees_it_done_before_it_frees_its_memory(
    scenario_report: Callable[[str], dict[str, Any]],
) -> None:
    """inject-remote-wait: the thread CreateRemoteThread started in notepad runs inside the
    injector's wait, as notepad's (the stage's process), before VirtualFreeEx of its memory; its
    exit code is the payload's return value."""
    report = scenario_report("inject-remote-wait")
    order = [(c["stage"], c["api"]) for c in report["api_calls"]]
    wait = order.index(("s0", "kernel32.WaitForSingleObject"))
    freed = order.index(("s0", "kernel32.VirtualFreeEx"))
    assert ("s1", "kernel32.WriteFile") in order[wait + 1 : freed]
    assert [c["args"][0] for c in report["api_calls"] if c["api"] == "kernel32.ExitProcess"] == ["0x0"]
    stage = report["stages"][1]
    assert (stage["via"], stage["process"]) == ("thread", "C:\\Windows\\System32\\notepad.exe")
    assert [run["kind"] for run in report["runs"]] == ["module_entry"]


def test_each_api_has_one_project_handler_and_waits_calls_those_it_hooks() -> None:
    """Two project handlers of one API (two probes both handled NtDelayExecution) would leave
    only one of them running, whichever Speakeasy keeps; an API waits.py hooks has its project
    handler called from that hook, so it is not installed a second time."""
    from collections import Counter

    from emulator.backends.speakeasy.setup import HANDLERS
    from emulator.backends.speakeasy.waits import ThreadWaits

    names = Counter((h.module.lower(), h.name) for h in HANDLERS)
    assert [name for name, count in names.items() if count > 1] == []
    composed = {name for name in names if name in ThreadWaits.hooked_apis()}
    assert {("kernel32", "Sleep"), ("kernel32", "SleepEx"), ("ntdll", "NtDelayExecution")} <= composed


@pytest.mark.parametrize("sample", ["edges.exe", "edges32.exe"])
def test_odd_waits_complete_without_a_fault(sample: str) -> None:
    """tests/bins/waits/edges.c: a waited thread with 700 KiB of locals, a chain of 40 threads each
    waiting for the next (past MAX_NESTED_THREADS the next one runs after, and the chain counts the
    levels that ran inside), two threads waiting for each other, 64 threads at once, a bad count
    and array, a NULL handle, the own thread's pseudo handle."""
    from emulator.backends.speakeasy.waits import MAX_NESTED_THREADS

    recording = _emulate(sample)
    assert recording.status == "completed", recording.detail
    verdicts = [str(c.args[0]) for c in _calls(recording, "kernel32.OutputDebugStringA")]
    assert verdicts == [
        "check big_stack_thread: pass",
        f"check deep_chain: pass {MAX_NESTED_THREADS:03d}",
        "check mutual_wait_returns: pass",
        "check wait_64: pass",
        "check wait_bad_count: pass",
        "check wait_null_handle: pass",
        "check wait_self: pass",
    ]
    assert [run["error"] for run in recording.runs] == [None] * len(recording.runs)
