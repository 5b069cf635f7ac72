"""Large traces in bounded memory (issue 18, target 3): a trace of tens of thousands of API calls
is read, analysed and written (report.json, drawings, exports) without a pydantic model per
call, and the compact paths write exactly what the models would.

The large trace is a real frozen replay (tests/data/frozen/3cx) with API-call lines appended:
a third repeat one call exactly, two thirds differ in their arguments or return value.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from emulator.analysis.pipeline import analyse
from emulator.document import ApiCallRecords, build_report
from emulator.eventlog import EventLog, api_calls_where, of_type, stage_bounds, stage_lookup
from emulator.events import ApiCall, Note, RegistryAccess
from emulator.output import produce, write_atomically
from emulator.report import EAGER_REPORT_BYTES, Containment, FileApiCalls, Report, api_call_rows, api_calls_at
from emulator.trace import TRACE_FILE, Trace, read_trace, trace_lines

FROZEN = Path(__file__).parent / "data" / "frozen"
CALLS = 20_000
# Bytes of Python heap per added API call at the peak of reading the trace, analysing it and
# writing report.json. Holding each call as a model (and a report record) took over 2,000.
MAX_PEAK_BYTES_PER_CALL = 500


def _grown_trace(folder: Path, calls: int) -> Path:
    """tests/data/frozen/3cx with ``calls`` API-call lines appended, in ``folder``."""
    source = FROZEN / "3cx"
    shutil.copytree(source / "blobs", folder / "blobs")
    lines = (source / TRACE_FILE).read_text(encoding="ascii").splitlines()
    header = json.loads(lines[0])
    first = header["events"]
    header["events"] = first + calls
    with (folder / TRACE_FILE).open("w", encoding="ascii") as out:
        out.write(json.dumps(header, separators=(",", ":")) + "\n")
        out.writelines(line + "\n" for line in lines[1:])
        for seq in range(first, first + calls):
            kind = seq % 3
            if kind == 0:
                call = {"api": "kernel32.GetCurrentThreadId", "args": [], "ret": "0x4ec"}
            elif kind == 1:
                call = {"api": "kernel32.GetTickCount", "args": [], "ret": hex(1000 + seq)}
            else:
                call = {"api": "kernel32.WriteFile", "args": ["0x84", hex(0x10000 + seq), "0x20", "0x0"], "ret": "0x1"}
            event = {"seq": seq, "stage": "s1", "pc": 0x180001483, "type": "api", **call}
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
    return folder


def test_a_large_trace_is_processed_without_a_model_per_call(tmp_path: Path) -> None:
    small = tmp_path / "small"
    large = tmp_path / "large"
    small.mkdir()
    shutil.copytree(FROZEN / "3cx", small, dirs_exist_ok=True)
    large.mkdir()
    _grown_trace(large, CALLS)

    def peak(folder: Path) -> int:
        tracemalloc.start()
        try:
            trace = read_trace(folder)
            report = build_report(trace, analyse(trace), [], Containment(isolation="in-process"), "SNAPSHOT")
            write_atomically(folder / "report.json", report.json_chunks())
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(small)  # imports and caches first: the comparison below is of the data alone
    per_call = (peak(large) - peak(small)) / CALLS
    assert per_call < MAX_PEAK_BYTES_PER_CALL, f"{per_call:.0f} bytes of heap per API call"
    produce(large, read_trace(large), generated_at="SNAPSHOT")  # and every other output

    report = json.loads((large / "report.json").read_text(encoding="utf-8"))
    assert report["stats"]["api_calls"] == len(report["api_calls"]) > CALLS
    # the last WriteFile appended (one of the last three calls, whatever the frozen trace's length)
    last = next(c for c in reversed(report["api_calls"][-3:]) if c["api"] == "kernel32.WriteFile")
    assert last["args"] == ["0x84", hex(0x10000 + last["seq"]), "0x20", "0x0"]
    # The analysis of the chain is that of the frozen replay: the calls added change no stage.
    frozen = json.loads((FROZEN / "3cx" / "report.json").read_text(encoding="utf-8"))
    assert [s["sha256"] for s in report["stages"]] == [s["sha256"] for s in frozen["stages"]]
    assert report["attack"] == frozen["attack"]


def test_compact_paths_write_what_the_models_write(tmp_path: Path) -> None:
    """trace.jsonl and report.json from the compact log equal the text of the models, for
    strings JSON escapes (quotes, controls, non-ASCII) and absent pc / return values."""
    trace = read_trace(FROZEN / "3cx")
    odd = [
        ApiCall(seq=0, stage="s0", pc=None, api="kernel32.Fé", args=['"\\\n\x00é😀\u2028', ""], ret=None),
        Note(seq=1, stage="s0", what="x", detail="ü"),
        ApiCall(seq=2, stage="s0", pc=5, api="a.b", args=["x", "y"], ret="0x1"),
        ApiCall(seq=3, stage="s0", pc=5, api="a.b", args=["x", "y"], ret="0x1"),
    ]
    models = list(trace.events) + [e.model_copy(update={"seq": e.seq + len(trace.events)}) for e in odd]
    header = trace.header.model_copy(update={"events": len(models)})
    as_models = Trace(header, models, trace.blobs)
    compact = Trace(header, EventLog(models), trace.blobs)
    assert trace_lines(compact) == trace_lines(as_models)

    (tmp_path / TRACE_FILE).write_text("".join(trace_lines(compact)), encoding="ascii")
    shutil.copytree(FROZEN / "3cx" / "blobs", tmp_path / "blobs")
    back = read_trace(tmp_path)
    assert isinstance(back.events, EventLog)
    assert back.events == models

    analysis = analyse(as_models)
    report = build_report(compact, analysis, [], Containment(isolation="child process"), "T")
    assert isinstance(report.api_calls, ApiCallRecords)
    eager = report.model_copy(update={"api_calls": list(report.api_calls)})
    assert report.to_json() == eager.model_dump_json(indent=2, by_alias=True) + "\n"
    # reading some calls, or every call as rows, gives what the records give
    seqs = {c.seq for c in eager.api_calls[::7]} | {-1, 1, len(models) + 5}  # and seqs of no call
    assert api_calls_at(report, seqs) == api_calls_at(eager, seqs) and len(api_calls_at(report, seqs)) > 10

    def rows(of: Report) -> list[tuple[Any, ...]]:
        return [(seq, stage, api, list(args), ret) for seq, stage, api, args, ret in api_call_rows(of)]

    assert rows(report) == rows(eager)


def test_the_analysis_asks_the_log_what_it_needs() -> None:
    """of_type, api_calls_where, stage_bounds and stage_lookup give the same over an EventLog as
    over the list of models."""
    events = list(read_trace(FROZEN / "3cx").events)
    log = EventLog(events)
    assert [e for _, e in of_type(log, RegistryAccess)] == [e for _, e in of_type(events, RegistryAccess)]
    assert [i for i, _ in of_type(log, ApiCall, Note)] == [i for i, _ in of_type(events, ApiCall, Note)]

    def wanted(api: str) -> bool:
        return "virtual" in api.lower() or api.endswith("Sleep")

    picked = list(api_calls_where(log, wanted))
    assert picked and picked == list(api_calls_where(events, wanted))
    assert stage_bounds(log) == stage_bounds(events)
    owner = stage_lookup(log)
    assert [owner(e.seq) for e in events] == [e.stage for e in events]
    assert owner(len(events)) is None


def test_a_large_report_file_keeps_its_calls_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Report.from_file of a large report reads api_calls from the file when iterated: same
    records, same text written back."""
    _grown_trace(tmp_path, 3_000)
    produce(tmp_path, read_trace(tmp_path), generated_at="SNAPSHOT")
    path = tmp_path / "report.json"
    eager = Report.from_file(path)
    assert path.stat().st_size < EAGER_REPORT_BYTES
    monkeypatch.setattr("emulator.report.EAGER_REPORT_BYTES", 1024)
    lazy = Report.from_file(path)
    assert isinstance(lazy.api_calls, FileApiCalls)
    assert len(lazy.api_calls) == len(eager.api_calls)
    assert list(lazy.api_calls) == list(eager.api_calls)
    assert lazy.api_calls[-1] == eager.api_calls[-1]
    assert list(itertools.islice(lazy.api_calls, 3)) == eager.api_calls[:3]
    assert lazy.to_json() == path.read_text(encoding="utf-8")


def test_outputs_build_only_the_calls_they_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysis, every export, the baseline and the expectations over a large trace build a
    model or a record only for the calls they use. Building one per call made a SIGTERMed flood
    of a million calls take over 7 s to write its partial report (0.5 s without)."""
    import emulator.document
    import emulator.eventlog
    from emulator.check import normalise
    from emulator.expect import Expect, evaluate
    from emulator.export.detections.events import process_starts

    built = {"models": 0, "records": 0}
    model, record = emulator.eventlog.make_api_call, emulator.document._record

    def counted_model(*args: Any) -> Any:
        built["models"] += 1
        return model(*args)

    def counted_record(*args: Any) -> Any:
        built["records"] += 1
        return record(*args)

    monkeypatch.setattr(emulator.eventlog, "make_api_call", counted_model)
    monkeypatch.setattr(emulator.document, "_record", counted_record)
    _grown_trace(tmp_path, CALLS)
    trace = read_trace(tmp_path)
    produce(tmp_path, trace, generated_at="SNAPSHOT")
    report = build_report(trace, analyse(trace), [], Containment(isolation="in-process"), "SNAPSHOT")
    process_starts(report)
    apis = normalise(report)["stages"]
    results = evaluate(Expect(apis={"s1": ["WriteFile"]}), report)
    assert built["models"] + built["records"] < CALLS // 20, built
    # and what they read is every call
    assert results and not any(r.failed for r in results), results
    assert sum(len(stage["apis"]) for stage in apis) >= CALLS  # the three appended calls alternate


def test_the_parent_checks_each_streamed_api_call() -> None:
    """What the emulation child sends is untrusted: an API call of the wrong types or out of
    order is refused (the replay's outcome then names the refusal)."""
    from emulator.replay import _take_api_call

    log = EventLog()
    _take_api_call(log, ("a", 0, "s0", 0x401000, "kernel32.Sleep", ["0x3e8"], None, {}))
    assert log[0] == ApiCall(seq=0, stage="s0", pc=0x401000, api="kernel32.Sleep", args=["0x3e8"], ret=None)
    for bad in (
        ("a", 1, "s0", None, "kernel32.Sleep", ["0x3e8", 5], None, {}),  # an argument that is not text
        ("a", 1, "s0", "0x1", "kernel32.Sleep", [], None, {}),  # a pc that is not an int
        ("a", 1, "s0", None, "kernel32.Sleep", [], None, []),  # blobs that are not a dict
        ("a", 2, "s0", None, "kernel32.Sleep", [], None, {}),  # out of order
    ):
        with pytest.raises(ValueError):
            _take_api_call(log, bad)
    assert len(log) == 1
