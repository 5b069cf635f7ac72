"""System programs that run the guest's files (emulator/backends/speakeasy/lolbins.py, children.py).

The scenarios rundll32-drop (x64, x86: WinINet download, ``rundll32.exe "PATH",Start --child``),
regsvr32-drop (the launcher's resource, ``regsvr32.exe /s "PATH"`` started suspended, then
``ntdll!NtResumeThread``) and cmd-start-exe (the launcher's resource, ``cmd.exe /c start ""
%TEMP%\\helper.exe --child``) hand the file they dropped to a system program the guest does not
have. The DLL's exports (scenarios/rundll32-drop/src/update.c) write what they saw ("ok <export>
<text>", or "bad <n>" when their arguments or the process's command line are not the program's)
and run a decoded payload; the program is drop-exec-exe's child, which checks its own image and
command line. Variants serve rundll32 other bytes: a note, and the launcher goes on.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.backends.speakeasy import children as children_module
from emulator.backends.speakeasy import lolbins
from emulator.backends.speakeasy.children import ChildProcesses
from emulator.cli import main

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
Report = dict[str, Any]
TEMP = "C:\\Users\\analyst\\AppData\\Local\\Temp\\"
SYS64, SYS32 = "C:\\Windows\\System32\\", "C:\\Windows\\SysWOW64\\"
# scenario -> (system program, the file it ran, the process it ran in, stage kind, origin,
#              technique of the launcher, what the file wrote)
CHAINS = {
    "rundll32-drop": (
        SYS64 + "rundll32.exe",
        TEMP + "update.dll",
        SYS64 + "rundll32.exe",
        "module",
        "network",
        "T1218.011",
        b"ok Start --child",
    ),
    "rundll32-drop-x86": (
        SYS32 + "rundll32.exe",
        TEMP + "update.dll",
        SYS32 + "rundll32.exe",
        "module",
        "network",
        "T1218.011",
        b"ok Start --child",
    ),
    "regsvr32-drop": (
        SYS64 + "regsvr32.exe",
        TEMP + "update.dll",
        SYS64 + "regsvr32.exe",
        "module",
        "resource",
        "T1218.010",
        b"ok DllRegisterServer",
    ),
    "cmd-start-exe": (
        SYS64 + "cmd.exe",
        TEMP + "helper.exe",
        TEMP + "helper.exe",
        "pe",
        "resource",
        "T1059.003",
        (TEMP + "helper.exe --child").encode(),
    ),
}
WRITTEN = {"module": "C:\\Users\\Public\\lineage_lolbin.txt", "pe": "C:\\Users\\Public\\lineage_child.txt"}


def _dropped(report: Report, outdir: Path, path: str) -> bytes:
    digest = next(d["sha256"] for d in report["dropped"] if d["path"].lower() == path.lower())
    return (outdir / "dropped" / digest).read_bytes()


def _exit_codes(report: Report) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for call in report["api_calls"]:
        if call["api"] == "kernel32.ExitProcess":
            found.setdefault(call["stage"], []).append(call["args"][0])
    return found


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_a_system_program_runs_the_file_it_was_given(
    name: str, scenario_outdir: Callable[[str], Path], scenario_report: Callable[[str], Report]
) -> None:
    program, file, process, kind, origin, technique, written = CHAINS[name]
    report = scenario_report(name)
    assert report["outcome"]["status"] == "completed"
    launcher, child, shellcode = report["stages"]
    assert (child["kind"], child["name"], child["parent"], child["via"]) == (
        kind,
        file.rsplit("\\", 1)[1],
        "s0",
        "process",
    )
    assert (child["process"], child["system_program"], child["run_file"]) == (process, program, file)
    assert "system_program" not in launcher and "run_file" not in launcher and launcher["process"] is None
    # Its origin is the file, traced on through the launcher's write of it.
    assert (child["origin"]["type"], child["origin"]["how"]) == (origin, "mapped_image")
    assert [h["transform"] for h in child["lineage"]] == ["source", "file_write"]
    assert (shellcode["parent"], shellcode["process"], shellcode["origin"]["type"]) == ("s1", process, "image")
    # The file ran as its program runs it: the export's arguments, the process's command line.
    assert _dropped(report, scenario_outdir(name), WRITTEN[kind]) == written
    assert report["dropped"] and any(d["path"].endswith("_stage.txt") for d in report["dropped"])
    # The launcher went on to its own ExitProcess(0) (regsvr32-drop: NtResumeThread returned
    # STATUS_SUCCESS and a previous count of 1).
    assert _exit_codes(report)["s0"] == ["0x0"]
    edges = {(e["source"], e["type"], e["target"]) for e in report["graph"]["edges"]}
    expected = {
        ("s0", "creates_process", f"process:{program}"),
        (f"file:{file.lower()}", "executes", f"process:{process}"),
        (f"file:{file.lower()}", "delivers", "s1"),
        ("s0", "executes", "s1"),
        (f"process:{process}", "hosts", "s1"),
        (f"process:{process}", "hosts", "s2"),
    }
    if program != process:
        expected.add((f"process:{program}", "creates_process", f"process:{process}"))
    assert expected <= edges
    # One node for the system program: the call named it without its folder.
    assert not [e for e in edges if e[2].lower() in ("process:rundll32.exe", "process:regsvr32.exe", "process:cmd.exe")]
    techniques = {(t["stage"], t["technique"]) for t in report["attack"]}
    assert ("s0", technique) in techniques
    # rundll32 loaded the DLL, not the launcher: no Shared Modules for it.
    assert ("s0", "T1129") not in techniques


def test_the_narration_says_the_system_program_ran_the_file(scenario_outdir: Callable[[str], Path]) -> None:
    text = (scenario_outdir("rundll32-drop") / "narration.md").read_text(encoding="utf-8")
    assert (
        f"Its parent stage s0 started {SYS64}rundll32.exe, which loaded the file {TEMP}update.dll "
        "into its process and ran it."
    ) in text
    text = (scenario_outdir("cmd-start-exe") / "narration.md").read_text(encoding="utf-8")
    assert (
        f"Its parent stage s0 started {SYS64}cmd.exe, which started the file {TEMP}helper.exe as a new process." in text
    )


# ---- what each program runs (lolbins.targets) ---------------------------------------------------


def _targets(name: str, line: str, arch: str = "x64") -> list[tuple[str, str, str, str, list[tuple[Any, ...]]]]:
    env = {"temp": "C:\\Users\\a\\Temp", "appdata": "C:\\Users\\a\\AppData\\Roaming"}
    found = lolbins.targets(name, line, arch, lambda text: lolbins.expand_variables(text, env))
    return [
        (t.process, t.kind, t.name, t.command_line, [(c.names, c.convention, c.text, c.install) for c in t.calls])
        for t in found
    ]


def test_rundll32_reads_the_dll_and_the_export_as_rundll32_does() -> None:
    line = 'rundll32.exe "C:\\Users\\a\\Temp\\x y.dll",Start one two'
    assert _targets("rundll32.exe", line) == [
        (
            SYS64 + "rundll32.exe",
            "dll",
            "C:\\Users\\a\\Temp\\x y.dll",
            line,
            [(("StartW", "Start", "StartA"), "rundll32", "one two", True)],
        )
    ]
    # An ordinal, a bare name (searched for), the program named with its folder, an x86 guest.
    assert _targets(SYS64 + "RUNDLL32.EXE", "C:\\Windows\\System32\\rundll32.exe x.dll,#2", "x86")[0][:3] == (
        SYS32 + "rundll32.exe",
        "dll",
        "x.dll",
    )
    assert _targets("rundll32", "rundll32 x.dll,#2")[0][4] == [(("#2",), "rundll32", "", True)]
    assert _targets("rundll32", "rundll32 x.dll Go")[0][4][0][0] == ("GoW", "Go", "GoA")
    assert _targets("rundll32", "rundll32") == [] and _targets("rundll32", "rundll32 x.dll") == []


def test_regsvr32_calls_what_its_switches_say() -> None:
    calls = lambda line: _targets("regsvr32.exe", line)[0][4]  # noqa: E731
    assert calls("regsvr32 /s C:\\t\\r.dll") == [(("DllRegisterServer",), "none", "", True)]
    assert calls("regsvr32 /u /s r.dll") == [(("DllUnregisterServer",), "none", "", True)]
    assert calls("regsvr32 /s /n /i:hello r.dll") == [(("DllInstall",), "dllinstall", "hello", True)]
    assert calls("regsvr32 /i:x r.dll") == [
        (("DllRegisterServer",), "none", "", True),
        (("DllInstall",), "dllinstall", "x", True),
    ]
    assert calls("regsvr32 /u /i r.dll") == [
        (("DllInstall",), "dllinstall", "", False),
        (("DllUnregisterServer",), "none", "", True),
    ]
    assert _targets("regsvr32", "regsvr32 /s") == []


def test_cmd_runs_each_program_of_its_command() -> None:
    found = _targets("cmd.exe", 'cmd.exe /c start "" %TEMP%\\y.exe a b')
    assert found == [
        ("C:\\Users\\a\\Temp\\y.exe", "exe", "C:\\Users\\a\\Temp\\y.exe", "C:\\Users\\a\\Temp\\y.exe a b", [])
    ]
    # Outer quotes, start's switches, & chains, builtins, a system program inside.
    found = _targets(
        "cmd", 'cmd /q /c ""C:\\p q\\y.exe" -x & echo hi && start /min /d C:\\ z.exe || rundll32 w.dll,Go"'
    )
    assert [(f[0], f[1], f[2]) for f in found] == [
        ("C:\\p q\\y.exe", "exe", "C:\\p q\\y.exe"),
        ("z.exe", "exe", "z.exe"),
        (SYS64 + "rundll32.exe", "dll", "w.dll"),
    ]
    assert found[0][3] == '"C:\\p q\\y.exe" -x'
    assert _targets("cmd", "cmd /c echo hi & del x") == [] and _targets("cmd", "cmd /d") == []
    assert _targets("cmd", "cmd /k %UNSET%\\y.exe")[0][2] == "%UNSET%\\y.exe"
    # Programs outside the table run nothing of the guest's here.
    assert _targets("powershell.exe", "powershell -c x.exe") == []


# ---- where a bare name is found (children.py) ----------------------------------------------------


class _Files:
    """An emulator whose file system holds ``files`` (guest path -> bytes)."""

    def __init__(self, files: dict[str, bytes], env: dict[str, str]) -> None:
        self.files = {k.lower(): v for k, v in files.items()}
        self.env = env
        self.fileman = self

    def get_module_data_from_emu_file(self, path: str) -> bytes | None:
        return self.files.get(path.lower())

    def get_emu_file(self, path: str) -> None:
        return None

    def get_env(self) -> dict[str, str]:
        return self.env


def _search(files: list[str], name: str, arch: str = "x64", path_var: str = "") -> str | None:
    emu = _Files(dict.fromkeys(files, b"MZ"), {"path": path_var})
    finder = ChildProcesses(None, emu, None, None, None, None, arch, "C:\\Users\\a\\Downloads\\l.exe", 4, None)  # type: ignore[arg-type]
    return finder._image_path(name)


def test_a_bare_program_name_is_searched_for_as_windows_searches() -> None:
    app, sys64, windows = "C:\\Users\\a\\Downloads\\", SYS64, "C:\\Windows\\"
    everywhere = [app + "x.exe", sys64 + "x.exe", windows + "x.exe", "C:\\Tools\\x.exe"]
    assert _search(everywhere, "x.exe") == app + "x.exe"
    assert _search(everywhere[1:], "x") == sys64 + "x.exe"
    assert _search(everywhere[1:], "x.exe", arch="x86") == windows + "x.exe"
    assert _search(everywhere[3:], "x.exe", path_var="C:\\Nothing;C:\\Tools") == "C:\\Tools\\x.exe"
    assert _search(everywhere[3:], "x.exe") is None
    # A relative path is from the launcher's folder; an absolute one is only itself.
    assert _search([app + "sub\\x.dll"], "sub\\x.dll") == app + "sub\\x.dll"
    assert _search([app + "x.dll"], "C:\\Other\\x.dll") is None
    assert children_module.lolbins is lolbins


# ---- bad inputs: a note, and the launcher goes on -----------------------------------------------


def _variant(tmp_path: Path, payload: bytes) -> Path:
    """rundll32-drop with the downloaded DLL replaced by ``payload``."""
    folder = tmp_path / "rundll32-drop"
    shutil.copytree(SCENARIOS / "rundll32-drop", folder, ignore=shutil.ignore_patterns("build", "src"))
    (folder / "payload" / "update.dll").write_bytes(payload)
    lines = []
    for name in ("samples/launcher.exe", "payload/update.dll"):
        lines.append(f"{hashlib.sha256((folder / name).read_bytes()).hexdigest()}  {name}\n")
    (folder / "SHA256SUMS").write_text("".join(lines), encoding="utf-8")
    text = (folder / "scenario.toml").read_text(encoding="utf-8")
    (folder / "scenario.toml").write_text(text.split("\n[expect]")[0] + "\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("payload", "why", "kinds"),
    [
        (
            SCENARIOS / "drop-load-dll" / "payload" / "plugin.dll",
            "calls 'StartW', which the DLL does not export",
            ["pe", "module"],
        ),
        (SCENARIOS / "rundll32-drop-x86" / "payload" / "update.dll", "a x86 DLL in an x64 guest", ["pe"]),
        (SCENARIOS / "drop-exec-exe" / "payload" / "payload.exe", "a program, not a DLL", ["pe"]),
        (b"MZ this is no DLL\r\n" * 40, "not a PE image the emulator can load", ["pe"]),
    ],
    ids=["no-such-export", "other-architecture", "exe", "not-a-pe"],
)
def test_a_dll_rundll32_cannot_run_is_a_note_and_the_launcher_goes_on(
    payload: Path | bytes, why: str, kinds: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = payload.read_bytes() if isinstance(payload, Path) else payload
    outdir = tmp_path / "out"
    rc = main(["run", str(_variant(tmp_path, data)), "-o", str(outdir), "-q"])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err, err
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "completed"
    # A DLL without the export: its DllMain ran in rundll32 (a stage), the export did not.
    assert [s["kind"] for s in report["stages"]] == kinds
    notes = [n for n in report["notes"] if n["what"] == "child_process_not_run"]
    assert len(notes) == 1 and why in notes[0]["detail"] and "rundll32.exe" in notes[0]["detail"], notes
    assert notes[0]["stage"] == "s0"
    assert _exit_codes(report) == {"s0": ["0x0"]}


def test_nt_resume_thread_resumes_a_thread_created_suspended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """tests/bins/lolbins/ntresume.c: NtResumeThread of a thread created suspended returns
    STATUS_SUCCESS and a previous count of 1, and the thread runs (it was signature-emulated: the
    thread never ran); a handle that is no thread is STATUS_INVALID_HANDLE."""
    outdir = tmp_path / "out"
    rc = main(["run", str(REPO / "tests" / "bins" / "lolbins" / "ntresume.exe"), "-o", str(outdir), "-q"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((outdir / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "completed"
    assert _exit_codes(report) == {"s0": ["0x0"]}
    assert [c["ret"] for c in report["api_calls"] if c["api"] == "ntdll.NtResumeThread"] == ["0x0", "0xc0000008"]
    assert _dropped(report, outdir, "C:\\Users\\Public\\ntresume.txt") == b"resumed\n"
    assert not [n for n in report["notes"] if "NtResumeThread" in n["detail"]]
