"""Replay one target: the pure, picklable entry point every front end uses.

``replay_target(plan, outdir)`` emulates the plan in a child process under a watchdog (a stuck
Unicorn call sits in C where Python cannot interrupt it), receives the events as they are
recorded, derives stages, graph and techniques, and writes the output folder. A replay that
fails midway still writes everything recorded up to that point.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from emulator import outcome as outcome_model
from emulator.containment import Guard, install, uninstall
from emulator.events import Event
from emulator.limits import CHILD_ADDRESS_SPACE_LIMIT, WATCHDOG_GRACE_SECONDS
from emulator.outcome import Outcome, Status
from emulator.output import produce
from emulator.plan import ReplayPlan
from emulator.recorder import Recorder, sha256_hex
from emulator.render import prepare as prepare_renderers
from emulator.sanitize import json_safe
from emulator.trace import EntryOrigin, Trace, TraceContainment, TraceHeader, TraceRun

# Events are sent from the child in batches of this many.
STREAM_BATCH = 512
ENGINE_UNKNOWN = "speakeasy"


@dataclass
class Recording:
    """Everything an emulation produced, engine independent and picklable."""

    events: list[Event] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    outcome: Outcome = field(default_factory=lambda: outcome_model.error("emulation did not report back"))
    runs: list[dict[str, Any]] = field(default_factory=list)
    instructions: int | None = 0
    dropped: dict[str, str] = field(default_factory=dict)
    engine: str = ENGINE_UNKNOWN
    arch: str = ""
    emulation_seconds: float = 0.0
    skipped_ms: int = 0
    sleeps: int = 0
    responders: dict[str, Any] = field(default_factory=dict)
    sockets_blocked: int = 0
    lookups_blocked: int = 0
    writes_blocked: int = 0
    processes_blocked: int = 0
    violations: list[str] = field(default_factory=list)
    isolation: str = "child process"

    @property
    def status(self) -> Status:
        return self.outcome.status

    @property
    def detail(self) -> str:
        return self.outcome.detail

    @property
    def limit(self) -> str | None:
        return self.outcome.limit


@dataclass(frozen=True)
class ReplayResult:
    status: str
    detail: str
    outdir: str
    report_path: str
    stages: int
    api_calls: int
    # Wall-clock seconds of the emulation. Not in report.json, which is deterministic.
    emulation_seconds: float = 0.0


# ---- emulation (runs in the child, or in-process for tests) --------------------------------


def emulate(plan: ReplayPlan, on_batch: Any = None) -> Recording:
    """Run the plan under the engine with containment on; return what was recorded."""
    from emulator.backends.base import Backend, BackendInputError, BackendResult
    from emulator.randomness import SeededRandom
    from emulator.responders.router import NetworkRouter, ResponderLoadError, build_responder
    from emulator.services import ReplayServices
    from emulator.vclock import VirtualClock

    recording = Recording()
    try:
        from emulator.backends.speakeasy import SpeakeasyBackend
    except ImportError as err:  # not installed, or an installed version it cannot use: one line
        recording.outcome = outcome_model.error(f"engine unavailable: {err}")
        return recording
    failure: Outcome | None = None
    result: BackendResult | None = None
    pending: list[Event] = []
    sent_blobs: set[str] = set()

    def flush(recorder: Recorder) -> None:
        if on_batch is None:
            return
        new_blobs = {k: v for k, v in recorder.blobs.items() if k not in sent_blobs}
        if not pending and not new_blobs:
            return
        sent_blobs.update(new_blobs)
        on_batch(list(pending), new_blobs)
        pending.clear()

    recorder = Recorder()

    def on_event(event: Event) -> None:
        if on_batch is not None:
            pending.append(event)
            if len(pending) >= STREAM_BATCH:
                flush(recorder)

    recorder.on_event = on_event
    guard = install(Guard(allowed_write_root=None))
    try:
        scenario_dir = Path(plan.scenario_dir) if plan.scenario_dir else Path(plan.target_path).parent
        try:
            responders = [
                build_responder(r.type, r.name, dict(r.options), scenario_dir, r.class_path) for r in plan.responders
            ]
        except Exception as err:  # noqa: BLE001 - user code: any failure is a named outcome
            name = "" if isinstance(err, ResponderLoadError | ValueError) else f"{type(err).__name__}: "
            failure = outcome_model.error(f"responder: {name}{err}")
            return recording
        router = NetworkRouter(responders, recorder, plan.network_default, plan.limits.max_network_exchanges)
        clock = VirtualClock(plan.start_time)
        services = ReplayServices(recorder, clock, SeededRandom(plan.seed), router)
        try:
            backend: Backend = SpeakeasyBackend(plan, services)
            result = backend.run()
        except BackendInputError as err:
            failure = outcome_model.error(f"{Path(plan.target_path).name}: {err}")
        except Exception as err:  # the engine failed: keep what was recorded and say why
            failure = outcome_model.error(f"engine error: {type(err).__name__}: {err}")
            recording.runs = [
                {
                    "kind": "traceback",
                    "start": 0,
                    "instructions": 0,
                    "api_calls": 0,
                    "error": "engine_error",
                    "error_detail": traceback.format_exc(limit=4)[-800:],
                }
            ]
        else:
            recording.runs = [vars(r) for r in result.runs]
            recording.instructions = result.instructions
            recording.dropped = result.dropped
            recording.engine = result.engine
            recording.arch = result.arch
            recording.emulation_seconds = result.emulation_seconds
        recording.skipped_ms = clock.skipped_ms
        recording.sleeps = clock.sleeps
        for responder in responders:
            summary = getattr(responder, "state_summary", None)
            if callable(summary):
                try:
                    recording.responders[responder.name] = json_safe(summary())
                except Exception as err:  # noqa: BLE001 - user code: the replay keeps its report
                    recording.responders[responder.name] = {"error": json_safe(f"{type(err).__name__}: {err}")}
    finally:
        uninstall(guard)
        recording.sockets_blocked = guard.sockets_blocked
        recording.lookups_blocked = guard.lookups_blocked
        recording.writes_blocked = guard.writes_blocked
        recording.processes_blocked = guard.processes_blocked
        recording.violations = list(guard.violations)
        recording.outcome = outcome_model.decide(
            violations=guard.violations,
            failure=failure,
            stop=result.stop if result is not None else None,
            runs=[run.end() for run in result.runs] if result is not None else (),
        )
        flush(recorder)
    recording.events = recorder.events
    recording.blobs = recorder.blobs
    return recording


WARM_UP_SAMPLE = Path(__file__).resolve().parent / "data" / "warmup_ret.bin"


def warm_engine(arches: tuple[str, ...] = ("x64", "x86")) -> None:
    """Pay the engine's once-per-process costs now (imports, signature database, export
    manifests) by emulating a one-byte ``ret`` in this process.

    Replays fork their emulation child from this process, so every later replay starts warm:
    about 0.6 s less per 3CX replay. Meant for batch workers (a process pool's initializer).
    """
    for arch in arches:
        plan = ReplayPlan(
            name="warm-up",
            target_path=str(WARM_UP_SAMPLE),
            target_kind="shellcode",
            arch=arch,  # type: ignore[arg-type]
            emu_path="C:\\warmup.bin",
        )
        emulate(plan)


def _child(plan: ReplayPlan, conn: Connection) -> None:
    try:
        limit = CHILD_ADDRESS_SPACE_LIMIT
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):
        pass

    def on_batch(events: list[Event], blobs: dict[str, bytes]) -> None:
        conn.send(("events", events, blobs))

    try:
        recording = emulate(plan, on_batch=on_batch)
        recording.events, recording.blobs = [], {}
        conn.send(("done", recording))
    except MemoryError:
        conn.send(("failed", outcome_model.out_of_address_space()))
    except BaseException as err:  # noqa: BLE001 - report, never a traceback on the console
        conn.send(("failed", outcome_model.error(f"{type(err).__name__}: {err}")))
    finally:
        conn.close()


def emulate_isolated(plan: ReplayPlan, while_waiting: Callable[[], None] | None = None) -> Recording:
    """Emulate in a child process; kill it if it outlives the timeout plus a grace period.

    ``while_waiting`` runs in this process as soon as the child has started, so work that does
    not need the recording (importing the renderers) overlaps the emulation.
    """
    context = mp.get_context("fork")
    parent_conn, child_conn = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(plan, child_conn), daemon=True)
    process.start()
    child_conn.close()
    if while_waiting is not None:
        while_waiting()
    events: list[Event] = []
    blobs: dict[str, bytes] = {}
    recording: Recording | None = None
    failure: Outcome | None = None
    deadline = time.monotonic() + plan.limits.timeout + WATCHDOG_GRACE_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failure = outcome_model.watchdog_timeout(plan.limits.timeout)
            break
        try:
            if not parent_conn.poll(min(remaining, 0.5)):
                if not process.is_alive() and not parent_conn.poll(0):
                    failure = outcome_model.child_died(process.exitcode)
                    break
                continue
            message = parent_conn.recv()
        except (EOFError, OSError):
            failure = outcome_model.child_died(process.exitcode)
            break
        if message[0] == "events":
            events.extend(message[1])
            blobs.update(message[2])
        elif message[0] == "done":
            recording = message[1]
            break
        else:
            failure = message[1]
            break
    if process.is_alive():
        process.kill()
    process.join(timeout=5)
    parent_conn.close()
    if recording is None:
        assert failure is not None
        recording = Recording(outcome=outcome_model.decide(failure=failure))
    recording.events = events
    recording.blobs = blobs
    return recording


# ---- the trace ------------------------------------------------------------------------------


def target_display_path(plan: ReplayPlan) -> str:
    """The entry sample as the report names it: never a host path."""
    target = Path(plan.target_path)
    if plan.scenario_dir:
        folder = Path(plan.scenario_dir)
        if target.is_relative_to(folder):
            return f"{folder.name}/{target.relative_to(folder).as_posix()}"
    return target.name


def freeze(plan: ReplayPlan, recording: Recording, target_sha256: str) -> Trace:
    """The recording as a frozen trace: what the analysis needs, and nothing of the host."""
    entry = (
        EntryOrigin(type="scenario", ref=plan.host_process or plan.name)
        if plan.scenario_dir
        else EntryOrigin(type="file", ref=plan.emu_path)
    )
    header = TraceHeader(
        engine=recording.engine,
        mode=plan.mode,
        name=plan.name,
        scenario=plan.name if plan.scenario_dir else None,
        target_path=target_display_path(plan),
        target_sha256=target_sha256,
        target_kind=plan.target_kind,
        arch=recording.arch,
        entry_origin=entry,
        host_process=plan.host_process,
        machine_names=[plan.hostname, plan.user],
        seed=plan.seed,
        start_time=plan.start_time,
        status=recording.status,
        detail=recording.detail,
        limit=recording.limit,
        runs=[TraceRun.model_validate(run) for run in recording.runs],
        instructions=recording.instructions,
        dropped=recording.dropped,
        skipped_ms=recording.skipped_ms,
        sleeps=recording.sleeps,
        responders=recording.responders,
        containment=TraceContainment(
            connects_refused=recording.sockets_blocked,
            lookups_refused=recording.lookups_blocked,
            writes_refused=recording.writes_blocked,
            processes_refused=recording.processes_blocked,
            violations=recording.violations,
            isolation=recording.isolation,
        ),
        events=len(recording.events),
        blobs=sorted(recording.blobs),
    )
    return Trace(header, recording.events, recording.blobs)


def replay_target(plan: ReplayPlan, outdir: str | Path, *, isolate: bool = True) -> ReplayResult:
    """Replay one target into ``outdir``. Pure apart from writing ``outdir``; picklable in and out.

    The emulation's recording is frozen into ``trace.jsonl`` + ``blobs/``; report.json and the
    rendered files are derived from that trace by the same code as ``chainreplay analyse``.
    """
    out = Path(outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    target_sha256 = sha256_hex(Path(plan.target_path).read_bytes())
    if isolate:
        recording = emulate_isolated(plan, while_waiting=prepare_renderers)
    else:
        recording = emulate(plan)
        recording.isolation = "in-process"
        prepare_renderers()
    report = produce(out, freeze(plan, recording, target_sha256), write_frozen=True)
    return ReplayResult(
        report.outcome.status,
        report.outcome.detail,
        str(out),
        str(out / "report.json"),
        len(report.stages),
        len(report.api_calls),
        round(recording.emulation_seconds, 3),
    )
