"""Events and waitable timers that are signalled or not, as a wait finds them on Windows.

Speakeasy keeps no state for an event or a waitable timer: every wait on one was satisfied at
once (``WaitForSingleObject(event, 100)`` on an event nobody set answered ``WAIT_OBJECT_0``, an
emulator tell), and a waitable timer's completion routine was queued when the timer was set.

Here each event made by ``CreateEventA/W`` remembers whether it is manual-reset and signalled
(``SetEvent``, ``ResetEvent``; a satisfied wait resets an auto-reset event), and each waitable
timer made by ``CreateWaitableTimer(Ex)A/W`` its due time on the virtual clock (a relative
negative due time from the moment it was set, a positive one absolute), its period, its
completion routine and the thread that set it (``SetWaitableTimer(Ex)``, which like
``CancelWaitableTimer`` stops it first and drops its routine's call not yet delivered: a timer has
one APC, queued again only once delivered, as ``NtSetTimer`` keeps it). A timer is signalled once the clock
passes its due time; its routine is queued to the thread that set it then (``fire_due``, at
every alertable moment), and a periodic timer is due again a period later. ``waits.py`` asks
whether the objects a wait names are signalled (:meth:`Signals.signalled`), takes the signal of
those a wait is satisfied by (:meth:`Signals.take`), and moves the clock to the moment a timer
is due when a wait would sleep until then (:meth:`Signals.next_due`).

A handle names nothing when no object, file, pipe or key has it and it was closed
(``CloseHandle``) or is past every handle the emulator has given out (:meth:`Signals.known_handle`):
a wait on it fails with ``ERROR_INVALID_HANDLE``. Objects this module does not model (mutexes,
semaphores, an event made another way) are signalled, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from emulator.backends.speakeasy import compat
from emulator.services import ReplayServices
from emulator.vclock import UNITS_PER_MS

logger = logging.getLogger(__name__)

ERROR_ALREADY_EXISTS = 183
CREATE_WAITABLE_TIMER_MANUAL_RESET = 0x1
# Pseudo handles (the current process, thread, and the token pseudo handles) are all ones but a
# little: at least this much, masked to 32 bits.
PSEUDO_HANDLE_FLOOR = 0xFFFFFFF0


@dataclass
class _Event:
    obj: Any  # kept: the state is keyed by id(obj)
    manual: bool
    signalled: bool


@dataclass
class _Timer:
    obj: Any
    manual: bool
    signalled: bool = False
    due: int | None = None  # FILETIME it is next due at (None: not set, or cancelled)
    period_ms: int = 0
    routine: int = 0
    argument: int = 0
    thread_id: int = 0
    queued: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # its calls queued as APCs


class Signals:
    def __init__(self, se: Any, emu: Any, services: ReplayServices) -> None:
        self.se = se
        self.emu = emu
        self.services = services
        self.clock = services.clock
        self.events: dict[int, _Event] = {}
        self.timers: dict[int, _Timer] = {}
        self.closed: set[int] = set()  # handles CloseHandle closed (while no object has them again)

    def install(self) -> None:
        for name in ("CreateEventA", "CreateEventW"):
            self.se.add_api_hook(self._create_event, "kernel32", name)
        self.se.add_api_hook(self._set_event, "kernel32", "SetEvent")
        self.se.add_api_hook(self._reset_event, "kernel32", "ResetEvent")
        for name in ("CreateWaitableTimerA", "CreateWaitableTimerW"):
            self.se.add_api_hook(self._create_timer, "kernel32", name)
        for name in ("CreateWaitableTimerExA", "CreateWaitableTimerExW"):
            self.se.add_api_hook(self._create_timer_ex, "kernel32", name)
        self.se.add_api_hook(self._cancel_timer, "kernel32", "CancelWaitableTimer")
        self.se.add_api_hook(self._close_handle, "kernel32", "CloseHandle")
        self.services.set_waitable_timer = self.set_timer
        self.services.fire_due_timers = self.fire_due

    # -- the APIs ----------------------------------------------------------------------------

    def _object(self, handle: int) -> Any:
        return compat.object_of(self.emu, handle) if handle else None

    def _create_event(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # CreateEvent(lpEventAttributes, bManualReset, bInitialState, lpName)
        rv = orig(argv)
        obj = self._object(int(rv or 0))
        if obj is not None and emu.get_last_error() != ERROR_ALREADY_EXISTS:
            self.events[id(obj)] = _Event(obj, bool(argv[1] & 0xFFFFFFFF), bool(argv[2] & 0xFFFFFFFF))
        return rv

    def _set_event(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        self.signal(argv[0])
        return rv

    def _reset_event(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        event = self.events.get(id(self._object(argv[0])))
        if event is not None:
            event.signalled = False
        return rv

    def _create_timer(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # CreateWaitableTimer(lpTimerAttributes, bManualReset, lpTimerName)
        return self._new_timer(emu, orig(argv), bool(argv[1] & 0xFFFFFFFF))

    def _create_timer_ex(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # CreateWaitableTimerEx(lpTimerAttributes, lpTimerName, dwFlags, dwDesiredAccess)
        return self._new_timer(emu, orig(argv), bool(argv[2] & CREATE_WAITABLE_TIMER_MANUAL_RESET))

    def _new_timer(self, emu: Any, rv: Any, manual: bool) -> Any:
        obj = self._object(int(rv or 0))
        if obj is not None and emu.get_last_error() != ERROR_ALREADY_EXISTS:
            self.timers[id(obj)] = _Timer(obj, manual)
        return rv

    def _cancel_timer(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        timer = self.timers.get(id(self._object(argv[0])))
        if timer is not None:
            timer.due = None
            self._unqueue(timer)
        return rv

    def _close_handle(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        handle = argv[0] if argv else 0
        rv = orig(argv)
        if rv and handle and self._object(handle) is None:
            self.closed.add(handle)
        return rv

    # -- what waits ask ------------------------------------------------------------------------

    def known_handle(self, handle: int) -> bool:
        """Whether ``handle`` may name something: a pseudo handle, an object, a file or pipe, a
        registry key, a handle of the project's own; or one the emulator gave out (a handle with
        no object behind it, from a call served by its signature) that was never closed. No for
        0, a closed handle, and one past every handle given out."""
        handle &= 0xFFFFFFFFFFFFFFFF
        if not handle:
            return False
        if handle & 0xFFFFFFFF >= PSEUDO_HANDLE_FLOOR:
            return True
        if compat.object_of(self.emu, handle) is not None or handle in self.services.handles:
            return True
        try:
            if self.emu.file_get(handle) or self.emu.fileman.get_pipe_from_handle(handle):
                return True
            if self.emu.reg_get_key(handle=handle):
                return True
        except Exception:
            return True  # unsure: as before
        if handle in self.closed:
            return False
        return handle < compat.highest_handle(self.emu)

    def modelled(self, obj: Any) -> bool:
        return obj is not None and (id(obj) in self.events or id(obj) in self.timers)

    def signalled(self, obj: Any) -> bool:
        """Whether the object is signalled now (an object not modelled here always is)."""
        event = self.events.get(id(obj))
        if event is not None:
            return event.signalled
        timer = self.timers.get(id(obj))
        if timer is None:
            return True
        self._fire(timer)
        return timer.signalled

    def take(self, obj: Any) -> None:
        """A wait was satisfied by ``obj``: an auto-reset event or timer is reset."""
        event = self.events.get(id(obj))
        if event is not None and not event.manual:
            event.signalled = False
        timer = self.timers.get(id(obj))
        if timer is not None and not timer.manual:
            timer.signalled = False

    def signal(self, handle: int) -> None:
        event = self.events.get(id(self._object(handle)))
        if event is not None:
            event.signalled = True

    def next_due(self, objs: list[Any] | None = None, thread_id: int | None = None) -> int | None:
        """The FILETIME the first of these objects' timers (or, with ``thread_id``, of the timers
        with a routine that thread set) is due at; None when none will be."""
        if objs is not None:
            timers = [self.timers[id(o)] for o in objs if id(o) in self.timers]
        else:
            timers = [t for t in self.timers.values() if t.routine and t.thread_id == thread_id]
        dues = [t.due for t in timers if t.due is not None]
        return min(dues) if dues else None

    def sleep_until(self, filetime: int) -> None:
        """Move the virtual clock on to ``filetime`` (a wait that sleeps until a timer is due)."""
        units = filetime - self.clock.now_filetime()
        if units > 0:
            self.clock.sleep(-(-units // UNITS_PER_MS))

    # -- timers ------------------------------------------------------------------------------------

    def set_timer(self, handle: int, due: int, period_ms: int, routine: int, argument: int, thread_id: int) -> bool:
        """SetWaitableTimer(Ex) of a timer this module knows (emulator/apis/threads.py validated
        it): due at FILETIME ``due``; False for a timer it does not know."""
        timer = self.timers.get(id(self._object(handle)))
        if timer is None:
            return False
        self._unqueue(timer)
        timer.due, timer.period_ms, timer.routine, timer.argument = due, max(period_ms, 0), routine, argument
        timer.thread_id, timer.signalled = thread_id, False
        return True

    def fire_due(self) -> None:
        """Every timer the clock has passed the due time of is signalled and its routine queued."""
        for timer in self.timers.values():
            self._fire(timer)

    def _fire(self, timer: _Timer) -> None:
        now = self.clock.now_filetime()
        if timer.due is None or timer.due > now:
            return
        fired = timer.due
        timer.signalled = True
        if timer.period_ms:
            step = timer.period_ms * UNITS_PER_MS
            timer.due = fired + step * ((now - fired) // step + 1)
        else:
            timer.due = None
        if timer.routine:
            call = (timer.routine, (timer.argument, fired & 0xFFFFFFFF, fired >> 32 & 0xFFFFFFFF))
            pending = self.services.pending_apcs.setdefault(timer.thread_id, [])
            timer.queued[:] = [c for c in timer.queued if c in pending]
            if not timer.queued:  # a timer has one APC: queued again only once it was delivered
                timer.queued.append(call)
                pending.append(call)

    def _unqueue(self, timer: _Timer) -> None:
        pending = self.services.pending_apcs.get(timer.thread_id)
        for call in timer.queued:
            if pending is not None and call in pending:
                pending.remove(call)
        timer.queued.clear()
