"""A local batch's fork server is forked from the batch's process when that has one thread
(emulator/batch_forkserver.py), else started by multiprocessing as a new interpreter; the
replays are the same either way, and the server is gone when the batch ends.

The checks run in fresh interpreters: the test process itself may hold other threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from clirun import assert_same_replay

from emulator.batch import BatchTarget, run_batch
from emulator.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent
SMALL = [REPO / "scenarios" / "benign-dll", REPO / "scenarios" / "winhttp-downloader"]

# Run in a fresh interpreter: the pool's fork server as the batch starts it, seen from the
# batch (its command line, its parent) and from a worker (the worker's parent is the server).
_PROBE = textwrap.dedent(
    """
    import json, os, sys, threading
    from pathlib import Path
    from emulator import batch, batch_forkserver

    def main():
        if sys.argv[1] == "thread":
            threading.Thread(target=threading.Event().wait, daemon=True).start()
        pool, how = batch._local_executor(1, fork_server_here=True)
        with pool:
            worker_parent = pool.submit(os.getppid).result()
        pid = batch._fork_server_pid()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\\0")
        ours = Path("/proc/self/cmdline").read_bytes().split(b"\\0")
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        batch._stop_fork_server(None)
        print(json.dumps({
            "how": how, "server": pid, "worker_parent": worker_parent, "batch": os.getpid(),
            "server_parent": int(stat[1]), "same_command": command == ours,
            "forkserver_command": any(b"multiprocessing.forkserver" in part for part in command),
            "left": batch._fork_server_pid(), "alive": Path(f"/proc/{pid}").exists() and
                Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z",
        }))

    if __name__ == "__main__":
        main()
    """
)


def _probe(tmp_path: Path, mode: str) -> dict[str, Any]:
    script = tmp_path / "probe.py"
    script.write_text(_PROBE, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), mode],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_a_one_thread_batch_forks_its_fork_server(tmp_path: Path) -> None:
    seen = _probe(tmp_path, "alone")
    assert seen["how"] == "forked", seen
    # a fork of the batch's process (same command line, its child), not a new interpreter
    assert seen["same_command"] and not seen["forkserver_command"], seen
    assert seen["server_parent"] == seen["batch"], seen
    assert seen["worker_parent"] == seen["server"], seen  # the workers are the server's forks
    assert seen["left"] is None and not seen["alive"], seen  # stopped and reaped at the end


def test_a_batch_with_another_thread_lets_multiprocessing_start_it(tmp_path: Path) -> None:
    seen = _probe(tmp_path, "thread")
    assert seen["how"] == "started", seen
    assert seen["forkserver_command"] and not seen["same_command"], seen
    assert seen["worker_parent"] == seen["server"], seen
    assert seen["left"] is None and not seen["alive"], seen


def _replay_both_ways(tmp_path: Path) -> dict[str, str]:
    """Replays SMALL with the server forked, then started afresh, in one fresh interpreter each."""
    script = tmp_path / "both.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys
            from pathlib import Path
            from emulator import batch_forkserver
            from emulator.batch import BatchTarget, run_batch
            from emulator.scenario import load_scenario

            if __name__ == "__main__":
                batch_forkserver.FORK_FROM_BATCH = sys.argv[1] == "forked"
                folders = [Path(p) for p in sys.argv[3:]]
                targets = [BatchTarget(target=str(f), plan=load_scenario(f)) for f in folders]
                summary = run_batch(targets, Path(sys.argv[2]), jobs=2, force=True, fork_server_here=True)
                print(json.dumps({"how": summary.extra["fork_server"],
                                  "outcomes": [r.outcome for r in summary.results]}))
            """
        ),
        encoding="utf-8",
    )
    seen = {}
    for mode in ("forked", "started"):
        done = subprocess.run(
            [sys.executable, str(script), mode, str(tmp_path / mode), *map(str, SMALL)],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["outcomes"] == ["completed", "completed"], result
        seen[mode] = result["how"]
    return seen


def test_the_replays_are_the_same_whichever_way_the_server_started(tmp_path: Path) -> None:
    assert _replay_both_ways(tmp_path) == {"forked": "forked", "started": "started"}
    for folder in SMALL:
        assert_same_replay(tmp_path / "forked" / folder.name, tmp_path / "started" / folder.name)


def _what_the_batch_says(targets: list[BatchTarget], out: Path) -> list[str]:
    """``on_started`` and ``on_result`` of a batch into ``out``, in the order they came."""
    said: list[str] = []
    run_batch(
        targets,
        out,
        jobs=1,
        on_started=lambda: said.append("started"),
        on_result=lambda result: said.append(f"{result.name}:{'resumed' if result.resumed else result.outcome}"),
    )
    return said


def test_resumed_targets_are_reported_once_the_workers_are_started(tmp_path: Path) -> None:
    """A progress display starts (a thread) on ``on_started``: nothing is reported before it."""
    targets = [BatchTarget(target=str(f), plan=load_scenario(f)) for f in SMALL]
    run_batch(targets[:1], tmp_path / "out", jobs=1, force=True)
    said = _what_the_batch_says(targets, tmp_path / "out")
    assert said == ["started", "benign-dll:resumed", "winhttp-downloader:completed"]


def test_a_batch_with_nothing_to_replay_still_says_started(tmp_path: Path) -> None:
    targets = [BatchTarget(target=str(f), plan=load_scenario(f)) for f in SMALL[:1]]
    run_batch(targets, tmp_path / "out", jobs=1, force=True)
    assert _what_the_batch_says(targets, tmp_path / "out") == ["started", "benign-dll:resumed"]
