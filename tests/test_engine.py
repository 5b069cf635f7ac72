"""The engine behind its interface: imported only to emulate, checked when imported, named by
its installed version, and leaving Speakeasy's classes as it found them."""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.plan import ExportCall, ReplayPlan, StringArg
from emulator.replay import emulate, replay_target

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "tests" / "bins" / "hello.dll"
# Runs the CLI with speakeasy and unicorn unimportable (a None entry in sys.modules makes
# every `import speakeasy...` raise ImportError).
NO_ENGINE = (
    "import sys\n"
    "for name in ('speakeasy', 'unicorn'):\n"
    "    sys.modules[name] = None\n"
    "from emulator.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('speakeasy', 'unicorn') and sys.modules[m])\n"
    "assert not loaded, loaded\n"
    "sys.exit(rc)\n"
)


def _hello_plan() -> ReplayPlan:
    return ReplayPlan(
        name="hello",
        target_path=str(HELLO),
        emu_path="C:\\Users\\analyst\\Desktop\\hello.dll",
        exports=[ExportCall(name="Greet", args=[StringArg(text="engine"), 1])],
    )


def _no_engine(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_ENGINE, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_render_and_schema_run_without_the_engine(tmp_path: Path) -> None:
    result = replay_target(_hello_plan(), tmp_path / "out", isolate=False)
    schema = _no_engine("schema", "-o", tmp_path / "schema.json")
    assert schema.returncode == 0, schema.stderr
    assert json.loads((tmp_path / "schema.json").read_text())["title"] == "Report"
    drawn = _no_engine("render", result.report_path, "-o", tmp_path / "drawn")
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "drawn" / "stage_graph.svg").is_file()


def test_report_names_the_installed_engine(tmp_path: Path) -> None:
    result = replay_target(_hello_plan(), tmp_path / "out", isolate=False)
    report = json.loads(Path(result.report_path).read_text(encoding="utf-8"))
    assert report["tool"]["engine"] == f"speakeasy {importlib.metadata.version('speakeasy-emulator')}"


def test_engine_version_comes_from_package_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed distribution's metadata names the version: read directly where it is plain
    (emulator/installed.py), else by importlib.metadata."""
    from emulator import installed
    from emulator.backends.speakeasy import compat

    (tmp_path / "speakeasy_emulator-9.8.7.dist-info").mkdir()
    (tmp_path / "speakeasy_emulator-9.8.7.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.4\nName: speakeasy-emulator\nVersion: 9.8.7\n", encoding="utf-8"
    )
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert compat._installed_version() == "9.8.7" == importlib.metadata.version("speakeasy-emulator")
    monkeypatch.setattr(installed, "_from_path", lambda name: installed._UNSURE)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"speakeasy-emulator": "9.8.6"}[name])
    assert compat._installed_version() == "9.8.6"


def test_a_missing_internal_fails_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from speakeasy.windows.winemu import WindowsEmulator

    from emulator.backends.speakeasy import compat, compat_fast

    monkeypatch.delattr(WindowsEmulator, "_hook_code_core")
    with pytest.raises(compat.EngineIncompatible) as caught:
        compat_fast._check_installed()
    message = str(caught.value)
    assert "\n" not in message
    assert f"speakeasy-emulator {compat.SPEAKEASY_VERSION}" in message
    assert "WindowsEmulator._hook_code_core is missing" in message


def test_a_changed_signature_fails_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from speakeasy.profiler import Profiler

    from emulator.backends.speakeasy import compat

    def record_dns_event(self: object, run: object, pos: object, name: str, ip: str = "") -> None: ...

    monkeypatch.setattr(Profiler, "record_dns_event", record_dns_event)
    with pytest.raises(compat.EngineIncompatible, match=r"Profiler.record_dns_event no longer takes domain$"):
        compat._check_installed()


def test_fast_mode_leaves_speakeasy_classes_unpatched() -> None:
    import speakeasy.engines.unicorn_eng as se_engine

    before = inspect.getattr_static(se_engine.EmuEngine, "mem_write")
    recording = emulate(_hello_plan())  # fast mode: loads with the per-instance write shortcut
    assert recording.status == "completed", recording.detail
    assert inspect.getattr_static(se_engine.EmuEngine, "mem_write") is before
    assert before.__module__ == "speakeasy.engines.unicorn_eng"


def test_sync_objects_are_named_from_their_name_argument() -> None:
    """tests/bins/syncnames.exe creates and opens named mutexes, an event and a waitable timer:
    each call that succeeds gives one event naming the object (lpName's position differs by API)."""
    from emulator.events import SyncObject

    plan = ReplayPlan(
        name="syncnames", target_path=str(ROOT / "tests" / "bins" / "syncnames.exe"), emu_path="C:\\x\\syncnames.exe"
    )
    recording = emulate(plan)
    assert recording.status == "completed", recording.detail
    seen = [(e.op, e.object_type, e.name, e.existed) for e in recording.events if isinstance(e, SyncObject)]
    assert seen == [
        ("create", "mutex", "cr-mutex-w", False),
        ("open", "mutex", "cr-mutex-w", True),
        ("create", "mutex", "cr-mutex-a", False),
        ("create", "mutex", "cr-mutex-a", True),  # the second CreateMutex finds it (ERROR_ALREADY_EXISTS)
        ("open", "mutex", "cr-mutex-a", True),
        ("create", "event", "cr-event-a", False),
        ("open", "event", "cr-event-a", True),
        # CreateSemaphoreW fails under Speakeasy (returns NULL): no object, no event
        ("create", "timer", "cr-timer-w", False),
        ("open", "timer", "cr-timer-w", True),
    ]


@pytest.mark.parametrize("debug", [True, False])
def test_debug_flag_shows_chainreplay_and_speakeasy_logs(debug: bool, tmp_path: Path) -> None:
    """-d: chainreplay's and Speakeasy's own debug lines (from the emulating child too), and no
    third-party noise; without it, stderr stays empty. No module configures logging at import."""
    argv = [sys.executable, "-m", "emulator", "run", str(HELLO), "--export", "Greet", "--arg", "str:log", "--arg", "1"]
    argv += ["-q", "-o", str(tmp_path / "out"), *(["-d"] if debug else [])]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    if not debug:
        assert proc.stderr == ""
        return
    lines = proc.stderr.splitlines()
    loggers = {line.split()[1].rstrip(":") for line in lines if line.startswith("DEBUG ")}
    assert "emulator.backends.speakeasy.backend" in loggers
    assert any(name.startswith("speakeasy.") for name in loggers), sorted(loggers)
    assert not [name for name in loggers if not name.startswith(("emulator", "speakeasy"))], sorted(loggers)
    assert any("loaded hello.dll (pe, x64)" in line for line in lines)


def test_an_incompatible_engine_is_a_one_line_outcome(tmp_path: Path) -> None:
    """A Speakeasy without an internal chainreplay relies on: the replay still writes its report,
    whose outcome names the installed version and what changed; no traceback."""
    code = (
        "import sys\n"
        "import speakeasy.windows.winemu as winemu\n"
        "del winemu.WindowsEmulator._hook_code_core\n"
        "from emulator.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "out"
    argv = [sys.executable, "-c", code, "run", str(HELLO), "--export", "Greet", "-q", "-o", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    outcome = json.loads((out / "report.json").read_text(encoding="utf-8"))["outcome"]
    version = importlib.metadata.version("speakeasy-emulator")
    assert outcome == {
        "status": "error",
        "detail": f"engine unavailable: chainreplay does not support speakeasy-emulator {version}: "
        "WindowsEmulator._hook_code_core is missing",
        "limit": None,
    }
