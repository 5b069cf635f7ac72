"""A local batch's first replays start in the pool's fork server, before its workers exist
(emulator/batch_prestart.py): the replays are the same, the children are adopted once each."""

from __future__ import annotations

import contextlib
import os
import select
from pathlib import Path

import pytest
from clirun import assert_same_replay

from emulator import batch, batch_prestart, prestart
from emulator.batch import BatchTarget, run_batch
from emulator.check import BASELINE_FILE, load_baseline
from emulator.output import OutputNotOurs
from emulator.replay import replay_target
from emulator.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent
SMALL = [REPO / "scenarios" / "benign-dll", REPO / "scenarios" / "winhttp-downloader"]


def _targets() -> list[BatchTarget]:
    return [
        BatchTarget(
            target=str(folder),
            plan=load_scenario(folder),
            baseline=(str(folder / BASELINE_FILE), load_baseline(folder / BASELINE_FILE)),
        )
        for folder in SMALL
    ]


def test_first_replays_emulate_before_their_workers_and_replay_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "_usable_cores", lambda: 2)  # -j 2 on 2 cores, as on this machine
    ahead = run_batch(_targets(), tmp_path / "ahead", jobs=2, force=True)
    tasks = ahead.extra["tasks"]
    # both targets (one per worker) were emulated by children the fork server started before
    # it forked the workers, and each was adopted by the worker that got its task
    assert all(task["prestarted_at"] is not None for task in tasks), tasks
    assert all(task["prestarted_at"] < task["started_at"] for task in tasks), tasks
    assert [r.outcome for r in ahead.results] == ["completed", "completed"]
    assert [r.drift.drifted if r.drift else None for r in ahead.results] == [False, False]  # committed baselines
    assert batch._fork_server_pid() is None

    monkeypatch.setattr(batch, "PRESTART", False)
    own = run_batch(_targets(), tmp_path / "own", jobs=2, force=True)
    assert all(task["prestarted_at"] is None for task in own.extra["tasks"])
    for folder in SMALL:  # the same trace byte for byte and report, whoever forked the child
        assert_same_replay(tmp_path / "own" / folder.name, tmp_path / "ahead" / folder.name)


def test_children_are_started_ahead_only_when_the_preload_imports_the_output_libraries() -> None:
    for jobs, cores in ((1, 2), (2, 2), (3, 4), (1, 1), (4, 2), (2, 8)):
        ahead = "emulator.batch_preload_outputs" in batch.preload_modules(jobs, cores)
        assert batch.started_ahead(jobs, cores) == (jobs if ahead else 0), (jobs, cores)
    assert batch.started_ahead(1, 2) == 0 and batch.started_ahead(2, 2) == 2


def _pidfd_ended(pidfd: int) -> bool:
    return bool(select.select([pidfd], [], [], 5)[0])


def test_a_child_started_ahead_is_taken_once_by_its_own_plan_only(tmp_path: Path) -> None:
    plan, other = (load_scenario(folder) for folder in SMALL)
    batch_prestart._start(plan.model_dump_json())
    assert batch_prestart.claim(other) is None and batch_prestart.pending() == 1  # another plan: not it
    child = batch_prestart.adopt(plan)
    assert child is not None and batch_prestart.pending() == 0
    assert batch_prestart.claim(plan) is None  # once
    watch = os.dup(child.pidfd)
    try:
        result = replay_target(plan, tmp_path / "out")
        assert prestart.take() is None
        assert child.events.closed  # the replay read the adopted child's events, not a fork of its own
        assert result.status == "completed" and result.stages == 1
        assert _pidfd_ended(watch)
    finally:
        os.close(watch)
        os.waitpid(child.pid, 0)  # started by this process here (by the fork server in a batch)


def test_a_replay_that_fails_before_its_child_ends_the_adopted_child(tmp_path: Path) -> None:
    plan = load_scenario(SMALL[0])
    batch_prestart._start(plan.model_dump_json())
    pid = batch_prestart._children[batch_prestart.plan_key(plan.model_dump_json())].pid
    watch = os.pidfd_open(pid)
    busy = tmp_path / "out"
    busy.mkdir()
    (busy / "notes.txt").write_text("not a run's\n", encoding="utf-8")  # a folder no run wrote
    try:
        with pytest.raises(OutputNotOurs):
            batch.replay_task(plan.model_dump_json(), str(busy))
        # not left for the next replay in this worker (which would have another plan), and ended
        assert prestart.take() is None
        assert _pidfd_ended(watch)
    finally:
        os.close(watch)
        os.waitpid(pid, 0)


def test_a_worker_forgets_the_children_other_workers_took() -> None:
    plan, other = (load_scenario(folder) for folder in SMALL)
    for started in (plan, other):
        batch_prestart._start(started.model_dump_json())
    theirs = batch_prestart._children[batch_prestart.plan_key(other.model_dump_json())]
    pids = [entry.pid for entry in batch_prestart._children.values()]
    assert os.read(theirs.claim, 1)  # as another worker (a fork of the same fork server) takes it
    try:
        child = batch_prestart.adopt(plan)
        assert child is not None and prestart.take() is child
        assert batch_prestart.pending() == 0 and theirs.events.closed  # no copy left for later forks
        child.discard()
    finally:
        for pid in pids:  # started by this process here; end the one nobody read
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
            os.waitpid(pid, 0)
