"""Batches: many targets replayed on a local pool of warm workers or on a Dask cluster.

Each target is one task, ``replay_task(plan_json, outdir, force)``: a plain function of plain
values, so the same task runs in a local worker process or on a Dask worker. Every replay is
still :func:`emulator.replay.replay_target` with its emulation in its own contained child under
its limits: a hung or crashing emulation costs one result, not the batch.

Local: a ``ProcessPoolExecutor`` of ``-j`` workers started by a fork server (the parent may
have threads: the progress bar). The fork server warms the engine before it forks them
(:func:`preload_modules`), so ``-j N`` pays that once and the workers share its memory; each
worker still runs :func:`warm_worker` (nearly free when warm, the whole warm-up when the fork
server was started by someone else). When the workers and their children outnumber the cores,
the fork server also starts the first targets' emulation children before its long preload, and
the workers adopt them (emulator/batch_prestart.py). The fork server is stopped when the batch ends.
Dask: ``dask.distributed.Client(scheduler)``, one task per worker thread in flight
(:func:`dask_slots`); each worker is warmed (``Client.run``; nearly free
when its workers were started with the preload emulator/batch_dask.py, which warms the engine and
imports the output libraries as each worker starts) and told how many replays its host runs at
once (:func:`warm_dask_worker`: an oversubscribed host writes the exports without a forked copy).
Dask's worker processes are daemonic and multiprocessing refuses children to a daemonic
process; the replay's emulation child is killed and joined by the task that started it, so
the task lifts that flag for the replay's duration (:func:`_children_allowed`).

Longest first: the pending targets are started in the order of their expected time, longest
first (:func:`expected_seconds`), so that a pool does not end on one long replay while its
other workers are idle. The summary keeps the order the targets were given in.

Resumable: beside each report, ``batch-key.json`` records the sample's sha256 and a hash of the
replay's configuration (the plan, the scenario's SHA256SUMS, chainreplay's version). A target
whose report exists under the same key is not replayed again (``force`` replays it).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing as mp
import os
import resource
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator import __version__
from emulator.check import TargetResult, judge
from emulator.expect import Expect
from emulator.lifecycle import SignalWatch, StopRequest
from emulator.plan import ReplayPlan
from emulator.report import Report

BATCH_FORMAT = "chainreplay/batch/1"
SUMMARY_FILE = "batch.json"
KEY_FILE = "batch-key.json"
# The local pool's fork server starts the first targets' emulation children before its preload
# (emulator/batch_prestart.py, :func:`started_ahead`); False: the workers fork every child themselves.
PRESTART = True
# After a termination signal, seconds the replays running are given to write their partial
# reports before their workers are killed.
BATCH_STOP_GRACE_SECONDS = 10
# A replay on a Dask worker learns that its batch stopped within this (the interval at which it
# asks the scheduler).
STOP_POLL_SECONDS = 0.5
# Seconds to wait for a Dask scheduler to answer before giving up.
SCHEDULER_CONNECT_TIMEOUT = 10


class BatchError(Exception):
    """The batch cannot run (bad scheduler address, unreachable cluster): one line."""


@dataclass(frozen=True)
class BatchTarget:
    target: str
    plan: ReplayPlan
    expect: Expect | None = None
    baseline: tuple[str, dict[str, Any]] | None = None  # (path, document)


@dataclass
class BatchSummary:
    results: list[TargetResult]
    path: Path
    seconds: float
    workers: int
    scheduler: str | None
    replayed: int = 0
    resumed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    # The termination signal that stopped the batch (the CLI exits 128 + it), if any.
    signal: int | None = None


# ---- the task (runs in a worker) --------------------------------------------------------------


@contextmanager
def _children_allowed() -> Iterator[None]:
    """Let a daemonic worker (a Dask worker) start the replay's emulation child.

    multiprocessing refuses children to daemonic processes because they would be orphaned when
    the daemon is terminated; the replay kills and joins its child before it returns.
    """
    process = mp.current_process()
    config: dict[str, Any] = getattr(process, "_config", {})
    daemon = config.get("daemon")
    if daemon:
        config["daemon"] = False
    try:
        yield
    finally:
        if daemon:
            config["daemon"] = daemon


def replay_task(plan_json: str, outdir: str, force: bool = False, stop_variable: str | None = None) -> dict[str, Any]:
    """Replay one target; returns plain values (picklable by any executor).

    ``stop_variable``: on a Dask worker, the name of the batch's Dask ``Event`` (and ``Variable``:
    the signal number) that the batch sets when it is told to stop (:func:`_watching_the_batch`): a replay running
    then ends as that signal would end it (partial report, outcome ``interrupted``), and one not
    begun yet does not begin (returns ``{"not_started": signum}``, writing nothing)."""
    from emulator import batch_prestart
    from emulator.lifecycle import StopRequest
    from emulator.replay import replay_target

    plan = ReplayPlan.model_validate_json(plan_json)
    stop = StopRequest()
    with _watching_the_batch(stop_variable, stop):
        if stop.signum is not None:
            return {"not_started": stop.signum}
        started, wall = time.monotonic(), time.time()
        cpu, child_cpu = _cpu_seconds(resource.RUSAGE_SELF), _cpu_seconds(resource.RUSAGE_CHILDREN)
        # The fork server may have started this target's emulation child already (the first
        # targets of a local batch): its events are waiting. Adopted children are not this
        # process's own, so their CPU is not in RUSAGE_CHILDREN.
        adopted = batch_prestart.adopt(plan)
        try:
            with _children_allowed():
                result = replay_target(plan, outdir, force=force, stop=stop)
        finally:
            batch_prestart.drop_adopted()
    return {
        "status": result.status,
        "outdir": result.outdir,
        "report_path": result.report_path,
        "seconds": time.monotonic() - started,
        "worker": f"{socket.gethostname()} pid {os.getpid()}",
        # Where the time went (bench/batch.py): wall clock start and end, CPU of the worker
        # (receiving events, analysis, outputs) and of the replay's emulation child; the worker's
        # CPU before the task (its start-up and warm-up, then the tasks before this one).
        "started_at": wall,
        "ended_at": time.time(),
        "worker_cpu_before_s": cpu,
        "cpu_s": _cpu_seconds(resource.RUSAGE_SELF) - cpu,
        "child_cpu_s": _cpu_seconds(resource.RUSAGE_CHILDREN) - child_cpu,
        # Started by the fork server before this worker had the task (wall clock), or None.
        "prestarted_at": adopted.started_at if adopted is not None else None,
    }


@contextmanager
def _watching_the_batch(name: str | None, stop: StopRequest) -> Iterator[None]:
    """While the block runs, a thread asks the scheduler every :data:`STOP_POLL_SECONDS` whether
    the batch's Dask ``Event`` called ``name`` is set (in a Dask worker; nothing is done without
    a name) and, once it is, makes ``stop``'s request with the signal number the batch left in
    the ``Variable`` of that name. Whether the batch stopped already is asked before the block
    starts. The questions never wait on the scheduler (a wait still pending when a cluster shuts
    down is logged there as an error), and the thread ends as soon as the block does."""
    if name is None:
        yield
        return
    import threading

    from dask.distributed import Event, Variable

    # made here, in the task's thread: they find the worker's client
    stopped, signal_number = Event(name), Variable(name)
    over = threading.Event()

    def stopped_now() -> bool:
        try:
            if not stopped.is_set():
                return False
            value = signal_number.get(timeout=STOP_POLL_SECONDS)  # set before the event: at once
        except Exception:  # noqa: BLE001 - the scheduler is gone: the replay runs on, within its limits
            return over.is_set()
        stop.request(value if isinstance(value, int) else signal.SIGTERM)
        return True

    if stopped_now():
        yield
        return

    def watch() -> None:
        while not over.wait(STOP_POLL_SECONDS) and not stopped_now():
            pass

    watcher = threading.Thread(target=watch, name="chainreplay-batch-stop", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        over.set()
        watcher.join(timeout=STOP_POLL_SECONDS)


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


_outputs_prepared = False


def warm_worker(threads_on_host: int | None = None, outputs: bool = False) -> int:
    """Pool initializer / Dask warm-up: pay the engine's start-up once per process (nearly free
    when the process is warm already: forked from the pool's fork server, or a Dask worker
    started with the preload emulator/batch_dask.py).

    ``outputs``: also import the analysis, drawing and export libraries now, once per process
    (else the first replay imports them beside its emulation child). ``threads_on_host``: how
    many replays this worker's host runs at once (a Dask cluster's worker threads there): when
    they and their emulation children outnumber the host's cores (:func:`oversubscribed`), the
    exports are written after the drawing rather than by a forked copy beside it, as the local
    pool's workers do (``emulator.output.EXPORTS_BESIDE_DRAWING``); None leaves that as it is.
    """
    global _outputs_prepared
    from emulator.replay import warm_engine

    warm_engine()
    if threads_on_host is not None:
        import emulator.output

        emulator.output.EXPORTS_BESIDE_DRAWING = not oversubscribed(threads_on_host, _usable_cores())
    if outputs and not _outputs_prepared:
        from emulator.replay import _prepare_outputs

        _prepare_outputs(Path(os.devnull))  # writes allowed only under /dev/null: none
        _outputs_prepared = True
    return os.getpid()


def oversubscribed(replays_at_once: int, cores: int) -> bool:
    """Whether ``replays_at_once`` workers and their emulation children outnumber ``cores``: then
    no core is free for work beside a replay (the output libraries' import beside the first
    child, the exports' forked copy beside the drawing), and doing it once, or inline, is cheaper."""
    return 2 * replays_at_once > cores


def warm_dask_worker(threads_by_host: dict[str, int], dask_worker: Any = None) -> int:
    """``Client.run`` target: :func:`warm_worker` with the number of worker threads on this worker's
    host (``threads_by_host``, from the scheduler; Dask passes the worker as ``dask_worker``)."""
    host = getattr(dask_worker, "ip", None)
    return warm_worker(threads_by_host.get(host) if isinstance(host, str) else None)


def dask_slots(threads: int, tasks: int) -> int:
    """How many of ``tasks`` a batch keeps submitted to a Dask cluster of ``threads`` worker
    threads at once: one per thread, so that no replay waits in a busy worker's queue while another
    worker is idle (Dask hands a worker more tasks than it has threads and does not always move
    them: measured, a replay waited 0.7 s behind another on one worker while the other idled);
    all of them when the cluster has no worker yet (Dask holds them until one joins). Counted
    again as replays end, so workers that join meanwhile get tasks. An adaptive cluster, which
    scales on tasks waiting, sees none waiting: give it the workers the batch should use."""
    return min(tasks, threads) if threads > 0 else tasks


def threads_by_host(scheduler_info: dict[str, Any]) -> dict[str, int]:
    """Worker threads per host of a Dask cluster (``Client.scheduler_info()``): how many replays
    each host runs at once."""
    threads: dict[str, int] = {}
    for worker in (scheduler_info.get("workers") or {}).values():
        host = worker.get("host")
        if isinstance(host, str):
            threads[host] = threads.get(host, 0) + int(worker.get("nthreads") or 1)
    return threads


# ---- resumability -----------------------------------------------------------------------------


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def batch_key(plan: ReplayPlan) -> dict[str, str]:
    """What a report must have been made from to be reused: sample hash and configuration hash."""
    config = hashlib.sha256()
    config.update(__version__.encode())
    config.update(plan.model_dump_json().encode())
    for virtual in plan.files:
        config.update(_sha256_file(Path(virtual.host_path)).encode())
    if plan.scenario_dir:
        sums = Path(plan.scenario_dir) / "SHA256SUMS"
        if sums.is_file():
            config.update(sums.read_bytes())
        scenario = Path(plan.scenario_dir) / "scenario.toml"
        if scenario.is_file():
            config.update(scenario.read_bytes())
    return {"sample_sha256": _sha256_file(Path(plan.target_path)), "config_sha256": config.hexdigest()}


def _up_to_date(outdir: Path, key: dict[str, str]) -> bool:
    marker, report = outdir / KEY_FILE, outdir / "report.json"
    if not (marker.is_file() and report.is_file()):
        return False
    try:
        return bool(json.loads(marker.read_text(encoding="utf-8")) == key)
    except (OSError, ValueError):
        return False


# ---- scheduling -------------------------------------------------------------------------------


def previous_seconds(outdir: Path) -> dict[str, float]:
    """Each target's replay time in the summary an earlier batch left in ``outdir`` (by name);
    empty if there is none or it cannot be read. Resumed targets carry no time."""
    try:
        document = json.loads((outdir / SUMMARY_FILE).read_text(encoding="utf-8"))
        rows = document["targets"] if document.get("format") == BATCH_FORMAT else []
        return {
            str(row["name"]): float(row["seconds"])
            for row in rows
            if isinstance(row, dict) and not row.get("resumed") and float(row.get("seconds") or 0) > 0
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _input_bytes(plan: ReplayPlan) -> int:
    paths = [Path(plan.target_path), *(Path(v.host_path) for v in plan.files)]
    return sum(path.stat().st_size for path in paths if path.is_file())


def expected_seconds(plans: list[ReplayPlan], previous: dict[str, float]) -> list[float]:
    """What each replay is expected to take, to start the longest first: its time in an earlier
    batch into the same folder where every plan has one, else (a first batch, a new target) the
    bytes it reads (sample and staged files), a rough stand-in on one scale for all."""
    if plans and all(plan.name in previous for plan in plans):
        return [previous[plan.name] for plan in plans]
    return [float(_input_bytes(plan)) for plan in plans]


def longest_first(expected: list[float]) -> list[int]:
    """The indexes of ``expected``, largest value first; ties keep their order."""
    return sorted(range(len(expected)), key=lambda index: -expected[index])


# ---- running ----------------------------------------------------------------------------------


def _judge(target: BatchTarget, outdir: Path, seconds: float, fail_on: tuple[str, ...], resumed: bool) -> TargetResult:
    report = Report.from_file(outdir / "report.json")
    baseline_path, baseline = target.baseline if target.baseline else (None, None)
    result = judge(
        report,
        target=target.target,
        outdir=str(outdir),
        seconds=seconds,
        expect=target.expect,
        baseline=baseline,
        baseline_path=baseline_path,
        fail_on=fail_on,
    )
    result.resumed = resumed
    return result


def _failed_row(target: str, name: str, outdir: str, detail: str, reason: str, outcome: str = "error") -> TargetResult:
    """A row with no report behind it: outcome ``outcome``, ``detail`` as its detail and ``reason``
    as its one failure reason."""
    return TargetResult(target=target, name=name, outdir=outdir, outcome=outcome, detail=detail, fail_reasons=[reason])


def _failed_result(
    target: BatchTarget, outdir: Path, error: str, outcome: str = "error", reason: str | None = None
) -> TargetResult:
    """A target without a report of its own: its worker failed (``error``), or (``outcome``
    interrupted) the batch stopped first."""
    return _failed_row(
        target.target, target.plan.name, str(outdir), error, reason or f"the worker failed: {error}", outcome
    )


def refused_result(target: str, name: str, error: str) -> TargetResult:
    """A target the batch could not replay at all (its input refused: ``error``, one line naming
    the file and the problem): a failed row with no output folder."""
    return _failed_row(target, name, "", error, error)


def _interrupted_result(target: BatchTarget, outdir: Path, signum: int) -> TargetResult:
    detail = f"interrupted by {signal.Signals(signum).name}: the batch stopped before this target's replay ended"
    return _failed_result(target, outdir, detail, outcome="interrupted", reason=detail)


def _stop_workers(
    pool: cf.ProcessPoolExecutor,
    unfinished: list[cf.Future[dict[str, Any]]],
    signum: int,
    insisted: Callable[[], bool] = lambda: False,
) -> None:
    """After the termination signal ``signum``: no new replay starts; each replay running is told
    to stop (the same signal: it kills its emulation child and writes its partial report, outcome interrupted,
    as ``run`` does; a worker between replays ignores it and ends when the pool shuts down) and
    given :data:`BATCH_STOP_GRACE_SECONDS` to, or until ``insisted()`` (a second signal); then
    every worker left is killed (their emulation children die with them: parent-death signal)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with suppress(OSError):
            os.kill(process.pid, signum)
    running = [f for f in unfinished if not f.cancelled()]
    deadline = time.monotonic() + BATCH_STOP_GRACE_SECONDS
    # until every running replay has ended, or every worker has (one between two replays dies
    # of the signal: its future would only learn it when the pool notices), or the grace is over
    while running and any(p.is_alive() for p in processes) and time.monotonic() < deadline and not insisted():
        running = list(cf.wait(running, timeout=0.05).not_done)
    for process in processes:
        with suppress(OSError):
            process.kill()
    for process in processes:
        process.join(timeout=5)


def _stop_dask_replays(
    client: Any, stop_name: str, signum: int, unfinished: list[Any], insisted: Callable[[], bool] = lambda: False
) -> None:
    """After the termination signal ``signum``, a batch on a Dask cluster: every task is told
    (the stop variable ``replay_task`` watches): a replay running ends as ``run`` does on that
    signal (its partial report, outcome interrupted), one not begun does not begin. They are
    given :data:`BATCH_STOP_GRACE_SECONDS` to, or until ``insisted()`` (a second signal); what is
    still unfinished then is cancelled (a replay running on then ends by itself, within its own
    limits)."""
    from dask.distributed import Event, Variable

    with suppress(Exception):
        Variable(stop_name, client=client).set(signum)  # first: a task the event wakes reads it
    with suppress(Exception):
        Event(stop_name, client=client).set()
    deadline = time.monotonic() + BATCH_STOP_GRACE_SECONDS
    while time.monotonic() < deadline and not all(f.done() for f in unfinished) and not insisted():
        time.sleep(0.05)  # (distributed.wait needs a default client: the batch's is not)
    with suppress(Exception):
        client.cancel([f for f in unfinished if not f.done()])


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def preload_modules(jobs: int, cores: int) -> list[str]:
    """What the pool's fork server imports before it forks ``jobs`` workers on ``cores`` cores.

    Always the engine (emulator/batch_preload.py): every worker needs it before its first replay,
    so it is paid once, not once per worker. The output libraries as well
    (emulator/batch_preload_outputs.py) when a worker and its emulation child per job outnumber
    the cores: a worker imports them during its first replay while its child emulates, which
    costs nothing when a core is free for it and a busy core's time per worker when none is.
    ``"__main__"`` is multiprocessing's own default.
    """
    modules = ["__main__", "emulator.batch_preload"]
    if oversubscribed(jobs, cores):
        modules.append("emulator.batch_preload_outputs")
    return modules


def started_ahead(jobs: int, cores: int) -> int:
    """How many emulation children the pool's fork server starts before its preload: one per
    worker when the preload includes the output libraries (``2 * jobs > cores``, see
    :func:`preload_modules`), none otherwise. With a free core for each worker and its child, a
    worker imports those libraries while its first child emulates, and the preload (the engine
    alone) is short: a child started ahead would only have raced the worker's start for the
    cores (measured: no faster on an idle machine, slower on a busy one)."""
    return jobs if PRESTART and oversubscribed(jobs, cores) else 0


def _local_executor(
    jobs: int, first_plans: list[str] | None = None, fork_server_here: bool = False
) -> tuple[cf.ProcessPoolExecutor, str]:
    """The pool, and how its fork server started: ``"forked"`` from this process
    (emulator/batch_forkserver.py), ``"started"`` by multiprocessing as a new interpreter (now,
    or when the pool starts its first worker), ``"running"`` (one was running already). A server
    that is ours to start (none runs in this process yet) is given ``first_plans`` (each a plan's
    JSON) to start their emulation children before its preload (emulator/batch_prestart.py), and
    is forked from this process if ``fork_server_here`` and it can be."""
    from multiprocessing import forkserver

    from emulator import batch_forkserver
    from emulator.batch_prestart import PRESTART_ENV, environment_value

    context = mp.get_context("forkserver")
    preload = preload_modules(jobs, _usable_cores())
    context.set_forkserver_preload(preload)
    ours = _fork_server_pid() is None
    value = environment_value(first_plans) if first_plans and ours else None
    before = os.environ.get(PRESTART_ENV)
    if value is not None:
        os.environ[PRESTART_ENV] = value  # read (and removed) by the fork server only
    how = "running"
    try:
        # Forked from this process when it can be (emulator/batch_forkserver.py): it then starts
        # with this process's modules; else multiprocessing's own.
        if ours:
            how = "forked" if fork_server_here and batch_forkserver.start(preload) else "started"
            if how == "started" and value is not None:
                forkserver.ensure_running()
    finally:
        if before is None:
            os.environ.pop(PRESTART_ENV, None)
        else:
            os.environ[PRESTART_ENV] = before
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=local_worker_started), how


def local_worker_started() -> int:
    """The local pool's initializer: the worker dies with the fork server, hence with the batch
    (parent-death signal, whatever kills them: the server has its own); between replays it leaves
    termination signals to the batch, which stops the pool (a worker dying of one would make the
    pool kill every other worker, replays running included: ``ProcessPoolExecutor`` counts it
    broken), while a replay takes them as ``run`` does (its partial report); and it warms
    (:func:`warm_worker`)."""
    from emulator.lifecycle import TERMINATING_SIGNALS
    from emulator.sandbox import end_with_parent

    end_with_parent()
    for sig in TERMINATING_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    return warm_worker()


def _fork_server_pid() -> int | None:
    from multiprocessing import forkserver

    pid = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None


def _process_cpu_seconds(pid: int, children: bool = False) -> float | None:
    """CPU seconds of process ``pid`` so far, or (``children``) of its children it has reaped
    (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
        first = 13 if children else 11
        return (int(fields[first]) + int(fields[first + 1])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _stop_fork_server(running_before: int | None) -> tuple[float | None, float | None]:
    """Stop the fork server the pool started (it holds a warm engine; the next batch starts its
    own with its own preload); return the CPU seconds it used (its preload) and those of the
    children it reaped (the workers, their children, the children it started ahead), if known.
    A fork server that was running before the pool (``running_before``, its pid) is not ours: left."""
    from multiprocessing import forkserver

    pid = _fork_server_pid()
    if pid is None or pid == running_before:
        return None, None
    cpu, children = _process_cpu_seconds(pid), _process_cpu_seconds(pid, children=True)
    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if callable(stop):
        with suppress(OSError, ChildProcessError):
            stop()
    return cpu, children


def _dask_client(scheduler: str) -> Any:
    try:
        from dask.distributed import Client
    except ImportError as err:  # a regular dependency; only a broken install lacks it
        raise BatchError(f"--scheduler needs dask.distributed: {err}") from err
    try:
        return Client(scheduler, timeout=SCHEDULER_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as err:
        raise BatchError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from err


def run_batch(
    targets: list[BatchTarget],
    outdir: Path,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    fail_on: tuple[str, ...] = (),
    on_result: Callable[[TargetResult], None] | None = None,
    on_started: Callable[[], None] | None = None,
    fork_server_here: bool = False,
    refused: Sequence[TargetResult] = (),
) -> BatchSummary:
    """Replay ``targets`` into ``outdir/<name>/``; write ``outdir/batch.json``; return the summary.

    ``on_result(result)``: each target's result as it is known (the resumed ones first, once the
    workers are started). ``on_started()``: once, when the workers are started (a caller's
    progress display starts then: a thread started before would keep the pool's fork server from
    being forked from this process, emulator/batch_forkserver.py). ``fork_server_here``: the local
    pool's fork server may be forked from this process (when it has one thread): a process whose
    state the batch owns, as the command line's, where no open file or logging handler of a
    caller's would be inherited as a stale object by the server and its workers. ``refused``:
    targets the caller could not make a plan of (:func:`refused_result`), listed after the others
    in the summary and given to ``on_result`` with the resumed ones."""
    started = time.monotonic()
    outdir.mkdir(parents=True, exist_ok=True)
    results: dict[int, TargetResult] = {}
    keys: dict[int, dict[str, str]] = {}
    tasks: dict[int, dict[str, Any]] = {}  # what each replayed task returned
    extra: dict[str, Any] = {}
    pending: list[int] = []
    for index, target in enumerate(targets):
        folder = outdir / target.plan.name
        keys[index] = batch_key(target.plan)
        if not force and _up_to_date(folder, keys[index]):
            results[index] = _judge(target, folder, 0.0, fail_on, resumed=True)
        else:
            pending.append(index)

    resumed = sorted(results)

    def workers_started() -> None:
        """The workers are on their way: say so, and give the targets resumed (after the pool's
        start, so that a caller's progress display starts no thread before the fork server is
        forked from this process: emulator/batch_forkserver.py)."""
        if on_started:
            on_started()
        if on_result:
            for index in resumed:
                on_result(results[index])
            for result in refused:
                on_result(result)

    expected = expected_seconds([targets[i].plan for i in pending], previous_seconds(outdir))
    pending = [pending[k] for k in longest_first(expected)]

    def finished(index: int, value: dict[str, Any] | None, error: str | None) -> None:
        target = targets[index]
        folder = outdir / target.plan.name
        if value is not None:
            tasks[index] = value
        if value is None or not (folder / "report.json").is_file():
            results[index] = _failed_result(target, folder, error or "no report written")
        else:
            results[index] = _judge(target, folder, value["seconds"], fail_on, resumed=False)
            results[index].worker = str(value.get("worker", ""))
            (folder / KEY_FILE).write_text(json.dumps(keys[index], indent=2) + "\n", encoding="utf-8")
        if on_result:
            on_result(results[index])

    def take(index: int, future: Any) -> None:
        """A finished task's result; its exception (a dead worker, a failed task) is its target's
        result alone, never the batch's."""
        try:
            finished(index, future.result(), None)
        except Exception as err:  # noqa: BLE001
            finished(index, None, f"{type(err).__name__}: {err}")

    workers = 0
    interrupted: int | None = None

    def mark_interrupted(signum: int) -> None:
        """Every pending target without a result: interrupted by ``signum``."""
        for index in pending:
            if index not in results:
                results[index] = _interrupted_result(targets[index], outdir / targets[index].plan.name, signum)
                if on_result:
                    on_result(results[index])

    if pending and scheduler:
        client = _dask_client(scheduler)
        stop_name = f"chainreplay-batch-stop-{uuid.uuid4().hex}"  # see replay_task
        workers_started()
        try:
            info = client.scheduler_info()
            workers = len(info.get("workers", {}))
            threads = threads_by_host(info)
            client.run(warm_dask_worker, threads)

            def submit(rank: int) -> Any:
                i = pending[rank]
                return client.submit(
                    replay_task,
                    targets[i].plan.model_dump_json(),
                    str(outdir / targets[i].plan.name),
                    force,
                    stop_name,
                    pure=False,
                    key=f"chainreplay-{targets[i].plan.name}-{time.time_ns()}",
                    priority=len(pending) - rank,  # Dask runs higher priorities first
                )

            from dask.distributed import as_completed

            # One task per worker thread in flight (:func:`dask_slots`); the next, longest expected
            # first, as soon as one ends; more when workers join the cluster meanwhile.
            futures: dict[Any, int] = {}
            running = as_completed(loop=client.loop)

            def top_up(slots: int, done: int) -> None:
                while len(futures) < len(pending) and len(futures) - done < slots:
                    rank = len(futures)
                    future = submit(rank)
                    futures[future] = pending[rank]
                    running.add(future)

            with SignalWatch() as watch:
                slots = dask_slots(sum(threads.values()), len(pending))
                top_up(slots, 0)
                for done, future in enumerate(watch.until_signalled(iter(running)), start=1):
                    top_up(slots, done)  # before judging this one: its worker is idle
                    take(futures[future], future)
                    if len(futures) < len(pending):
                        with suppress(Exception):  # the count is a hint: the batch goes on without it
                            slots = dask_slots(sum(client.nthreads().values()), len(pending))
                        top_up(slots, done)
                if watch.signum is not None:  # (still watching: a second signal ends the grace)
                    interrupted = watch.signum
                    unfinished = [f for f, i in futures.items() if i not in results]
                    _stop_dask_replays(client, stop_name, interrupted, unfinished, watch.insisted)
                    for future, index in futures.items():
                        if index not in results and future.done() and future.status == "finished":
                            with suppress(Exception):
                                if "not_started" in future.result():
                                    continue  # it saw the stop first: interrupted, below
                            take(index, future)  # ended in time: its report (partial: outcome interrupted)
                    mark_interrupted(interrupted)
        finally:
            with suppress(Exception):
                from dask.distributed import Event, Variable

                Variable(stop_name, client=client).delete()
                Event(stop_name, client=client).clear()  # an event nobody waits on is forgotten
            client.close()
    elif pending:
        workers = max(1, min(jobs or os.cpu_count() or 1, len(pending)))
        running_before = _fork_server_pid()
        try:
            ahead = started_ahead(workers, _usable_cores())
            first = [targets[i].plan.model_dump_json() for i in pending[:ahead]]
            pool, extra["fork_server"] = _local_executor(workers, first, fork_server_here)
            with pool, SignalWatch() as watch:
                workers_started()
                local = {
                    pool.submit(
                        replay_task,
                        targets[i].plan.model_dump_json(),
                        str(outdir / targets[i].plan.name),
                        force,
                    ): i
                    for i in pending
                }
                for future in watch.until_signalled(cf.as_completed(local)):
                    take(local[future], future)
                if watch.signum is not None:
                    interrupted = watch.signum
                    _stop_workers(pool, [f for f in local if local[f] not in results], interrupted, watch.insisted)
                    for future, index in local.items():
                        ended = index not in results and future.done() and not future.cancelled()
                        if ended and future.exception() is None:
                            take(index, future)  # ended in time: its report (partial: outcome interrupted)
                    # the rest: not started, or its worker died of the signal or was killed
                    mark_interrupted(interrupted)
        finally:
            extra["fork_server_cpu_s"], extra["fork_server_children_cpu_s"] = _stop_fork_server(running_before)

    else:
        workers_started()

    ordered = [results[i] for i in range(len(targets))] + list(refused)
    summary = BatchSummary(
        results=ordered,
        path=outdir / SUMMARY_FILE,
        seconds=time.monotonic() - started,
        workers=workers,
        scheduler=scheduler,
        replayed=len(pending),
        resumed=len(targets) - len(pending),
        extra={**extra, "tasks": [tasks.get(i) for i in range(len(targets))]},
        signal=interrupted,
    )
    summary.path.write_text(json.dumps(summary_document(summary), indent=2) + "\n", encoding="utf-8")
    return summary


def summary_document(summary: BatchSummary) -> dict[str, Any]:
    return {
        "format": BATCH_FORMAT,
        "scheduler": summary.scheduler,
        "workers": summary.workers,
        "seconds": round(summary.seconds, 3),
        "replayed": summary.replayed,
        "resumed": summary.resumed,
        "failed": sum(1 for r in summary.results if r.failed),
        # the termination signal that stopped the batch (its unfinished targets: outcome interrupted)
        "interrupted_by": signal.Signals(summary.signal).name if summary.signal is not None else None,
        "targets": [r.summary() for r in summary.results],
    }


def summary_table(summary: BatchSummary) -> str:
    """target | outcome | stages | drift | time, one line per target, then the totals."""
    rows = [("target", "outcome", "stages", "drift", "time")]
    for r in summary.results:
        drift = "-" if r.drift is None else ("none" if not r.drift.drifted else f"{len(r.drift.changes)} changes")
        seconds = "resumed" if r.resumed else f"{r.seconds:.1f} s"
        outcome = r.outcome + (" FAIL" if r.failed else "")
        rows.append((r.name, outcome, str(r.stages), drift, seconds))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    plural = "" if summary.workers == 1 else "s"
    where = summary.scheduler or (f"{summary.workers} local worker{plural}" if summary.replayed else "no worker")
    lines.append(
        f"{len(summary.results)} targets ({summary.replayed} replayed, {summary.resumed} resumed) "
        f"in {summary.seconds:.1f} s on {where}"
    )
    return "\n".join(lines)
