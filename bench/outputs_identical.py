"""Do two checkouts write the same output folders? Byte for byte, from the same traces.

    python bench/outputs_identical.py OTHER_CHECKOUT [--traces DIR] [--work DIR]

Every output folder is derived by each checkout's own code (``emulator.output.produce`` with
``write_frozen``, as a replay writes it, and a fixed ``generated_at``) from the same frozen
traces: each folder under ``--traces`` that holds a ``trace.jsonl`` (default: a fresh replay of
every scenario by this checkout, plus ``tests/data/frozen/*``). Then every file of every folder
is compared (a PNG whose bytes differ, by its decoded pixels); prints the counts and the first
differences, exits 1 if any differ. What changes the outputs' bytes (drawing, exports, report,
trace writing) shows here; the engine does not (both sides read the same traces).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED_AT = "2026-01-01T00:00:00Z"
PRODUCE = """
import sys
from pathlib import Path
from emulator.output import produce
from emulator.trace import read_trace
traces, root = Path(sys.argv[1]), Path(sys.argv[2])
for folder in sorted(traces.iterdir()):
    if (folder / "trace.jsonl").is_file():
        (root / folder.name).mkdir(parents=True)
        produce(root / folder.name, read_trace(folder), write_frozen=True, generated_at=sys.argv[3])
"""


def _replay_all(traces: Path) -> None:
    """A trace of every scenario (this checkout's replay) and the frozen test traces."""
    for scenario in sorted((ROOT / "scenarios").iterdir()):
        if (scenario / "scenario.toml").is_file():
            subprocess.run(
                [sys.executable, "-m", "emulator", "run", str(scenario), "-o", str(traces / scenario.name), "-q"],
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
                check=False,
            )
    for frozen in sorted((ROOT / "tests" / "data" / "frozen").iterdir()):
        if (frozen / "trace.jsonl").is_file():
            shutil.copytree(frozen, traces / f"frozen-{frozen.name}")


def _produce(checkout: Path, traces: Path, root: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", PRODUCE, str(traces), str(root), GENERATED_AT],
        cwd=checkout,
        env=dict(os.environ, PYTHONPATH=str(checkout)),
        check=True,
    )


def _same_pixels(a: Path, b: Path) -> bool:
    from PIL import Image

    with Image.open(a) as first, Image.open(b) as second:
        return (first.mode, first.size, first.tobytes()) == (second.mode, second.size, second.tobytes())


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != ".lock"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="the other checkout (a worktree or an unpacked `git archive`)")
    parser.add_argument("--traces", type=Path, help="folders holding trace.jsonl + blobs/ (default: replay now)")
    parser.add_argument("--work", type=Path, help="where to write the output folders (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        traces = args.traces
        if traces is None:
            traces = work / "traces"
            traces.mkdir(parents=True)
            _replay_all(traces)
        sides = {"this": work / "this", "other": work / "other"}
        for side in sides.values():
            shutil.rmtree(side, ignore_errors=True)
        _produce(ROOT, traces, sides["this"])
        _produce(args.other.resolve(), traces, sides["other"])
        ours, theirs = _files(sides["this"]), _files(sides["other"])
        alone = sorted(ours ^ theirs)
        differ = sorted(
            p for p in ours & theirs if not filecmp.cmp(sides["this"] / p, sides["other"] / p, shallow=False)
        )
        # A PNG encoded another way (row filters, deflate stream) is the same picture when its
        # pixels are: listed apart, not counted as a difference.
        same_pixels = [p for p in differ if p.suffix == ".png" and _same_pixels(sides["this"] / p, sides["other"] / p)]
        differ = [p for p in differ if p not in same_pixels]
        folders = len({p.parts[0] for p in ours})
        print(  # noqa: T201
            f"{folders} traces, {len(ours)} files: {len(alone)} on one side only, {len(differ)} differ"
            f" ({len(same_pixels)} PNG files with other bytes and the same pixels)"
        )
        for path in (alone + differ)[:20]:
            print(f"  {path}")  # noqa: T201
    return 1 if alone or differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
