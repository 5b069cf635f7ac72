"""The foundation: a real DLL emulated, every API call recorded in order, through the CLI too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator.analysis.pipeline import analyse
from emulator.cli import E_BAD_INPUT, E_OK, main
from emulator.events import EVENT_LIST_ADAPTER, ApiCall
from emulator.plan import ExportCall, ReplayPlan, StringArg
from emulator.replay import emulate, replay_target
from emulator.trace import freeze

BINS = Path(__file__).parent / "bins"
GREET_SEQUENCE = [
    "kernel32.GetCurrentProcessId",
    "kernel32.lstrlenA",
    "kernel32.GetTickCount",
    "kernel32.CreateFileW",
    "kernel32.WriteFile",
    "kernel32.CloseHandle",
]


def greet_plan(dll: str = "hello.dll", times: int = 3) -> ReplayPlan:
    return ReplayPlan(
        name="hello",
        target_path=str(BINS / dll),
        emu_path="C:\\Users\\analyst\\Desktop\\hello.dll",
        exports=[ExportCall(name="Greet", args=[StringArg(text="world"), times])],
    )


@pytest.mark.parametrize("dll", ["hello.dll", "hello32.dll"])
def test_greet_exact_api_sequence(dll: str) -> None:
    recording = emulate(greet_plan(dll))
    calls = [e for e in recording.events if isinstance(e, ApiCall)]
    assert [c.api for c in calls] == GREET_SEQUENCE
    assert calls[1].args == ["world"]
    assert calls[3].args[0] == "C:\\Users\\Public\\greeting.txt"
    assert recording.status == "completed"
    assert [e.seq for e in recording.events] == list(range(len(recording.events)))
    # The greeting written three times is what the dropped file holds.
    assert recording.blobs[recording.dropped["C:\\Users\\Public\\greeting.txt"]] == b"hello, world\n" * 3


def test_repeated_calls_are_all_recorded() -> None:
    """Speakeasy folds identical repeated calls; chainreplay's trace keeps every one."""
    recording = emulate(greet_plan(times=1))
    again = emulate(greet_plan(times=1))
    assert len([e for e in recording.events if isinstance(e, ApiCall)]) == 6
    assert [e.model_dump() for e in recording.events] == [e.model_dump() for e in again.events]


def test_saved_trace_replays_into_the_same_analysis() -> None:
    recording = emulate(greet_plan())
    saved = EVENT_LIST_ADAPTER.dump_json(list(recording.events))
    recording.events = EVENT_LIST_ADAPTER.validate_json(saved)
    analysis = analyse(freeze(greet_plan(), recording, target_sha256=""))
    stages, graph = analysis.stages, analysis.graph
    assert [s.kind for s in stages] == ["pe"]
    assert sorted(d["type"] for _, _, d in graph.edges(data=True)) == ["drops"]


def test_cli_bare_dll_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(
        ["run", str(BINS / "hello.dll"), "--export", "Greet", "--arg", "world", "--arg", "3", "-o", str(out), "-q"]
    )
    assert code == E_OK
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "chainreplay/report/4"
    assert report["outcome"]["status"] == "completed"
    assert [c["api"] for c in report["api_calls"]] == GREET_SEQUENCE
    call = report["api_calls"][0]
    assert set(call) == {"seq", "stage", "pc", "api", "args", "ret"}
    assert all(int(c["pc"], 16) for c in report["api_calls"])
    assert report["target"]["sha256"] == __import__("hashlib").sha256((BINS / "hello.dll").read_bytes()).hexdigest()
    assert [s["kind"] for s in report["stages"]] == ["pe"]
    assert (out / "stage_graph.png").stat().st_size > 1000
    assert (out / "stages" / f"{report['stages'][0]['sha256']}.bin").read_bytes() == (BINS / "hello.dll").read_bytes()
    assert report["dropped"][0]["stored_as"].startswith("dropped/")
    assert capsys.readouterr().out == ""


def test_cli_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["run", str(BINS / "hello.dll"), "--export", "Greet", "--arg", "str:x", "--arg", "1", "-o", str(tmp_path), "-j"]
    )
    assert code == E_OK
    printed = json.loads(capsys.readouterr().out)
    assert printed["api_calls"][1]["args"] == ["x"]


def test_cli_exe_and_shellcode(tmp_path: Path) -> None:
    assert main(["run", str(BINS / "hello_exe.exe"), "-o", str(tmp_path / "exe"), "-q"]) == E_OK
    exe = json.loads((tmp_path / "exe" / "report.json").read_text())
    assert [c["api"] for c in exe["api_calls"]] == [
        "kernel32.GetCommandLineA",
        "kernel32.lstrlenA",
        "kernel32.ExitProcess",
    ]
    for arch in ("x64", "x86"):
        out = tmp_path / arch
        assert main(["run", str(BINS / f"hello_sc_{arch}.bin"), "--arch", arch, "-o", str(out), "-q"]) == E_OK
        report = json.loads((out / "report.json").read_text())
        assert [c["api"] for c in report["api_calls"]][:1] == ["kernel32.GetTickCount"]
        assert report["stages"][0]["kind"] == "shellcode"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "does/not/exist.dll"], "no such file"),
        (["run", str(BINS / "README.md")], "not a PE"),
        (["run", str(BINS / "hello.dll"), "--export", "Nope"], "export 'Nope' not found"),
        (["run"], "required"),
        (["run", str(BINS / "hello.dll"), "--bogus"], "unrecognized"),
    ],
)
def test_bad_usage_is_one_line_exit_2(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "-o", str(tmp_path)] if len(argv) > 1 and "--bogus" not in argv else argv)
    err = capsys.readouterr().err
    assert code == E_BAD_INPUT
    assert err.count("\n") == 1 and err.startswith("chainreplay: error:")
    assert needle in err


def test_replay_target_is_picklable_and_isolated(tmp_path: Path) -> None:
    import pickle

    plan = pickle.loads(pickle.dumps(greet_plan()))
    result = replay_target(plan, tmp_path)
    assert pickle.loads(pickle.dumps(result)) == result
    assert result.status == "completed"
    report = json.loads(Path(result.report_path).read_text())
    assert report["containment"]["isolation"] == "child process"
    assert report["containment"]["host_connects_refused"] == 0
