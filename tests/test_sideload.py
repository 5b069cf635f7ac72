"""DLL side-loading under a system DLL's name (scenarios/sideload-version, -x86, sideload-winmm):
a DLL in the program's folder named like a system DLL that is not a KnownDLL is loaded ahead of
the emulator's module of that name, for an import and for LoadLibraryA of the bare name; its
exports forwarded to the genuine DLL (a full path, a renamed copy staged beside it, an ordinal,
its own name) reach the emulator's module; its own exports run as its code; its first execution
is a ``module`` stage with the note ``dll_search_hijack`` and T1574.001. KnownDLLs stay the
emulator's. Real replays of the built samples (``make -C scenarios/<name>``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emulator.events import ApiCall, FileAccess, Note, StageStart
from emulator.plan import ReplayPlan, VirtualFile
from emulator.replay import Recording, emulate
from emulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
UPDATER = "C:\\Users\\analyst\\AppData\\Local\\Updater"
PLAYER = "C:\\Program Files\\Tunes"
_CACHE: dict[tuple[str, tuple[tuple[str, str], ...], bool], Recording] = {}


def _plan(name: str, extra: tuple[tuple[str, str], ...] = (), *, keep_files: bool = True) -> ReplayPlan:
    plan = load_scenario(SCENARIOS / name)
    files = list(plan.files) if keep_files else []
    files += [VirtualFile(emu_path=guest, host_path=str(SCENARIOS / host)) for guest, host in extra]
    return plan.model_copy(update={"files": files})


def _emulate(name: str, extra: tuple[tuple[str, str], ...] = (), *, keep_files: bool = True) -> Recording:
    key = (name, extra, keep_files)
    if key not in _CACHE:
        _CACHE[key] = emulate(_plan(name, extra, keep_files=keep_files))
    return _CACHE[key]


def _calls(recording: Recording, api: str) -> list[ApiCall]:
    return [e for e in recording.events if isinstance(e, ApiCall) and e.api == api]


def _stages(recording: Recording) -> list[StageStart]:
    return [e for e in recording.events if isinstance(e, StageStart)]


def _notes(recording: Recording, what: str) -> list[Note]:
    return [e for e in recording.events if isinstance(e, Note) and e.what == what]


def _written(recording: Recording, path: str) -> bool:
    return any(isinstance(e, FileAccess) and e.op == "write" and e.path == path for e in recording.events)


@pytest.mark.parametrize("name", ["sideload-version", "sideload-version-x86"])
def test_a_planted_version_dll_runs_and_forwards_to_the_genuine(name: str) -> None:
    recording = _emulate(name)
    assert recording.status == "completed", recording.detail
    stages = _stages(recording)
    assert [(s.new_stage, s.kind, s.name) for s in stages[:2]] == [
        ("s0", "pe", "updater.exe"),
        ("s1", "module", "version.dll"),
    ]
    planted = stages[1]
    # Read from its file beside the program, then run (DllMain) before the program's entry point.
    read = next(e for e in recording.events if isinstance(e, FileAccess) and e.path == f"{UPDATER}\\version.dll")
    assert read.op == "read" and read.seq < planted.seq
    first_host_call = next(e for e in recording.events if isinstance(e, ApiCall) and e.stage == "s0")
    assert planted.seq < first_host_call.seq
    # The note is the planted stage's first event.
    (hijack,) = _notes(recording, "dll_search_hijack")
    assert hijack.stage == "s1" and hijack.seq == planted.seq + 1 and f"{UPDATER}\\version.dll" in hijack.detail
    # Its DllMain decoded and ran the payload, which wrote its file.
    assert [(s.kind, s.parent) for s in stages[2:]] == [("shellcode", "s1")]
    assert _written(recording, "C:\\Users\\Public\\lineage_sideload.txt")
    # The program's three calls went through the forwarders (full path, renamed copy, ordinal) to
    # the emulator's version.dll, which answered as the genuine DLL does; the program then wrote
    # its file (it exits 3 on any other answer, e.g. the stand-in's code in version_orig.dll).
    for api in ("version.GetFileVersionInfoSizeW", "version.GetFileVersionInfoW", "version.VerQueryValueW"):
        (call,) = _calls(recording, api)
        assert call.stage == "s0" and int(call.ret or "0", 16) == 0, api
    assert [c.args[0] for c in _calls(recording, "kernel32.ExitProcess")] == ["0x0"]
    assert _written(recording, "C:\\Users\\Public\\sideload_host.txt")
    # The renamed copy of the genuine DLL is bound to the emulator's module, not run.
    assert not any(s.name == "version_orig.dll" for s in stages)
    (renamed,) = _notes(recording, "renamed_system_dll")
    assert f"{UPDATER}\\version_orig.dll" in renamed.detail and "VERSION.dll" in renamed.detail


def test_without_the_planted_dll_the_program_binds_the_emulators() -> None:
    """The program alone (no version.dll beside it): one stage, the calls answered as before."""
    recording = _emulate("sideload-version", keep_files=False)
    assert recording.status == "completed", recording.detail
    assert [s.kind for s in _stages(recording)] == ["pe"]
    assert not _notes(recording, "dll_search_hijack")
    assert len(_calls(recording, "version.GetFileVersionInfoSizeW")) == 1
    assert _written(recording, "C:\\Users\\Public\\sideload_host.txt")


def test_a_planted_dll_loaded_by_bare_name_runs_its_own_export() -> None:
    recording = _emulate("sideload-winmm")
    assert recording.status == "completed", recording.detail
    stages = _stages(recording)
    assert [(s.kind, s.name) for s in stages] == [
        ("pe", "player.exe"),
        ("module", "winmm.dll"),
        ("shellcode", stages[2].name),
    ]
    (load,) = [c for c in _calls(recording, "kernel32.LoadLibraryA") if c.stage == "s0"]
    planted = int(load.ret or "0", 16)
    assert load.args[0] == "winmm.dll" and planted == stages[1].base
    # GetModuleHandle(Ex) of the name gives the planted module (the program exits 2 otherwise);
    # its timeGetTime is its own code.
    (handle,) = _calls(recording, "kernel32.GetModuleHandleA")[:1]
    assert int(handle.ret or "0", 16) == planted
    (handle_ex,) = _calls(recording, "kernel32.GetModuleHandleExA")
    assert handle_ex.args[1] == "winmm.dll" and handle_ex.ret == "0x1"
    assert [c.args[0] for c in _calls(recording, "kernel32.ExitProcess")] == ["0x0"]
    own = next(c for c in _calls(recording, "kernel32.GetProcAddress") if c.args[1] == "timeGetTime")
    assert stages[1].base <= int(own.ret or "0", 16) < stages[1].base + stages[1].size
    # timeBeginPeriod, forwarded to the planted DLL's own name, is the emulator's (called by the
    # program); the planted timeGetTime loads the genuine winmm.dll by its System32 path and
    # calls it.
    (begin,) = _calls(recording, "winmm.timeBeginPeriod")
    assert begin.stage == "s0" and begin.ret == "0x0"
    genuine = next(c for c in _calls(recording, "kernel32.LoadLibraryA") if c.stage == "s1")
    assert genuine.args[0] == "C:\\Windows\\System32\\winmm.dll" and int(genuine.ret or "0", 16) not in (0, planted)
    (time,) = _calls(recording, "winmm.timeGetTime")
    assert time.stage == "s1"
    # On the virtual clock (Speakeasy's answered the host's): the same in a second replay.
    (again,) = _calls(emulate(_plan("sideload-winmm")), "winmm.timeGetTime")
    assert again.ret == time.ret and int(time.ret or "0", 16) > 0
    assert _written(recording, "C:\\Users\\Public\\lineage_winmm.txt")
    assert _written(recording, "C:\\Users\\Public\\sideload_player.txt")
    (hijack,) = _notes(recording, "dll_search_hijack")
    assert hijack.stage == "s1" and f"{PLAYER}\\winmm.dll" in hijack.detail


def test_a_known_dll_beside_the_program_is_never_loaded() -> None:
    """kernel32.dll is a KnownDLL: a PE of that name beside the program is not searched for."""
    recording = _emulate("sideload-winmm", ((f"{PLAYER}\\kernel32.dll", "sideload-winmm/samples/winmm.dll"),))
    assert recording.status == "completed", recording.detail
    assert not any(isinstance(e, FileAccess) and e.path.endswith("kernel32.dll") for e in recording.events)
    assert [s.name for s in _stages(recording) if s.kind == "module"] == ["winmm.dll"]


def test_a_planted_dll_of_the_other_architecture_is_skipped() -> None:
    """An x86 version.dll beside the x64 program is not a module it can load: Windows searches on,
    and the import binds to the system's (the emulator's) version.dll."""
    planted = ((f"{UPDATER}\\version.dll", "sideload-version-x86/samples/version.dll"),)
    recording = _emulate("sideload-version", planted, keep_files=False)
    assert recording.status == "completed", recording.detail
    assert [s.kind for s in _stages(recording)] == ["pe"]
    assert not _notes(recording, "dll_search_hijack")
    assert _written(recording, "C:\\Users\\Public\\sideload_host.txt")
