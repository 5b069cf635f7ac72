"""Shared fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clirun import CliResult, run_cli

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS_DIR = REPO_ROOT / "scenarios"


@pytest.fixture(scope="session")
def scenario_outdir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``scenario_outdir(name)``: the output folder of scenarios/<name>, replayed in-process.

    Each scenario is replayed at most once per test session; later calls return the same folder.
    Tests must not write into it (copy it first).
    """
    from emulator.replay import replay_target
    from emulator.scenario import load_scenario

    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            plan = load_scenario(SCENARIOS_DIR / name)
            outdir = tmp_path_factory.mktemp(f"replay-{name}")
            replay_target(plan, outdir, isolate=False)
            cache[name] = outdir
        return cache[name]

    return get


@pytest.fixture(scope="session")
def scenario_report(scenario_outdir: Callable[[str], Path]) -> Callable[[str], dict[str, Any]]:
    """``scenario_report(name)``: the report.json (as a dict) of scenarios/<name>, replayed in-process.

    Each scenario is replayed at most once per test session; later calls return the cached report.
    """
    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            path = scenario_outdir(name) / "report.json"
            cache[name] = json.loads(path.read_text(encoding="utf-8"))
        return cache[name]

    return get


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """``cli(*argv)``: run ``chainreplay`` in-process and return its exit code and output."""

    def run(*argv: str | Path) -> CliResult:
        return run_cli(capsys, *argv)

    return run
