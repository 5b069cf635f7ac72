"""Hostile and odd inputs against today's features: a guest that formats with absurd widths,
patches a module's code thousands of times, and a scenario with a version Windows cannot report.
Real emulations of tests/bins/hostile/hostile.c (``make -C tests/bins/hostile``; the case is the
last word of its command line). Each must end within its limits with a named outcome or a
one-line error.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest

from emulator.cli import E_BAD_INPUT, main
from emulator.environment import GuestEnvironment
from emulator.events import ApiCall, Note
from emulator.limits import MAX_FORMATTED_TEXT, MAX_NOTES_PER_KIND
from emulator.plan import ReplayPlan
from emulator.replay import Recording, emulate

REPO = Path(__file__).resolve().parent.parent
BINS = REPO / "tests" / "bins" / "hostile"
HELLO = REPO / "tests" / "bins" / "hello.dll"


def _emulate(case: str, sample: str = "hostile.exe") -> Recording:
    plan = ReplayPlan(
        name=f"hostile-{case}",
        target_path=str(BINS / sample),
        emu_path=f"C:\\Users\\analyst\\Desktop\\{sample}",
        guest=GuestEnvironment(argv=[case]),
    )
    return emulate(plan)


def _printed(recording: Recording) -> dict[str, str]:
    out = {}
    for event in recording.events:
        if isinstance(event, ApiCall) and event.api == "kernel32.OutputDebugStringA":
            name, _, value = event.args[0].rpartition("=")
            out[name] = value
    return out


def test_printf_widths_and_precisions_past_the_limit_are_cut_not_built() -> None:
    """``_scprintf("%.999999999f")``, ``"%.999999999d"``, ``"%*d"`` of INT_MAX: the formatter built
    each text whole (4.3 GB of memory, 21 s for three calls); now each ends at MAX_FORMATTED_TEXT."""
    began = time.monotonic()
    recording = _emulate("precision")
    took = time.monotonic() - began
    assert recording.status == "completed", recording.detail
    printed = _printed(recording)
    assert printed["precision_f"] == printed["precision_d"] == printed["star"] == str(MAX_FORMATTED_TEXT)
    assert printed["done"] == "1"
    assert took < 15, f"{took:.1f} s"


def test_sprintf_of_a_huge_width_overflows_the_buffer_as_on_windows() -> None:
    """``sprintf(buf, "%999999999d")`` writes past the sample's data as the C runtime would: a fault
    in the call, named, after the text was cut (it was built whole first: 3 GB, 9 s)."""
    began = time.monotonic()
    recording = _emulate("width")
    took = time.monotonic() - began
    assert recording.status == "fault", recording.detail
    assert "invalid_write" in recording.detail and "msvcrt.sprintf" in recording.detail
    assert took < 15, f"{took:.1f} s"


def test_module_code_patched_thousands_of_times_is_noted_a_bounded_number_of_times() -> None:
    """5000 one-byte patches of kernel32!Beep's code made 127 notes, one per state of the span (a
    sample spreading its patches made one per span: 896 for one module, without bound)."""
    recording = _emulate("patch")
    assert recording.status == "completed", recording.detail
    notes = [e for e in recording.events if isinstance(e, Note) and e.what == "module_code_patched"]
    assert len(notes) == MAX_NOTES_PER_KIND
    assert notes[0].detail.startswith("kernel32.dll!Beep: 1 byte(s)")
    assert f"at most {MAX_NOTES_PER_KIND} of a kind are recorded" in notes[-1].detail
    assert not any("of a kind" in n.detail for n in notes[:-1])
    assert _printed(recording)["patched"] == "5000"


def test_a_child_that_starts_itself_ends_at_the_child_limit() -> None:
    """Already right: a program starting itself forever ends with outcome limit naming
    max_child_processes, each generation having run."""
    recording = _emulate("self", "hostile32.exe")
    assert (recording.status, recording.limit) == ("limit", "max_child_processes"), recording.detail
    starts = [e for e in recording.events if isinstance(e, ApiCall) and e.api == "kernel32.CreateProcessA"]
    assert len(starts) == 17


SCENARIO = """\
[scenario]
name = "odd-version"

[target]
path = "hello.dll"
emu_path = 'C:\\hello.dll'

[environment]
os_version = {version}
"""


@pytest.mark.parametrize(
    ("version", "needle"),
    [
        ("[-1, 0, 19045]", "environment.os_version.0: Input should be greater than or equal to 0"),
        ("[4294967296, 0, 1]", "environment.os_version.0: Input should be less than or equal to 255"),
        ("[10, 300, 19045]", "environment.os_version.1: Input should be less than or equal to 255"),
        ("[10, 0, 99999]", "environment.os_version.2: Input should be less than or equal to 65535"),
    ],
)
def test_an_os_version_windows_cannot_report_is_refused_in_one_line(
    version: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Negative or 32-bit-overflowing parts ended the replay with outcome error "engine error:
    argument out of range"; a build past 16 bits was written silently into the PEB's 16-bit field."""
    folder = tmp_path / "scen"
    folder.mkdir()
    shutil.copy(HELLO, folder / "hello.dll")
    (folder / "scenario.toml").write_text(SCENARIO.format(version=version), encoding="utf-8")
    digest = hashlib.sha256(HELLO.read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  hello.dll\n", encoding="utf-8")
    rc = main(["run", str(folder), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == E_BAD_INPUT, (rc, err)
    assert err.count("\n") == 1 and err.startswith("chainreplay: error: "), err
    assert needle in err and "Traceback" not in err


def test_a_process_path_with_control_characters_is_escaped_in_the_dot_file(tmp_path: Path) -> None:
    """``CreateProcessA("C:\\Users\\Public\\a<ESC>[31mred<BEL>.exe")``: the process node's name went
    into stage_graph.dot as it was (an ESC sequence for whoever prints the file, a NUL where
    Graphviz stops reading); it is escaped there as in the GraphML and the HTML."""
    from emulator.replay import replay_target

    plan = ReplayPlan(
        name="hostile-ctlname",
        target_path=str(BINS / "hostile.exe"),
        emu_path="C:\\Users\\analyst\\Desktop\\hostile.exe",
        guest=GuestEnvironment(argv=["ctlname"]),
    )
    out = tmp_path / "out"
    replay_target(plan, out, isolate=False)
    dot = (out / "stage_graph.dot").read_text(encoding="utf-8")
    assert not any(ord(c) < 0x20 and c != "\n" for c in dot)
    assert '"process:C:\\\\Users\\\\Public\\\\a\\\\u001b[31mred\\\\u0007.exe"' in dot
    assert '"s0" -> "process:C:\\\\Users' in dot


def test_relative_folder_paths_resolve_against_the_current_directory() -> None:
    """``FindFirstFile("*")``, ``("..\\\\..\\\\*")``, ``("\\\\Users\\\\*")``, ``CreateDirectory("made")``
    and ``GetFileAttributes("..\\\\Desktop\\\\made")`` from a program on the desktop: every relative
    or rooted path failed (ERROR_FILE_NOT_FOUND / ERROR_PATH_NOT_FOUND, a folder the sample itself
    sits in listed as missing); they resolve against the process's current directory, as on Windows."""
    recording = _emulate("relative")
    assert recording.status == "completed", recording.detail
    lines = [e.args[0] for e in recording.events if isinstance(e, ApiCall) and e.api == "kernel32.OutputDebugStringA"]
    assert lines[:3] == ["mkdir_rel=1", "attr_abs=1", "attr_rel=1"]
    # the desktop: . .. the folder made, then the sample (1: a folder)
    assert lines[3:7] == [".=1", "..=1", "made=1", "hostile.exe=0"]
    # \Users on the current drive
    assert {"analyst=2", "Public=2"} <= set(lines[7:])
    assert lines[-1] == "done=1"
    odd = _printed(_emulate("find"))
    assert odd["*"] == "3" and odd["..\\..\\*"] == odd["\\\\?\\C:\\*"] == "5"
    assert odd["C:\\nope\\*"] == odd[""] == "-2"


REGISTRY_SCENARIO = """\
[scenario]
name = "registry-case"

[target]
path = "hostile.exe"
emu_path = 'C:\\Users\\analyst\\Desktop\\hostile.exe'

[environment]
argv = ["regvalues"]

[[registry]]
key = '{key}'
values = [
  {{ name = "productname", type = "REG_SZ", data = "Windows XP" }},
  {{ name = "PRODUCTNAME", type = "REG_SZ", data = "Windows 2000" }},
{extra}
]
"""


def _registry_scenario(tmp_path: Path, key: str) -> Path:
    folder = tmp_path / "scen"
    folder.mkdir()
    shutil.copy(BINS / "hostile.exe", folder / "hostile.exe")
    extra = ",\n".join(f'  {{ name = "x{i}", type = "REG_SZ", data = "v{i}" }}' for i in range(300))
    (folder / "scenario.toml").write_text(REGISTRY_SCENARIO.format(key=key, extra=extra), encoding="utf-8")
    digest = hashlib.sha256((BINS / "hostile.exe").read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  hostile.exe\n", encoding="utf-8")
    return folder


def test_a_scenario_key_spelt_with_hklm_in_other_case_replaces_the_machines_values(tmp_path: Path) -> None:
    """``hklm\\\\software\\\\MICROSOFT\\\\windows nt\\\\currentversion`` with 302 values: the guest saw none
    of them (Speakeasy finds a configured key only by its root's full name, and the merge with the
    machine's key compared the spelling): ProductName read "Windows 10 Pro" and RegEnumValue listed
    the machine's 19 values. Now the key is the machine's, its values over them (the last of two
    names differing in case wins), every one enumerated."""
    import json

    folder = _registry_scenario(tmp_path, "hklm\\software\\MICROSOFT\\windows nt\\currentversion\\")
    out = tmp_path / "out"
    assert main(["run", str(folder), "-o", str(out), "-q"]) == 0
    lines = []
    with (out / "trace.jsonl").open(encoding="utf-8") as trace:
        for line in trace:
            event = json.loads(line)
            if event.get("api") == "kernel32.OutputDebugStringA":
                lines.append(event["args"][0])
    assert lines[:4] == ["open=0", "query=0", "Windows 2000=13", "PRODUCTNAME=1"]
    assert "x299=1" in lines and "values=319" in lines
    assert sum(1 for line in lines if line.lower().startswith("productname=")) == 1


def test_a_scenario_key_without_a_registry_root_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``Software\\\\Foo`` (no hive) was accepted and never seen by the guest."""
    folder = _registry_scenario(tmp_path, "Software\\Foo")
    rc = main(["run", str(folder), "-o", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == E_BAD_INPUT, (rc, err)
    assert err.count("\n") == 1 and "registry.0.key: 'Software\\\\Foo' starts with no registry root" in err


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) & 0xFF])
    return bytes(out)


def test_systemfunction032_over_64_mib_is_decrypted_within_seconds() -> None:
    """RC4 ran in Python: SystemFunction032 over 64 MiB took 22 s, twenty calls ran into the
    timeout. The cryptography library's RC4 gives the same bytes (a 4-byte key is the same key
    repeated to 32) in a fraction of a second; the decrypted buffer is recorded whole."""
    from emulator.events import DataBuffer

    began = time.monotonic()
    recording = _emulate("rc4big")
    took = time.monotonic() - began
    assert recording.status == "completed", recording.detail
    assert _printed(recording)["rc4big"] == "0"
    decrypted = [e for e in recording.events if isinstance(e, DataBuffer) and e.source == "decrypt"]
    assert len(decrypted) == 1 and decrypted[0].size == 64 * 1024 * 1024
    plain = recording.blobs[decrypted[0].sha256]
    assert plain[:4096] == _rc4(b"keyk", bytes(4096))
    assert took < 10, f"{took:.1f} s"
