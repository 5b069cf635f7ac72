"""Replay one target: the pure, picklable entry point every front end uses.

``replay_target(plan, outdir)`` emulates the plan in a child process under a watchdog (a stuck
Unicorn call sits in C where Python cannot interrupt it), receives the events as they are
recorded, derives stages, graph and techniques, and writes the output folder. A replay that
fails midway still writes everything recorded up to that point.
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import multiprocessing as mp
import os
import pickle
import resource
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from emulator import outcome as outcome_model
from emulator import prestart
from emulator.containment import Guard, install, refused_by_kernel, uninstall
from emulator.eventlog import EventLog, api_fields_typed
from emulator.events import Event
from emulator.lifecycle import (
    DeadlineReached,
    Interrupted,
    RunControl,
    StopRequest,
    collector_paused,
    freeze_long_lived,
)
from emulator.limits import CHILD_ADDRESS_SPACE_LIMIT, WATCHDOG_GRACE_SECONDS
from emulator.outcome import Outcome, Status
from emulator.plan import ReplayPlan
from emulator.precompiled import serving
from emulator.prestart import warm_engine as warm_engine  # batch workers import it from here
from emulator.recorder import Recorder, sha256_hex
from emulator.sanitize import json_safe

if TYPE_CHECKING:
    pass

# The output, report, drawing and export modules are imported when a replay's outputs are
# prepared, not with this module: a pre-started emulation child (emulator/prestart.py) imports
# this module and needs none of them.
log = logging.getLogger(__name__)
# A one-line detail in the report is cut at this many characters.
MAX_DETAIL_CHARS = 500
ENGINE_UNKNOWN = "speakeasy"
# While the child runs, what arrived is given to emulate_isolated's ``progress`` (a replay writes
# it early: emulator.output.EarlyTrace) once this many events arrived, or this long after the last.
PROGRESS_EVENTS = 4096
PROGRESS_SECONDS = 0.01
# An API call as the emulation streams it: (seq, stage, pc, api, args, ret, new blobs).
ApiMessage = tuple[int, str, int | None, str, list[str], str | None, dict[str, bytes]]


@dataclass
class Recording:
    """Everything an emulation produced, engine independent and picklable."""

    # An EventLog (compact), or a list (tests, the child's last message).
    events: Sequence[Event] = field(default_factory=EventLog)
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
    kernel_refusals: int = 0
    violations: list[str] = field(default_factory=list)
    isolation: str = "child process"
    # The containment layers in force (emulator/sandbox.py): (name, active, detail).
    layers: list[tuple[str, bool, str]] = field(default_factory=list)
    # The signal that ended the replay (outcome "interrupted"), if any.
    signal: int | None = None

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
    # The termination signal that ended the run (the CLI exits 128 + it), if any.
    signal: int | None = None


# ---- emulation (runs in the child, or in-process for tests) --------------------------------


def emulate(
    plan: ReplayPlan,
    on_event: Callable[[Event | None, dict[str, bytes]], None] | None = None,
    guard: Guard | None = None,
    on_api: Callable[[ApiMessage], None] | None = None,
) -> Recording:
    """Run the plan under the engine with containment on; return what was recorded.

    ``on_event(event, new_blobs)`` is called for every event as it is recorded, with the blobs
    stored since the previous call, so a caller streaming them loses nothing if the process dies.
    With ``on_api`` as well, API calls go to ``on_api((seq, stage, pc, api, args, ret,
    new_blobs))`` instead, with no model built for them, and the events are not kept (a
    streaming child keeps the count only).
    ``guard``: an audit-hook guard already installed for this process's whole life (the
    emulation child); without one, a guard is installed for the emulation and removed after.
    """
    from emulator.backends.base import Backend, BackendInputError, BackendResult
    from emulator.environment import guest_variables
    from emulator.randomness import SeededRandom
    from emulator.responders.router import NetworkRouter, ResponderLoadError, build_responder
    from emulator.services import ReplayServices
    from emulator.vclock import VirtualClock

    recording = Recording()
    try:
        with collector_paused(), serving():  # Speakeasy's import builds long-lived tables (a third is collection)
            from emulator.backends.speakeasy import SpeakeasyBackend
    except ImportError as err:  # not installed, or an installed version it cannot use: one line
        recording.outcome = outcome_model.error(one_line(f"engine unavailable: {err}"))
        return recording
    failure: Outcome | None = None
    result: BackendResult | None = None
    recorder = Recorder(events=EventLog(keep=on_api is None))
    new_blobs = recorder.take_new_blobs
    if on_event is not None:
        stream = on_event
        recorder.on_event = lambda event: stream(event, new_blobs())
    if on_api is not None:
        stream_api = on_api
        recorder.on_api = lambda seq, stage, pc, api, args, ret: stream_api(
            (seq, stage, pc, api, args, ret, new_blobs())
        )
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
            if isinstance(err, OSError):
                refused_by_kernel(err)  # counted and named as a containment refusal
            failure = outcome_model.error(one_line(f"responder: {name}{err}"))
            return recording
        router = NetworkRouter(responders, recorder, plan.network_default, plan.limits.max_network_exchanges)
        clock = VirtualClock(plan.start_time, boot_uptime_ms=plan.guest.uptime_ms)
        services = ReplayServices(
            recorder, clock, SeededRandom(plan.seed), router, guest=plan.guest, variables=guest_variables(plan)
        )
        try:
            backend: Backend = SpeakeasyBackend(plan, services)
            result = backend.run()
        except BackendInputError as err:
            failure = outcome_model.error(one_line(f"{Path(plan.target_path).name}: {err}"))
        except Exception as err:  # the engine failed: keep what was recorded and say why, in one line
            log.debug("engine error", exc_info=True)
            failure = outcome_model.error(one_line(f"engine error: {type(err).__name__}: {err}"))
            recording.runs = [
                {
                    "kind": "engine",
                    "start": 0,
                    "instructions": 0,
                    "api_calls": 0,
                    "error": "engine_error",
                    "error_detail": failure.detail,
                }
            ]
        else:
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
        recording.outcome = outcome_model.decide(
            violations=[one_line(v) for v in active.violations],
            failure=failure,
            stop=result.stop if result is not None else None,
            runs=[run.end() for run in result.runs] if result is not None else (),
        )
        take_guard_counts(recording, active)
        if on_event is not None:
            leftover = new_blobs()
            if leftover:
                on_event(None, leftover)
    recording.events = recorder.events
    recording.blobs = recorder.blobs
    return recording


def take_guard_counts(recording: Recording, guard: Guard) -> None:
    """Copy what the audit-hook guard refused into the recording; a refusal names the outcome."""
    recording.sockets_blocked = guard.sockets_blocked
    recording.lookups_blocked = guard.lookups_blocked
    recording.writes_blocked = guard.writes_blocked
    recording.processes_blocked = guard.processes_blocked
    recording.kernel_refusals = guard.kernel_refusals
    recording.violations = list(guard.violations)
    if guard.violations and recording.outcome.status != Status.CONTAINMENT:
        recording.outcome = outcome_model.decide(violations=[one_line(guard.violations[0])])


def one_line(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` on one line (a traceback or multi-line message never reaches the report), cut short."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _inherited_address_space() -> int:
    """Bytes of address space this process holds now (0 where /proc is not there)."""
    try:
        pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * resource.getpagesize()


def _child(plan: ReplayPlan, conn: Connection) -> None:
    """The emulation child: confined by the kernel before any user code runs, guarded for life.

    Every event is written to the pipe as it is recorded, so whatever kills this process, the
    parent has every event up to that point. The process ends with ``os._exit`` right after its
    last message: threads a responder started (daemon or not) die with it.
    """
    import emulator.containment as containment
    import emulator.lifecycle as lifecycle
    from emulator.sandbox import confine_child

    lifecycle.live_briefly()
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches it
        # A responder's thread that dies of a refusal: counted by the guard, logged with -d only.
        threading.excepthook = lambda args: log.debug("thread %s ended", args.thread, exc_info=args.exc_value)
        layers = confine_child()
        containment.KERNEL_LAYERS_ACTIVE = any(layer.active for layer in layers if layer.name != "process_group")
        try:
            # The cap bounds what the emulation adds: a fork inherits its parent's mappings (a
            # long-lived caller that emulated before can hold gigabytes of Unicorn JIT buffers).
            limit = _inherited_address_space() + CHILD_ADDRESS_SPACE_LIMIT
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ValueError, OSError):
            pass
        send = _sender(conn)
        send(("layers", [(layer.name, layer.active, layer.detail) for layer in layers]))
        guard = install(Guard(allowed_write_root=None))  # never removed: for the child's whole life

        def on_event(event: Event | None, blobs: dict[str, bytes]) -> None:
            send(("e", event, blobs))

        def on_api(call: ApiMessage) -> None:
            send(("a", *call))

        try:
            recording = emulate(plan, on_event=on_event, guard=guard, on_api=on_api)
            take_guard_counts(recording, guard)
            recording.events, recording.blobs = [], {}  # sent one by one already
            send(("done", recording))
        except MemoryError:
            send(("failed", outcome_model.out_of_address_space()))
        except BaseException as err:  # noqa: BLE001 - report, never a traceback on the console
            log.debug("emulation child failed", exc_info=True)
            send(("failed", outcome_model.error(one_line(f"{type(err).__name__}: {err}"))))
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


def emulate_isolated(
    plan: ReplayPlan,
    while_waiting: Callable[[], None] | None = None,
    control: RunControl | None = None,
    progress: Callable[[EventLog, dict[str, bytes]], None] | None = None,
) -> Recording:
    """Emulate in a confined child process; kill it if it outlives the timeout plus a grace period,
    or when ``control`` has seen a termination signal.

    ``while_waiting`` runs in this process as soon as the child has started, so work that does
    not need the recording (importing the renderers) overlaps the emulation. Events arrive one
    by one as the child records them; whatever ends the child, every event it recorded is kept.
    ``progress(events, blobs)`` is called with what arrived so far, every :data:`PROGRESS_EVENTS`
    events or :data:`PROGRESS_SECONDS` while the child runs (a replay writes it early:
    :class:`emulator.output.EarlyTrace`).
    """
    process, parent_conn = _start_child(plan)
    events = EventLog()
    blobs: dict[str, bytes] = {}
    layers: list[tuple[str, bool, str]] = []
    recording: Recording | None = None
    failure: Outcome | None = None
    deadline = time.monotonic() + plan.limits.timeout + WATCHDOG_GRACE_SECONDS

    def take(message: Any) -> Recording | Outcome | None:
        kind = message[0]
        if kind == "a":
            _take_api_call(events, message)
            blobs.update(message[7])
        elif kind == "e":
            if message[1] is not None:
                if message[1].seq != len(events):
                    raise ValueError(f"event {len(events)} has seq {message[1].seq}")
                events.append(message[1])
            blobs.update(message[2])
        elif kind == "layers":
            layers[:] = message[1]
        elif kind == "done":
            return message[1]  # type: ignore[no-any-return]
        elif kind == "failed" and isinstance(message[1], Outcome):
            return Outcome(message[1].status, one_line(message[1].detail), message[1].limit)
        return None

    received, progressed_at = 0, 0.0  # events not yet given to progress; when it last ran
    try:
        if while_waiting is not None:
            if control is None:
                while_waiting()
            else:
                with contextlib.suppress(Interrupted, DeadlineReached), control.bounded():
                    while_waiting()  # a signal stops it at once; the loop below ends the child
        while True:
            if progress is not None and received:
                now = time.monotonic()
                if received >= PROGRESS_EVENTS or now - progressed_at >= PROGRESS_SECONDS:
                    progress(events, blobs)
                    received, progressed_at = 0, now
            stopped_by = None if control is None else control.emulation_stopped()
            if control is not None and stopped_by is not None:
                control.handled = True
                name = signal.Signals(stopped_by).name
                failure = outcome_model.interrupted(name, "during the emulation")
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = outcome_model.watchdog_timeout(plan.limits.timeout)
                break
            try:
                if not parent_conn.poll(min(remaining, PROGRESS_SECONDS if received else 0.1)):
                    if not process.is_alive() and not parent_conn.poll(0):
                        process.join(timeout=1)
                        failure = outcome_model.child_died(process.exitcode)
                        break
                    continue
                taken = take(_load_message(parent_conn.recv_bytes()))
                received += 1
            except (EOFError, OSError):
                process.join(timeout=1)
                failure = outcome_model.child_died(process.exitcode)
                break
            except (pickle.UnpicklingError, AttributeError, ImportError, TypeError, ValueError, IndexError) as err:
                failure = outcome_model.decide(
                    violations=[one_line(f"the emulation child sent a message refused: {err}")]
                )
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
        assert failure is not None
        recording = Recording(outcome=outcome_model.decide(failure=failure))
        if failure.status == Status.INTERRUPTED and control is not None:
            recording.signal = control.signum
    recording.events = events
    recording.blobs = blobs
    recording.layers = layers
    return recording


def _start_child(plan: ReplayPlan) -> tuple[Any, Connection]:
    """The emulation child for ``plan`` and the end of the pipe its events arrive on: the one
    this process pre-started (emulator/prestart.py), if any and still there, else a new fork."""
    started = prestart.hand_over(plan, debug=log.isEnabledFor(logging.DEBUG))
    if started is not None:
        return started, started.events
    context = mp.get_context("fork")
    parent_conn, child_conn = context.Pipe(duplex=False)
    prestart.widen_event_pipe(child_conn)
    process = context.Process(target=_child, args=(plan, child_conn), daemon=True)
    process.start()
    child_conn.close()
    return process, parent_conn


def _take_api_call(events: EventLog, message: tuple[Any, ...]) -> None:
    """An API call the child sent, ``("a", seq, stage, pc, api, args, ret, blobs)``, checked
    (the child runs user code: what it sends is untrusted) and added to ``events``."""
    _, seq, stage, pc, api, args, ret, blobs = message
    if seq != len(events):
        raise ValueError(f"event {len(events)} has seq {seq}")
    if not (api_fields_typed(stage, pc, api, args, ret) and type(blobs) is dict):
        raise ValueError(f"API call {seq} is not made of the right types")
    events.append_api(stage, pc, api, args, ret)


def _end_child(process: Any) -> None:
    """Kill the child and its process group (it has its own) and reap it."""
    pid = process.pid
    if process.is_alive() and pid:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            process.kill()
    process.join(timeout=5)


def _prepare_outputs(out: Path, also: Callable[[], None] | None = None) -> None:
    """Import the analysis, drawing and export libraries and build the report models while the
    child emulates (about 1.5 s of CPU cold): none of them is imported before the child starts.

    Under a guard of its own (writes only in OUTDIR, no socket): a library may probe the network
    when imported (urllib3, pulled in by stix2, binds a socket to ::1 to test for IPv6); the probe
    is refused, the library carries on without it, and the refusal is not the replay's: it is
    logged (-d), not counted in the report. ``also``: what the caller needs after the replay
    (the CLI: the modules of the summary it prints), prepared the same way. The garbage collector
    is paused meanwhile, and what is alive then is frozen once per process
    (:func:`emulator.lifecycle.freeze_long_lived`)."""
    from emulator.export import prepare as prepare_exports
    from emulator.render import prepare as prepare_renderers

    guard = install(Guard(allowed_write_root=out, spare_host_threads=True))
    try:
        with collector_paused(), serving():  # the libraries' objects live as long as the process: nothing to find
            import emulator.analysis.pipeline
            import emulator.document  # noqa: F401
            from emulator.analysis.attack import prepare as prepare_analysis
            from emulator.report import build_models

            build_models()
            prepare_analysis()
            prepare_renderers()
            prepare_exports()
            if also is not None:
                also()
            freeze_long_lived()  # and the collections that follow never walk them again
    finally:
        uninstall(guard)
    if guard.violations:
        log.debug("refused while importing the output libraries: %s", guard.violations)


def replay_target(
    plan: ReplayPlan,
    outdir: str | Path,
    *,
    isolate: bool = True,
    force: bool = False,
    yara_rules: str | None = None,
    also_prepare: Callable[[], None] | None = None,
    stop: StopRequest | None = None,
) -> ReplayResult:
    """Replay one target into ``outdir``. Pure apart from writing ``outdir``; picklable in and out.

    The emulation's recording is frozen into ``trace.jsonl`` + ``blobs/``; report.json and the
    rendered files are derived from that trace by the same code as ``chainreplay analyse``.

    ``outdir`` is locked for the run (:class:`emulator.output.OutputBusy` if another run holds
    it) and emptied of what an earlier run left (:class:`emulator.output.OutputNotOurs` if it
    holds files no run wrote, unless ``force``). The whole run, analysis and drawing included,
    ends by ``timeout + WATCHDOG_GRACE_SECONDS``. A SIGTERM, SIGINT or SIGHUP (main thread only)
    ends it early with a partial report whose outcome is ``interrupted``.
    ``yara_rules`` (a rule file or folder, compiled by the caller first) scans every buffer into
    ``report.yara``. ``also_prepare`` runs while the emulation does, beside the import of the
    output libraries (the CLI imports what it prints afterwards). ``stop``: a request another
    thread may make to end the emulation as that signal would (a replay in a thread other than
    the main one receives no signal).
    """
    from emulator.output import EARLY_TRACE, EarlyTrace, output_folder, produce
    from emulator.trace import freeze as trace_of

    out = Path(outdir).resolve()
    target_sha256 = sha256_hex(Path(plan.target_path).read_bytes())
    control = RunControl(time.monotonic() + plan.limits.timeout + WATCHDOG_GRACE_SECONDS, stop)
    early = EarlyTrace(out) if EARLY_TRACE and isolate else None
    with output_folder(out, force=force), control:
        try:
            if isolate:
                recording = emulate_isolated(
                    plan,
                    while_waiting=lambda: _prepare_outputs(out, also_prepare),
                    control=control,
                    progress=None if early is None else early.advance,
                )
                if early is not None:
                    early.close()
            else:
                recording = emulate(plan)
                recording.isolation = "in-process"
                _prepare_outputs(out, also_prepare)
                stopped_by = control.emulation_stopped()
                if stopped_by is not None:
                    control.handled = True
                    recording.signal = stopped_by
                    name = signal.Signals(stopped_by).name
                    recording.outcome = outcome_model.interrupted(name, "during the emulation")
            log.debug("emulation over: %s, %d events", recording.status, len(recording.events))
            report = produce(
                out,
                trace_of(plan, recording, target_sha256),
                write_frozen=True,
                control=control,
                yara_rules=yara_rules,
                early=early,
            )
        finally:
            if early is not None:  # its file of trace lines kept aside, whatever happened
                early.discard()
        log.debug("outputs written")
    signum = recording.signal if recording.signal is not None else control.signum
    return ReplayResult(
        report.outcome.status,
        report.outcome.detail,
        str(out),
        str(out / "report.json"),
        len(report.stages),
        len(report.api_calls),
        round(recording.emulation_seconds, 3),
        signum,
    )
