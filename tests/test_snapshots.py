"""Golden snapshots of the analysis over small committed frozen traces (no engine involved).

Each ``tests/data/frozen/<case>/`` holds a real replay's ``trace.jsonl`` and ``blobs/`` and the
report the analysis must rebuild from them, ``report.json`` (``generated_at`` fixed to
``SNAPSHOT``). A change to stages, provenance, the graph, the techniques or the report's shape
shows here as a unified diff. After an intended change, refresh the snapshots:

    CHAINREPLAY_REFRESH_SNAPSHOTS=1 python -m pytest -q tests/test_snapshots.py

and after a change to what a replay records, re-record the traces first:

    python tests/data/frozen/freeze.py

(modelled on capa's tests/test_feature_snapshots.py with its freeze format and null extractor).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from emulator.output import produce
from emulator.trace import read_trace

FROZEN = Path(__file__).parent / "data" / "frozen"
CASES = sorted(p.parent.name for p in FROZEN.glob("*/trace.jsonl"))
REFRESH = os.environ.get("CHAINREPLAY_REFRESH_SNAPSHOTS") == "1"


def test_there_are_frozen_cases() -> None:
    assert {"hello-dll", "winhttp-downloader", "3cx"} <= set(CASES)


@pytest.mark.parametrize("case", CASES)
def test_analysis_matches_snapshot(case: str, tmp_path: Path) -> None:
    trace = read_trace(FROZEN / case)
    produce(tmp_path, trace, generated_at="SNAPSHOT")
    got = (tmp_path / "report.json").read_text(encoding="utf-8")
    snapshot = FROZEN / case / "report.json"
    if REFRESH:
        snapshot.write_text(got, encoding="utf-8")
    want = snapshot.read_text(encoding="utf-8") if snapshot.is_file() else ""
    if got != want:
        diff = difflib.unified_diff(
            want.splitlines(keepends=True), got.splitlines(keepends=True), f"{case}/report.json (snapshot)", "rebuilt"
        )
        pytest.fail(
            "analysis differs from the snapshot (refresh: CHAINREPLAY_REFRESH_SNAPSHOTS=1 python -m pytest -q "
            "tests/test_snapshots.py):\n" + "".join(diff),
            pytrace=False,
        )
