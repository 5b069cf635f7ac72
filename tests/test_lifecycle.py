"""The replay's processes: a signal ends a run with a partial report, no process outlives the
CLI, and no event the child recorded is lost, whatever kills it.

The long-running guest is tests/bins/robust/tickflood.exe (GetTickCount forever), given a long
timeout so only the signal can end it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SIGNAL_END_BOUND_SECONDS = 10.0

REPO = Path(__file__).resolve().parent.parent
TICKFLOOD = REPO / "tests" / "bins" / "robust" / "tickflood.exe"
# Bytes of recorded trace that show the flood is running (some thousands of its API calls).
FLOOD_RUNNING_BYTES = 200_000


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start_long_replay(outdir: Path, recorded_bytes: int = FLOOD_RUNNING_BYTES) -> tuple[subprocess.Popen[str], int]:
    """The CLI on the API flood with long limits; returns it and its emulation child's pid once
    the child is emulating: once the trace being recorded holds ``recorded_bytes`` bytes (the
    flood's calls are coming in; a fixed wait of seconds was longer or, on a loaded machine, too
    short)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "run",
            str(TICKFLOOD),
            "--timeout",
            "600",
            "--max-api-calls",
            "100000000",
            "-o",
            str(outdir),
            "-q",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    child = None
    while time.monotonic() < deadline:
        children = _children(proc.pid)
        if children:
            child = children[0]
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert child is not None, "no emulation child"
    while time.monotonic() < deadline and _recorded(outdir) < recorded_bytes:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert _recorded(outdir) >= recorded_bytes, "the flood did not start"
    assert proc.poll() is None, proc.communicate()
    return proc, child


def _recorded(outdir: Path) -> int:
    """Bytes of the trace the run is recording (its early copy, written as events come in)."""
    return sum(p.stat().st_size for p in outdir.glob(".trace.jsonl*") if p.is_file())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_ends_the_replay_with_a_partial_report(sig: signal.Signals, tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    # SIGTERM waits until the flood has recorded megabytes of calls, to check they are kept (the
    # cost of writing a large partial report per call is tests/test_million.py's)
    proc, child = _start_long_replay(outdir, recorded_bytes=8_000_000 if sig == signal.SIGTERM else FLOOD_RUNNING_BYTES)
    try:
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + sig, err
    # The target is 2 s (measured well under it on a quiet machine); the bound here only proves
    # the run ends promptly rather than at its 600 s timeout, since shared machines are noisy.
    assert took < SIGNAL_END_BOUND_SECONDS, f"the replay took {took:.2f} s to end after {sig.name}"
    assert "Traceback" not in err
    assert err.count("\n") == 1 and sig.name in err, err
    assert not _alive(child), "the emulation child outlived the CLI"
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "interrupted", report["outcome"]
    assert sig.name in report["outcome"]["detail"]
    if sig == signal.SIGTERM:
        assert len(report["api_calls"]) > 0  # what ran before the signal is kept
    assert not list(outdir.glob(".*.partial"))


def test_killed_cli_takes_its_child_and_leaves_no_old_report(tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the child still dies (PR_SET_PDEATHSIG) and the previous run's
    report is gone (the folder was emptied when the run began), so nothing stale looks current."""
    outdir = tmp_path / "out"
    outdir.mkdir()
    (outdir / "report.json").write_text('{"schema": "chainreplay/report/2", "old": true}', encoding="utf-8")
    proc, child = _start_long_replay(outdir)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the emulation child outlived a SIGKILLed CLI"
    assert not (outdir / "report.json").exists()


def _kill_self_at(count: int) -> tuple[Any, Any]:
    """Recorder.emit and Recorder.emit_api (API calls take the second) that SIGKILL their own
    process right after recording event ``count``, whichever records it."""
    from emulator.recorder import Recorder

    original, original_api = Recorder.emit, Recorder.emit_api

    def emit(self: Recorder, cls: type[Any], stage: str | None = None, **fields: Any) -> Any:
        event = original(self, cls, stage, **fields)
        if len(self.events) == count:
            os.kill(os.getpid(), signal.SIGKILL)
        return event

    def emit_api(self: Recorder, *args: Any) -> None:
        original_api(self, *args)
        if len(self.events) == count:
            os.kill(os.getpid(), signal.SIGKILL)

    return emit, emit_api


@pytest.mark.parametrize("count", [1, 700])
def test_sigkilled_child_loses_no_event(count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child dies right after recording event ``count``: the parent has all ``count``, and
    the detail names the signal."""
    from emulator.plan import ReplayPlan
    from emulator.recorder import Recorder
    from emulator.replay import emulate_isolated

    emit, emit_api = _kill_self_at(count)
    monkeypatch.setattr(Recorder, "emit", emit)
    monkeypatch.setattr(Recorder, "emit_api", emit_api)
    plan = ReplayPlan(name="tickflood", target_path=str(TICKFLOOD), emu_path="C:\\tickflood.exe")
    recording = emulate_isolated(plan)
    assert recording.status == "error"
    assert recording.detail == "emulation process killed by SIGKILL"
    assert [e.seq for e in recording.events] == list(range(count))


def test_second_run_into_the_same_outdir_is_refused(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    proc, _ = _start_long_replay(outdir)
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        second = subprocess.run(
            [sys.executable, "-m", "emulator", "run", str(TICKFLOOD), "-o", str(outdir), "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    from emulator.cli import E_BUSY

    assert second.returncode == E_BUSY, second.stderr
    assert second.stderr.count("\n") == 1 and str(outdir) in second.stderr, second.stderr
    assert "another chainreplay run" in second.stderr


# ---- the configured timeout bounds the whole run, analysis and drawing included ---------------


def test_analysis_is_cut_at_the_runs_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An analysis that would run for a minute stops at timeout + grace; the report says so."""
    import emulator.analysis.pipeline as pipeline
    import emulator.replay as replay
    from emulator.limits import Limits
    from emulator.plan import ReplayPlan

    def slow_analysis(*args: Any) -> Any:
        time.sleep(60)
        raise AssertionError("not cut")

    monkeypatch.setattr(pipeline, "analyse", slow_analysis)
    monkeypatch.setattr(replay, "WATCHDOG_GRACE_SECONDS", 1.0)
    hello = REPO / "tests" / "bins" / "hello.dll"
    plan = ReplayPlan(name="hello", target_path=str(hello), emu_path="C:\\hello.dll", limits=Limits(timeout=2))
    began = time.monotonic()
    result = replay.replay_target(plan, tmp_path / "out", isolate=False)
    assert time.monotonic() - began < 30
    report = json.loads(Path(result.report_path).read_text(encoding="utf-8"))
    notes = {n["what"]: n["detail"] for n in report["notes"]}
    assert "deadline" in notes["analysis_cut"], notes
    assert "deadline" in notes["graph"], notes  # past the deadline, nothing is drawn either
    assert report["outcome"]["status"] == "completed"  # the emulation itself finished
    assert report["stages"] == []


def test_graph_caps_cut_and_skip_drawing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A graph past MAX_GRAPH_NODES is cut (note graph_cut); past MAX_DRAWN_NODES it is not drawn."""

    import emulator.analysis.pipeline as pipeline
    import emulator.output as output
    from emulator.analysis.pipeline import Analysis
    from emulator.limits import MAX_DRAWN_NODES
    from emulator.plan import ReplayPlan
    from emulator.replay import replay_target

    monkeypatch.setattr(output, "MAX_GRAPH_NODES", MAX_DRAWN_NODES + 5)
    real = pipeline.analyse

    def big_graph(trace: Any) -> Analysis:
        analysis = real(trace)
        graph = analysis.graph.copy()
        graph.add_nodes_from(
            (f"file:c:\\f{i}", {"kind": "file", "label": f"f{i}"}) for i in range(MAX_DRAWN_NODES + 10)
        )
        return Analysis(analysis.stages, graph, analysis.techniques)

    monkeypatch.setattr(pipeline, "analyse", big_graph)
    hello = REPO / "tests" / "bins" / "hello.dll"
    plan = ReplayPlan(name="hello", target_path=str(hello), emu_path="C:\\hello.dll")
    result = replay_target(plan, tmp_path / "out", isolate=False)
    report = json.loads(Path(result.report_path).read_text(encoding="utf-8"))
    notes = {n["what"]: n["detail"] for n in report["notes"]}
    assert f"kept the first {MAX_DRAWN_NODES + 5}" in notes["graph_cut"], notes
    assert f"more than the {MAX_DRAWN_NODES} drawn" in notes["graph"], notes
    assert len(report["graph"]["nodes"]) == MAX_DRAWN_NODES + 5
    assert not (tmp_path / "out" / "stage_graph.png").exists()


@pytest.mark.parametrize("fails", ["analysis", "drawing"])
def test_the_frozen_trace_is_written_whatever_fails_after_the_emulation(
    fails: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trace is written once the exports' copy is started (beside the drawing); an error
    before that point (analysis, a report that cannot be built) still leaves it on disk."""
    import emulator.output as output
    from emulator.trace import read_trace

    frozen = Path(__file__).resolve().parent / "data" / "frozen" / "winhttp-downloader"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{fails} broke")

    monkeypatch.setattr(output, "_analyse_bounded" if fails == "analysis" else "_drawn", broken)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="broke"):
        output.produce(out, read_trace(frozen), write_frozen=True)
    assert (out / "trace.jsonl").read_bytes() == (frozen / "trace.jsonl").read_bytes()
    assert sorted(p.name for p in (out / "blobs").iterdir()) == sorted(p.name for p in (frozen / "blobs").iterdir())


def test_the_emulation_child_collects_its_young_objects_rarely(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forked child lives as long as its replay: its young generation is collected every
    ``SHORT_LIVED_YOUNG_THRESHOLD`` allocations, not every 700; this process keeps its own."""
    import gc

    import emulator.lifecycle as lifecycle
    import emulator.replay as replay
    from emulator.plan import ReplayPlan

    def emulate(plan: ReplayPlan, **kwargs: Any) -> replay.Recording:
        seen = replay.Recording()
        seen.runs = [{"young": gc.get_threshold()[0], "short_lived": lifecycle.SHORT_LIVED_PROCESS}]
        return seen

    before = gc.get_threshold()
    monkeypatch.setattr(replay, "emulate", emulate)
    plan = ReplayPlan(name="tickflood", target_path=str(TICKFLOOD), emu_path="C:\\tickflood.exe")
    recording = replay.emulate_isolated(plan)
    assert recording.runs == [{"young": lifecycle.SHORT_LIVED_YOUNG_THRESHOLD, "short_lived": True}]
    assert before[0] < lifecycle.SHORT_LIVED_YOUNG_THRESHOLD
    assert gc.get_threshold() == before


# ---- a signal at any moment of a command, before its own handling is set up or after it ------

HELLO_EXE = REPO / "tests" / "bins" / "hello_exe.exe"

# The command line with a signal sent to itself at a chosen moment: right after main()'s first
# line (before any command set up its handling), while analyse reads the trace, or after the
# command's work (its summary).
_SIGNAL_SELF = """
import os, signal, sys
import emulator.lifecycle as lifecycle
sig = signal.Signals[sys.argv[1]]
moment = sys.argv[2]
sys.argv = ["chainreplay", *sys.argv[3:]]
if moment == "first":
    hold = lifecycle.hold_signals
    def hold_then_signal():
        hold()
        os.kill(os.getpid(), sig)
    lifecycle.hold_signals = hold_then_signal
elif moment == "reading":
    import emulator.trace as trace
    read = trace.read_trace
    def signal_then_read(*args, **kwargs):
        os.kill(os.getpid(), sig)
        return read(*args, **kwargs)
    trace.read_trace = signal_then_read
else:
    import emulator.cli.files as files
    show = files._show
    def show_then_signal(*args):
        show(*args)
        os.kill(os.getpid(), sig)
    files._show = show_then_signal
from emulator.cli import main
sys.exit(main())
"""


def _command_signalled(sig: signal.Signals, moment: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", _SIGNAL_SELF, sig.name, moment, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("replayed") / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "run", str(HELLO_EXE), "-o", str(outdir), "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return outdir


@pytest.mark.parametrize(
    ("sig", "moment"),
    [(signal.SIGTERM, "first"), (signal.SIGINT, "first"), (signal.SIGHUP, "first"), (signal.SIGTERM, "reading")],
    ids=["SIGTERM", "SIGINT", "SIGHUP", "SIGTERM-reading"],
)
def test_a_signal_before_analyse_sets_up_its_handling_ends_it_as_later(
    sig: signal.Signals, moment: str, replayed: Path, tmp_path: Path
) -> None:
    """A signal that arrives while the command line still loads (before ``analyse`` takes
    signals), or while it reads the trace, is answered as one during the analysis: 128 + N,
    one line, a partial report."""
    outdir = tmp_path / "out"
    shutil.copytree(replayed, outdir)
    done = _command_signalled(sig, moment, "analyse", outdir, "-q")
    assert done.returncode == 128 + sig, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"analysis interrupted by {sig.name}" in done.stderr and str(outdir) in done.stderr
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "interrupted", report["outcome"]
    assert sig.name in report["outcome"]["detail"]
    assert (outdir / "trace.jsonl").read_bytes() == (replayed / "trace.jsonl").read_bytes()


def test_a_signal_before_run_sets_up_its_handling_ends_the_replay_as_later(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    done = _command_signalled(signal.SIGTERM, "first", "run", HELLO_EXE, "-o", outdir, "-q")
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert done.stderr.count("\n") == 1 and "SIGTERM" in done.stderr, done.stderr
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "interrupted", report["outcome"]


def test_a_signal_after_analyse_wrote_everything_is_still_answered(replayed: Path, tmp_path: Path) -> None:
    """After the analysis (its summary printed), the report is complete and the exit is 128 + N."""
    outdir = tmp_path / "out"
    shutil.copytree(replayed, outdir)
    done = _command_signalled(signal.SIGTERM, "after", "analyse", outdir, "-q")
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert done.stderr == "chainreplay: interrupted by SIGTERM\n"
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "completed", report["outcome"]
