"""A local batch stopped by a signal leaves nothing running and loses nothing recorded.

SIGTERM (or Ctrl-C) reaches the batch's process: no new replay starts, the replay running writes
its partial report (outcome interrupted, as ``run`` does), batch.json names the signal and the
command exits 128 + it. SIGKILL cannot be caught: the fork server and the workers die with the
batch anyway (parent-death signals down the chain), and so do their emulation children.

Each batch runs as a real command in its own session, so that every process it started can be
found afterwards by its session id, whatever re-parented it."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
QUICK = REPO / "scenarios" / "benign-dll"


def _spinning_scenario(root: Path) -> Path:
    """Shellcode that loops until its 60-second timeout: a replay still running when signalled."""
    folder = root / "spin"
    (folder / "samples").mkdir(parents=True)
    (folder / "samples" / "spin.bin").write_bytes(b"\xeb\xfe")  # jmp $
    (folder / "scenario.toml").write_text(
        '[scenario]\nname = "spin"\n\n[target]\npath = "samples/spin.bin"\n'
        'emu_path = \'C:\\spin.bin\'\nkind = "shellcode"\narch = "x64"\n\n[limits]\ntimeout = 60\n',
        encoding="utf-8",
    )
    digest = hashlib.sha256(b"\xeb\xfe").hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  samples/spin.bin\n", encoding="utf-8")
    return folder


def _session_processes(sid: int) -> list[str]:
    """The processes still alive (not zombies) in session ``sid``."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[3]) == sid and stat[0] != "Z":
            left.append(f"{entry.name} {(entry / 'cmdline').read_bytes()[:80]!r}")
    return left


def _until(condition: object, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def _start_batch(tmp_path: Path, jobs: int) -> tuple[subprocess.Popen[str], Path]:
    out = tmp_path / "out"
    batch = subprocess.Popen(
        [sys.executable, "-m", "emulator", "batch", str(_spinning_scenario(tmp_path)), str(QUICK)]
        + ["-o", str(out), "-j", str(jobs), "--force"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    # the spinning replay is emulating (its trace is being written early), the quick one is done
    started = _until(
        lambda: (out / "spin" / ".trace.jsonl.early").exists() and (out / QUICK.name / "report.json").exists(), 120
    )
    if not started:
        batch.kill()
        pytest.fail(f"the batch did not get going: {batch.communicate()}")
    return batch, out


@pytest.mark.parametrize(("signum", "jobs"), [(signal.SIGTERM, 2), (signal.SIGINT, 1)])
def test_a_signalled_batch_stops_its_replays_writes_what_they_recorded_and_leaves_nothing(
    tmp_path: Path, signum: int, jobs: int
) -> None:
    batch, out = _start_batch(tmp_path, jobs)
    os.kill(batch.pid, signum)
    stdout, stderr = batch.communicate(timeout=60)
    assert batch.returncode == 128 + signum, (stdout, stderr)
    assert "Traceback" not in stderr, stderr
    summary = json.loads((out / "batch.json").read_text(encoding="utf-8"))
    assert summary["interrupted_by"] == signal.Signals(signum).name
    outcomes = {row["name"]: row["outcome"] for row in summary["targets"]}
    assert outcomes == {"spin": "interrupted", QUICK.name: "completed"}, summary
    # the running replay stopped its child and wrote its partial report, as `run` does
    report = json.loads((out / "spin" / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "interrupted", report["outcome"]
    assert signal.Signals(signum).name in report["outcome"]["detail"]
    assert (out / "spin" / "trace.jsonl").is_file()
    assert _until(lambda: not _session_processes(batch.pid), 10), _session_processes(batch.pid)


def test_a_killed_batch_takes_its_fork_server_workers_and_children_with_it(tmp_path: Path) -> None:
    batch, _ = _start_batch(tmp_path, 2)
    assert len(_session_processes(batch.pid)) >= 4  # batch, fork server, workers, emulation child
    os.kill(batch.pid, signal.SIGKILL)
    batch.communicate(timeout=30)
    assert _until(lambda: not _session_processes(batch.pid), 10), _session_processes(batch.pid)


@pytest.mark.parametrize(("parents", "alive"), [((1, 1), True), ((4242, 1), False)])
def test_a_batch_process_dies_with_its_parent_even_when_the_parent_is_pid_1(
    parents: tuple[int, int], alive: bool
) -> None:
    """``end_with_parent`` (the fork server's and the workers'): a parent that is pid 1 (a
    container's entry point running the batch) is a parent, not a sign that it died; a parent
    that changed between the two reads around arming the signal did die."""
    script = (
        "import os, itertools\n"
        f"answers = itertools.chain({list(parents)!r}, itertools.repeat({parents[-1]}))\n"
        "os.getppid = lambda: next(answers)\n"
        "from emulator.sandbox import end_with_parent\n"
        "end_with_parent()\n"
        "print('alive')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert (done.returncode == 0 and done.stdout.strip() == "alive") is alive, done


def _stubborn_replay(seconds: float) -> str:
    """A task that outlives the batch's grace: it ignores the signal the batch forwards."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)
    return "done"


def test_a_second_signal_ends_the_grace_the_running_replays_were_given() -> None:
    """The first signal gives the replays running BATCH_STOP_GRACE_SECONDS to write their partial
    reports; a second one (Ctrl-C twice) ends that wait: the workers are killed at once."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from emulator import batch as batch_module
    from emulator.lifecycle import SignalWatch

    assert batch_module.BATCH_STOP_GRACE_SECONDS >= 5
    pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
    future = pool.submit(_stubborn_replay, 60)
    assert _until(lambda: future.running(), 30)
    time.sleep(0.3)  # the worker has set its handler
    worker = next(iter(pool._processes.values()))  # type: ignore[attr-defined]
    with SignalWatch() as watch:
        os.kill(os.getpid(), signal.SIGINT)
        assert _until(lambda: watch.signum == signal.SIGINT, 5) and not watch.insisted()
        second_at = time.monotonic() + 0.5

        def insisted() -> bool:
            if time.monotonic() >= second_at and watch.received < 2:
                os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, half a second in
            return watch.insisted()

        started = time.monotonic()
        batch_module._stop_workers(pool, [future], signal.SIGTERM, insisted)
        took = time.monotonic() - started
    assert watch.received == 2
    assert took < batch_module.BATCH_STOP_GRACE_SECONDS / 2, took
    assert not worker.is_alive()
