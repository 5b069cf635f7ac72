"""The first replays of a local batch, started by the pool's fork server before its workers exist.

The fork server's preload (emulator/batch_preload.py) warms the engine and, when the workers and
their children outnumber the cores, imports the output libraries: seconds on one core before it
forks any worker, while the other cores idle. In that case (:func:`emulator.batch.started_ahead`)
the fork server, once it has imported the engine and read its signature database, forks one
emulation child per worker for the first pending targets (the longest expected,
:func:`emulator.batch.longest_first`), each handed its plan at once: they emulate beside the
rest of the preload. When a worker gets one of those targets it adopts the child
(:func:`claim`): the child's events, buffered in its pipe meanwhile, arrive exactly as from a
child the worker forked itself.

Each such child is the pre-started child of a cold ``chainreplay run`` (emulator/prestart.py):
it confines itself before any user code runs and streams its events;
it keeps only standard input/output/error and its two pipes of the fork server's descriptors.
The plans reach the fork server in the environment variable :data:`PRESTART_ENV` (the batch sets
it only while it starts the fork server; the fork server removes it). A target is matched by its
plan's JSON, and each child is taken at most once (a one-byte token in a pipe every worker
inherits: whoever reads it owns the child). The child is not the worker's own child: the worker
watches and kills it through a pidfd opened by the fork server when it forked it (no pid
reuse), and cannot read its exit status (a child that dies unreported "stopped answering").
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import select
import signal
import struct
import time
from contextlib import suppress
from typing import TYPE_CHECKING

from emulator import prestart

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from emulator.plan import ReplayPlan

# The JSON list of plans (each a plan's JSON) the fork server starts children for.
PRESTART_ENV = "CHAINREPLAY_BATCH_PRESTART"
# At most this many children are started ahead (one per worker; more would only wait).
MAX_PRESTARTED = 8
# An environment variable holds at most 128 KiB on Linux: plans beyond that are not started ahead.
MAX_PRESTART_ENV_BYTES = 120_000
_TOKEN = b"c"


class _Prestarted:
    """A child started ahead, as the fork server (and every worker forked from it) holds it."""

    def __init__(self, pid: int, pidfd: int, events: Connection, claim: int, started_at: float) -> None:
        self.pid, self.pidfd, self.events, self.claim, self.started_at = pid, pidfd, events, claim, started_at


_children: dict[str, _Prestarted] = {}


def plan_key(plan_json: str) -> str:
    return hashlib.sha256(plan_json.encode()).hexdigest()


def environment_value(plans: list[str]) -> str | None:
    """The value of :data:`PRESTART_ENV` for ``plans`` (each a plan's JSON), None if too long."""
    value = json.dumps(plans[:MAX_PRESTARTED])
    return value if len(value.encode()) <= MAX_PRESTART_ENV_BYTES else None


def start_from_environment() -> int:
    """In the fork server: start a child for each plan :data:`PRESTART_ENV` names; how many."""
    raw = os.environ.pop(PRESTART_ENV, None)
    if not raw or not hasattr(os, "pidfd_open"):
        return 0
    try:
        plans = json.loads(raw)
    except ValueError:
        return 0
    import emulator.replay  # noqa: F401 - what the child needs from the project, imported once here

    started = 0
    for plan_json in plans[:MAX_PRESTARTED] if isinstance(plans, list) else ():
        if isinstance(plan_json, str) and plan_key(plan_json) not in _children:
            with suppress(Exception):  # the worker forks its own child for that target
                _start(plan_json)
                started += 1
    if started:
        import warnings

        # multiprocessing's fork server reaps them and warns about pids it did not fork itself
        warnings.filterwarnings("ignore", message="forkserver: waitpid returned unexpected pid")
    return started


def _start(plan_json: str) -> None:
    from multiprocessing.connection import Pipe

    from emulator.plan import ReplayPlan

    plan = ReplayPlan.model_validate_json(plan_json)
    plans_in, plans_out = Pipe(duplex=False)
    events_in, events_out = Pipe(duplex=False)
    # Its worker exists only once the preload is over: until then the widened pipe holds the events.
    prestart.widen_event_pipe(events_out)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            close_descriptors_except({0, 1, 2, plans_in.fileno(), events_out.fileno()})
            prestart._serve(plans_in, events_out, None)
        finally:
            os._exit(1)
    started_at = time.time()
    plans_in.close()
    events_out.close()
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        plans_out.close()  # no plan: the child ends on EOF
        events_in.close()
        raise
    plans_out.send_bytes(pickle.dumps((plan, False), protocol=pickle.HIGHEST_PROTOCOL))
    plans_out.close()
    claim_r, claim_w = os.pipe()
    os.write(claim_w, _TOKEN)
    os.close(claim_w)
    os.set_blocking(claim_r, False)
    _children[plan_key(plan_json)] = _Prestarted(pid, pidfd, events_in, claim_r, started_at)


def close_descriptors_except(keep: set[int]) -> None:
    """Close every descriptor but ``keep`` (the fork server's listening socket among them)."""
    low = 0
    for fd in sorted(keep):
        if low < fd:  # closerange(n, n) would be close_range(n, -1): every descriptor from n on
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, max(low + 1, os.sysconf("SC_OPEN_MAX")))


def claim(plan: ReplayPlan) -> AdoptedChild | None:
    """In a worker: the child started ahead for ``plan``, now this worker's; None if there is
    none or another worker took it. Its events so far wait in its pipe."""
    plan_json = plan.model_dump_json()
    entry = _children.pop(plan_key(plan_json), None)
    if entry is None:
        return None
    try:
        token = os.read(entry.claim, 1)
    except OSError:  # BlockingIOError: taken by another worker
        token = b""
    finally:
        os.close(entry.claim)
    if token != _TOKEN:
        entry.events.close()
        os.close(entry.pidfd)
        return None
    return AdoptedChild(entry, plan_json)


def adopt(plan: ReplayPlan) -> AdoptedChild | None:
    """In a worker: claim the child started ahead for ``plan`` and make it the one the next
    isolated replay in this process uses (as a cold run's pre-started child); None if none."""
    child = claim(plan)
    if child is not None:
        prestart._started = child  # taken by emulator.replay._start_child through prestart.hand_over
    _forget_taken()
    return child


def _forget_taken() -> None:
    """Close this process's copies of the children other workers took (their token is gone), so
    that the emulation children this worker forks later do not inherit their pipes."""
    for key, entry in list(_children.items()):
        if not _token_left(entry.claim):
            del _children[key]
            entry.events.close()
            for fd in (entry.pidfd, entry.claim):
                os.close(fd)


def drop_adopted() -> None:
    """After the replay: an adopted child it did not use (it failed before its emulation) is
    ended, never left for the next replay in this process."""
    child = prestart.take()
    if child is not None:
        child.discard()


def _token_left(claim: int) -> bool:
    """Whether a child's token is still in its pipe (nobody took the child); the pipe's write
    end is closed, so an empty pipe reads as at its end rather than as waiting."""
    import fcntl
    import termios

    try:
        return struct.unpack("i", fcntl.ioctl(claim, termios.FIONREAD, b"\0\0\0\0"))[0] > 0
    except OSError:
        return False


def pending() -> int:
    """How many children started ahead this process still holds unclaimed."""
    return len(_children)


class AdoptedChild(prestart.EngineChild):
    """A child started ahead by the fork server, used by the worker that claimed it as
    :func:`emulator.replay.emulate_isolated` uses its own (the subset of ``Process`` it needs)."""

    def __init__(self, entry: _Prestarted, plan_json: str) -> None:
        super().__init__(entry.pid, entry.events, entry.events)
        self.pidfd = entry.pidfd
        self.plan_json = plan_json
        self.started_at = entry.started_at

    def send_plan(self, plan: ReplayPlan, debug: bool) -> bool:
        """The plan went with the child's start: usable only for that same plan."""
        return plan.model_dump_json() == self.plan_json

    def _reap(self, flags: int) -> bool:
        if self.exitcode is not None or self.pidfd < 0:
            return True
        ended = bool(select.select([self.pidfd], [], [], 0)[0])
        if not ended and not flags & os.WNOHANG:
            select.select([self.pidfd], [], [])
            ended = True
        if ended:
            self._close_pidfd()
        return ended

    def kill(self) -> None:
        if self.pidfd >= 0:
            with suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def _close_pidfd(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def discard(self) -> None:
        self.events.close()
        self.kill()
        self.join(timeout=1)
        self._close_pidfd()
