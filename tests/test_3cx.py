"""The 3CX scenario: inert without the marker, deterministic, rebuilt from source to the same bytes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from emulator.events import ApiCall, FileAccess, NetworkExchange, RegistryAccess
from emulator.plan import ReplayPlan
from emulator.replay import emulate, replay_target
from emulator.scenario import load_scenario
from emulator.trace import read_trace

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ["3cx", "3cx-x86"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_without_marker_the_sample_exits_before_any_activity(name: str) -> None:
    plan = load_scenario(ROOT / "scenarios" / name)
    inert = ReplayPlan.model_validate({**plan.model_dump(), "sandbox_marker": False})
    recording = emulate(inert)
    calls = [e.api for e in recording.events if isinstance(e, ApiCall)]
    assert calls == ["kernel32.GetEnvironmentVariableW"]
    assert not [e for e in recording.events if isinstance(e, FileAccess | RegistryAccess | NetworkExchange)]
    assert len([e for e in recording.events if e.type == "stage_start"]) == 1


def _without_timestamp(path: Path) -> dict[str, object]:
    report = json.loads(path.read_text())
    report.pop("generated_at")
    return report


def test_same_seed_gives_identical_reports_in_one_process_and_across_processes(tmp_path: Path) -> None:
    plan = load_scenario(ROOT / "scenarios" / "3cx")
    first = replay_target(plan, tmp_path / "a")
    second = replay_target(plan, tmp_path / "b")
    assert _without_timestamp(Path(first.report_path)) == _without_timestamp(Path(second.report_path))
    subprocess.run(
        [sys.executable, "-m", "emulator", "run", str(ROOT / "scenarios" / "3cx"), "-q", "-o", str(tmp_path / "c")],
        check=True,
        cwd=tmp_path,
    )
    assert _without_timestamp(Path(first.report_path)) == _without_timestamp(tmp_path / "c" / "report.json")
    assert (tmp_path / "a" / "stage_graph.png").read_bytes() == (tmp_path / "c" / "stage_graph.png").read_bytes()


def test_seed_changes_the_icon_fetched(scenario_outdir: Callable[[str], Path]) -> None:
    urls = set()
    # Seed 1 is the scenario's own: the session's shared replay (its frozen trace) is that one.
    shared = read_trace(scenario_outdir("3cx"))
    assert load_scenario(ROOT / "scenarios" / "3cx").seed == 1 and shared.header.status == "completed"
    urls.update(e.url for e in shared.events if isinstance(e, NetworkExchange) and e.url and ".ico" in e.url)
    for seed in (2, 3, 4):
        recording = emulate(load_scenario(ROOT / "scenarios" / "3cx", seed=seed))
        urls.update(e.url for e in recording.events if isinstance(e, NetworkExchange) and e.url and ".ico" in e.url)
        assert recording.status == "completed"
    assert len(urls) >= 2


def test_virtual_time_skipped_is_reported(scenario_outdir: Callable[[str], Path]) -> None:
    # The session's shared replay of the scenario, read back from its frozen trace.
    header = read_trace(scenario_outdir("3cx")).header
    # The dormancy is about seven days plus up to ~21 more.
    assert 7 * 86400 * 1000 <= header.skipped_ms <= 30 * 86400 * 1000


def test_tampered_sample_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "3cx"
    shutil.copytree(ROOT / "scenarios" / "3cx", copy, ignore=shutil.ignore_patterns("build", "src"))
    sample = copy / "samples" / "ffmpeg.dll"
    sample.write_bytes(sample.read_bytes()[:-1] + b"\x01")
    from emulator.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="does not match SHA256SUMS"):
        load_scenario(copy)
    assert load_scenario(copy, verify=False).name == "3cx"


@pytest.mark.skipif(shutil.which("x86_64-w64-mingw32-gcc") is None, reason="mingw-w64 not installed")
@pytest.mark.parametrize(
    "folder",
    ["scenarios/3cx", "scenarios/3cx-x86", "tests/bins", "scenarios/winhttp-downloader", "scenarios/benign-dll"],
)
def test_rebuild_from_source_matches_committed_hashes(folder: str, tmp_path: Path) -> None:
    source = ROOT / folder
    makefile = (source / "Makefile").read_text()
    if "check:" in makefile or "rules.mk" in makefile:
        result = subprocess.run(["make", "-s", "-C", str(source), "check"], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        return
    copy = tmp_path / "copy"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build"))
    subprocess.run(["make", "-s", "-C", str(copy), "clean"], check=True, capture_output=True)
    subprocess.run(["make", "-s", "-C", str(copy), "all"], check=True, capture_output=True)
    assert (copy / "SHA256SUMS").read_text() == (source / "SHA256SUMS").read_text()
