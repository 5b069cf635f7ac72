"""What keeps a replay's parent cheap after its child: the output libraries are imported with the
garbage collector paused and frozen once per process, so the collections during the outputs
(and in a batch worker's later replays) never walk them again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PREPARE_TWICE = """
import gc, json, sys, tempfile
from pathlib import Path
import emulator.replay
before = gc.get_freeze_count()
emulator.replay._prepare_outputs(Path(tempfile.mkdtemp()))
first = gc.get_freeze_count()
enabled = gc.isenabled()
emulator.replay._prepare_outputs(Path(tempfile.mkdtemp()))
print(json.dumps({"before": before, "first": first, "second": gc.get_freeze_count(), "enabled": enabled,
                  "young": len(gc.get_objects())}))
"""


def test_the_output_libraries_are_frozen_once_per_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PREPARE_TWICE],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert counts["before"] == 0
    # networkx, Pillow, stix2, yara, the report models...: far more objects than the collector
    # should walk in every full collection
    assert counts["first"] > 50_000
    assert counts["second"] == counts["first"]  # once per process (a batch worker's next replays)
    assert counts["enabled"]  # the collector runs again afterwards
    assert counts["young"] < 10_000  # what the collections still walk
