"""C++ programs (mingw-w64 g++, libstdc++ and winpthreads linked statically), x64 and x86: the
probes in tests/bins/cxx/ (``make -C tests/bins/cxx`` rebuilds them byte for byte) print one
verdict a check, and scenarios/cxx-loader is a C++ loader chain.

What they met before: on x64 every ``throw`` ended in ``abort()`` (``RtlUnwindEx`` had no
handler, ``RtlCaptureContext`` zeroed the record); ``std::random_device`` called ``rand_s`` (no
handler: ``unsupported_api``); ``std::this_thread::sleep_for`` returned at once (a wait on an
event nothing sets answered ``WAIT_OBJECT_0``); every ``std::thread`` ran twice (``_beginthreadex``
ignored ``CREATE_SUSPENDED``, and the second run started at 0: a fault); ``std::filesystem``
failed on ``errno`` (``ENOMEM`` from the start, never set), ``MoveFileEx`` moved nothing,
``_wfullpath`` and ``_wfindfirst64`` had no handler; static destructors never ran (``exit`` ran
no ``_onexit`` function).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.events import ApiCall, FileAccess, StageStart
from emulator.plan import ReplayPlan
from emulator.replay import Recording, emulate

ROOT = Path(__file__).resolve().parent.parent
BINS = ROOT / "tests" / "bins" / "cxx"
EXCEPTION_CHECKS = [
    "throw_int_across_frames",
    "catch_by_base",
    "catch_order",
    "catch_all",
    "rethrow",
    "through_callback",
    "through_function_pointer",
    "nested_try",
    "exception_ptr",
    "library_throws",
    "noexcept_inner",
    "many_throws",
    "done",
]
RUNTIME_CHECKS = [
    "static_constructor",
    "local_static",
    "thread_local",
    "several_threads",
    "mutex_condition_variable",
    "async_future",
    "chrono_clocks",
    "random_device",
    "strings_and_vectors",
    "string_stream",
    "file_streams",
    "filesystem",
    "smart_pointers_and_virtuals",
    "sort_lambda",
    "done",
    "static_destructor",
]
GCC_THROW = "0x20474343"
_CACHE: dict[tuple[str, str], Recording] = {}


def _emulate(sample: str, mode: str = "fast") -> Recording:
    """One replay of ``sample`` per mode, shared by every test of this module."""
    key = (sample, mode)
    if key not in _CACHE:
        plan = ReplayPlan(
            name=Path(sample).stem,
            target_path=str(BINS / sample),
            emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
            mode=mode,  # type: ignore[arg-type]
        )
        _CACHE[key] = emulate(plan)
    return _CACHE[key]


def _calls(recording: Recording, api: str) -> list[ApiCall]:
    return [e for e in recording.events if isinstance(e, ApiCall) and e.api == api]


def _verdicts(recording: Recording) -> list[tuple[str, str]]:
    """(check, verdict) in the order the probe printed them."""
    out = []
    for call in _calls(recording, "kernel32.OutputDebugStringA"):
        name, _, verdict = str(call.args[0]).removeprefix("check ").partition(": ")
        out.append((name, verdict))
    return out


@pytest.mark.parametrize(
    ("sample", "mode"),
    [
        ("exceptions.exe", "fast"),
        ("exceptions32.exe", "fast"),
        ("exceptions.exe", "faithful"),
        ("exceptions32.exe", "faithful"),
    ],
)
def test_every_exception_check_passes(sample: str, mode: str) -> None:
    """Throw / catch across frames with the destructors run in order, by base class, rethrow,
    catch(...), through a std::function and a function pointer, nested, exception_ptr, a throw
    from the library, 50 throws in a loop: x64 through the unwind tables, x86 through DWARF."""
    recording = _emulate(sample, mode)
    assert recording.status == "completed", recording.detail
    assert _verdicts(recording) == [(name, "pass") for name in EXCEPTION_CHECKS]
    assert not _calls(recording, "msvcrt.abort")
    assert [c.args[0] for c in _calls(recording, "msvcrt.exit")] == ["0x0"]


def test_x64_exceptions_unwind_through_the_rtl_apis() -> None:
    """On x64 each throw is GCC's exception raised for the dispatcher, then unwound by
    RtlUnwindEx: once to each frame with destructors to run (a collided unwind from its unwind
    handler), whose landing pad goes on with RtlCaptureContext + RtlUnwindEx, and once to the
    catch. Nothing of it is served from a signature."""
    recording = _emulate("exceptions.exe")
    raises = _calls(recording, "kernel32.RaiseException")
    assert raises and all(c.args[0] in (GCC_THROW, "0x21474343") for c in raises)
    unwinds = _calls(recording, "kernel32.RtlUnwindEx")
    assert len(unwinds) > len([c for c in raises if c.args[0] == GCC_THROW])
    assert _calls(recording, "kernel32.RtlCaptureContext")  # _Unwind_Resume after a landing pad
    notes = [e for e in recording.events if getattr(e, "what", "") == "signature_emulated"]
    assert not [n for n in notes if "Rtl" in n.detail]


def test_x86_exceptions_need_no_windows_unwinding() -> None:
    """i686 mingw-w64 unwinds with DWARF tables in libgcc itself: no Windows exception at all."""
    recording = _emulate("exceptions32.exe")
    assert not _calls(recording, "kernel32.RaiseException")
    assert not _calls(recording, "kernel32.RtlUnwindEx")


@pytest.mark.parametrize("sample", ["runtime.exe", "runtime32.exe"])
def test_every_runtime_check_passes(sample: str) -> None:
    """Static constructors and (at exit) destructors, local statics, thread_local, std::thread,
    mutex + condition_variable, std::async, the chrono clocks across sleep_for, random_device,
    heavy string / vector / map use, string streams, file streams, std::filesystem, smart
    pointers, virtual calls, std::sort."""
    recording = _emulate(sample)
    assert recording.status == "completed", recording.detail
    assert _verdicts(recording) == [(name, "pass") for name in RUNTIME_CHECKS]


@pytest.mark.parametrize("sample", ["runtime.exe", "runtime32.exe"])
def test_threads_created_suspended_run_once(sample: str) -> None:
    """winpthreads creates each thread with _beginthreadex(CREATE_SUSPENDED) and resumes it:
    seven std::threads, seven threads (not a second run of each from its resume)."""
    recording = _emulate(sample)
    created = _calls(recording, "msvcrt._beginthreadex")
    assert len(created) == 7
    assert all(int(c.args[4], 16) & 0xFFFFFFFF == 4 for c in created)
    assert len(_calls(recording, "kernel32.ResumeThread")) == 7


@pytest.mark.parametrize("sample", ["runtime.exe", "runtime32.exe"])
def test_sleep_for_times_out_on_its_event(sample: str) -> None:
    """sleep_for(50 ms) is winpthreads' wait on an event nothing sets: WAIT_TIMEOUT, and the
    virtual clock moved by the timeout (steady_clock saw >= 40 ms)."""
    recording = _emulate(sample)
    waits = [c for c in _calls(recording, "kernel32.WaitForSingleObject") if c.args[1] == "0x32"]
    assert [c.ret for c in waits] == ["0x102"]


@pytest.mark.parametrize("sample", ["runtime.exe", "runtime32.exe"])
def test_filesystem_calls_are_file_events(sample: str) -> None:
    """std::filesystem: the file written in the new folder, moved by MoveFileExW (recorded as a
    move: the new file created and written), listed by _wfindfirst / _wfindnext."""
    recording = _emulate(sample)
    moved = "C:\\Users\\Public\\cxx-fs\\b.txt"
    ops = [e.op for e in recording.events if isinstance(e, FileAccess) and e.path == moved]
    assert ops[:2] == ["create", "write"]
    finds = [c for c in recording.events if isinstance(c, ApiCall) and "findnext" in c.api]
    assert [c.ret for c in finds][-1] in ("0xffffffff", "0xffffffffffffffff")


def test_the_loader_chain_finds_its_stage_after_a_caught_exception() -> None:
    """scenarios/cxx-loader (x64): a decoder throws and is caught before the payload is decoded
    and run; on main the throw aborted the loader (one stage). Its stage graph, lineage and
    techniques are checked with every scenario's (tests/test_scenarios.py, test_lineage.py)."""
    from emulator.scenario import load_scenario

    plan = load_scenario(ROOT / "scenarios" / "cxx-loader")
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    apis = [e.api for e in recording.events if isinstance(e, ApiCall)]
    assert "kernel32.RtlUnwindEx" in apis
    assert apis.index("kernel32.RtlUnwindEx") < apis.index("kernel32.VirtualAlloc")
    stages = [e for e in recording.events if isinstance(e, StageStart)]
    assert [s.kind for s in stages] == ["pe", "shellcode"]
    dropped = [e for e in recording.events if isinstance(e, FileAccess) and e.op == "write"]
    assert [e.path for e in dropped] == ["C:\\Users\\Public\\lineage_cxx.txt"]
