"""Isolation: replays in one process leak no state into each other (issue 6).

The replays here run in this process (``replay_target(..., isolate=False)``: the in-process
``emulate``, not the forked child), so anything one replay leaves behind in a module, a class
attribute, Speakeasy or Unicorn would show up in the next report. bench/isolation.py runs the
same check 200 times and measures memory (docs/containment.md).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from emulator import containment
from emulator.replay import replay_target
from emulator.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
REPLAYS = 20


def _normalised(report_path: str) -> str:
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    report.pop("generated_at")
    report["stats"].pop("emulation_seconds")
    return json.dumps(report, sort_keys=True)


def test_twenty_replays_in_one_process_give_identical_reports(tmp_path: Path) -> None:
    plan = load_scenario(SCENARIOS / "winhttp-downloader")
    other = load_scenario(SCENARIOS / "3cx")
    bytecode = sys.dont_write_bytecode
    reports = []
    for index in range(REPLAYS):
        if index == REPLAYS // 2:
            # a different chain in between (BCrypt, the stateful C2, threads): nothing of it may
            # reach the next replay of the first one
            assert replay_target(other, tmp_path / "other", isolate=False).status == "completed"
        result = replay_target(plan, tmp_path / "out", isolate=False)
        assert result.status == "completed", result.detail
        reports.append(_normalised(result.report_path))
    first = reports[0]
    differing = [i for i, text in enumerate(reports) if text != first]
    assert differing == [], f"replays {differing} differ from the first"
    report = json.loads(first)
    assert report["containment"]["isolation"] == "in-process"
    assert len(report["stages"]) == 2 and report["dropped"]
    # no guard left active, bytecode writing restored
    assert containment._GUARDS == []
    assert sys.dont_write_bytecode is bytecode


def test_isolation_bench_smoke(tmp_path: Path) -> None:
    """bench/isolation.py runs, prints its table and writes its JSON (3 replays; figures not asserted)."""
    spec = importlib.util.spec_from_file_location("bench_isolation", REPO / "bench" / "isolation.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "isolation.json"
    assert module.main(["--count", "3", "--every", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert figures["schema"] == "chainreplay/bench-isolation/1"
    assert figures["count"] == 3 and figures["identical"] is True and figures["distinct_reports"] == 1
    assert [c["replays"] for c in figures["checkpoints"]] == [1, 2, 3]
    assert all(c["rss_mib"] > 0 for c in figures["checkpoints"])
