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


def test_engine_version_comes_from_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    from emulator.backends.speakeasy import compat

    monkeypatch.setattr(importlib.metadata, "version", lambda name: {"speakeasy-emulator": "9.8.7"}[name])
    assert compat._installed_version() == "9.8.7"


def test_a_missing_internal_fails_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from speakeasy.windows.winemu import WindowsEmulator

    from emulator.backends.speakeasy import compat

    monkeypatch.delattr(WindowsEmulator, "_hook_code_core")
    with pytest.raises(compat.EngineIncompatible) as caught:
        compat._check_installed()
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
