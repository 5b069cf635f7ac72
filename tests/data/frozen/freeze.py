"""Re-record the frozen traces the snapshot tests analyse (tests/test_snapshots.py).

Each case is a small real replay; only what the analysis reads is kept: trace.jsonl and blobs/.
Run from the repository root, then refresh the snapshots:

    python tests/data/frozen/freeze.py
    CHAINREPLAY_REFRESH_SNAPSHOTS=1 python -m pytest -q tests/test_snapshots.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from emulator.plan import ExportCall, ReplayPlan, StringArg  # noqa: E402
from emulator.replay import replay_target  # noqa: E402
from emulator.scenario import load_scenario  # noqa: E402
from emulator.trace import BLOB_DIR, TRACE_FILE  # noqa: E402

HERE = Path(__file__).resolve().parent
BINS = REPO / "tests" / "bins"


def cases() -> dict[str, ReplayPlan]:
    return {
        "hello-dll": ReplayPlan(
            name="hello",
            target_path=str(BINS / "hello.dll"),
            emu_path="C:\\Users\\analyst\\Desktop\\hello.dll",
            exports=[ExportCall(name="Greet", args=[StringArg(text="world"), 2])],
        ),
        "winhttp-downloader": load_scenario(REPO / "scenarios" / "winhttp-downloader"),
        "3cx": load_scenario(REPO / "scenarios" / "3cx"),
    }


def main() -> None:
    for name, plan in cases().items():
        with tempfile.TemporaryDirectory() as tmp:
            replay_target(plan, Path(tmp) / "out", isolate=False)
            target = HERE / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            shutil.copy(Path(tmp) / "out" / TRACE_FILE, target / TRACE_FILE)
            shutil.copytree(Path(tmp) / "out" / BLOB_DIR, target / BLOB_DIR)
        print(f"froze {name}")  # noqa: T201


if __name__ == "__main__":
    main()
