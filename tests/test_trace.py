"""The frozen trace: every replay writes OUTDIR/trace.jsonl + blobs/, and ``chainreplay analyse``
rebuilds report.json and every rendered file from them alone, with no engine importable.

The scenario replays are the session's (tests/conftest.py ``scenario_outdir``); each test works
on a copy of an output folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator import events as ev
from emulator.cli import E_BAD_INPUT, E_BUSY, E_OK, main
from emulator.trace import BLOB_DIR, TRACE_FILE, EntryOrigin, Trace, TraceHeader, read_trace, trace_lines

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = sorted(p.parent.name for p in (REPO / "scenarios").glob("*/scenario.toml"))
FROZEN_INPUTS = {TRACE_FILE, BLOB_DIR}

# Runs the CLI with speakeasy and unicorn unimportable, and proves they were.
NO_ENGINE = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("speakeasy", "unicorn"):
            raise ImportError(f"{name} is blocked by this test")
        return None
sys.meta_path.insert(0, Block())
for name in ("speakeasy", "unicorn"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        sys.exit(f"{name} importable")
from emulator.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("speakeasy", "unicorn"))
sys.exit(f"engine modules loaded: {loaded}" if loaded else code)
"""


def frozen_copy(src: Path, dst: Path) -> Path:
    """Only the trace and its blobs of the output folder ``src``, copied to ``dst``."""
    dst.mkdir(parents=True)
    shutil.copy(src / TRACE_FILE, dst / TRACE_FILE)
    shutil.copytree(src / BLOB_DIR, dst / BLOB_DIR)
    return dst


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file of an output folder but the run's own bookkeeping (its lock and marker)."""
    from emulator.output import LOCK_FILE, MARKER_FILE

    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (LOCK_FILE, MARKER_FILE)
    }


def without_time(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "generated_at"}


@pytest.mark.parametrize("name", SCENARIOS)
def test_analysing_a_frozen_replay_rebuilds_the_same_outputs(
    name: str, scenario_outdir: Callable[[str], Path], tmp_path: Path
) -> None:
    replayed = scenario_outdir(name)
    out = frozen_copy(replayed, tmp_path / "out")
    assert main(["analyse", str(out), "-q"]) == E_OK
    before, after = files_of(replayed), files_of(out)
    assert sorted(after) == sorted(before)
    report_before = json.loads(before.pop("report.json"))
    report_after = json.loads(after.pop("report.json"))
    assert without_time(report_after) == without_time(report_before)
    different = [path for path in before if before[path] != after[path]]
    assert different == [], f"rebuilt files differ from the replay's: {different}"


def test_analyse_runs_with_no_engine_importable(scenario_outdir: Callable[[str], Path], tmp_path: Path) -> None:
    replayed = scenario_outdir("3cx")
    out = frozen_copy(replayed, tmp_path / "out")
    done = subprocess.run(
        [sys.executable, "-c", NO_ENGINE, "analyse", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rebuilt = json.loads((out / "report.json").read_text(encoding="utf-8"))
    original = json.loads((replayed / "report.json").read_text(encoding="utf-8"))
    assert without_time(rebuilt) == without_time(original)
    assert rebuilt["stages"] and rebuilt["graph"]["edges"]


def test_the_report_carries_no_host_path(scenario_report: Callable[[str], dict[str, Any]]) -> None:
    for name in SCENARIOS:
        text = json.dumps(scenario_report(name))
        for host_path in (str(REPO), "/tmp/", str(Path.home())):
            assert host_path not in text, f"{name}: report.json holds the host path {host_path}"


def test_bare_sample_is_named_by_file_and_guest_path(tmp_path: Path) -> None:
    bins = REPO / "tests" / "bins"
    out = tmp_path / "out"
    assert main(["run", str(bins / "hello.dll"), "--export", "Greet", "--arg", "x", "-o", str(out), "-q"]) == E_OK
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["target"]["path"] == "hello.dll"
    assert report["stages"][0]["origin"] == {
        "type": "file",
        "ref": "C:\\Users\\analyst\\Desktop\\hello.dll",
        "how": "entry",
        "evidence": [0],
        "via_api": None,
        "pieces": None,
    }
    assert str(tmp_path) not in (out / TRACE_FILE).read_text(encoding="ascii")
    assert [r["ret"] is None or r["ret"].startswith("0x") for r in report["runs"]] == [True, True]


# ---- the trace reads back exactly -----------------------------------------------------------

ODD = "C:\\x\u202egpj.exe\x00\ud800\U0001f600 \u00e9"


def one_of_each_event() -> list[ev.Event]:
    req = ev.NetRequest(headers={"X-Odd": ODD}, body_size=3, body_sha256="a" * 64)
    resp = ev.NetResponse(status=200, headers={"A": "b"}, size=4, sha256="b" * 64)
    made: list[ev.Event] = [
        ev.ApiCall(seq=0, stage="s0", pc=0x401000, api="kernel32.CreateFileW", args=[ODD, "0x0"], ret="0x1"),
        ev.FileAccess(seq=1, stage="s0", pc=1, op="read", path=ODD, size=4, data_sha256="c" * 64, address=2**63),
        ev.RegistryAccess(seq=2, stage="s0", op="read", path="HKLM\\x", value_name=ODD, value=ODD),
        ev.SyncObject(seq=3, stage="s0", op="open", object_type="mutex", name=ODD, existed=True),
        ev.MemoryAlloc(seq=4, stage="s0", address=0x10000, size=4096, protect="PAGE_EXECUTE_READWRITE", api="a.b"),
        ev.MemoryProtect(seq=5, stage="s0", address=0x10000, size=4096, protect="RWX", executable=True),
        ev.ThreadStart(seq=6, stage="s0", start=0x10000, param=0, api="kernel32.CreateThread"),
        ev.DataBuffer(seq=7, stage="s0", source="decrypt", address=1, size=1, sha256="d" * 64, ref=ODD, api="x.y"),
        ev.StageStart(
            seq=8, stage="s0", new_stage="s1", kind="shellcode", name=ODD, base=1, size=2, entry=1, sha256="e" * 64
        ),
        ev.NetworkExchange(seq=9, stage="s1", kind="http", host=ODD, request=req, response=resp, responder="r"),
        ev.Note(seq=10, stage="s1", what="limit", detail=ODD),
    ]
    return made


def test_every_event_type_reads_back_exactly(tmp_path: Path) -> None:
    made = one_of_each_event()
    union = typing.get_args(typing.get_args(ev.Event)[0])
    assert {type(e) for e in made} == set(union), "add the new event type to one_of_each_event()"
    header = TraceHeader(
        engine="test",
        name="t",
        target_path="t",
        target_sha256="0" * 64,
        entry_origin=EntryOrigin(type="file", ref=ODD),
        seed=1,
        start_time=0,
        status="completed",
        responders={"r": {"odd": ODD}},
        events=len(made),
    )
    (tmp_path / BLOB_DIR).mkdir()
    (tmp_path / TRACE_FILE).write_text("".join(trace_lines(Trace(header, made, {}))), encoding="ascii")
    back = read_trace(tmp_path)
    assert back.header == header
    assert back.events == made
    assert [type(e) for e in back.events] == [type(e) for e in made]


# ---- bad traces and bad reports: one line, exit 2 -------------------------------------------


def _corrupt_trace(out: Path, how: str) -> None:
    trace = out / TRACE_FILE
    lines = trace.read_text(encoding="ascii").splitlines(keepends=True)
    if how == "truncated":
        trace.write_text("".join(lines[:-1]), encoding="ascii")
    elif how == "garbage line":
        trace.write_text("".join([lines[0], "{not json\n", *lines[2:]]), encoding="ascii")
    elif how == "deeply nested":
        trace.write_text("".join([lines[0], "[" * 100000 + "]" * 100000 + "\n", *lines[2:]]), encoding="ascii")
    elif how == "unknown event type":
        trace.write_text("".join([lines[0], '{"seq":0,"stage":"s0","type":"nope"}\n', *lines[2:]]), encoding="ascii")
    elif how == "other schema":
        header = json.loads(lines[0]) | {"schema": "chainreplay/trace/99"}
        trace.write_text("".join([json.dumps(header) + "\n", *lines[1:]]), encoding="ascii")
    elif how == "not ascii":
        trace.write_bytes(b"\xff\xfe" + trace.read_bytes())
    elif how == "empty":
        trace.write_bytes(b"")
    elif how == "blob altered":
        blob = next((out / BLOB_DIR).iterdir())
        blob.write_bytes(blob.read_bytes() + b"x")
    elif how == "blob missing":
        next((out / BLOB_DIR).iterdir()).unlink()
    elif how == "no trace":
        trace.unlink()


@pytest.mark.parametrize(
    "how",
    [
        "truncated",
        "garbage line",
        "deeply nested",
        "unknown event type",
        "other schema",
        "not ascii",
        "empty",
        "blob altered",
        "blob missing",
        "no trace",
    ],
)
def test_a_bad_trace_is_one_line_exit_2(
    how: str, scenario_outdir: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = frozen_copy(scenario_outdir("benign-dll"), tmp_path / "out")
    _corrupt_trace(out, how)
    assert main(["analyse", str(out)]) == E_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chainreplay: error: ") and "Traceback" not in err, err
    assert not (out / "report.json").exists()


def test_render_takes_an_outdir_or_a_report(scenario_outdir: Callable[[str], Path], tmp_path: Path) -> None:
    replayed = scenario_outdir("winhttp-downloader")
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(replayed / "report.json", out / "report.json")
    assert main(["render", str(out)]) == E_OK
    drawn = files_of(out)
    for name in ("stage_graph.graphml", "stage_graph.svg", "stage_graph.png"):
        assert drawn[name] == (replayed / name).read_bytes(), name
    other = tmp_path / "other"
    assert main(["render", str(out / "report.json"), "-o", str(other)]) == E_OK
    assert (other / "stage_graph.svg").read_bytes() == drawn["stage_graph.svg"]


def test_graphml_evidence_is_a_json_list(scenario_outdir: Callable[[str], Path]) -> None:
    import networkx as nx

    replayed = scenario_outdir("3cx")
    report = json.loads((replayed / "report.json").read_text(encoding="utf-8"))
    graph = nx.read_graphml(replayed / "stage_graph.graphml")
    expected = {(e["source"], e["target"]): e["evidence"] for e in report["graph"]["edges"]}
    assert {(u, v): json.loads(d["evidence"]) for u, v, d in graph.edges(data=True)} == expected
    assert any(len(evidence) > 1 for evidence in expected.values())


BAD_REPORTS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "graph is a list": lambda r: json.dumps(r | {"graph": []}).encode(),
    "graph edge without evidence": lambda r: json.dumps(
        r | {"graph": r["graph"] | {"edges": [{"source": "a", "target": "b", "type": "x"}]}}
    ).encode(),
    "deeply nested": lambda r: (
        json.dumps(r | {"responders": {}}).encode()[:-1] + b',"x":' + b"[" * 100000 + b"]" * 100000 + b"}"
    ),
    "not json": lambda r: b"\x00\xffnot json",
    "a list": lambda r: b"[1, 2]",
    "schema 2": lambda r: json.dumps(r | {"schema": "chainreplay/report/2"}).encode(),
    "empty": lambda r: b"",
}


@pytest.mark.parametrize("how", sorted(BAD_REPORTS))
def test_a_bad_report_is_one_line_exit_2(
    how: str,
    scenario_report: Callable[[str], dict[str, Any]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(BAD_REPORTS[how](scenario_report("benign-dll")))
    assert main(["render", str(path)]) == E_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err, err
    assert not (tmp_path / "stage_graph.png").exists()


def test_docs_schema_is_the_models_schema() -> None:
    """docs/report.schema.json is what ``chainreplay schema`` prints (regenerate it with
    ``python -m emulator schema -o docs/report.schema.json``); the graph in it is typed."""
    from emulator.report import Report

    committed = json.loads((REPO / "docs" / "report.schema.json").read_text(encoding="utf-8"))
    assert committed == Report.model_json_schema(by_alias=True)
    defs = committed["$defs"]
    assert committed["properties"]["graph"]["$ref"] == "#/$defs/StageGraph"
    assert defs["StageGraph"]["properties"]["edges"]["items"] == {"$ref": "#/$defs/GraphEdge"}
    assert defs["GraphEdge"]["properties"]["evidence"]["items"] == {"type": "integer"}


def test_every_record_caused_by_an_api_call_names_its_call_site(
    scenario_report: Callable[[str], dict[str, Any]],
) -> None:
    report = scenario_report("3cx")
    sections = ("api_calls", "network", "files", "registry", "sync_objects", "memory", "threads", "buffers")
    for section in sections:
        assert report[section], section
        for record in report[section]:
            assert record["pc"] is not None and int(record["pc"], 16) > 0, (section, record)
    calls = {(c["pc"], c["api"]) for c in report["api_calls"]}
    for buffer in report["buffers"]:
        if buffer["source"] == "guest_write":
            # Written by guest code, not an API: its pc is the writing instruction, in a stage's code.
            assert buffer["api"] is None and buffer["ref"] == f"guest code at pc {buffer['pc']}", buffer
            continue
        # Recorded while its API call ran: same call site, same spelling of the API name.
        assert (buffer["pc"], buffer["api"]) in calls, buffer


def test_an_engine_failure_reports_no_host_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from emulator.backends import speakeasy
    from emulator.plan import ReplayPlan
    from emulator.replay import replay_target

    def broken_run(self: Any) -> Any:
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(speakeasy.SpeakeasyBackend, "run", broken_run)
    plan = ReplayPlan(name="hello", target_path=str(REPO / "tests" / "bins" / "hello.dll"), emu_path="C:\\hello.dll")
    replay_target(plan, tmp_path / "out", isolate=False)
    text = (tmp_path / "out" / "report.json").read_text(encoding="utf-8")
    report = json.loads(text)
    assert report["outcome"]["status"] == "error" and "engine exploded" in report["outcome"]["detail"]
    detail = report["runs"][0]["error_detail"]
    assert "engine exploded" in detail, detail
    for host_path in (str(REPO), str(tmp_path), "site-packages"):
        assert host_path not in text


def test_analyse_refuses_a_folder_another_run_holds(scenario_outdir: Callable[[str], Path], tmp_path: Path) -> None:
    import fcntl
    import os

    out = frozen_copy(scenario_outdir("benign-dll"), tmp_path / "out")
    before = sorted(path.name for path in out.iterdir())
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["analyse", str(out), "-q"]) == E_BUSY
    finally:
        os.close(fd)
    assert sorted(path.name for path in out.iterdir() if path.name != ".lock") == before, "a busy folder is left alone"


def test_analyse_ends_by_its_timeout_and_notes_what_was_cut(
    scenario_outdir: Callable[[str], Path], tmp_path: Path
) -> None:
    out = frozen_copy(scenario_outdir("3cx"), tmp_path / "out")
    assert main(["analyse", str(out), "-q", "--timeout", "0.000001"]) == E_OK
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    cut = [note for note in report["notes"] if note["what"] == "analysis_cut"]
    assert cut and "deadline" in cut[0]["detail"], report["notes"]
    assert report["stages"] == []
