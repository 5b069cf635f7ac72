"""Shared fixtures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS_DIR = REPO_ROOT / "scenarios"


@pytest.fixture(scope="session")
def scenario_report(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """``scenario_report(name)``: the report.json (as a dict) of scenarios/<name>, replayed in-process.

    Each scenario is replayed at most once per test session; later calls return the cached report.
    """
    from emulator.replay import replay_target
    from emulator.scenario import load_scenario

    cache: dict[str, dict[str, Any]] = {}

    def get(name: str) -> dict[str, Any]:
        if name not in cache:
            plan = load_scenario(SCENARIOS_DIR / name)
            outdir = tmp_path_factory.mktemp(f"replay-{name}")
            result = replay_target(plan, outdir, isolate=False)
            cache[name] = json.loads(Path(result.report_path).read_text(encoding="utf-8"))
        return cache[name]

    return get
