"""Child processes started from the guest's own files run in the same replay
(emulator/backends/speakeasy/children.py).

The scenarios drop-exec-exe (WinINet download, CreateProcessA, x64), resource-winexec-x86 (the
launcher's own resource, WinExec, x86) and exec-suspended (CreateProcessA CREATE_SUSPENDED, then
ResumeThread, x64) drop the same child program (scenarios/drop-exec-exe/src/child.c), which exits
with a code naming the first check that failed: 0 means it saw its own module handle, PEB image
base, file name and command line. Variants of drop-exec-exe serve it other bytes (another
architecture, a DLL, no PE at all); the child then is a note and the launcher's replay goes on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.cli import main

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
Report = dict[str, Any]
TEMP = "C:\\Users\\analyst\\AppData\\Local\\Temp\\"
# scenario -> (the dropped program's path, the API that started it, where its bytes came from)
CHILDREN = {
    "drop-exec-exe": (TEMP + "payload.exe", "kernel32.CreateProcessA", "network"),
    "resource-winexec-x86": (TEMP + "helper.exe", "kernel32.WinExec", "resource"),
    "exec-suspended": (TEMP + "helper.exe", "kernel32.CreateProcessA", "resource"),
}


def _exit_codes(report: Report) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for call in report["api_calls"]:
        if call["api"] == "kernel32.ExitProcess":
            found.setdefault(call["stage"], []).append(call["args"][0])
    return found


def _dropped(report: Report, outdir: Path, path: str) -> bytes:
    digest = next(d["sha256"] for d in report["dropped"] if d["path"].lower() == path.lower())
    return (outdir / "dropped" / digest).read_bytes()


@pytest.mark.parametrize("name", sorted(CHILDREN))
def test_a_started_program_is_a_stage_of_its_own_process(
    name: str, scenario_outdir: Callable[[str], Path], scenario_report: Callable[[str], Report]
) -> None:
    path, api, origin = CHILDREN[name]
    report = scenario_report(name)
    assert report["outcome"]["status"] == "completed"
    launcher, child, shellcode = report["stages"]
    assert (child["kind"], child["name"], child["parent"], child["via"]) == (
        "pe",
        path.rsplit("\\", 1)[1],
        "s0",
        "process",
    )
    assert child["process"] == path and launcher["process"] is None
    assert (child["origin"]["type"], child["origin"]["how"]) == (origin, "mapped_image")
    assert [h["transform"] for h in child["lineage"]] == ["source", "file_write"]
    # The stages the child runs are in its process too.
    assert (shellcode["parent"], shellcode["process"]) == ("s1", path)
    # Both ran to their own ExitProcess(0): the launcher's did not end the replay before its
    # child ran, and the child passed its checks (its own module handle, PEB image base, file
    # name and command line).
    assert _exit_codes(report) == {"s0": ["0x0"], "s1": ["0x0"]}
    starts = [c["seq"] for c in report["api_calls"] if c["api"] == api and c["stage"] == "s0"]
    assert len(starts) == 1 and starts[0] < int(child["seq_range"][0])
    # The child's calls are its own.
    child_calls = {c["api"] for c in report["api_calls"] if c["stage"] == "s1"}
    assert {"kernel32.GetCommandLineA", "kernel32.GetModuleFileNameA", "kernel32.CreateThread"} <= child_calls
    assert api not in child_calls
    # Its command line, as it wrote it.
    written = _dropped(report, scenario_outdir(name), "C:\\Users\\Public\\lineage_child.txt")
    assert written == f'"{path}" --child'.encode()
    edges = {(e["source"], e["type"], e["target"]) for e in report["graph"]["edges"]}
    process, file = f"process:{path}", f"file:{path.lower()}"
    assert {
        ("s0", "creates_process", process),
        (file, "executes", process),
        (file, "delivers", "s1"),
        (process, "hosts", "s1"),
        (process, "hosts", "s2"),
    } <= edges


def test_the_narration_says_the_stage_was_started_as_a_process(scenario_outdir: Callable[[str], Path]) -> None:
    text = (scenario_outdir("drop-exec-exe") / "narration.md").read_text(encoding="utf-8")
    assert f"Its parent stage s0 started it as a new process, running the file {TEMP}payload.exe." in text


def _variant(tmp_path: Path, payload: bytes) -> Path:
    """drop-exec-exe with the downloaded program replaced by ``payload``."""
    folder = tmp_path / "drop-exec-exe"
    shutil.copytree(SCENARIOS / "drop-exec-exe", folder, ignore=shutil.ignore_patterns("build"))
    (folder / "payload" / "payload.exe").write_bytes(payload)
    lines = []
    for name in ("samples/launcher.exe", "payload/payload.exe"):
        lines.append(f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n")
    (folder / "SHA256SUMS").write_text("".join(lines), encoding="utf-8")
    text = (folder / "scenario.toml").read_text(encoding="utf-8")
    (folder / "scenario.toml").write_text(text.split("\n[expect]")[0] + "\n", encoding="utf-8")
    return folder


def _run(folder: Path, outdir: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> Report:
    rc = main(["run", str(folder), "-o", str(outdir), "-q", *flags])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err, err
    report: Report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    return report


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (SCENARIOS / "urlmon-drop-x86" / "samples" / "dropper.exe", "a x86 program in an x64 guest"),
        (SCENARIOS / "drop-load-dll" / "payload" / "plugin.dll", "a DLL, not a program"),
        (b"MZ this is no program\r\n" * 40, "not a PE image the emulator can load"),
    ],
    ids=["other-architecture", "dll", "not-a-pe"],
)
def test_a_program_that_cannot_run_is_a_note_and_the_parent_goes_on(
    payload: Path | bytes, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = payload.read_bytes() if isinstance(payload, Path) else payload
    report = _run(_variant(tmp_path, data), tmp_path / "out", capsys)
    assert report["outcome"]["status"] == "completed"
    assert [s["kind"] for s in report["stages"]] == ["pe"]
    notes = [n for n in report["notes"] if n["what"] == "child_process_not_run"]
    assert len(notes) == 1 and why in notes[0]["detail"], notes
    assert notes[0]["stage"] == "s0"
    assert _exit_codes(report) == {"s0": ["0x0"]}


def test_a_program_that_starts_itself_forever_ends_at_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = SCENARIOS / "drop-exec-exe" / "payload" / "payload.exe"
    outdir = tmp_path / "out"
    rc = main(["run", str(program), "--argv=--child --forever", "--max-child-processes", "3", "-o", str(outdir), "-q"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    outcome = report["outcome"]
    assert (outcome["status"], outcome["limit"]) == ("limit", "max_child_processes")
    children = [s for s in report["stages"] if s["via"] == "process"]
    assert len(children) == 3
    # Each started the next; each is the program's file (served, not written: origin file).
    assert [c["parent"] for c in children] == ["s0", children[0]["id"], children[1]["id"]]
    assert {c["origin"]["type"] for c in children} == {"file"}
    assert {c["process"] for c in children} == {"C:\\Users\\analyst\\Desktop\\payload.exe"}


def test_hollowing_a_program_of_the_guests_files_runs_the_injected_code_not_its_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """inject-hollowing with svchost.exe served as a real program of the guest's: its suspended
    process's context is changed before ResumeThread, so the injected code runs (as before),
    and its own image never does."""
    folder = tmp_path / "inject-hollowing"
    shutil.copytree(SCENARIOS / "inject-hollowing", folder, ignore=shutil.ignore_patterns("build"))
    shutil.copy(SCENARIOS / "drop-exec-exe" / "payload" / "payload.exe", folder / "svchost.exe")
    with (folder / "SHA256SUMS").open("a", encoding="utf-8") as sums:
        sums.write(f"{hashlib.sha256((folder / 'svchost.exe').read_bytes()).hexdigest()}  svchost.exe\n")
    text = (folder / "scenario.toml").read_text(encoding="utf-8").split("\n[expect]")[0]
    text += "\n[[files]]\nemu_path = 'C:\\Windows\\System32\\svchost.exe'\npath = \"svchost.exe\"\n"
    (folder / "scenario.toml").write_text(text, encoding="utf-8")
    report = _run(folder, tmp_path / "out", capsys)
    assert report["outcome"]["status"] == "completed"
    # As the committed scenario, whose svchost.exe is no file of the guest's (scenarios/inject-hollowing):
    # the code runs where the context the injector set points (via: context).
    assert [(s["kind"], s["via"]) for s in report["stages"]] == [("pe", "entry"), ("shellcode", "context")]
    assert report["stages"][1]["process"] == "C:\\Windows\\System32\\svchost.exe"
    injections = [e for e in report["graph"]["edges"] if e["type"] == "injects_into"]
    assert [e["methods"] for e in injections] == [["hollowing"]]
    assert not [n for n in report["notes"] if n["what"] == "child_process_not_run"]
