"""Batches: a local pool of warm workers and a real Dask LocalCluster (loopback only).

Targets are the two small scenarios (benign-dll, winhttp-downloader) and, for the "one bad
target costs one result" test, a scenario whose shellcode spins until its 1-second timeout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import CliResult

from emulator.check import BASELINE_FILE, dumps_baseline

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "scenarios"
SMALL = [SCENARIOS / "benign-dll", SCENARIOS / "winhttp-downloader"]


def _summary(outdir: Path) -> dict[str, Any]:
    return json.loads((outdir / "batch.json").read_text(encoding="utf-8"))


def _spinning_scenario(root: Path, timeout: int = 1) -> Path:
    """A scenario whose shellcode loops forever: its timeout (1 second) ends it."""
    folder = root / "spin"
    (folder / "samples").mkdir(parents=True)
    (folder / "samples" / "spin.bin").write_bytes(b"\xeb\xfe")  # jmp $
    (folder / "scenario.toml").write_text(
        '[scenario]\nname = "spin"\n\n[target]\npath = "samples/spin.bin"\n'
        'emu_path = \'C:\\spin.bin\'\nkind = "shellcode"\narch = "x64"\n\n[limits]\n'
        f"timeout = {timeout}\n",
        encoding="utf-8",
    )
    import hashlib

    digest = hashlib.sha256(b"\xeb\xfe").hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  samples/spin.bin\n", encoding="utf-8")
    return folder


def test_local_batch_table_summary_resume_force_and_one_bad_target(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    out = tmp_path / "batch"
    spin = _spinning_scenario(tmp_path)
    result = cli("batch", *SMALL, spin, "-j", "2", "-o", out, "--fail-on", "limit")
    assert result.rc == 1, result.out + result.err  # the spinning target hit its limit; --fail-on limit
    lines = result.out.splitlines()
    progress = [ln for ln in lines if ln.startswith("[")]
    assert len(progress) == 3 and all(ln.startswith(("[1/3] ", "[2/3] ", "[3/3] ")) for ln in progress)
    header = next(i for i, ln in enumerate(lines) if ln.startswith("target "))
    assert lines[header].split() == ["target", "outcome", "stages", "drift", "time"]
    rows = {ln.split()[0]: ln.split() for ln in lines[header + 2 : header + 5]}
    assert rows["benign-dll"][1:3] == ["completed", "1"]
    assert rows["winhttp-downloader"][1:3] == ["completed", "2"]
    assert rows["spin"][1:3] == ["timeout", "FAIL"]
    assert "3 targets (3 replayed, 0 resumed)" in result.out

    summary = _summary(out)
    assert summary["format"] == "chainreplay/batch/1" and summary["workers"] == 2
    by_name = {t["name"]: t for t in summary["targets"]}
    assert by_name["spin"]["outcome"] == "timeout" and by_name["spin"]["failed"]
    assert by_name["benign-dll"]["outcome"] == "completed" and not by_name["benign-dll"]["failed"]
    workers = {t["worker"] for t in summary["targets"]}
    assert all(w and f"pid {os.getpid()}" not in w for w in workers), workers
    for name in ("benign-dll", "winhttp-downloader", "spin"):
        report = json.loads((out / name / "report.json").read_text(encoding="utf-8"))
        assert report["scenario"] == name
    stamp = (out / "benign-dll" / "report.json").stat().st_mtime_ns

    again = cli("batch", *SMALL, "-j", "2", "-o", out)
    assert again.rc == 0, again.out
    assert "2 targets (0 replayed, 2 resumed)" in again.out
    assert (out / "benign-dll" / "report.json").stat().st_mtime_ns == stamp
    assert all(t["resumed"] for t in _summary(out)["targets"])

    forced = cli("batch", SMALL[0], "-j", "1", "-o", out, "--force")
    assert "1 targets (1 replayed, 0 resumed)" in forced.out
    assert (out / "benign-dll" / "report.json").stat().st_mtime_ns != stamp


def test_batch_check_exits_1_on_drift(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    folder = tmp_path / "benign-dll"
    shutil.copytree(SCENARIOS / "benign-dll", folder)
    baseline = json.loads((folder / BASELINE_FILE).read_text(encoding="utf-8"))
    baseline["stages"][0]["name"] = "other.dll"
    (folder / BASELINE_FILE).write_text(dumps_baseline(baseline), encoding="utf-8")
    result = cli("batch", folder, "-j", "1", "-o", tmp_path / "out", "--check", "-q")
    assert result.rc == 1, result.out
    assert "1 changes" in result.out
    assert "~ stage: name: other.dll -> benign.dll" in result.out
    assert _summary(tmp_path / "out")["targets"][0]["drift"] == 1
    missing = tmp_path / "nobaseline"
    shutil.copytree(SCENARIOS / "benign-dll", missing, ignore=shutil.ignore_patterns(BASELINE_FILE))
    bad = cli("batch", missing, "--check", "-o", tmp_path / "out2")
    assert bad.rc == 2 and "--check needs" in bad.err
    assert cli("batch", *SMALL, "--scheduler", "localhost:1").rc == 2


def test_a_target_the_batch_cannot_replay_is_its_own_failed_row_and_the_others_run(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    """A folder of samples with an ARM64 PE and an empty file in it: both are rows of their own
    (outcome error, the reason in one line naming the file), every other target is replayed, and
    the batch exits 2 (bad input) once they have."""
    import struct

    arm = tmp_path / "arm64tool.exe"
    data = bytearray((REPO / "tests" / "bins" / "hello_exe.exe").read_bytes())
    lfanew = struct.unpack_from("<I", data, 0x3C)[0]
    struct.pack_into("<H", data, lfanew + 4, 0xAA64)  # IMAGE_FILE_MACHINE_ARM64
    arm.write_bytes(bytes(data))
    empty = tmp_path / "empty.exe"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    result = cli("batch", arm, SCENARIOS / "benign-dll", empty, "-j", "1", "-o", out)
    assert result.rc == 2, result.out + result.err
    assert "Traceback" not in result.err
    rows = {t["name"]: t for t in _summary(out)["targets"]}
    assert rows["benign-dll"]["outcome"] == "completed"
    assert (out / "benign-dll" / "report.json").is_file()
    assert rows["arm64tool"]["outcome"] == "error" and "0xaa64" in rows["arm64tool"]["detail"]
    assert str(arm) in rows["arm64tool"]["detail"]
    assert rows["empty"]["outcome"] == "error" and "empty file" in rows["empty"]["detail"]
    assert not (out / "arm64tool").exists() and not (out / "empty").exists()
    assert _summary(out)["failed"] == 2
    assert "arm64tool" in result.out and "empty" in result.out  # in the table and the failure lines


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[str]:
    """A real Dask LocalCluster on loopback: two single-threaded worker processes, each started
    with chainreplay's worker preload (emulator/batch_dask.py). Closed afterwards."""
    from dask.distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
        preload=["emulator.batch_dask"],
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _worker_state() -> tuple[bool, bool, bool]:
    """In a Dask worker: engine imported, output libraries imported, exports' forked copy on."""
    import sys

    import emulator.output

    engine = "emulator.backends.speakeasy" in sys.modules and "speakeasy" in sys.modules
    outputs = "emulator.analysis.pipeline" in sys.modules and "stix2" in sys.modules
    return engine, outputs, emulator.output.EXPORTS_BESIDE_DRAWING


def test_batch_on_a_dask_local_cluster(dask_cluster: str, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    from dask.distributed import Client

    from emulator.batch import _usable_cores, oversubscribed, threads_by_host, warm_dask_worker

    assert dask_cluster.startswith("tcp://127.0.0.1:")
    with Client(dask_cluster, set_as_default=False) as client:
        # The preload warmed each worker as it started, before any batch: engine and output libraries.
        assert set(client.run(_worker_state).values()) == {(True, True, True)}
        info = client.scheduler_info()
        assert threads_by_host(info) == {"127.0.0.1": 2}
        # A worker told how many replays its host runs at once turns the exports' copy off when
        # they and their children outnumber the cores, on otherwise.
        client.run(warm_dask_worker, {"127.0.0.1": 64})
        assert {state[2] for state in client.run(_worker_state).values()} == {False}
        client.run(warm_dask_worker, {"127.0.0.1": 1})
        assert {state[2] for state in client.run(_worker_state).values()} == {not oversubscribed(1, _usable_cores())}
    out = tmp_path / "dask"
    result = cli("batch", *SMALL, "--scheduler", dask_cluster, "-o", out, "--check")
    assert result.rc == 0, result.out + result.err
    assert f"on {dask_cluster}" in result.out
    summary = _summary(out)
    assert summary["scheduler"] == dask_cluster and summary["workers"] == 2
    assert [t["outcome"] for t in summary["targets"]] == ["completed", "completed"]
    assert [t["drift"] for t in summary["targets"]] == [0, 0]  # same behaviour as the committed baselines
    assert all(f"pid {os.getpid()}" not in t["worker"] for t in summary["targets"])
    report = json.loads((out / "winhttp-downloader" / "report.json").read_text(encoding="utf-8"))
    assert [s["kind"] for s in report["stages"]] == ["pe", "shellcode"]
    assert report["containment"]["isolation"] == "child process"
    with Client(dask_cluster, set_as_default=False) as client:  # the batch told them: 2 on this host
        expected = not oversubscribed(2, _usable_cores())
        assert {state[2] for state in client.run(_worker_state).values()} == {expected}


def test_a_signalled_dask_batch_stops_its_running_replays_and_says_so(dask_cluster: str, tmp_path: Path) -> None:
    """SIGTERM to a batch on a cluster: the replay running in a worker's thread (which receives no
    signal) is told through the batch's stop variable and ends as ``run`` does on SIGTERM, long
    before its own timeout, with its partial report; what had not begun does not begin;
    batch.json names the signal, every target not finished is interrupted, the command exits 143."""
    import signal
    import subprocess
    import sys
    import time

    spin = _spinning_scenario(tmp_path, timeout=90)
    out = tmp_path / "out"
    batch = subprocess.Popen(
        [sys.executable, "-m", "emulator", "batch", str(spin), *map(str, SMALL), "--scheduler", dask_cluster]
        + ["-o", str(out), "--force"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 120
    while not (out / "spin" / ".trace.jsonl.early").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    signalled = time.monotonic()
    batch.send_signal(signal.SIGTERM)
    stdout, stderr = batch.communicate(timeout=60)
    assert batch.returncode == 143, (stdout, stderr)
    assert "Traceback" not in stderr, stderr
    assert time.monotonic() - signalled < 30  # not the spin's 90 s timeout
    summary = _summary(out)
    assert summary["interrupted_by"] == "SIGTERM"
    outcomes = {row["name"]: row["outcome"] for row in summary["targets"]}
    assert outcomes["spin"] == "interrupted", outcomes
    assert set(outcomes.values()) <= {"interrupted", "completed"}, outcomes
    # the running replay wrote its partial report before the batch ended: stopped by the batch
    report = json.loads((out / "spin" / "report.json").read_text(encoding="utf-8"))
    assert report["outcome"]["status"] == "interrupted", report["outcome"]
    assert "SIGTERM" in report["outcome"]["detail"], report["outcome"]
    assert report["api_calls"] == [] and (out / "spin" / "trace.jsonl").is_file()


def test_a_dask_batch_keeps_one_task_per_worker_thread_in_flight(
    dask_cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three replays on two single-threaded workers: the third is submitted only once one of the
    first two has ended, longest expected first, so none waits in a busy worker's queue."""
    from dask.distributed import Client

    import emulator.batch as batch
    from emulator.scenario import load_scenario

    plans = [load_scenario(folder) for folder in SMALL]
    plans.append(plans[0].model_copy(update={"name": "benign-dll-again"}))
    targets = [batch.BatchTarget(target=plan.name, plan=plan) for plan in plans]
    submitted: list[tuple[str, int]] = []  # (target, tasks not yet finished when it was submitted)
    clients: list[Client] = []

    def client_for(scheduler: str) -> Client:
        client = Client(scheduler, set_as_default=False)
        inner, futures = client.submit, []

        def submit(function: Any, *args: Any, **kwargs: Any) -> Any:
            submitted.append((Path(args[1]).name, sum(1 for f in futures if not f.done())))
            futures.append(inner(function, *args, **kwargs))
            return futures[-1]

        client.submit = submit  # type: ignore[method-assign]
        clients.append(client)
        return client

    monkeypatch.setattr(batch, "_dask_client", client_for)
    summary = batch.run_batch(targets, tmp_path / "slots", scheduler=dask_cluster, force=True)
    assert [r.outcome for r in summary.results] == ["completed"] * 3
    assert [name for name, _ in submitted] == ["winhttp-downloader", "benign-dll", "benign-dll-again"]
    assert [running for _, running in submitted] == [0, 1, 1], submitted  # the third after one ended
    assert clients and all(client.status == "closed" for client in clients)


def test_pending_targets_start_longest_expected_first_on_workers_forked_warm(tmp_path: Path) -> None:
    """By the bytes a target reads on a first batch; by the times of the batch before after that.
    The pool's workers start warm: forked from a fork server that warmed the engine once."""
    from emulator.batch import BatchTarget, _fork_server_pid, previous_seconds, run_batch
    from emulator.scenario import load_scenario

    targets = [BatchTarget(target=str(f), plan=load_scenario(f)) for f in SMALL]  # 3072 and 3584 bytes
    out = tmp_path / "order"
    last: dict[str, Any] = {}

    def started_order() -> list[str]:
        summary = run_batch(targets, out, jobs=1, force=True)
        last.update(summary.extra)
        assert [r.name for r in summary.results] == ["benign-dll", "winhttp-downloader"]  # as given
        tasks = summary.extra["tasks"]
        return [t.plan.name for _, t in sorted(zip([task["started_at"] for task in tasks], targets, strict=True))]

    assert started_order() == ["winhttp-downloader", "benign-dll"]  # the larger sample first
    # The workers are forks of the pool's fork server, which warmed the engine once (0.45 to 1 s
    # of CPU, by the host); the worker (-j 1: one) used a small part of that before its first
    # replay; the server is gone.
    worker_before = min(task["worker_cpu_before_s"] for task in last["tasks"])
    server = last["fork_server_cpu_s"]
    assert worker_before < 0.5, last["tasks"]
    assert server is None or (server > 0.2 and worker_before < server / 3), (server, last["tasks"])
    assert _fork_server_pid() is None
    assert set(previous_seconds(out)) == {"benign-dll", "winhttp-downloader"}
    document = _summary(out)
    for row in document["targets"]:
        row["seconds"] = 9.0 if row["name"] == "benign-dll" else 1.0
    (out / "batch.json").write_text(json.dumps(document), encoding="utf-8")
    assert started_order() == ["benign-dll", "winhttp-downloader"]  # the longer last time first
    (out / "batch.json").write_text("{not json", encoding="utf-8")
    assert previous_seconds(out) == {}


def test_a_failed_dask_worker_warm_up_is_logged_and_the_worker_starts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import emulator.batch as batch
    from emulator.batch_dask import dask_setup

    def broken(threads_on_host: int | None = None, outputs: bool = False) -> int:
        raise OSError("no engine here")

    monkeypatch.setattr(batch, "warm_worker", broken)
    with caplog.at_level(logging.WARNING, logger="emulator.batch_dask"):
        dask_setup(None)  # returns: Dask goes on starting the worker
    assert "worker warm-up failed" in caplog.text and "no engine here" in caplog.text
