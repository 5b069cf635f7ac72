"""Where a cold 3CX replay spends its time (issue 18), phase by phase, CPU and wall.

    python bench/startup.py [--runs 3] [--scenario scenarios/3cx]

Each run is a fresh interpreter (``--phase``) that times, in order: the parent's imports
(``emulator.cli`` + ``emulator.replay``, as the command line imports them before the emulation
child forks), Speakeasy's import, ``load_module`` (signature database, decoy DLL images), the
emulation, the analysis, the report, the drawings and the exports; once with the garbage collector paused around
Speakeasy's import and load as a replay's child does (``collector_paused``), once without.
The two variants alternate in one run, so their ratio is measured side by side. Then the whole
command, ``python -m emulator run SCENARIO -o TMP -q``, from interpreter start to every
default output written, best of ``--runs``, and the timeline of its best run: when each step
of the parent and of the pre-started emulation child (emulator/prestart.py) ended, in seconds
from the interpreter's start (the child's: forked, Speakeasy imported, tables read or the plan
arrived, confined, target loaded, emulation started). Also a warm batch worker: ``warm_engine()`` in a fresh
interpreter, then ``--runs`` forked children each loading and emulating the scenario (the CPU
a warm replay's child spends). Prints tables and JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("parent_imports", "speakeasy_import", "load_module", "emulation", "analysis", "report", "drawing", "exports")


def _phase_run(scenario: str, paused: bool) -> dict[str, list[float]]:
    """In this (fresh) interpreter: every phase's (CPU s, wall s)."""
    times: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def phase(name: str) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        yield
        times[name] = [round(time.process_time() - cpu, 4), round(time.perf_counter() - wall, 4)]

    with phase("parent_imports"):  # as the command line does before it forks the child
        import emulator.cli
        from emulator import prestart

        os.environ.setdefault(emulator.cli.PYDANTIC_PLUGINS_ENV, "__all__")
        prestart._import_shared()
    gc.freeze()  # the emulation child's first step (prestart._serve)
    import emulator.lifecycle as lifecycle
    from emulator.scenario import load_scenario

    parent_thresholds = gc.get_threshold()
    lifecycle.live_briefly()  # as in the emulation child
    pause = lifecycle.collector_paused if paused else contextlib.nullcontext
    plan = load_scenario(Path(scenario))
    from emulator.precompiled import serving

    with phase("speakeasy_import"), pause(), serving():  # as the child imports it (prestart._warm)
        from emulator.backends.speakeasy import setup
    with phase("load_module"), pause():
        target = setup._load_target(plan)
    del target
    # The emulation alone: emulate() loads again (its once-per-process tables now warm), so the
    # second load_module is timed apart and taken out.
    from emulator.replay import emulate
    from emulator.trace import freeze

    started_cpu, started = time.process_time(), time.perf_counter()
    with pause():
        setup._load_target(plan)
    again = [time.process_time() - started_cpu, time.perf_counter() - started]
    with phase("emulation"):
        recording = emulate(plan)
    times["emulation"] = [round(times["emulation"][i] - again[i], 4) for i in range(2)]
    gc.set_threshold(*parent_thresholds)  # the phases below are the parent's
    from emulator.analysis.pipeline import analyse
    from emulator.containment import Guard
    from emulator.document import build_report
    from emulator.export import prepare as prepare_exports
    from emulator.export import write_exports
    from emulator.output import _containment
    from emulator.render import prepare as prepare_renderers
    from emulator.render import render_files
    from emulator.report import build_models

    trace = freeze(plan, recording, target_sha256="")
    with phase("analysis"):
        analysis = analyse(trace)
    build_models()
    with phase("report"):
        containment = _containment(trace, Guard(allowed_write_root=None), [])
        report = build_report(trace, analysis, [], containment, "2026-01-01T00:00:00Z")
    prepare_renderers()
    prepare_exports()
    with tempfile.TemporaryDirectory() as tmp:
        with phase("drawing"):
            render_files(report, Path(tmp))
        with phase("exports"):
            write_exports(Path(tmp), report)
    return times


def _warm_child_run(scenario: str, runs: int) -> dict[str, list[float]]:
    """In this (fresh) interpreter: ``warm_engine()`` as a batch worker does, then ``runs``
    forked children each loading and emulating the scenario, as a warm worker's replay child
    does: (CPU s, wall s) of the warm-up and of each child."""
    from emulator.replay import emulate, warm_engine
    from emulator.scenario import load_scenario

    plan = load_scenario(Path(scenario))
    cpu, wall = time.process_time(), time.perf_counter()
    warm_engine()
    times: dict[str, list[float]] = {
        "warm_engine": [round(time.process_time() - cpu, 4), round(time.perf_counter() - wall, 4)]
    }
    for index in range(runs):
        wall = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            import emulator.lifecycle as lifecycle

            lifecycle.live_briefly()
            emulate(plan)
            os._exit(0)
        _, status, usage = os.wait4(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        times[f"child_{index}"] = [round(usage.ru_utime + usage.ru_stime, 4), round(time.perf_counter() - wall, 4)]
    return times


TIMELINE_SCRIPT = """
import functools, importlib, json, os, sys, time
started = float(sys.argv[1])
marks = []
def mark(name):
    marks.append((name, round(time.time() - started, 3)))
mark("interpreter up")
import emulator.cli
os.environ.setdefault(emulator.cli.PYDANTIC_PLUGINS_ENV, "__all__")  # as emulator.cli.main does
from emulator import prestart
warm = prestart._warm
def timed_warm(plans):
    mark("child: forked")
    import emulator.replay
    mark("child: its emulator modules imported")
    from emulator.lifecycle import collector_paused
    from emulator.precompiled import serving
    with collector_paused(), serving():
        import emulator.backends.speakeasy
    mark("child: Speakeasy imported")
    warm(plans)
    mark("child: tables read (or the plan arrived)")
    os.write(2, ("TIMELINE-CHILD " + json.dumps(marks) + "\\n").encode())
    import emulator.sandbox as sandbox
    from emulator.backends.speakeasy import setup
    confine, load, start = sandbox.confine_child, setup.load_target, setup.start
    def confine_child(*args, **kwargs):
        try:
            return confine(*args, **kwargs)
        finally:
            mark("child: confined (plan received)")
    def load_target(*args, **kwargs):
        try:
            return load(*args, **kwargs)
        finally:
            mark("child: target loaded (load_module)")
    def run_start(*args, **kwargs):
        mark("child: emulation starts")
        os.write(2, ("TIMELINE-CHILD " + json.dumps(marks) + "\\n").encode())
        return start(*args, **kwargs)
    sandbox.confine_child, setup.load_target, setup.start = confine_child, load_target, run_start
prestart._warm = timed_warm
from emulator.cli.logs import _configure_logging
prestart.start(_configure_logging)
mark("child forked")
import emulator.cli.app
mark("command line imported")
def timed(module, name, label):
    target = importlib.import_module(module)
    inner = getattr(target, name)
    @functools.wraps(inner)
    def wrapper(*args, **kwargs):
        try:
            return inner(*args, **kwargs)
        finally:
            mark(label)
    setattr(target, name, wrapper)
timed("emulator.cli.run", "load_scenario", "scenario read (the plan goes to the child)")
timed("emulator.replay", "_prepare_outputs", "output libraries imported (beside the child)")
timed("emulator.replay", "emulate_isolated", "child done: emulation received")
timed("emulator.output", "produce", "every output written")
def after_the_child():
    # The parent's steps after the child (emulator/output.py) and the exports' copy beside them,
    # timed once the output libraries are imported (importing them here would move that import).
    timed("emulator.output", "_analyse_bounded", "  analysed")
    timed("emulator.document", "build_report", "  report built")
    timed("emulator.output", "write_trace", "  parent: trace written")
    timed("emulator.render", "render_files", "  parent: drawn")
    from emulator.export import BackgroundExports
    for method, label in (("start", "  exports' copy forked"), ("finish", "  exports' copy done (collected)")):
        inner = getattr(BackgroundExports, method)
        def wrapper(*args, _inner=inner, _label=label, **kwargs):
            try:
                return _inner(*args, **kwargs)
            finally:
                mark(_label)
        setattr(BackgroundExports, method, wrapper if method == "finish" else staticmethod(wrapper))
prepare_outputs = emulator.replay._prepare_outputs
def prepared(*args, **kwargs):
    try:
        return prepare_outputs(*args, **kwargs)
    finally:
        after_the_child()
emulator.replay._prepare_outputs = prepared
sys.argv = ["chainreplay", "run", sys.argv[2], "-o", sys.argv[3], "-q"]
emulator.cli.app.main()
print(json.dumps(marks))
"""


def _timeline(scenario: str) -> list[tuple[str, float]]:
    """One instrumented `chainreplay run`: (step, seconds since the interpreter started)."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-c", TIMELINE_SCRIPT, repr(time.time()), scenario, str(Path(tmp) / "out")],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            check=True,
        )
    child = [line for line in done.stderr.splitlines() if line.startswith("TIMELINE-CHILD ")]
    marks = [tuple(m) for m in json.loads(done.stdout.strip().splitlines()[-1])]
    if child:
        marks += [tuple(m) for m in json.loads(child[-1].split(" ", 1)[1]) if m[0].startswith("child:")]
    return sorted(marks, key=lambda m: m[1])  # type: ignore[arg-type,return-value]


def _whole(scenario: str) -> tuple[float, float]:
    """`python -m emulator run` in a fresh interpreter: wall and CPU (children included)."""
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "emulator", "run", scenario, "-o", str(Path(tmp) / "out"), "-q"],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            check=False,
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scenario", default="scenarios/3cx")
    parser.add_argument("--phase", choices=("paused", "collecting", "warm"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        sys.path.insert(0, str(ROOT))
        if args.phase == "warm":
            print(json.dumps(_warm_child_run(args.scenario, args.runs)))  # noqa: T201
            return 0
        print(json.dumps(_phase_run(args.scenario, args.phase == "paused")))  # noqa: T201
        return 0
    best: dict[str, dict[str, list[float]]] = {"paused": {}, "collecting": {}}
    for _ in range(args.runs):
        for variant in best:
            done = subprocess.run(
                [sys.executable, __file__, "--phase", variant, "--scenario", args.scenario],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            for name, value in json.loads(done.stdout.strip().splitlines()[-1]).items():
                if name not in best[variant] or value[0] < best[variant][name][0]:
                    best[variant][name] = value
    done = subprocess.run(
        [sys.executable, __file__, "--phase", "warm", "--scenario", args.scenario, "--runs", str(args.runs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    warm = json.loads(done.stdout.strip().splitlines()[-1])
    wholes = [_whole(args.scenario) for _ in range(args.runs)]
    timelines = [_timeline(args.scenario) for _ in range(args.runs)]
    timeline = min(timelines, key=lambda marks: marks[-1][1])
    print(f"{'phase':<18} {'cpu s (gc paused)':>18} {'cpu s (gc on)':>14} {'wall s (paused)':>16}")  # noqa: T201
    for name in PHASES:
        paused, collecting = best["paused"].get(name, [0, 0]), best["collecting"].get(name, [0, 0])
        print(f"{name:<18} {paused[0]:>18.3f} {collecting[0]:>14.3f} {paused[1]:>16.3f}")  # noqa: T201
    wall = min(w for w, _ in wholes)
    cpu = min(c for _, c in wholes)
    children = [value for name, value in warm.items() if name.startswith("child_")]
    print(  # noqa: T201
        f"warm worker: warm_engine {warm['warm_engine'][0]:.3f} s CPU; a forked replay child's load + emulation"
        f" best {min(c[0] for c in children):.3f} s CPU, {min(c[1] for c in children):.3f} s wall"
    )
    print(f"whole command: best wall {wall:.2f} s, best CPU {cpu:.2f} s over {args.runs} runs; load {os.getloadavg()}")  # noqa: T201
    print("timeline of the fastest instrumented run (s since the interpreter started):")  # noqa: T201
    for name, at in timeline:
        print(f"  {at:6.3f}  {name}")  # noqa: T201
    whole = {"wall_s": wholes, "best_wall_s": wall, "best_cpu_s": cpu}
    print(
        json.dumps({"phases": best, "warm_worker": warm, "whole": whole, "timeline": timeline, "load": os.getloadavg()})
    )  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
