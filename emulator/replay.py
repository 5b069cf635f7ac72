"""Replay one target: the pure, picklable entry point every front end uses.

``replay_target(plan, outdir)`` emulates the plan in a child process under a watchdog (a stuck
Unicorn call sits in C where Python cannot interrupt it), receives the events as they are
recorded, derives stages, graph and techniques, and writes the output folder. A replay that
fails midway still writes everything recorded up to that point.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import resource
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from emulator import __version__
from emulator.analysis.attack import attack_release, match_techniques
from emulator.analysis.graph import GraphContext, build_graph, graph_to_node_link
from emulator.analysis.stages import Stage, derive_stages
from emulator.containment import Guard, install, uninstall
from emulator.events import Event, RegistryAccess
from emulator.limits import CHILD_ADDRESS_SPACE_LIMIT, WATCHDOG_GRACE_SECONDS
from emulator.output import write_outputs
from emulator.plan import ReplayPlan
from emulator.recorder import Recorder, sha256_hex
from emulator.report import (
    ApiCallRecord,
    BufferRecord,
    Containment,
    FileRecord,
    LineageHop,
    MemoryRecord,
    NetRequestRecord,
    NetResponseRecord,
    NetworkRecord,
    Origin,
    Outcome,
    RegistryRecord,
    Report,
    RunRecord,
    StageRecord,
    Stats,
    SyncRecord,
    Target,
    Technique,
    ThreadRecord,
    Tool,
    VirtualTime,
)
from emulator.report import Note as NoteRecord
from emulator.sanitize import json_safe

# Events are sent from the child in batches of this many.
STREAM_BATCH = 512
ENGINE_UNKNOWN = "speakeasy"


@dataclass
class Recording:
    """Everything an emulation produced, engine independent and picklable."""

    events: list[Event] = field(default_factory=list)
    blobs: dict[str, bytes] = field(default_factory=dict)
    status: str = "error"
    detail: str = "emulation did not report back"
    limit: str | None = None
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
    from emulator.backends.base import BackendInputError
    from emulator.backends.speakeasy import run_backend
    from emulator.randomness import SeededRandom
    from emulator.responders.router import NetworkRouter, ResponderLoadError, build_responder
    from emulator.services import ReplayServices
    from emulator.vclock import VirtualClock

    recording = Recording()
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
            recording.status, recording.detail = "error", f"responder: {name}{err}"
            return recording
        router = NetworkRouter(responders, recorder, plan.network_default, plan.limits.max_network_exchanges)
        clock = VirtualClock(plan.start_time)
        services = ReplayServices(recorder, clock, SeededRandom(plan.seed), router)
        try:
            result = run_backend(plan, services)
        except BackendInputError as err:
            recording.status, recording.detail = "error", f"{Path(plan.target_path).name}: {err}"
        except Exception as err:  # the engine failed: keep what was recorded and say why
            recording.status = "error"
            recording.detail = f"engine error: {type(err).__name__}: {err}"
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
            recording.status, recording.detail, recording.limit = outcome_of(
                result.status, result.detail, result.limit, [(r.kind, r.error, r.error_detail) for r in result.runs]
            )
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
        if guard.violations:
            recording.status = "containment"
            recording.detail = guard.violations[0]
        flush(recorder)
    recording.events = recorder.events
    recording.blobs = recorder.blobs
    return recording


def is_guest_fault(error: str) -> bool:
    """A run error the guest's own instructions caused: a bad memory access, a bad instruction,
    an interrupt nothing handles (int3, divide by zero) or another CPU exception Unicorn raised."""
    return error.startswith("invalid_") or error == "unhandled_interrupt" or "(UC_ERR_" in error


def outcome_of(
    status: str, detail: str, limit: str | None, runs: list[tuple[str, str | None, str | None]]
) -> tuple[str, str, str | None]:
    """The report outcome of an emulation that was not stopped by a limit or a containment refusal.

    The engine calls a replay whose runs ended with an error "completed"; here the first such
    error names the outcome: ``fault`` when the guest faulted, ``timeout`` when Speakeasy's
    total-time budget ran out, ``error`` when an API handler failed (an emulator problem).
    """
    if status != "completed":
        return status, detail, limit
    for kind, error, error_detail in runs:
        if not error:
            continue
        what = f"run {kind}: {error_detail or error}"
        if error == "max_total_time":
            return "timeout", what, "timeout"
        if is_guest_fault(error):
            return "fault", what, None
        return "error", f"run {kind}: API handler failed: {error_detail or error}", None
    return status, detail, limit


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
        conn.send(("failed", "limit", "the emulation ran out of its address-space limit"))
    except BaseException as err:  # noqa: BLE001 - report, never a traceback on the console
        conn.send(("failed", "error", f"{type(err).__name__}: {err}"))
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
    failure: tuple[str, str] | None = None
    deadline = time.monotonic() + plan.limits.timeout + WATCHDOG_GRACE_SECONDS
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failure = ("timeout", f"watchdog killed the emulation after {plan.limits.timeout:g} s")
            break
        try:
            if not parent_conn.poll(min(remaining, 0.5)):
                if not process.is_alive() and not parent_conn.poll(0):
                    failure = ("error", f"emulation process died (exit code {process.exitcode})")
                    break
                continue
            message = parent_conn.recv()
        except (EOFError, OSError):
            failure = ("error", f"emulation process died (exit code {process.exitcode})")
            break
        if message[0] == "events":
            events.extend(message[1])
            blobs.update(message[2])
        elif message[0] == "done":
            recording = message[1]
            break
        else:
            failure = (message[1], message[2])
            break
    if process.is_alive():
        process.kill()
    process.join(timeout=5)
    parent_conn.close()
    if recording is None:
        recording = Recording()
        assert failure is not None
        recording.status, recording.detail = failure
        if failure[0] == "timeout":
            recording.limit = "timeout"
    recording.events = events
    recording.blobs = blobs
    return recording


# ---- the report -----------------------------------------------------------------------------


def build_report(
    plan: ReplayPlan,
    recording: Recording,
    target_sha256: str,
    target_display_path: str,
    stages: list[Stage],
    graph_data: dict[str, Any],
    techniques: list[Technique],
    dropped: list[Any],
    containment: Containment,
    generated_at: str,
) -> Report:
    from emulator.events import (
        ApiCall,
        DataBuffer,
        FileAccess,
        MemoryAlloc,
        MemoryProtect,
        NetworkExchange,
        Note,
        SyncObject,
        ThreadStart,
    )

    events = recording.events
    api_calls = [
        ApiCallRecord(seq=e.seq, stage=e.stage, api=e.api, args=e.args, ret=e.ret)
        for e in events
        if isinstance(e, ApiCall)
    ]
    network = [
        NetworkRecord(
            seq=e.seq,
            stage=e.stage,
            kind=e.kind,
            host=e.host,
            port=e.port,
            method=e.method,
            url=e.url,
            request=NetRequestRecord(
                headers=e.request.headers, body_size=e.request.body_size, body_sha256=e.request.body_sha256
            ),
            response=NetResponseRecord(
                status=e.response.status, headers=e.response.headers, size=e.response.size, sha256=e.response.sha256
            ),
            responder=e.responder,
            blocked=e.blocked,
            error=e.error,
        )
        for e in events
        if isinstance(e, NetworkExchange)
    ]
    files = [
        FileRecord(seq=e.seq, stage=e.stage, op=e.op, path=e.path, size=e.size, sha256=e.data_sha256)
        for e in events
        if isinstance(e, FileAccess)
    ]
    registry = [
        RegistryRecord(seq=e.seq, stage=e.stage, op=e.op, path=e.path, value_name=e.value_name, value=e.value)
        for e in events
        if isinstance(e, RegistryAccess)
    ]
    sync = [
        SyncRecord(seq=e.seq, stage=e.stage, op=e.op, object_type=e.object_type, name=e.name, existed=e.existed)
        for e in events
        if isinstance(e, SyncObject)
    ]
    memory = [
        MemoryRecord(
            seq=e.seq,
            stage=e.stage,
            op="alloc" if isinstance(e, MemoryAlloc) else "protect",
            address=hex(e.address),
            size=e.size,
            protect=e.protect,
        )
        for e in events
        if isinstance(e, MemoryAlloc | MemoryProtect)
    ]
    threads = [
        ThreadRecord(seq=e.seq, stage=e.stage, start=hex(e.start), api=e.api)
        for e in events
        if isinstance(e, ThreadStart)
    ]
    buffers = [
        BufferRecord(
            seq=e.seq,
            stage=e.stage,
            source=e.source,
            ref=e.ref,
            address=hex(e.address),
            size=e.size,
            sha256=e.sha256,
            input_sha256=e.input_sha256,
            api=e.api,
        )
        for e in events
        if isinstance(e, DataBuffer)
    ]
    notes = [NoteRecord(seq=e.seq, what=e.what, detail=e.detail) for e in events if isinstance(e, Note)]
    stage_records = [
        StageRecord(
            id=s.id,
            kind=s.kind,
            name=s.name,
            sha256=s.sha256,
            size=s.size,
            origin=Origin(
                type=s.link.source_type if s.link else "memory",  # type: ignore[arg-type]
                ref=s.link.source_ref if s.link else "",
                how=s.link.how if s.link else "executed_from",
                evidence=s.link.evidence if s.link else [],
                via_api=s.link.via_api if s.link else None,
            ),
            lineage=[
                LineageHop(
                    source=h.source_kind,
                    ref=h.source_ref,
                    transform=h.transform,
                    detail=h.detail,
                    actor=h.actor,
                    evidence=h.evidence,
                )
                for h in (s.link.hops if s.link else [])
            ],
            decoded=bool(s.link and s.link.decoded),
            process=s.process,
            parent=s.parent,
            entry=hex(s.entry),
            base=hex(s.base),
            via=s.via,
            seq_range=(s.first_seq, s.last_seq),
            file=f"stages/{s.sha256}.bin",
        )
        for s in stages
    ]
    start = dt.datetime.fromtimestamp(plan.start_time, tz=dt.UTC).isoformat().replace("+00:00", "Z")
    return Report(
        generated_at=generated_at,
        tool=Tool(version=__version__, engine=recording.engine, mode=plan.mode),
        scenario=plan.name if plan.scenario_dir else None,
        target=Target(
            name=plan.name, path=target_display_path, sha256=target_sha256, arch=recording.arch, kind=plan.target_kind
        ),
        outcome=Outcome(status=recording.status, detail=recording.detail, limit=recording.limit),  # type: ignore[arg-type]
        stages=stage_records,
        api_calls=api_calls,
        network=network,
        files=files,
        registry=registry,
        sync_objects=sync,
        memory=memory,
        threads=threads,
        buffers=buffers,
        dropped=dropped,
        graph=graph_data,
        attack=techniques,
        attack_release=attack_release(),
        virtual_time=VirtualTime(start=start, skipped_ms=recording.skipped_ms, sleeps=recording.sleeps),
        containment=containment,
        responders=recording.responders,
        runs=[
            RunRecord(
                kind=r["kind"],
                start=hex(r["start"]),
                instructions=r["instructions"],
                api_calls=r["api_calls"],
                error=r.get("error"),
                error_detail=r.get("error_detail"),
            )
            for r in recording.runs
        ],
        notes=notes,
        stats=Stats(
            instructions=recording.instructions,
            api_calls=len(api_calls),
            events=len(events),
            network_exchanges=len(network),
            seed=plan.seed,
        ),
    )


def host_identifiers(plan: ReplayPlan, events: list[Event]) -> list[str]:
    """Values that identify the victim machine: registry values it read, its names."""
    values = [plan.hostname, plan.user]
    for event in events:
        if isinstance(event, RegistryAccess) and event.op == "read" and event.value:
            values.append(event.value)
    return [v for v in values if v]


def analyse(plan: ReplayPlan, recording: Recording) -> tuple[list[Stage], Any, list[Technique]]:
    entry_origin = ("scenario", plan.host_process or plan.name) if plan.scenario_dir else ("file", plan.target_path)
    stages = derive_stages(recording.events, recording.blobs, entry_origin)
    graph = build_graph(
        stages,
        recording.events,
        recording.blobs,
        GraphContext(plan.host_process, host_identifiers(plan, recording.events)),
    )
    techniques = [
        Technique(technique=h.technique, name=h.name, stage=h.stage, evidence=h.evidence)
        for h in match_techniques(stages, recording.events, graph, recording.blobs)
    ]
    return stages, graph, techniques


def _load_renderers() -> None:
    # Importing matplotlib takes a large share of a replay's start-up; done while the child
    # emulates, it costs nothing. It also writes its font cache under the user's home on first
    # use, which must happen before the guard that allows writes only inside OUTDIR goes up.
    import matplotlib.font_manager  # noqa: F401

    from emulator.render.graph_files import warm_up

    warm_up()


def replay_target(
    plan: ReplayPlan, outdir: str | Path, *, isolate: bool = True, target_display_path: str | None = None
) -> ReplayResult:
    """Replay one target into ``outdir``. Pure apart from writing ``outdir``; picklable in and out."""
    out = Path(outdir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if target_display_path is None:
        target_display_path = plan.target_path
        if plan.scenario_dir:
            folder = Path(plan.scenario_dir)
            target_display_path = f"{folder.name}/{Path(plan.target_path).relative_to(folder).as_posix()}"
    target_bytes = Path(plan.target_path).read_bytes()
    if isolate:
        recording = emulate_isolated(plan, while_waiting=_load_renderers)
    else:
        recording = emulate(plan)
        recording.isolation = "in-process"
        _load_renderers()
    stages, graph, techniques = analyse(plan, recording)

    guard = install(Guard(allowed_write_root=out))
    try:
        report = write_outputs(
            out,
            plan=plan,
            recording=recording,
            stages=stages,
            graph=graph,
            report_factory=lambda dropped, containment: build_report(
                plan,
                recording,
                sha256_hex(target_bytes),
                target_display_path or plan.target_path,
                stages,
                graph_to_node_link(graph),
                techniques,
                dropped,
                containment,
                dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            ),
            guard=guard,
        )
    finally:
        uninstall(guard)
    return ReplayResult(
        report.outcome.status,
        report.outcome.detail,
        str(out),
        str(out / "report.json"),
        len(report.stages),
        len(report.api_calls),
        round(recording.emulation_seconds, 3),
    )
