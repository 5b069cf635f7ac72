"""Replay one target: the pure, picklable entry point every front end uses.

``replay_target(plan, outdir)`` emulates the plan in a child process under a watchdog (a stuck
Unicorn call sits in C where Python cannot interrupt it), receives the events as they are
recorded, derives stages, graph and techniques, and writes the output folder. A replay that
fails midway still writes everything recorded up to that point.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import io
import logging
import multiprocessing as mp
import os
import pickle
import resource
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pydantic

from emulator import __version__
from emulator.analysis.attack import match_techniques
from emulator.analysis.graph import GraphContext, build_graph, graph_to_node_link
from emulator.analysis.stages import Stage, derive_stages
from emulator.containment import Guard, install, refused_by_kernel, uninstall
from emulator.events import Event, RegistryAccess
from emulator.limits import (
    CHILD_ADDRESS_SPACE_LIMIT,
    INTERRUPTED_ANALYSIS_SECONDS,
    MAX_DRAWN_NODES,
    MAX_GRAPH_NODES,
    WATCHDOG_GRACE_SECONDS,
)
from emulator.output import output_folder, write_outputs
from emulator.plan import ReplayPlan
from emulator.recorder import Recorder, sha256_hex
from emulator.report import (
    ApiCallRecord,
    BufferRecord,
    Containment,
    FileRecord,
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

log = logging.getLogger(__name__)
# A one-line detail in the report is cut at this many characters.
MAX_DETAIL_CHARS = 500
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
    kernel_refusals: int = 0
    violations: list[str] = field(default_factory=list)
    isolation: str = "child process"
    # The containment layers in force (emulator/sandbox.py): (name, active, detail).
    layers: list[tuple[str, bool, str]] = field(default_factory=list)
    # The signal that ended the replay (outcome "interrupted"), if any.
    signal: int | None = None
    # Notes the parent adds (a cut graph, an analysis stopped at the deadline).
    notes: list[tuple[str, str]] = field(default_factory=list)


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
    # The termination signal that ended the run (the CLI exits 128 + it), if any.
    signal: int | None = None


# ---- emulation (runs in the child, or in-process for tests) --------------------------------


def emulate(
    plan: ReplayPlan,
    on_event: Callable[[Event, dict[str, bytes]], None] | None = None,
    guard: Guard | None = None,
) -> Recording:
    """Run the plan under the engine with containment on; return what was recorded.

    ``on_event(event, new_blobs)`` is called for every event as it is recorded, with the blobs
    stored since the previous call, so a caller streaming them loses nothing if the process dies.
    ``guard``: an audit-hook guard already installed for this process's whole life (the
    emulation child); without one, a guard is installed for the emulation and removed after.
    """
    from emulator.backends.base import BackendInputError
    from emulator.backends.speakeasy import run_backend
    from emulator.randomness import SeededRandom
    from emulator.responders.router import NetworkRouter, ResponderLoadError, build_responder
    from emulator.services import ReplayServices
    from emulator.vclock import VirtualClock

    recording = Recording()
    recorder = Recorder()
    sent_blobs = 0

    def new_blobs() -> dict[str, bytes]:
        nonlocal sent_blobs
        if len(recorder.blobs) == sent_blobs:
            return {}
        fresh = dict(list(recorder.blobs.items())[sent_blobs:])
        sent_blobs = len(recorder.blobs)
        return fresh

    if on_event is not None:
        stream = on_event
        recorder.on_event = lambda event: stream(event, new_blobs())
    own_guard = guard is None
    active = install(Guard(allowed_write_root=None)) if guard is None else guard
    try:
        scenario_dir = Path(plan.scenario_dir) if plan.scenario_dir else Path(plan.target_path).parent
        try:
            responders = [
                build_responder(r.type, r.name, dict(r.options), scenario_dir, r.class_path) for r in plan.responders
            ]
        except Exception as err:  # noqa: BLE001 - user code: any failure is a named outcome
            name = "" if isinstance(err, ResponderLoadError | ValueError) else f"{type(err).__name__}: "
            recording.status, recording.detail = "error", one_line(f"responder: {name}{err}")
            if isinstance(err, OSError) and refused_by_kernel(err):
                recording.status = "containment"
            return recording
        router = NetworkRouter(responders, recorder, plan.network_default, plan.limits.max_network_exchanges)
        clock = VirtualClock(plan.start_time)
        services = ReplayServices(recorder, clock, SeededRandom(plan.seed), router)
        try:
            result = run_backend(plan, services)
        except BackendInputError as err:
            recording.status, recording.detail = "error", one_line(f"{Path(plan.target_path).name}: {err}")
        except Exception as err:  # the engine failed: keep what was recorded and say why, in one line
            log.debug("engine error", exc_info=True)
            recording.status = "error"
            recording.detail = one_line(f"engine error: {type(err).__name__}: {err}")
            recording.runs = [
                {
                    "kind": "engine",
                    "start": 0,
                    "instructions": 0,
                    "api_calls": 0,
                    "error": "engine_error",
                    "error_detail": recording.detail,
                }
            ]
        else:
            recording.status, recording.detail, recording.limit = outcome_of(
                result.status, result.detail, result.limit, [(r.kind, r.error, r.error_detail) for r in result.runs]
            )
            recording.runs = [
                {**vars(r), "error_detail": one_line(r.error_detail) if r.error_detail else r.error_detail}
                for r in result.runs
            ]
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
        if own_guard:
            uninstall(active)
        take_guard_counts(recording, active)
        if on_event is not None:
            leftover = new_blobs()
            if leftover:
                on_event(None, leftover)  # type: ignore[arg-type]
    recording.events = recorder.events
    recording.blobs = recorder.blobs
    return recording


def take_guard_counts(recording: Recording, guard: Guard) -> None:
    """Copy what the audit-hook guard refused into the recording; any refusal names the outcome."""
    recording.sockets_blocked = guard.sockets_blocked
    recording.lookups_blocked = guard.lookups_blocked
    recording.writes_blocked = guard.writes_blocked
    recording.processes_blocked = guard.processes_blocked
    recording.kernel_refusals = guard.kernel_refusals
    recording.violations = list(guard.violations)
    if guard.violations:
        recording.status = "containment"
        recording.detail = one_line(guard.violations[0])
        recording.limit = None


def one_line(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` on one line (a traceback or multi-line message never reaches the report), cut short."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


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
    """The emulation child: confined by the kernel before any user code runs, guarded for life.

    Every event is written to the pipe as it is recorded, so whatever kills this process, the
    parent has every event up to that point. The process ends with ``os._exit`` right after its
    last message: threads a responder started (daemon or not) die with it.
    """
    import emulator.containment as containment
    from emulator.sandbox import confine_child

    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches it
        # A responder's thread that dies of a refusal: counted by the guard, logged with -d only.
        threading.excepthook = lambda args: log.debug("thread %s ended", args.thread, exc_info=args.exc_value)
        layers = confine_child()
        containment.KERNEL_LAYERS_ACTIVE = any(layer.active for layer in layers if layer.name != "process_group")
        try:
            limit = CHILD_ADDRESS_SPACE_LIMIT
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass
        send = _sender(conn)
        send(("layers", [(layer.name, layer.active, layer.detail) for layer in layers]))
        guard = install(Guard(allowed_write_root=None))  # never removed: for the child's whole life

        def on_event(event: Event | None, blobs: dict[str, bytes]) -> None:
            send(("e", event, blobs))

        try:
            recording = emulate(plan, on_event=on_event, guard=guard)
            take_guard_counts(recording, guard)
            recording.events, recording.blobs = [], {}
            send(("done", recording))
        except MemoryError:
            send(("failed", "limit", "the emulation ran out of its address-space limit"))
        except BaseException as err:  # noqa: BLE001 - report, never a traceback on the console
            log.debug("emulation child failed", exc_info=True)
            send(("failed", "error", one_line(f"{type(err).__name__}: {err}")))
    except BaseException:  # noqa: BLE001 - the pipe is gone: nothing left to tell
        code = 1
    finally:
        os._exit(code)


def _sender(conn: Connection) -> Callable[[Any], None]:
    dumps = pickle.dumps
    send_bytes = conn.send_bytes

    def send(message: Any) -> None:
        send_bytes(dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    return send


class _ChildUnpickler(pickle.Unpickler):
    """Reads the child's messages. The child runs user code, so what it sends is untrusted: only
    plain data and the project's own data classes may be rebuilt (a crafted pickle could
    otherwise call any function in the CLI process)."""

    SAFE_BUILTINS = frozenset({"set", "frozenset", "bytes", "bytearray", "complex", "slice", "range"})

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in self.SAFE_BUILTINS:
            return super().find_class(module, name)
        if module.startswith("emulator.") and "." not in name:
            found = super().find_class(module, name)
            is_data = isinstance(found, type) and (
                hasattr(found, "__dataclass_fields__") or issubclass(found, enum.Enum | pydantic.BaseModel)
            )
            if is_data:
                return found
        raise pickle.UnpicklingError(f"the emulation child sent a {module}.{name}, which is not data")


def _load_message(data: bytes) -> Any:
    return _ChildUnpickler(io.BytesIO(data)).load()


class Interrupted(BaseException):
    """A termination signal reached the CLI during a phase that stops at once (analysis, drawing).

    A BaseException, like KeyboardInterrupt: a library's ``except Exception`` must not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class DeadlineReached(BaseException):
    """The whole run's time ran out during analysis or drawing."""


TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class RunControl:
    """Signals and the whole-run deadline of one replay in this process.

    While a replay runs, SIGTERM, SIGINT and SIGHUP are recorded instead of killing the CLI: the
    emulation child is killed, and the replay ends with a partial report whose outcome is
    ``interrupted``. During analysis and drawing (pure Python that could take long) the signal,
    or SIGALRM at the deadline, raises at once. Only the main thread can take signals; elsewhere
    (a batch worker's thread) the replay runs without these handlers.
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.signum: int | None = None
        # The signal has been taken into account (the emulation was stopped for it): later
        # bounded blocks run, within their own short bound, instead of raising at once.
        self.handled = False
        self.raise_now = False
        self._saved: dict[int, Any] = {}
        self.enabled = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> RunControl:
        if self.enabled:
            for sig in TERMINATING_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._on_signal)
            self._saved[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._on_alarm)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            signal.setitimer(signal.ITIMER_REAL, 0)
            for sig, handler in self._saved.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        if self.raise_now:
            self.raise_now = False
            raise Interrupted(signum)

    def _on_alarm(self, signum: int, frame: object) -> None:
        if self.raise_now:
            self.raise_now = False
            raise DeadlineReached()

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def bounded(self, seconds: float | None = None) -> _Bounded:
        """A block that a signal or the deadline (or ``seconds``, if sooner) cuts short."""
        return _Bounded(self, seconds)


class _Bounded:
    def __init__(self, control: RunControl, seconds: float | None) -> None:
        self.control = control
        self.seconds = seconds

    def __enter__(self) -> None:
        control = self.control
        if control.signum is not None and not control.handled:
            raise Interrupted(control.signum)
        left = control.remaining() if self.seconds is None else min(control.remaining(), self.seconds)
        if left <= 0:
            raise DeadlineReached()
        if control.enabled:
            signal.setitimer(signal.ITIMER_REAL, left)
        control.raise_now = True

    def __exit__(self, *exc: object) -> None:
        self.control.raise_now = False
        if self.control.enabled:
            signal.setitimer(signal.ITIMER_REAL, 0)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"emulation process killed by {name}"
    if exitcode is None:
        return "emulation process stopped answering"
    return f"emulation process exited with status {exitcode} before reporting"


def emulate_isolated(
    plan: ReplayPlan, while_waiting: Callable[[], None] | None = None, control: RunControl | None = None
) -> Recording:
    """Emulate in a confined child process; kill it if it outlives the timeout plus a grace period,
    or when ``control`` has seen a termination signal.

    ``while_waiting`` runs in this process as soon as the child has started, so work that does
    not need the recording (importing the renderers) overlaps the emulation. Events arrive one
    by one as the child records them; whatever ends the child, every event it recorded is kept.
    """
    context = mp.get_context("fork")
    parent_conn, child_conn = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(plan, child_conn), daemon=True)
    process.start()
    child_conn.close()
    events: list[Event] = []
    blobs: dict[str, bytes] = {}
    layers: list[tuple[str, bool, str]] = []
    recording: Recording | None = None
    failure: tuple[str, str] | None = None
    deadline = time.monotonic() + plan.limits.timeout + WATCHDOG_GRACE_SECONDS

    def take(message: Any) -> Recording | tuple[str, str] | None:
        kind = message[0]
        if kind == "e":
            if message[1] is not None:
                events.append(message[1])
            blobs.update(message[2])
        elif kind == "layers":
            layers[:] = message[1]
        elif kind == "done":
            return message[1]  # type: ignore[no-any-return]
        elif kind == "failed":
            return (str(message[1]), one_line(str(message[2])))
        return None

    try:
        if while_waiting is not None:
            if control is None:
                while_waiting()
            else:
                with contextlib.suppress(Interrupted, DeadlineReached), control.bounded():
                    while_waiting()  # a signal stops it at once; the loop below ends the child
        while True:
            if control is not None and control.signum is not None:
                control.handled = True
                name = signal.Signals(control.signum).name
                failure = ("interrupted", f"interrupted by {name}: the emulation was stopped")
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = ("timeout", f"watchdog killed the emulation after {plan.limits.timeout:g} s")
                break
            try:
                if not parent_conn.poll(min(remaining, 0.1)):
                    if not process.is_alive() and not parent_conn.poll(0):
                        process.join(timeout=1)
                        failure = ("error", _describe_exit(process.exitcode))
                        break
                    continue
                taken = take(_load_message(parent_conn.recv_bytes()))
            except (EOFError, OSError):
                process.join(timeout=1)
                failure = ("error", _describe_exit(process.exitcode))
                break
            except (pickle.UnpicklingError, AttributeError, ImportError, TypeError, ValueError, IndexError) as err:
                failure = ("containment", one_line(f"the emulation child sent a message refused: {err}"))
                break
            if isinstance(taken, Recording):
                recording = taken
                break
            if taken is not None:
                failure = taken
                break
    finally:
        _end_child(process)
    # The child is gone: whatever it wrote before it died is still in the pipe.
    try:
        while parent_conn.poll(0):
            taken = take(_load_message(parent_conn.recv_bytes()))
            if isinstance(taken, Recording) and recording is None and failure is None:
                recording = taken
    except (EOFError, OSError, pickle.UnpicklingError, AttributeError, ImportError, TypeError, ValueError):
        pass
    parent_conn.close()
    if recording is None:
        recording = Recording()
        assert failure is not None
        recording.status, recording.detail = failure
        if failure[0] == "timeout":
            recording.limit = "timeout"
        if failure[0] == "interrupted" and control is not None:
            recording.signal = control.signum
    recording.events = events
    recording.blobs = blobs
    recording.layers = layers
    return recording


def _end_child(process: Any) -> None:
    """Kill the child and its process group (it has its own) and reap it."""
    pid = process.pid
    if process.is_alive() and pid:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            process.kill()
    process.join(timeout=5)


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
    notes += [NoteRecord(seq=len(events), what=what, detail=detail) for what, detail in recording.notes]
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
    """Import the renderers: matplotlib's import is a large share of start-up; done while the child
    emulates, it costs nothing."""
    import matplotlib.font_manager  # noqa: F401

    from emulator.render.graph_files import warm_up

    warm_up()


@contextlib.contextmanager
def _matplotlib_config_in(config_dir: Path) -> Iterator[None]:
    """On first use matplotlib writes a font cache and its config under the user's home. For the
    run, ``MPLCONFIGDIR`` points inside OUTDIR instead (removed after), so a replay writes nothing
    outside its output folder. A process that imported matplotlib before keeps its own."""
    saved = os.environ.get("MPLCONFIGDIR")
    os.environ["MPLCONFIGDIR"] = str(config_dir)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MPLCONFIGDIR", None)
        else:
            os.environ["MPLCONFIGDIR"] = saved
        shutil.rmtree(config_dir, ignore_errors=True)


MPL_CONFIG_DIR = ".matplotlib"


def _cut_graph(graph: Any, recording: Recording) -> Any:
    if graph.number_of_nodes() <= MAX_GRAPH_NODES:
        return graph
    kept = list(graph.nodes)[:MAX_GRAPH_NODES]
    recording.notes.append(
        ("graph_cut", f"the stage graph has {graph.number_of_nodes()} nodes; kept the first {MAX_GRAPH_NODES}")
    )
    return graph.subgraph(kept).copy()


def _analyse_bounded(
    plan: ReplayPlan, recording: Recording, control: RunControl
) -> tuple[list[Stage], Any, list[Technique]]:
    """analyse() cut short by a signal or the whole run's deadline: what is cut is noted."""
    import networkx as nx

    seconds = INTERRUPTED_ANALYSIS_SECONDS if recording.status == "interrupted" else None
    try:
        with control.bounded(seconds):
            stages, graph, techniques = analyse(plan, recording)
    except Interrupted as stop:
        _mark_interrupted(recording, stop.signum, "during analysis")
        recording.notes.append(("analysis_cut", "analysis stopped by the signal: no stages, graph or techniques"))
        return [], nx.DiGraph(), []
    except DeadlineReached:
        recording.notes.append(
            ("analysis_cut", "analysis stopped at the run's deadline: no stages, graph or techniques")
        )
        return [], nx.DiGraph(), []
    return stages, _cut_graph(graph, recording), techniques


def _mark_interrupted(recording: Recording, signum: int, when: str) -> None:
    if recording.status == "interrupted":
        return  # the first phase the signal stopped is the one named
    recording.status = "interrupted"
    recording.limit = None
    recording.signal = signum
    recording.detail = f"interrupted by {signal.Signals(signum).name} {when}"


def _drawer(control: RunControl, recording: Recording) -> Callable[[Any, Path], str | None]:
    def draw(graph: Any, out: Path) -> str | None:
        if recording.status == "interrupted":
            return "graph not drawn: the replay was interrupted"
        from emulator.render.graph_files import write_graph_files

        nodes = graph.number_of_nodes()
        if nodes > MAX_DRAWN_NODES:
            import networkx as nx

            nx.write_graphml(graph, out / "stage_graph.graphml")
            return f"graph not drawn: {nodes} nodes, more than the {MAX_DRAWN_NODES} drawn (GraphML written)"
        try:
            with control.bounded():
                write_graph_files(graph, out)
        except Interrupted as stop:
            _mark_interrupted(recording, stop.signum, "while drawing")
            return "graph drawing stopped by the signal"
        except DeadlineReached:
            return "graph drawing stopped at the run's deadline"
        return None

    return draw


def replay_target(
    plan: ReplayPlan,
    outdir: str | Path,
    *,
    isolate: bool = True,
    target_display_path: str | None = None,
    force: bool = False,
) -> ReplayResult:
    """Replay one target into ``outdir``. Pure apart from writing ``outdir``; picklable in and out.

    ``outdir`` is locked for the run (:class:`emulator.output.OutputBusy` if another run holds
    it) and emptied of what an earlier run left (:class:`emulator.output.OutputNotOurs` if it
    holds files no run wrote, unless ``force``). The whole run, analysis and drawing included,
    ends by ``timeout + WATCHDOG_GRACE_SECONDS``. A SIGTERM, SIGINT or SIGHUP (main thread only)
    ends it early with a partial report whose outcome is ``interrupted``.
    """
    out = Path(outdir).resolve()
    if target_display_path is None:
        target_display_path = plan.target_path
        if plan.scenario_dir:
            folder = Path(plan.scenario_dir)
            target_display_path = f"{folder.name}/{Path(plan.target_path).relative_to(folder).as_posix()}"
    target_bytes = Path(plan.target_path).read_bytes()
    control = RunControl(time.monotonic() + plan.limits.timeout + WATCHDOG_GRACE_SECONDS)
    with output_folder(out, force=force), control, _matplotlib_config_in(out / MPL_CONFIG_DIR):
        if isolate:
            recording = emulate_isolated(plan, while_waiting=_load_renderers, control=control)
        else:
            recording = emulate(plan)
            recording.isolation = "in-process"
            _load_renderers()
            if control.signum is not None:
                _mark_interrupted(recording, control.signum, "during the emulation")
        log.debug("emulation over: %s, %d events", recording.status, len(recording.events))
        if recording.status == "interrupted" and recording.signal is not None:
            recording.detail = f"interrupted by {signal.Signals(recording.signal).name} during the emulation"
        stages, graph, techniques = _analyse_bounded(plan, recording, control)
        log.debug("analysis over: %d stages", len(stages))
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
                draw=_drawer(control, recording),
            )
        finally:
            uninstall(guard)
        log.debug("outputs written")
    if control.signum is not None and recording.signal is None:
        recording.signal = control.signum  # arrived while the report was written: still an interruption
    return ReplayResult(
        report.outcome.status,
        report.outcome.detail,
        str(out),
        str(out / "report.json"),
        len(report.stages),
        len(report.api_calls),
        round(recording.emulation_seconds, 3),
        recording.signal,
    )
