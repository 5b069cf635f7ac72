"""What keeps a replay's parent cheap after its child: the output libraries are imported with the
garbage collector paused and frozen once per process, so the collections during the outputs
(and in a batch worker's later replays) never walk them again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clirun import python_stdout

REPO = Path(__file__).resolve().parent.parent

PREPARE_TWICE = """
import gc, json, sys, tempfile
from pathlib import Path

import pytest
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
    counts = json.loads(python_stdout(PREPARE_TWICE, timeout=120).strip().splitlines()[-1])
    assert counts["before"] == 0
    # networkx, Pillow, stix2, yara, the report models...: far more objects than the collector
    # should walk in every full collection
    assert counts["first"] > 50_000
    assert counts["second"] == counts["first"]  # once per process (a batch worker's next replays)
    assert counts["enabled"]  # the collector runs again afterwards
    assert counts["young"] < 10_000  # what the collections still walk


def test_a_batch_whose_workers_outnumber_the_cores_writes_exports_without_a_forked_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The fork server that imports the output libraries for its workers (workers and children
    outnumber the cores) also turns the exports' copy off: its workers write the exports after
    the drawing, the same files; otherwise a replay starts the copy."""
    import emulator.export
    import emulator.output
    from emulator.output import produce
    from emulator.trace import read_trace

    script = "import emulator.batch_preload_outputs, emulator.output as o; print(o.EXPORTS_BESIDE_DRAWING)"
    assert python_stdout(script, timeout=120).strip().splitlines()[-1] == "False"

    started: list[Path] = []
    real_start = emulator.export.BackgroundExports.start.__func__  # type: ignore[attr-defined]

    def start(cls: type, out: Path, *args: object) -> object:
        started.append(out)
        return real_start(cls, out, *args)

    monkeypatch.setattr(emulator.export.BackgroundExports, "start", classmethod(start))
    trace = REPO / "tests" / "data" / "frozen" / "winhttp-downloader"
    for beside in (True, False):
        monkeypatch.setattr(emulator.output, "EXPORTS_BESIDE_DRAWING", beside)
        (tmp_path / str(beside)).mkdir()
        produce(tmp_path / str(beside), read_trace(trace), write_frozen=True, generated_at="2026-01-01T00:00:00Z")
    assert started == [(tmp_path / "True").resolve()]
    names = ["iocs.csv", "stix-bundle.json", "network.pcap", "network.har", "report.json"]
    for name in names:
        assert (tmp_path / "True" / name).read_bytes() == (tmp_path / "False" / name).read_bytes(), name
