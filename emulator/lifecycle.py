"""The lifecycle of one run in this process: termination signals and the whole run's deadline.

:class:`RunControl` is entered for the length of a replay (or of ``analyse``/``render``): it
takes SIGTERM, SIGINT and SIGHUP instead of letting them kill the process, and arms SIGALRM for
blocks that must end by the deadline. See docs/containment.md ("Lifecycle").
"""

from __future__ import annotations

import gc
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Interrupted(BaseException):
    """A termination signal reached the CLI during a phase that stops at once (analysis, drawing).

    A BaseException, like KeyboardInterrupt: a library's ``except Exception`` must not swallow it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class DeadlineReached(BaseException):
    """The whole run's time ran out during analysis or drawing."""


TERMINATING_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class StopRequest:
    """A request to stop one replay, made by another thread (a batch worker's watch of its
    batch): what a termination signal is to a replay in a process's main thread, which a replay
    in any other thread cannot receive. Only the emulation heeds it: a replay asked once its
    emulation has ended writes its outputs in full."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum


# The first termination signal that arrived while no watch (:class:`RunControl`,
# :class:`SignalWatch`) took the signals: from the command line's first line (:func:`hold_signals`)
# until a watch is entered, between two watches, and after the last one.
_held: list[int] = []


def _hold(signum: int, frame: object) -> None:
    if not _held:
        _held.append(signum)


def hold_signals() -> None:
    """Keep the termination signals that arrive from now on until a watch takes them (the
    command line's first step, main thread only): a SIGTERM while the command line loads must
    not end the process silently, nor a SIGINT with a traceback. The watch entered next answers
    it as if it had arrived then (a replay stops at once with its partial report); one that
    arrives when no watch is left is :func:`take_held_signal`'s."""
    if threading.current_thread() is threading.main_thread():
        for sig in TERMINATING_SIGNALS:
            signal.signal(sig, _hold)


def take_held_signal() -> int | None:
    """The termination signal held since :func:`hold_signals` and taken by no watch, if any
    (once)."""
    return _held.pop() if _held else None


def release_signals() -> None:
    """The termination signals back to Python's defaults (a process forked from one that held
    them, which must die of them as before)."""
    _held.clear()
    for sig in TERMINATING_SIGNALS:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)


class _SignalTaker:
    """SIGTERM, SIGINT and SIGHUP recorded in :attr:`signum` (and counted in :attr:`received`)
    instead of killing the process while entered (main thread only; elsewhere nothing is
    installed), and raised as :class:`Interrupted` when :attr:`raise_now` is set; the handlers
    in place before are put back on exit. A signal held before (:func:`hold_signals`) is taken
    on entry, as if it arrived then."""

    def __init__(self) -> None:
        self.signum: int | None = None
        # how many termination signals came: a second one asks not to wait any longer
        self.received = 0
        self.raise_now = False
        self.enabled = threading.current_thread() is threading.main_thread()
        self._saved: dict[int, Any] = {}

    def _take_signals(self, **others: Any) -> None:
        """Install the handlers (and ``others``: signal name -> handler)."""
        if not self.enabled:
            return
        for sig in TERMINATING_SIGNALS:
            self._saved[sig] = signal.signal(sig, self._on_signal)
        for name, handler in others.items():
            sig = signal.Signals[name]
            self._saved[sig] = signal.signal(sig, handler)
        held = take_held_signal()
        if held is not None:
            self.received += 1
            if self.signum is None:
                self.signum = held

    def _give_back_signals(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.received += 1
        if self.signum is None:
            self.signum = signum
        if self.raise_now:
            self.raise_now = False
            raise Interrupted(signum)


class RunControl(_SignalTaker):
    """Signals and the whole-run deadline of one replay in this process.

    While a replay runs, SIGTERM, SIGINT and SIGHUP are recorded instead of killing the CLI: the
    emulation child is killed, and the replay ends with a partial report whose outcome is
    ``interrupted``. During analysis and drawing (pure Python that could take long) the signal,
    or SIGALRM at the deadline, raises at once. Only the main thread can take signals; elsewhere
    (a batch worker's thread) the replay runs without these handlers, and a
    :class:`StopRequest` made from another thread stands for the signal during the emulation.
    """

    def __init__(self, deadline: float, stop: StopRequest | None = None) -> None:
        super().__init__()
        self.deadline = deadline
        self.stop = stop
        # The signal has been taken into account (the emulation was stopped for it): later
        # bounded blocks run, within their own short bound, instead of raising at once.
        self.handled = False
        self.alarm_now = False  # SIGALRM raises DeadlineReached (inside a bounded block)

    def __enter__(self) -> RunControl:
        self._take_signals(SIGALRM=self._on_alarm)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            signal.setitimer(signal.ITIMER_REAL, 0)
        self._give_back_signals()

    def _on_alarm(self, signum: int, frame: object) -> None:
        if self.alarm_now:
            self.alarm_now = self.raise_now = False
            raise DeadlineReached()

    def emulation_stopped(self) -> int | None:
        """The signal that ends the emulation now, if any: one received, or the request made
        from another thread (then taken as received)."""
        if self.signum is None and self.stop is not None and self.stop.signum is not None:
            self.signum = self.stop.signum
        return self.signum

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def bounded(
        self, seconds: float | None = None, *, by_signals: bool = True, deadline: float | None = None
    ) -> _Bounded:
        """A block that a signal or the deadline (or ``seconds``, if sooner) cuts short; with
        ``by_signals`` False, the deadline only (a signal is recorded, answered after it); with
        ``deadline``, that one (a ``time.monotonic()`` value) instead of the run's."""
        return _Bounded(self, seconds, by_signals, deadline)


class _Bounded:
    def __init__(
        self, control: RunControl, seconds: float | None, by_signals: bool = True, deadline: float | None = None
    ) -> None:
        self.control = control
        self.seconds = seconds
        self.by_signals = by_signals
        self.deadline = control.deadline if deadline is None else deadline

    def __enter__(self) -> None:
        control = self.control
        if self.by_signals and control.signum is not None and not control.handled:
            raise Interrupted(control.signum)
        remaining = self.deadline - time.monotonic()
        left = remaining if self.seconds is None else min(remaining, self.seconds)
        if left <= 0:
            raise DeadlineReached()
        if control.enabled:
            signal.setitimer(signal.ITIMER_REAL, left)
        control.alarm_now = True
        control.raise_now = self.by_signals

    def __exit__(self, *exc: object) -> None:
        self.control.raise_now = self.control.alarm_now = False
        if self.control.enabled:
            signal.setitimer(signal.ITIMER_REAL, 0)


# Set in a process that ends with its replay (the emulation child): what survives a paused
# collection there may be frozen for good. A long-lived process (a batch worker emulating in
# process) only pauses, so the garbage of one replay never outlives it.
SHORT_LIVED_PROCESS = False

# The young generation's collection threshold in a short-lived process (Python's default 700):
# the emulation child allocates a few hundred thousand objects as it runs, nearly all freed by
# reference counting; collecting every 700 walked them ~50 times for 3CX (~8 ms of CPU), every
# 20,000 a few times. Garbage cycles wait longer (at most this many objects): the process ends
# with its replay, and its address space is capped anyway.
SHORT_LIVED_YOUNG_THRESHOLD = 20_000


def live_briefly() -> None:
    """This process ends with its replay (the emulation child): frozen survivors
    (:data:`SHORT_LIVED_PROCESS`) and rarer young collections (:data:`SHORT_LIVED_YOUNG_THRESHOLD`)."""
    global SHORT_LIVED_PROCESS
    SHORT_LIVED_PROCESS = True
    _, middle, old = gc.get_threshold()
    gc.set_threshold(SHORT_LIVED_YOUNG_THRESHOLD, middle, old)


_long_lived_frozen: list[bool] = []


def freeze_long_lived() -> None:
    """Once per process: move every object alive now into the collector's permanent generation.

    Called once a replay's parent has imported the analysis, drawing and export libraries
    (hundreds of thousands of objects that live as long as the process): each full collection
    after that (one every replay or two in a batch worker, 80-170 ms each for 3CX; one in the
    outputs of a cold run) would walk them all again. Reference counting still frees them;
    only a reference cycle alive at this moment is never collected, once per process."""
    if _long_lived_frozen:
        return
    _long_lived_frozen.append(True)
    gc.freeze()


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while Speakeasy starts, its survivors frozen after.

    Speakeasy's start-up allocates hundreds of thousands of long-lived objects (its signature
    database, the decoy system DLL images and their export stubs) and creates almost no garbage
    cycles; with collection on, the collector walks the growing heap again and again, about a
    third of the start-up. ``gc.freeze()`` then moves everything alive into the permanent
    generation, so the collections of the emulation itself never walk it either (in the
    emulation child only: see ``SHORT_LIVED_PROCESS``).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if SHORT_LIVED_PROCESS:
            gc.freeze()
        if was_enabled:
            gc.enable()


class SignalWatch(_SignalTaker):
    """Termination signals taken by a process that waits on others (a local batch's parent).

    While entered (main thread only; elsewhere it does nothing), SIGTERM, SIGINT and SIGHUP are
    recorded in :attr:`signum` instead of killing the process; inside :meth:`waiting` the first
    one also raises :class:`Interrupted`, so a blocking wait ends at once, while work outside it
    (writing a result) is never cut in the middle.
    """

    def __enter__(self) -> SignalWatch:
        self._take_signals()
        return self

    def __exit__(self, *exc: object) -> None:
        self._give_back_signals()

    def insisted(self) -> bool:
        """A second termination signal came (Ctrl-C twice): stop waiting for anything."""
        return self.received > 1

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """A blocking wait that a termination signal ends (raising :class:`Interrupted`)."""
        if self.signum is not None:
            raise Interrupted(self.signum)
        self.raise_now = True
        try:
            yield
        finally:
            self.raise_now = False

    def until_signalled(self, items: Iterator[T]) -> Iterator[T]:
        """``items`` (a blocking iterator: futures as they complete) until it ends or a
        termination signal comes; the signal ends the wait for the next item at once, never the
        work done with one."""
        while self.signum is None:
            try:
                with self.waiting():
                    item = next(items)
            except (StopIteration, Interrupted):
                return
            yield item
