"""Fast mode and faithful mode record the same behaviour.

Fast mode removes Speakeasy's per-instruction Python hooks (docs/performance.md); faithful mode
keeps them. For every scenario the two must give the same event stream: the same API calls with
the same arguments and return values, the same file, registry, memory, network and stage events,
in the same order. Only the instruction count differs (fast mode does not count).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.events import ApiCall, StageStart
from emulator.replay import Recording, emulate
from emulator.scenario import load_scenario
from emulator.trace import read_trace

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(p.parent.name for p in (ROOT / "scenarios").glob("*/scenario.toml"))
# Known divergence (docs/limitations.md, "C++ programs"), already on main before these scenarios
# existed: in the C++ loader's std::ifstream -> std::vector copy, fast mode records a second input
# of the guest-written vector (a read of the image's .rdata as a source) that faithful mode does
# not; every other event, the stages and the lineage agree. Strict: a fix makes these pass.
FAST_FLOW_INPUTS_DIVERGE = {"cxx-loader", "cxx-loader-x86"}
MODE_SCENARIOS = [
    pytest.param(
        name,
        marks=pytest.mark.xfail(strict=True, reason="fast mode records one more guest_write input"),
    )
    if name in FAST_FLOW_INPUTS_DIVERGE
    else name
    for name in SCENARIOS
]
HELLO_DLL = ROOT / "tests" / "bins" / "hello.dll"


def _replay(name: str, mode: str) -> Recording:
    plan = load_scenario(ROOT / "scenarios" / name, mode=mode)
    return emulate(plan)


def _comparable(recording: Recording) -> list[dict[str, object]]:
    return [event.model_dump() for event in recording.events]


@pytest.mark.parametrize("name", MODE_SCENARIOS)
def test_fast_and_faithful_modes_record_the_same_events(name: str, scenario_outdir: Callable[[str], Path]) -> None:
    # The fast replay is the session's shared one (fast is the default mode), read back from its
    # frozen trace; only the faithful replay is run here.
    fast = read_trace(scenario_outdir(name))
    assert fast.header.mode == "fast"
    faithful = _replay(name, "faithful")
    fast_events = [event.model_dump() for event in fast.events]
    assert any(isinstance(e, ApiCall) for e in fast.events), "the scenario made no API call"
    assert any(isinstance(e, StageStart) for e in fast.events)
    assert fast_events == _comparable(faithful)
    assert fast.blobs == faithful.blobs
    header = fast.header
    assert (header.status, header.detail, header.limit) == (faithful.status, faithful.detail, faithful.limit)
    assert header.instructions is None
    assert isinstance(faithful.instructions, int) and faithful.instructions > 0


def test_instruction_limit_fires_in_both_modes(tmp_path: Path) -> None:
    """A runaway loop is stopped by the instruction limit, named as such, in either mode."""
    from emulator.limits import Limits

    plan = load_scenario(ROOT / "scenarios" / "benign-dll")
    for mode in ("fast", "faithful"):
        limited = plan.model_copy(update={"mode": mode, "limits": Limits(max_instructions=500)})
        recording = emulate(limited)
        assert recording.status == "instruction_limit", (mode, recording.status, recording.detail)
        assert recording.limit == "max_instructions"


# x64 shellcode: read address 0 (faults), and a second body that writes to address 0 after an
# API-free loop; both end their run with a fault that Speakeasy handles in its deferred work.
FAULTING_SHELLCODE = {
    "invalid_read": bytes.fromhex("48 8b 04 25 00 00 00 00 c3"),
    "loop_then_invalid_write": bytes.fromhex("b9 00 10 00 00 ff c9 75 fc 48 89 04 25 10 00 00 00 c3"),
    "invalid_jump": bytes.fromhex("48 c7 c0 00 10 00 00 ff e0"),  # to 0x1000: below 64 KiB, never mapped
}


@pytest.mark.parametrize("name", sorted(FAULTING_SHELLCODE))
def test_faults_end_the_same_way_in_both_modes(name: str, tmp_path: Path) -> None:
    from emulator.plan import ReplayPlan

    sample = tmp_path / f"{name}.bin"
    sample.write_bytes(FAULTING_SHELLCODE[name])
    plan = ReplayPlan(name=name, target_path=str(sample), target_kind="shellcode", arch="x64", emu_path="C:\\sc.bin")
    fast = emulate(plan)
    faithful = emulate(plan.model_copy(update={"mode": "faithful"}))
    assert _comparable(fast) == _comparable(faithful)
    assert (fast.status, fast.detail) == (faithful.status, faithful.detail)
    assert [r["error"] for r in fast.runs] == [r["error"] for r in faithful.runs]
    assert any(r["error"] for r in fast.runs), fast.runs


@pytest.mark.parametrize(
    ("limits", "status"),
    [
        # The loop runs on the native byte budget (60M bytes of code), then Unicorn counts 60M more.
        ({"max_instructions": 60_000_000, "timeout": 60}, "instruction_limit"),
        # The fast-mode watchdog stops Unicorn at the wall-clock deadline.
        ({"max_instructions": 10**15, "timeout": 1.0}, "timeout"),
    ],
)
def test_fast_mode_stops_a_runaway_loop(limits: dict[str, float], status: str, tmp_path: Path) -> None:
    from emulator.limits import Limits
    from emulator.plan import ReplayPlan

    sample = tmp_path / "spin.bin"
    sample.write_bytes(bytes.fromhex("eb fe"))  # jmp $
    plan = ReplayPlan(
        name="spin",
        target_path=str(sample),
        target_kind="shellcode",
        arch="x64",
        emu_path="C:\\spin.bin",
        limits=Limits(**limits),
    )
    recording = emulate(plan)
    assert recording.status == status, recording.detail
    assert recording.limit == ("max_instructions" if status == "instruction_limit" else "timeout")


def test_fast_mode_resumes_exactly_after_many_preemptions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fast mode stops and resumes guest code without running an instruction twice (issue 18).

    Unicorn checks for a stop after every memory access and rewinds to the start of the
    instruction although its store is done, so a stop from another thread, resumed at the
    reported pc, repeated read-modify-write instructions and RC4 came out wrong. The runner's
    stops are now taken at block boundaries by its native budget hook. Here the guest is
    preempted every 0.5 ms while RC4 runs over 256 KiB: the checksum must be RC4's.
    """
    from bench.run import BENCH, RC4_KEY, fnv_words, plaintext, rc4_reference
    from emulator.backends.speakeasy import budget, runner
    from emulator.plan import ExportCall

    if not budget._host_supported():
        pytest.skip("no native budget on this host: fast mode never resumes a preempted stretch")
    size = 256 * 1024
    preemptions: list[int] = []
    original_close = runner.NativeRunner.close

    def close(self: runner.NativeRunner) -> None:
        preemptions.append(self.preemptions)
        original_close(self)

    monkeypatch.setattr(runner, "PREEMPT_EVERY_SECONDS", 0.0002)
    # The watchdog preempts at its polls: every 0.5 ms, so a fast host still sees dozens (at the
    # default 5 ms a host that runs this RC4 in 45 ms saw 9).
    monkeypatch.setattr(runner, "WATCHDOG_POLL_SECONDS", 0.0005)
    monkeypatch.setattr(runner.NativeRunner, "close", close)
    base = load_scenario(BENCH / "scenarios" / "rc4")
    plan = base.model_copy(update={"exports": [ExportCall(name="RunRc4Size", args=[size])]})
    recording = emulate(plan)
    expected = f"benchwork: rc4 checksum {fnv_words(rc4_reference(plaintext(size), RC4_KEY)):#010x}"
    debug = [e.args for e in recording.events if isinstance(e, ApiCall) and e.api.endswith("OutputDebugStringA")]
    assert recording.status == "completed", recording.detail
    assert sum(preemptions) >= 20, preemptions
    assert debug == [[expected]]


def test_hooks_added_over_slow_translations_retranslate_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A memory hook added while every cached block was translated with a memory hook in place
    (Unicorn's slow memory path, which calls every hook there is at each access) needs no fresh
    translations; one added while fast-path code may be cached does (the runner's
    ``hooks_added``). thread-variants arms read hooks from inside a write hook's first hit: with
    no retranslation at all its ``guest_write`` buffers lose their inputs (the events compared
    with faithful mode above differ), and here most additions are served without one."""
    from emulator.backends.speakeasy.runner import NativeRunner

    added: list[bool] = []  # for each addition: whether fast-path code may have been cached
    retranslated: list[bool] = []
    hooks_added, retranslate = NativeRunner.hooks_added, NativeRunner.retranslate

    def counting_hooks_added(self: NativeRunner) -> None:
        added.append(self.fast_code_cached)
        before = len(retranslated)
        hooks_added(self)
        assert (len(retranslated) > before) == added[-1]

    def counting_retranslate(self: NativeRunner) -> None:
        retranslated.append(True)
        retranslate(self)

    monkeypatch.setattr(NativeRunner, "hooks_added", counting_hooks_added)
    monkeypatch.setattr(NativeRunner, "retranslate", counting_retranslate)
    recording = _replay("thread-variants", "fast")
    assert recording.status == "completed"
    writes = [e for e in recording.events if getattr(e, "source", None) == "guest_write"]
    assert writes and all(e.input_sha256 for e in writes)  # every decoder's input was read
    assert True in added, "an addition over fast-path code retranslates"
    assert added.count(False) > added.count(True), "most additions come over slow-path code"


def test_the_guest_machine_reports_only_write_hooks_that_exist() -> None:
    """The runner skips a retranslation on the word of ``write_hooked``: a code range whose hook
    went after too many writes (``dirty``, rescanned at the next API call) holds no hook, though
    its stale handle stays in ``write_watched`` until then."""
    from typing import Any, cast

    from emulator.backends.speakeasy.guest import GuestMachine

    nothing = cast(Any, None)
    machine = GuestMachine(nothing, nothing, nothing, x64=True)
    assert not machine.write_hooked()
    machine.write_watched[(0x1000, 0x2000)] = 7
    assert machine.write_hooked()
    machine.dirty.add((0x1000, 0x2000))
    assert not machine.write_hooked()
    machine.write_watched[(0x3000, 0x4000)] = 8
    assert machine.write_hooked()
