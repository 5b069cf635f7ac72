#!/usr/bin/env python3
"""chainreplay batch benchmark (issue 15): local pool -j 1 vs -j 2, warm 3CX replay, Dask vs pool.

    python bench/batch.py [--json PATH] [--replays N] [--pool-only | --ab | --twin]

Eight replays (by default): the scenarios of ``MEASURED_SET`` (the four of issue 15 and four
generality chains, the set every session measured), then the other committed scenarios in sorted
order, repeated until there are enough, each under its own name. Measured, one run each, wall
time from submission to the last report written:

* the local pool with -j 1 and with -j 2 (``emulator.batch.run_batch``: workers started by a
  fork server and warmed by ``warm_engine`` inside the timing), throughput = replays / wall time;
* one 3CX replay in a warm worker: ``warm_engine()`` in this process, then ``replay_target`` of
  scenarios/3cx (emulation in its forked child, report and drawings written), best of 3;
* a Dask LocalCluster of 2 single-threaded worker processes on loopback against the local pool
  with -j 2 (cluster start-up timed apart): first with chainreplay's worker preload
  (emulator/batch_dask.py: each worker warms the engine and imports the output libraries as it
  starts, inside the cluster's start-up, as on a long-lived cluster), then without it (the batch
  warms the workers and their first replays import the libraries, inside the timing).

A second table says where the time went, per configuration: seconds before the first replay
starts (worker start-up and warm-up), the steady state (first emulation started, in a child
started ahead by the fork server or by a worker, to last report written) and the tail (how long
the first worker out of tasks waited for the last one); CPU seconds of the parent (this
process), of start-up (the pool's fork server, whose preload warms the engine once for every
worker, and the workers before their first task), of the workers' tasks (receiving events,
analysis, outputs) and of the emulation children. ``--pool-only``
measures the two local pools and nothing else; ``--ab`` measures them without, then with, the
first targets' emulation children started by the pool's fork server before its preload
(``emulator.batch.PRESTART``, emulator/batch_prestart.py), and prints the ratio of each. "1st emu"
is when the first emulation started (in a child started ahead, before any worker had a task).

``--twin`` asks how far ``-j 2`` is from what two cores give this batch at all. In one sitting it
measures the two-process scaling of this machine (a pure-Python loop in one process, then in two
at once: the throughput ratio), the pools ``-j 1`` and ``-j 2``, and the same replays split into
two ``-j 1`` batches (every other target, so each half has one of the two longest) run side by side
in two processes (each with its own pool, started together, timed from the first start to the
last end: two streams that share nothing, not even the warm-up, and need no coordination).
It prints ``-j 2 / -j 1``, the twins' throughput over ``-j 1``'s, and the bound ``scaling x -j 1
wall / -j 2 CPU``: the most ``-j 2`` could reach with the machine saturated and no idle core.

Prints a table and writes every figure as JSON (default reports/bench/batch.json).
See docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from emulator.batch import BatchTarget, run_batch  # noqa: E402
from emulator.replay import replay_target, warm_engine  # noqa: E402
from emulator.scenario import load_scenario  # noqa: E402

# The eight replays every session's figures were measured on (docs/performance.md): the
# scenarios first in this order, so that scenarios added later do not change the set.
MEASURED_SET = (
    "3cx",
    "3cx-x86",
    "benign-dll",
    "callback-mapview",
    "callback-mapview-x86",
    "custom-cipher",
    "custom-cipher-x86",
    "drop-load-dll",
)


def targets(count: int) -> list[BatchTarget]:
    found = sorted(p.parent for p in (ROOT / "scenarios").glob("*/scenario.toml"))
    first = [f for name in MEASURED_SET for f in found if f.name == name]
    folders = first + [f for f in found if f not in first]
    plans = [load_scenario(folder) for folder in folders]
    chosen = []
    for i in range(count):
        plan = plans[i % len(plans)]
        name = plan.name if i < len(plans) else f"{plan.name}-{i // len(plans) + 1}"
        chosen.append(BatchTarget(target=str(folders[i % len(plans)]), plan=plan.model_copy(update={"name": name})))
    return chosen


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed_batch(batch: list[BatchTarget], out: Path, **options: Any) -> dict[str, Any]:
    started, started_at, parent_cpu = time.perf_counter(), time.time(), _cpu(resource.RUSAGE_SELF)
    # as the command line runs it: its fork server forked from this process (one thread here)
    summary = run_batch(batch, out, force=True, fork_server_here=True, **options)
    wall = time.perf_counter() - started
    parent_cpu = _cpu(resource.RUSAGE_SELF) - parent_cpu
    outcomes = [r.outcome for r in summary.results]
    tasks = [t for t in summary.extra.get("tasks", []) if t]
    figures: dict[str, Any] = {
        "wall_s": round(wall, 2),
        "replays": len(batch),
        "throughput_per_min": round(60 * len(batch) / wall, 2),
        "sum_replay_s": round(sum(r.seconds for r in summary.results), 2),
        "outcomes": outcomes,
        "workers": summary.workers,
        "parent_cpu_s": round(parent_cpu, 2),
        # what each replayed task returned (emulator.batch.replay_task): per-replay CPU side by side
        "tasks": tasks,
    }
    if len(tasks) == len(batch):
        figures.update(_where_the_time_went(tasks, started_at))
        # the pool's fork server: its preload (engine warm-up, output libraries) is the workers'
        # start-up paid once, before it forks them
        figures["fork_server_cpu_s"] = round(summary.extra.get("fork_server_cpu_s") or 0.0, 2)
        figures["start_cpu_s"] = round(figures["worker_start_cpu_s"] + figures["fork_server_cpu_s"], 2)
        figures["prestarted"] = sum(1 for t in tasks if t.get("prestarted_at") is not None)
        if figures["prestarted"] and summary.extra.get("fork_server_children_cpu_s") is not None:
            # Children the fork server started ahead are its own, not their workers': their CPU is
            # what it reaped less the workers' (their own, to the end of their last task, and
            # their children's). About: a worker's CPU after its last task (exit) is not known.
            workers_cpu = sum(
                max(t["worker_cpu_before_s"] + t["cpu_s"] for t in tasks if t["worker"] == worker)
                for worker in {t["worker"] for t in tasks}
            )
            ahead = summary.extra["fork_server_children_cpu_s"] - workers_cpu - sum(t["child_cpu_s"] for t in tasks)
            figures["prestarted_child_cpu_s"] = round(max(ahead, 0.0), 2)
            figures["child_cpu_s"] = round(figures["child_cpu_s"] + figures["prestarted_child_cpu_s"], 2)
    return figures


def both_pools(batch: list[BatchTarget], root: Path, figures: dict[str, Any]) -> None:
    """The local pools -j 1 then -j 2 into ``figures`` (``pool_j1``, ``pool_j2``)."""
    for jobs in (1, 2):
        figures[f"pool_j{jobs}"] = timed_batch(batch, root / f"j{jobs}", jobs=jobs)
        print(f"pool -j {jobs}: {figures[f'pool_j{jobs}']['wall_s']} s", flush=True)


def _where_the_time_went(tasks: list[dict[str, Any]], started_at: float) -> dict[str, Any]:
    """CPU by process kind, the start-up before the first replay, the steady state, the tail."""
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        by_worker.setdefault(task["worker"], []).append(task)
    first_start = min(t["started_at"] for t in tasks)
    # the first emulation may have started before any task, in a child the fork server started
    # ahead (emulator/batch_prestart.py): the steady state counts from there
    first_emulation = min(t.get("prestarted_at") or t["started_at"] for t in tasks)
    ends = sorted(max(t["ended_at"] for t in own) for own in by_worker.values())
    steady = ends[-1] - first_emulation
    return {
        # each worker's CPU before its first task: interpreter, imports, warm_engine
        "worker_start_cpu_s": round(sum(min(t["worker_cpu_before_s"] for t in own) for own in by_worker.values()), 2),
        "worker_task_cpu_s": round(sum(t["cpu_s"] for t in tasks), 2),
        "child_cpu_s": round(sum(t["child_cpu_s"] for t in tasks), 2),
        # when the first replay's task started in a worker, and its first emulation
        "first_replay_starts_s": round(first_start - started_at, 2),
        "first_emulation_starts_s": round(first_emulation - started_at, 2),
        "steady_s": round(steady, 2),
        "steady_throughput_per_min": round(60 * len(tasks) / steady, 2),
        # how long the first worker to run out of tasks waited for the last one
        "tail_idle_s": round(ends[-1] - ends[0], 2),
        "order": [t["outdir"].rsplit("/", 1)[-1] for t in sorted(tasks, key=lambda t: t["started_at"])],
    }


def warm_3cx(out: Path, repeats: int = 3) -> dict[str, Any]:
    started = time.perf_counter()
    warm_engine()
    warm_up = time.perf_counter() - started
    plan = load_scenario(ROOT / "scenarios" / "3cx")
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        result = replay_target(plan, out / f"3cx-{i}")
        times.append(time.perf_counter() - t0)
        assert result.status == "completed", result
    best = round(min(times), 3)
    return {"warm_engine_s": round(warm_up, 2), "replay_s": [round(t, 3) for t in times], "best_s": best}


def dask_vs_pool(batch: list[BatchTarget], out: Path, pool_j2: dict[str, Any], preload: bool = True) -> dict[str, Any]:
    """The batch on a fresh LocalCluster; ``preload``: its workers started with chainreplay's worker
    preload (emulator/batch_dask.py: engine and output libraries warmed as each worker starts, so
    inside the cluster's start-up, timed apart), else warmed by the batch itself (inside its time)."""
    from dask.distributed import LocalCluster

    t0 = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=logging.ERROR,
        preload=["emulator.batch_dask"] if preload else [],
    )
    start_up = time.perf_counter() - t0
    try:
        dask = timed_batch(batch, out, scheduler=cluster.scheduler_address)
    finally:
        cluster.close()
    dask["cluster_start_s"] = round(start_up, 2)
    dask["worker_preload"] = preload
    dask["vs_pool_j2"] = round(dask["wall_s"] / pool_j2["wall_s"], 3)
    return dask


def _total_cpu(row: dict[str, Any]) -> float:
    """CPU seconds of a timed batch: parent, start-up, the workers' tasks, the emulation children."""
    start_cpu = row.get("start_cpu_s", row["worker_start_cpu_s"])
    return float(round(row["parent_cpu_s"] + start_cpu + row["worker_task_cpu_s"] + row["child_cpu_s"], 2))


def _where_rows(rows: list[tuple[str, dict[str, Any]]]) -> None:
    print(f"\n{'where the time went':32} {'start s':>8} {'1st emu':>8} {'steady s':>9} {'tail s':>7} ", end="")
    print(f"{'parent':>7} {'w start':>8} {'w tasks':>8} {'children':>9} {'CPU s':>7}")
    for label, row in rows:
        if "steady_s" not in row:
            continue
        start_cpu = row.get("start_cpu_s", row["worker_start_cpu_s"])
        print(f"{label:32} {row['first_replay_starts_s']:>8} {row['first_emulation_starts_s']:>8} ", end="")
        print(f"{row['steady_s']:>9} {row['tail_idle_s']:>7} ", end="")
        print(f"{row['parent_cpu_s']:>7} {start_cpu:>8} {row['worker_task_cpu_s']:>8} ", end="")
        print(f"{row['child_cpu_s']:>9} {_total_cpu(row):>7}")


def ab(batch: list[BatchTarget], path: Path) -> int:
    """The pools without, then with, the first targets' children started by the fork server
    (emulator.batch.PRESTART), one after the other in one sitting: the ratio of each."""
    import emulator.batch

    figures: dict[str, Any] = {"targets": [t.plan.name for t in batch]}
    rows = []
    with tempfile.TemporaryDirectory(prefix="chainreplay-bench-batch-") as tmp:
        for ahead in (False, True):
            emulator.batch.PRESTART = ahead
            label = "ahead" if ahead else "own"
            for jobs in (1, 2):
                key = f"{label}_j{jobs}"
                figures[key] = timed_batch(batch, Path(tmp) / key, jobs=jobs)
                print(f"{key}: {figures[key]['wall_s']} s", flush=True)
                rows.append((f"-j {jobs}, first children {label}", figures[key]))
            figures[f"{label}_j2_vs_j1"] = round(figures[f"{label}_j1"]["wall_s"] / figures[f"{label}_j2"]["wall_s"], 3)
    emulator.batch.PRESTART = True
    _where_rows(rows)
    for label in ("own", "ahead"):
        print(f"-j 2 / -j 1 throughput, first children {label}: {figures[f'{label}_j2_vs_j1']}x (target >= 1.7x)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"figures: {path}")
    return 0


# Seconds of the pure-Python loop timed per process when measuring the machine's scaling.
SCALING_LOOP_SECONDS = 1.0


def _loop_rate(seconds: float) -> float:
    """Iterations per second of a fixed pure-Python loop over ``seconds``."""
    done, table = 0, {}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for i in range(10_000):
            table[i & 255] = i
        done += 1
    return done / seconds


def _loop_member(seconds: float) -> None:
    print(_loop_rate(seconds), flush=True)


def two_process_scaling(seconds: float = SCALING_LOOP_SECONDS) -> dict[str, Any]:
    """Throughput of the loop in two processes at once over one process alone (best of 3 each)."""
    import subprocess

    command = [sys.executable, __file__, "--loop-member", str(seconds)]
    alone = max(float(subprocess.run(command, capture_output=True, text=True, check=True).stdout) for _ in range(3))
    pairs = []
    for _ in range(3):
        members = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        pairs.append(sum(float(m.communicate()[0]) for m in members))
    pair = max(pairs)
    return {"one_process": round(alone, 1), "two_processes": round(pair, 1), "scaling": round(pair / alone, 3)}


def _twin_member(count: int, part: int, out: Path) -> None:
    """One of the twins: build its half of the batch (``part`` 0 or 1), say ready, wait for the go
    line, run it with ``-j 1``, print when it started and ended."""
    batch = targets(count)[part::2]
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    summary = run_batch(batch, out, jobs=1, force=True, fork_server_here=True)
    print(json.dumps({"started": started, "ended": time.time(), "outcomes": [r.outcome for r in summary.results]}))


def twins(count: int, out: Path) -> dict[str, Any]:
    """The batch split in two ``-j 1`` batches run side by side, each in its own process."""
    import subprocess

    command = [sys.executable, __file__, "--replays", str(count), "--twin-member"]
    members = [
        subprocess.Popen(
            [*command, str(out / f"twin{k}"), "--part", str(k)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in (0, 1)
    ]
    for member in members:
        assert member.stdout is not None and member.stdout.readline().strip() == "ready"
    for member in members:
        assert member.stdin is not None
        member.stdin.write("go\n")
        member.stdin.flush()
    ends = [json.loads(member.communicate()[0]) for member in members]
    wall = max(e["ended"] for e in ends) - min(e["started"] for e in ends)
    return {
        "wall_s": round(wall, 2),
        "replays": count,
        "throughput_per_min": round(60 * count / wall, 2),
        "outcomes": [o for e in ends for o in e["outcomes"]],
    }


def twin(batch: list[BatchTarget], path: Path) -> int:
    """``--twin``: -j 2 against -j 1, two -j 1 side by side, and the machine's two-process scaling."""
    figures: dict[str, Any] = {"targets": [t.plan.name for t in batch]}
    figures["machine_scaling"] = two_process_scaling()
    print(f"two-process scaling of this machine: {figures['machine_scaling']['scaling']}x", flush=True)
    with tempfile.TemporaryDirectory(prefix="chainreplay-bench-batch-") as tmp:
        root = Path(tmp)
        both_pools(batch, root, figures)
        figures["twin_j1"] = twins(len(batch), root)
        print(f"two -j 1 side by side, half the replays each: {figures['twin_j1']['wall_s']} s", flush=True)
    j1, j2 = figures["pool_j1"], figures["pool_j2"]

    figures["ratios"] = {
        "j2_vs_j1_throughput": round(j1["wall_s"] / j2["wall_s"], 3),
        "twin_vs_j1_throughput": round(figures["twin_j1"]["throughput_per_min"] / j1["throughput_per_min"], 3),
    }
    if "child_cpu_s" in j1 and "child_cpu_s" in j2:
        figures["ratios"]["j1_cores_busy"] = round(_total_cpu(j1) / j1["wall_s"], 3)
        figures["ratios"]["j2_cores_busy"] = round(_total_cpu(j2) / j2["wall_s"], 3)
        scaling = figures["machine_scaling"]["scaling"]
        figures["ratios"]["j2_vs_j1_bound"] = round(scaling * j1["wall_s"] / _total_cpu(j2), 3)
    ratios = figures["ratios"]
    _where_rows([("local pool -j 1", j1), ("local pool -j 2", j2)])
    print(f"-j 2 / -j 1 throughput: {ratios['j2_vs_j1_throughput']}x (target >= 1.7x)")
    print(f"two -j 1 side by side (half each) / -j 1 throughput: {ratios['twin_vs_j1_throughput']}x")
    if "j2_vs_j1_bound" in ratios:
        print(f"cores busy: -j 1 {ratios['j1_cores_busy']}, -j 2 {ratios['j2_cores_busy']}; ", end="")
        print(f"bound (scaling x -j 1 wall / -j 2 CPU): {ratios['j2_vs_j1_bound']}x")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"figures: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--json", type=Path, default=ROOT / "reports" / "bench" / "batch.json")
    parser.add_argument("--replays", type=int, default=8)
    parser.add_argument("--pool-only", action="store_true", help="only the local pools -j 1 and -j 2")
    parser.add_argument(
        "--ab",
        action="store_true",
        help="only the local pools, -j 1 and -j 2 without then with the first children started ahead",
    )
    parser.add_argument(
        "--twin",
        action="store_true",
        help="-j 1, -j 2, two -j 1 side by side, and the machine's two-process scaling",
    )
    parser.add_argument("--twin-member", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--loop-member", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loop_member is not None:
        _loop_member(args.loop_member)
        return 0
    if args.twin_member is not None:
        _twin_member(args.replays, args.part, args.twin_member)
        return 0
    batch = targets(args.replays)
    if args.ab:
        return ab(batch, args.json)
    if args.twin:
        return twin(batch, args.json.with_name("batch-twin.json") if args.json.name == "batch.json" else args.json)
    figures: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "targets": [t.plan.name for t in batch],
    }
    with tempfile.TemporaryDirectory(prefix="chainreplay-bench-batch-") as tmp:
        root = Path(tmp)
        both_pools(batch, root, figures)
        if not args.pool_only:
            figures["dask_2_workers"] = dask_vs_pool(batch, root / "dask", figures["pool_j2"])
            print(f"dask 2 workers: {figures['dask_2_workers']['wall_s']} s", flush=True)
            cold = dask_vs_pool(batch, root / "dask0", figures["pool_j2"], preload=False)
            figures["dask_2_workers_no_preload"] = cold
            print(f"dask 2 workers, no preload: {figures['dask_2_workers_no_preload']['wall_s']} s", flush=True)
            figures["warm_3cx"] = warm_3cx(root / "warm")
    figures["ratios"] = {
        "j2_vs_j1_throughput": round(figures["pool_j1"]["wall_s"] / figures["pool_j2"]["wall_s"], 3),
        "j2_vs_j1_steady": round(figures["pool_j1"]["steady_s"] / figures["pool_j2"]["steady_s"], 3),
    }
    rows = [("local pool -j 1", figures["pool_j1"]), ("local pool -j 2", figures["pool_j2"])]
    if "dask_2_workers" in figures:
        figures["ratios"]["dask_vs_pool_j2_wall"] = figures["dask_2_workers"]["vs_pool_j2"]
        figures["ratios"]["dask_no_preload_vs_pool_j2_wall"] = figures["dask_2_workers_no_preload"]["vs_pool_j2"]
        rows.append(("Dask LocalCluster, 2 workers", figures["dask_2_workers"]))
        rows.append(("Dask, workers without preload", figures["dask_2_workers_no_preload"]))
    print(f"\n{len(batch)} replays: {', '.join(figures['targets'])}")
    print(f"{'run':32} {'wall s':>8} {'replays/min':>12} {'sum of replays s':>17}")
    for label, row in rows:
        print(f"{label:32} {row['wall_s']:>8} {row['throughput_per_min']:>12} {row['sum_replay_s']:>17}")
    if "warm_3cx" in figures:
        warm = figures["warm_3cx"]
        print(f"3CX replay in a warm worker: best {warm['best_s']} s of {warm['replay_s']}", end="")
        print(f" (warm-up {warm['warm_engine_s']} s)")
    _where_rows(rows)
    print(f"order of -j 2: {', '.join(figures['pool_j2'].get('order', []))}")
    ratios = figures["ratios"]
    print(f"-j 2 / -j 1 throughput: {ratios['j2_vs_j1_throughput']}x (target >= 1.7x)", end="")
    print(f"; steady state (first emulation started to last written): {ratios['j2_vs_j1_steady']}x")
    if "dask_vs_pool_j2_wall" in ratios:
        print(f"Dask / pool -j 2 wall time: {ratios['dask_vs_pool_j2_wall']} (target <= 1.15)", end="")
        print(f"; workers without the preload: {ratios['dask_no_preload_vs_pool_j2_wall']}", end="")
        starts = (figures["dask_2_workers"]["cluster_start_s"], figures["dask_2_workers_no_preload"]["cluster_start_s"])
        print(f" (cluster start-up, timed apart: {starts[0]} s with the preload, {starts[1]} s without)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
