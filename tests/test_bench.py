"""The benchmark harness (bench/run.py, docs/performance.md): a smoke run and its samples.

No timing is asserted (machines are noisy); the quick run checks that every measurement runs,
that the JSON holds the figures, and that bare Speakeasy and chainreplay (both modes) produce
the same API trace on the benchmark workloads.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emulator.events import ApiCall
from emulator.replay import emulate
from emulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), proc.stdout


def test_quick_run_writes_every_figure(quick: tuple[dict, str]) -> None:
    data, stdout = quick
    assert data["quick"] is True
    expected = {"versions", "git", "machine", "raw_unicorn", "workloads", "startup", "ratios", "peak_rss_mb", "targets"}
    assert expected <= set(data)
    assert set(data["workloads"]) == {"rc4", "apiflood", "3cx"}
    raw = data["raw_unicorn"]
    assert raw["instructions"] > 0 and raw["wall_s"] > 0 and raw["hook_wall_s"] > 0
    for work in data["workloads"].values():
        assert {"bare_speakeasy", "chainreplay", "instructions", "traces"} <= set(work)
        assert work["bare_speakeasy"]["wall_s"] > 0
        for mode in ("fast", "faithful"):
            run = work["chainreplay"][mode]
            for key in ("emulate_s", "replay_target_s", "recording_overhead", "speedup_vs_bare", "ips"):
                assert key in run, (mode, key)
            assert run["status"] == "completed" and run["replay_status"] == "completed", run["detail"]
    assert data["startup"]["wall_s"] > 0 and data["startup"]["peak_rss_mb"] > 0
    assert data["peak_rss_mb"]["bench_process"] > 0
    assert "chainreplay fast: emulate" in stdout and "targets:" in stdout


def test_quick_run_results_are_right(quick: tuple[dict, str]) -> None:
    data, _ = quick
    assert data["raw_unicorn"]["output_matches_reference"]
    assert data["rc4_checksum_ok"] and data["raw_unicorn"]["export_checksum_ok"]
    flood = data["workloads"]["apiflood"]
    assert flood["bare_speakeasy"]["api_calls"] == flood["units"] + 1  # the marker check, then the flood


def test_quick_run_traces_identical(quick: tuple[dict, str]) -> None:
    data, _ = quick
    for key in ("rc4", "apiflood"):
        for trace in data["workloads"][key]["traces"]:
            assert trace["identical"], trace
    # Bare Speakeasy has no responders for 3CX, so only chainreplay's own traces must agree.
    for trace in data["workloads"]["3cx"]["traces"]:
        if trace["a"] != "bare":
            assert trace["identical"], trace


@pytest.mark.parametrize("scenario", ["rc4", "apiflood"])
def test_bench_sample_inert_without_marker(scenario: str) -> None:
    plan = load_scenario(BENCH / "scenarios" / scenario)
    recording = emulate(plan.model_copy(update={"sandbox_marker": False}))
    apis = [e.api for e in recording.events if isinstance(e, ApiCall)]
    assert apis == ["kernel32.GetEnvironmentVariableA"]


@pytest.mark.skipif(shutil.which("x86_64-w64-mingw32-gcc") is None, reason="mingw-w64 not installed")
def test_bench_sample_rebuilds_byte_identical() -> None:
    proc = subprocess.run(["make", "-s", "-C", str(BENCH / "samples"), "check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
