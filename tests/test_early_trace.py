"""What a replay writes while its emulation child still runs (``emulator.output.EarlyTrace``):
blobs, network bodies and the trace's event lines, so that less is left once the child is done.
The folder must be byte for byte what writing everything at the end gives."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from emulator.eventlog import EventLog
from emulator.output import EARLY_TRACE_FILE, EarlyTrace, produce
from emulator.trace import Trace, read_trace

REPO = Path(__file__).resolve().parent.parent
FROZEN_3CX = REPO / "tests" / "data" / "frozen" / "3cx"
SCENARIO_3CX = REPO / "scenarios" / "3cx"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _streamed(trace: Trace, splits: list[int], early: EarlyTrace, hostile: bool) -> Trace:
    """``trace``'s events and blobs as a replay's parent receives them, ``early`` advanced at
    each of ``splits``; with ``hostile``, a blob named outside blobs/ and a blob whose bytes are
    sent again, changed, after they were written early."""
    events, blobs = EventLog(), {}
    pending = dict(trace.blobs)
    if hostile:
        pending["../outside"] = b"not a sha256 name"
    changed = next(iter(pending))
    for seq, event in enumerate(trace.events):
        events.append(event)
        for name in list(pending)[:1]:  # one blob per event, in the order they were stored
            blobs[name] = pending.pop(name)
        if seq in splits:
            early.advance(events, blobs)
    blobs.update(pending)
    if hostile:
        blobs[changed] = blobs[changed] + b" sent again"
    early.close()
    header = trace.header.model_copy(update={"blobs": sorted(blobs)})
    return Trace(header, events, blobs)


@pytest.mark.parametrize(
    ("splits", "hostile"),
    [([0], False), ([10, 120, 300], False), ([441], False), ([50, 200], True), ([], False)],
)
def test_a_folder_written_partly_early_is_the_one_written_at_the_end(
    splits: list[int], hostile: bool, tmp_path: Path
) -> None:
    frozen = read_trace(FROZEN_3CX)
    early_out, late_out = tmp_path / "early", tmp_path / "late"
    early_out.mkdir()
    early = EarlyTrace(early_out.resolve())
    streamed = _streamed(frozen, splits, early, hostile)
    if splits and splits[-1] >= 120 and not hostile:  # the first network exchange is event 98
        assert (early_out / EARLY_TRACE_FILE).is_file() and early.lines == splits[-1] + 1
        assert any((early_out / "blobs").iterdir()) and any((early_out / "network").iterdir())
    assert not (early_out / "outside.bin").exists()  # a name that is not a sha256: left to the end
    produce(early_out, streamed, write_frozen=True, generated_at="SNAPSHOT", early=early)
    late_out.mkdir()
    late = _streamed(frozen, [], EarlyTrace(tmp_path), hostile)
    produce(late_out, late, write_frozen=True, generated_at="SNAPSHOT")
    files = _files(early_out)
    assert EARLY_TRACE_FILE not in files
    assert files == _files(late_out)
    if not hostile:
        assert files["trace.jsonl"] == (FROZEN_3CX / "trace.jsonl").read_bytes()


def _kill_child_at(count: int) -> Any:
    """A Recorder.emit that SIGKILLs the emulation child right after the first event it records
    (API calls take another path) once ``count`` are recorded."""
    from emulator.recorder import Recorder

    original = Recorder.emit

    def emit(self: Recorder, cls: type[Any], stage: str | None = None, **fields: Any) -> Any:
        event = original(self, cls, stage, **fields)
        if len(self.events) >= count:
            os.kill(os.getpid(), signal.SIGKILL)
        return event

    return emit


def test_a_replay_whose_child_is_killed_midway_keeps_what_was_written_early(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The child dies after about 300 events (of 449): the blobs, network bodies and trace lines written while
    it ran are in the folder, which is what the replay writes with nothing written early."""
    import emulator.output
    from emulator.recorder import Recorder
    from emulator.replay import replay_target
    from emulator.scenario import load_scenario

    monkeypatch.setattr(Recorder, "emit", _kill_child_at(300))
    advanced: list[EarlyTrace] = []
    original = EarlyTrace.advance

    def advance(self: EarlyTrace, events: EventLog, blobs: dict[str, bytes]) -> None:
        original(self, events, blobs)
        advanced.append(self)

    monkeypatch.setattr(EarlyTrace, "advance", advance)
    plan = load_scenario(SCENARIO_3CX)
    replay_target(plan, tmp_path / "early")
    assert advanced and advanced[-1].lines > 0 and advanced[-1].blobs and advanced[-1].bodies
    monkeypatch.setattr(emulator.output, "EARLY_TRACE", False)
    replay_target(plan, tmp_path / "late")
    early, late = _files(tmp_path / "early"), _files(tmp_path / "late")
    assert b'"status":"error"' in early["trace.jsonl"].split(b"\n")[0]
    assert 301 <= early["trace.jsonl"].count(b"\n") < 450  # the header and the events received
    assert EARLY_TRACE_FILE not in early
    for name in set(early) | set(late):
        if name not in ("report.json", "report.html"):  # they say when they were generated
            assert early.get(name) == late.get(name), name
    read_trace(tmp_path / "early")  # every blob the trace cites, with its sha256
