"""The emulation child, started first thing: it warms the engine while the command line loads.

A cold ``chainreplay run`` used to import the command line, read the scenario, and only then
fork the emulation child, which then imported Speakeasy and read its tables: one after the
other, on a machine with two cores. :func:`start` forks the child before the command line's
own imports, once what both sides need is imported (:mod:`emulator.replay`: pydantic, the plan
and event models; the parent would otherwise import it again). The child imports the engine and reads its
once-per-process tables (signature database, export manifests) a module at a time, checking
between two modules whether the plan has arrived; the parent meanwhile imports, parses and
reads the scenario, then hands the plan over (:meth:`EngineChild.send_plan`). From there the
child is exactly the one :func:`emulator.replay.emulate_isolated` forks itself: it confines
itself (emulator/sandbox.py) before any user code runs, and streams its events back.

Nothing from the guest runs before the plan arrives, and nothing the parent does after the fork
reaches the child but the plan (a pickle from the trusted parent) and the log level. A child
that is never given a plan (another command, a usage error, ``--in-process``) ends when the
parent's end of the pipe closes, at the latest when the parent exits; PDEATHSIG ends it if the
parent dies first.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from emulator.plan import ReplayPlan

# How often a waiting join() looks at the child.
JOIN_POLL_SECONDS = 0.01
# An emulation child's events pipe holds this much before the child waits for its reader. The
# parent reads nothing while it imports the output libraries (about 1 s, beside the child): with
# Linux's default 64 KiB a 3CX child (~420 KB of events) stalled there for ~0.3 s of a cold run.
# Linux caps an unprivileged pipe at fs/pipe-max-size (1 MiB by default).
EVENT_PIPE_BYTES = 1 << 20

# Imported when first used while the shared modules are imported before the fork, because a
# cold replay uses neither: asyncio (pydantic's core schema marks deprecated functions through
# typing_extensions, which imports asyncio.coroutines to check for coroutines, and asyncio's
# package brings ssl, socket and concurrent.futures: ~35 ms of CPU) and importlib.metadata
# (pydantic's plugin loader scans entry points with it, and the command line turns plugins off:
# emulator.cli.main). asyncio.coroutines imports nothing from its package: it loads alone.
SHARED_LAZY = ("asyncio", "importlib.metadata")
SHARED_INDEPENDENT = ("asyncio.coroutines",)

_started: EngineChild | None = None


class EngineChild:
    """A pre-started emulation child, seen by the parent; the subset of
    ``multiprocessing.Process`` that :func:`emulator.replay.emulate_isolated` uses."""

    def __init__(self, pid: int, plans: Connection, events: Connection) -> None:
        self.pid = pid
        self.owner = os.getpid()
        self.plans = plans
        self.events = events
        self.exitcode: int | None = None

    def send_plan(self, plan: ReplayPlan, debug: bool) -> bool:
        """Hand the plan over; False if the child is gone (the caller forks a new one)."""
        try:
            self.plans.send_bytes(pickle.dumps((plan, debug), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            return False
        finally:
            self.plans.close()
        return True

    def _reap(self, flags: int) -> bool:
        if self.exitcode is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            self.exitcode = -1
            return True
        if pid == 0:
            return False
        self.exitcode = os.waitstatus_to_exitcode(status)
        return True

    def is_alive(self) -> bool:
        return not self._reap(os.WNOHANG)

    def join(self, timeout: float | None = None) -> None:
        if timeout is None:
            self._reap(0)
            return
        if self._reap(os.WNOHANG) or self._waited_on_pidfd(timeout):
            return
        deadline = time.monotonic() + timeout
        while not self._reap(os.WNOHANG) and time.monotonic() < deadline:
            time.sleep(JOIN_POLL_SECONDS)

    def _waited_on_pidfd(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for the child to end, woken the moment it does (a pidfd turns
        readable), and reap it; False where pidfds are not available (the caller polls)."""
        try:
            fd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):
            return False
        try:
            select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        self._reap(os.WNOHANG)
        return True

    def kill(self) -> None:
        if self.exitcode is None:
            os.kill(self.pid, signal.SIGKILL)

    def discard(self) -> None:
        """Not used after all: close the pipes (the child ends on EOF) and reap it."""
        self.plans.close()
        self.events.close()
        self.join(timeout=1)
        if self.exitcode is None:
            self.kill()
            self.join()


def start(configure_logging: Callable[[bool], None] | None = None) -> None:
    """Fork the emulation child now; the next isolated replay in this process uses it.

    ``configure_logging(debug)`` runs in the child once the plan arrives, with the parent's
    choice (its ``emulator`` logger at DEBUG or not)."""
    global _started
    from multiprocessing.connection import Pipe

    _import_shared()
    plans_in, plans_out = Pipe(duplex=False)
    events_in, events_out = Pipe(duplex=False)
    widen_event_pipe(events_out)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        plans_out.close()
        events_in.close()
        _serve(plans_in, events_out, configure_logging)
    plans_in.close()
    events_out.close()
    _started = EngineChild(pid, plans_out, events_in)


def _import_shared() -> None:
    """Import what both processes need (pydantic, the plan, events and recorder models) once,
    before the fork: the child inherits it and adds only the engine.

    On the cold run's critical path, so: with the collector paused and what it leaves frozen
    (:func:`imports_paused`; the child freezes whatever it inherited first thing), and with the
    modules in ``SHARED_LAZY`` (which neither process uses) imported when first used, and the
    code the standard library generates for their dataclasses and annotations served compiled
    (emulator/precompiled.py)."""
    from emulator.lazyimport import lazily_imported
    from emulator.precompiled import serving

    with (
        imports_paused("emulator.replay" not in sys.modules),
        lazily_imported(SHARED_LAZY, independent=SHARED_INDEPENDENT),
        serving(),
    ):
        import emulator.replay  # noqa: F401


@contextlib.contextmanager
def imports_paused(fresh: bool) -> Iterator[None]:
    """Python's collector paused while a process imports libraries it keeps for its life, and,
    where ``fresh`` (this is their first import in the process), what they left frozen.

    An import allocates long-lived objects by the ten thousand (the shared import ~40,000, the
    output libraries ~120,000) and almost no garbage; with the collector on, it walks them again
    and again while they load, and left young they make the next collection a walk of all of
    them. Frozen (``gc.freeze``), no collection walks them again. Only a first import freezes:
    a process that imports nothing new freezes nothing (whatever garbage it holds is collected
    as before)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if fresh:
            gc.freeze()
        if enabled:
            gc.enable()


def widen_event_pipe(sending_end: Connection) -> None:
    """Let the pipe behind ``sending_end`` hold :data:`EVENT_PIPE_BYTES` (as much as the
    system allows), so the child keeps emulating while its parent is busy."""
    import contextlib
    import fcntl

    # Over the system's cap or the user's pipe quota, the default size still works.
    with contextlib.suppress(OSError):
        fcntl.fcntl(sending_end.fileno(), fcntl.F_SETPIPE_SZ, EVENT_PIPE_BYTES)


def hand_over(plan: ReplayPlan, debug: bool) -> EngineChild | None:
    """The pre-started child, given ``plan``; None if there is none here (or it is gone)."""
    child = take()
    if child is None:
        return None
    if child.send_plan(plan, debug):
        return child
    child.discard()
    return None


def warm_engine(arches: tuple[str, ...] = ("x64", "x86")) -> None:
    """Pay the engine's once-per-process costs now: import it, read its signature database and
    decode the shipped templates of the decoy DLL images for ``arches`` (an export manifest or
    the signature database for a module without one).

    Replays fork their emulation child from this process, so every later replay starts warm.
    Meant for batch workers (a process pool's initializer; also ``emulator.replay.warm_engine``).
    About 0.8 s of CPU; a replay child forked after it spends ~0.63 s on the 3CX chain's load and
    emulation (docs/performance.md, "On a quiet machine (session 23)").
    """
    from emulator.lifecycle import collector_paused
    from emulator.precompiled import serving

    with collector_paused(), serving():  # the engine's import builds long-lived tables
        from emulator.backends.speakeasy import warm_steps

        for step in warm_steps(arches):
            step()


def take() -> EngineChild | None:
    """The pre-started child, once, and only in the process that started it (not in a fork)."""
    global _started
    child, _started = _started, None
    if child is not None and child.owner != os.getpid():
        return None
    return child


def _serve(plans: Connection, events: Connection, configure_logging: Callable[[bool], None] | None) -> None:
    # Whatever the parent holds lives as long as this process: never walked by the collector.
    gc.freeze()
    code = 0
    try:
        import emulator.lifecycle as lifecycle
        from emulator.sandbox import set_parent_death_signal

        lifecycle.SHORT_LIVED_PROCESS = True  # as in the emulation child it becomes

        parent = os.getppid()
        set_parent_death_signal()
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(0)
        lifecycle.release_signals()  # held by the parent's command line: dies of them, as a fork
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; Ctrl-C reaches it
        _detach_stdin()
        _warm(plans)
        try:
            plan, debug = pickle.loads(plans.recv_bytes())
        except (EOFError, OSError):  # no replay after all
            os._exit(0)
        plans.close()
        if configure_logging is not None:
            configure_logging(debug)
        from emulator.replay import _child

        _child(plan, events)  # ends the process
    except BaseException:  # noqa: BLE001 - the parent sees the pipe close and reports it
        code = 1
    finally:
        os._exit(code)


def _detach_stdin() -> None:
    """Standard input from /dev/null, as multiprocessing gives the child it starts."""
    try:
        sys.stdin.close()
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115, PTH123 - for the process's life
    except (OSError, ValueError, AttributeError):
        pass


def _warm(plans: Connection) -> None:
    """Import the engine, then read its once-per-process tables a module at a time until the
    plan arrives (each step is cached by the engine for the process's life)."""
    from emulator.lifecycle import collector_paused
    from emulator.precompiled import serving

    with collector_paused():
        try:
            with serving():
                from emulator.backends.speakeasy import warm_steps

            for step in warm_steps():
                if plans.poll(0):
                    return
                step()
        except Exception:  # noqa: BLE001 - an engine that cannot start: the replay names why
            return
