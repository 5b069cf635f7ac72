"""Isolation: replays in one process leak no state into each other (issue 6).

The emulations here run in this process (``emulate``, and ``replay_target(..., isolate=False)``,
not the forked child), so anything one replay leaves behind in a module, a class attribute,
Speakeasy or Unicorn would show up in the next recording or report. bench/isolation.py runs the
same check 200 times and measures memory (docs/containment.md).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from emulator import containment
from emulator.replay import Recording, emulate, replay_target
from emulator.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
REPLAYS = 20


def _normalised(report_path: str) -> str:
    report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    report.pop("generated_at")
    return json.dumps(report, sort_keys=True)


def _fingerprint(recording: Recording) -> str:
    """Everything an emulation produced except its wall-clock duration."""
    return json.dumps(
        {
            "events": [event.model_dump(mode="json") for event in recording.events],
            "blobs": sorted(recording.blobs),
            "outcome": [recording.status, recording.detail, recording.limit],
            "runs": recording.runs,
            "dropped": recording.dropped,
            "responders": recording.responders,
            "clock": [recording.skipped_ms, recording.sleeps],
            "containment": [
                recording.sockets_blocked,
                recording.lookups_blocked,
                recording.writes_blocked,
                recording.processes_blocked,
                recording.violations,
            ],
        },
        sort_keys=True,
        default=str,
    )


def test_twenty_emulations_in_one_process_record_the_same(tmp_path: Path) -> None:
    """``emulate`` in this process 20 times (the 3CX chain once in between: BCrypt, the stateful
    C2, threads); then the full pipeline twice, whose reports must match too."""
    plan = load_scenario(SCENARIOS / "winhttp-downloader")
    other = load_scenario(SCENARIOS / "3cx")
    bytecode = sys.dont_write_bytecode
    first = replay_target(plan, tmp_path / "first", isolate=False)
    fingerprints = []
    for index in range(REPLAYS):
        if index == REPLAYS // 2:
            assert emulate(other).status == "completed"
        recording = emulate(plan)
        assert recording.status == "completed", recording.detail
        fingerprints.append(_fingerprint(recording))
    differing = [i for i, text in enumerate(fingerprints) if text != fingerprints[0]]
    assert differing == [], f"emulations {differing} differ from the first"
    assert len(json.loads(fingerprints[0])["events"]) > 10
    last = replay_target(plan, tmp_path / "last", isolate=False)
    assert _normalised(first.report_path) == _normalised(last.report_path)
    report = json.loads(_normalised(last.report_path))
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


def test_a_warmed_engine_replays_exactly_like_a_cold_one() -> None:
    """warm_engine() (for batch workers) changes how fast the next replays start, nothing else."""
    from emulator.replay import emulate_isolated, warm_engine

    plan = load_scenario(SCENARIOS / "winhttp-downloader")
    before = emulate_isolated(plan)
    warm_engine()
    after = emulate_isolated(plan)
    assert before.status == "completed"
    assert _fingerprint(after) == _fingerprint(before)
