"""Fast mode: guest code runs in Unicorn with no per-instruction Python callback at all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from emulator.backends.speakeasy import budget as native_budget
from emulator.backends.speakeasy import compat, compat_fast

# How often the fast-mode watchdog thread checks the wall-clock deadline.
WATCHDOG_POLL_SECONDS = 0.005
# The watchdog stops the guest at the next block boundary; should that not happen (no native
# budget on this host), it stops Unicorn from its own thread this much later.
WATCHDOG_BACKSTOP_SECONDS = 0.5
# Test knob: preempt the guest this often and resume it (tests/test_modes.py); None in use.
PREEMPT_EVERY_SECONDS: float | None = None


class NativeRunner:
    """Runs the guest natively between API calls, for one emulator.

    Speakeasy keeps one code hook installed for the work it defers after each API call (SEH
    dispatch, ending a run, unmapping temporary fault pages). "Disabling" it only flips a flag,
    so every guest instruction still crosses into Python. Here that work runs just before
    Unicorn resumes, which is exactly where the hook would first have fired; a native hook is
    installed only while Speakeasy wants the work repeated on every instruction (until a SEH
    handler has resumed). Work requested from inside a Unicorn callback yields to Python and
    resumes transparently.

    Unicorn's own timeout starts and joins a timer thread on every start (about 0.5 ms, once
    per API call); one watchdog thread per replay stops Unicorn at the deadline instead. That
    stop comes from another thread, so it can land in the middle of an instruction (Unicorn
    checks for a stop after every memory access and rewinds to the instruction's start after
    its store): the run then ends as a timeout and is never resumed. The emulating thread arms
    and disarms the watchdog with plain attribute stores (no lock per API call): the watchdog's
    budget preempt may land in a later stretch than the one it was meant for, so any preempted
    stretch is handled alike (resumed exactly before its deadline, ended after it); only its
    stop from another thread is synchronised with the end of a stretch (``_stopping``).

    ``max_instructions``: Unicorn's instruction counter costs a C call per instruction (2 to 3x
    slower), so a stretch of guest code (between two API calls) first runs on a native block
    budget (:mod:`budget`): machine code in a block hook adds each block's size in bytes and
    stops Unicorn, exactly at a block boundary, once the stretch has entered ``max_instructions``
    bytes of code. Every instruction is at least one byte, so by then the stretch has run at
    most ``max_instructions`` instructions. Only a stretch that gets that far is resumed on
    Unicorn's counter for ``max_instructions`` more and stopped there with the limit error.
    Tolerance: a stretch is stopped after between 1x and 2x ``max_instructions`` (plus one
    block), never before the limit, so whatever faithful mode runs to completion runs the same
    here; the limit applies per stretch, not per run. Every stop this runner resumes from is
    synchronous (an API hook, the budget, Unicorn's counter), which resumes exactly.
    """

    def __init__(self, emu: Any, instruction_limit: int) -> None:
        self.emu = emu
        self.unicorn = compat.unicorn_of(emu)
        self.instruction_limit = instruction_limit
        self.pending = False
        self.in_native = False
        self.native_hook: int | None = None
        self.flush_needed = False
        self.stop_requested = False
        self.yielded = False
        # Held by the watchdog while it checks the deadline; the emulating thread takes it only
        # after a stretch that ended while the watchdog was checking (see _disarm).
        self._lock = threading.Lock()
        # The deadline of the stretch running natively (None: none, or not in native code).
        self._stop_at: float | None = None
        # The watchdog is checking the deadline, and may stop Unicorn from its own thread.
        self._stopping = False
        self.preemptions = 0
        self._watchdog_fired = False
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="chainreplay-watchdog", daemon=True)
        self._watchdog.start()
        compat_fast.take_over_code_hook(emu, self, self.enable, self.disable)
        self._engine_start, self._engine_stop = compat_fast.replace_engine_start_stop(emu, self.start, self.stop)
        compat_fast.use_direct_engine_access(emu)
        # Fast mode's register cache (see compat_fast.use_direct_engine_access), for the pc.
        self._registers = compat_fast.register_view(emu.emu_eng)
        self._start_native = compat_fast.native_start_status(emu)
        self._start_to_trap = compat_fast.native_start_to_trap(emu)
        # The last start ended at an API trap (see _native).
        self.at_trap = False
        self._engine_stop = compat_fast.native_stop(emu) or self._engine_stop
        self.budget = native_budget.install(self.unicorn)
        # A watch whose memory hooks keep Unicorn on its slow memory path (the flow watch):
        # ``armed()`` says whether any is armed, ``expire()`` removes them for the rest of the
        # stretch. At most ``slow_bytes`` bytes of blocks run with them in one stretch.
        self.slow_watch: tuple[Callable[[], bool], Callable[[], None], int] | None = None
        # Blocks translated before the budget hook existed would never report to it.
        self.flush_needed = self.budget is not None
        # Whether any memory read or write hook exists now (the backend's watches tell); None: never.
        self.memory_hooked: Callable[[], bool] | None = None
        # Whether translated code may be cached from a start made with no memory read or write
        # hook: Unicorn picks a block's memory path when it translates it (its fast path calls no
        # hook, even one added later; with any such hook every access takes the slow path, which
        # checks the hooks there are at each access), and a hook deleted during a start stays
        # listed until the start returns. Only such code needs a flush when a hook is added.
        self.fast_code_cached = True

    def close(self) -> None:
        self._closed.set()
        self._watchdog.join(timeout=1)
        if self.budget is not None:
            self.budget.remove()
            self.budget = None

    def enable(self) -> None:
        if not self.in_native:
            self.pending = True
        elif self.native_hook is None and not self.pending:
            self.pending = True
            self.yielded = True
            self._engine_stop()

    def disable(self) -> None:
        self.pending = False
        if self.native_hook is not None:
            compat_fast.remove_native_hook(self.unicorn, self.native_hook)
            self.native_hook = None
            self.flush_needed = True

    def retranslate(self) -> None:
        """From inside a Unicorn callback: stop at the next block boundary (exactly, through the
        native budget) and resume there with the translation cache flushed. Code translated while
        a memory hook existed takes Unicorn's slow memory path even after the hook is gone (the
        flow watch calls this when its last hook goes). Without the budget: flushed at the next start."""
        self.flush_needed = True
        if self.in_native and self.budget is not None:
            self.yielded = True
            self.budget.preempt()

    def hooks_added(self) -> None:
        """A memory read or write hook was added (the flow watch, the guest machine): as
        :meth:`retranslate`, unless every block cached was translated with a memory hook in
        place (since the last flush, every start began with one), which calls the new hook too."""
        if self.fast_code_cached:
            self.retranslate()

    def _note_memory_path(self) -> None:
        """Just before a start: the code it translates takes the fast memory path if no memory
        hook exists now."""
        hooked = self.memory_hooked
        if hooked is None or not hooked():
            self.fast_code_cached = True

    def stop(self) -> Any:
        self.stop_requested = True
        return self._engine_stop()

    def _watch(self) -> None:
        while not self._closed.wait(WATCHDOG_POLL_SECONDS):
            with self._lock:
                self._stopping = True  # before reading the stretch's state: see _disarm
                try:
                    self._check_deadline(time.monotonic())
                finally:
                    self._stopping = False

    def _check_deadline(self, now: float) -> None:
        """The watchdog's side: preempt (exactly, at the next block boundary) a native stretch
        past its deadline, on every poll until it ends; stop Unicorn from this thread if there
        is no budget, or if the stretch is still running ``WATCHDOG_BACKSTOP_SECONDS`` later."""
        if not self.in_native:
            return
        stop_at = self._stop_at
        if stop_at is None or now < stop_at:
            return
        self._watchdog_fired = True
        if self.budget is not None and now < stop_at + WATCHDOG_BACKSTOP_SECONDS:
            self.budget.preempt()
        else:
            self._engine_stop()  # may land mid-instruction: the run then ends

    def _arm(self, stop_at: float | None) -> None:
        """Before a native start: the stretch's flags cleared, its deadline given to the watchdog."""
        self.stop_requested = self.yielded = self._watchdog_fired = False
        self._stop_at = stop_at
        self.in_native = True

    def _disarm(self) -> None:
        """After a native start. The watchdog reads the stretch's state after setting
        ``_stopping`` and holds its lock until its stop is made: waiting for the lock when it is
        set means no stop from its thread can land in the next stretch."""
        self.in_native = False
        self._stop_at = None
        if self._stopping:
            with self._lock:
                pass

    def _on_code(self, _uc: Any, address: int, size: int, _user: Any) -> None:
        compat_fast.run_deferred_code_work(self.emu, address, size)

    def _run_deferred_work(self, address: int) -> int | None:
        """Speakeasy's deferred work at ``address``; the address to resume at, None to stay stopped."""
        self.stop_requested = False
        if compat_fast.deferred_work_idle(self.emu, address):
            # All Speakeasy's hook would do here is switch itself off.
            if self.emu.get_pc() != address:
                self.emu.set_pc(address)
            self.disable()
            return None if compat_fast.emulation_complete(self.emu) else address
        self.emu.set_pc(address)
        compat_fast.run_deferred_code_work(self.emu, address, 0)
        if self.stop_requested or compat_fast.emulation_complete(self.emu):
            return None
        if self.pending and self.native_hook is None:
            self.native_hook = compat_fast.add_native_code_hook(self.unicorn, self._on_code)
        return int(self.emu.get_pc())

    def _native(self, address: int, stop_at: float | None, count: int) -> None:
        if self.flush_needed:
            compat_fast.flush_translations(self.unicorn)
            self.flush_needed = False
            self.fast_code_cached = False
        if not self.fast_code_cached:
            self._note_memory_path()
        self._arm(stop_at)
        self.at_trap = False
        try:
            if self._start_native is not None:
                status = self._start_native(address, count)
                if status:
                    # Guest code reached an API stub: Unicorn reports the failed fetch from the
                    # trap, which Speakeasy's run loop tolerates and goes on from as from a
                    # normal return. Returning spares raising and catching it once per call.
                    if not compat_fast.stopped_at_api_trap(self.emu, status):
                        raise compat_fast.engine_error(status)
                    self.at_trap = True
            else:
                self._engine_start(address, timeout=0, count=count)
        finally:
            self._disarm()

    def start(self, address: int, timeout: float = 0, count: int = 0) -> Any:
        return self.start_by(address, time.monotonic() + timeout if timeout else None)

    def start_by(self, address: int, deadline: float | None) -> None:
        """:meth:`start` with the deadline given as a ``time.monotonic()`` value (None: none).

        The usual start (after an API call: no deferred work but switching the hook off, no
        memory hook armed, the native budget in place, no flush) is made here in one piece,
        from the pc to the next API trap; anything else, and whatever follows a start that
        did not end at a trap, is :meth:`_start`'s, as it would have been from the first."""
        budget, emu = self.budget, self.emu
        start_to_trap = self._start_to_trap
        if (
            budget is None
            or start_to_trap is None
            or self.flush_needed
            or self.native_hook is not None
            or PREEMPT_EVERY_SECONDS is not None
            or (self.slow_watch is not None and self.slow_watch[0]())
        ):
            return self._start(address, deadline)
        if self.pending:
            if not compat_fast.deferred_work_idle(emu, address):
                return self._start(address, deadline)
            # _start's idle deferred work, the pc from the register cache while it holds it
            self.pending = False
            cache, _, running, _, pc_e = self._registers
            if running[0] or (pc := cache.get(pc_e)) is None:
                pc = emu.get_pc()
            if pc != address:
                emu.set_pc(address)
            if emu.emu_complete:
                return None
        budget.reset(self.instruction_limit)
        if not self.fast_code_cached:
            self._note_memory_path()
        # _native, without a count; _arm and _disarm inline
        self.stop_requested = self.yielded = self._watchdog_fired = False
        self._stop_at = deadline
        self.in_native = True
        self.at_trap = False
        try:
            self.at_trap = start_to_trap(address)
        finally:
            self.in_native = False
            self._stop_at = None
            if self._stopping:
                self._disarm()
        if self.at_trap:
            return None
        return self._start(address, deadline, started=True)

    def _start(self, address: int, deadline: float | None, started: bool = False) -> None:
        """The runner's start in general; ``started``: its first native start has been made
        (by :meth:`start_by`, with no count and no checkpoint) and did not end at a trap."""
        limit = self.instruction_limit
        # Without the native budget (another host), count every instruction from the first.
        counting = bool(limit) and self.budget is None
        if self.budget is not None and not started:
            self.budget.reset(limit)
        slow_since: int | None = None  # budget bytes spent when memory hooks were first seen armed
        emu = self.emu
        checkpoint = None
        while True:
            if started:
                started = False
            else:
                if self.pending:
                    if self.native_hook is None and compat_fast.deferred_work_idle(emu, address):
                        # _run_deferred_work's idle case, inline (after nearly every API call).
                        self.stop_requested = self.pending = False
                        if emu.get_pc() != address:
                            emu.set_pc(address)
                        if compat_fast.emulation_complete(emu):
                            return None
                    else:
                        resume = self._run_deferred_work(address)
                        if resume is None:
                            return None
                        address = resume
                stop_at = deadline
                if PREEMPT_EVERY_SECONDS is not None:
                    preempt_at = time.monotonic() + PREEMPT_EVERY_SECONDS
                    stop_at = preempt_at if deadline is None else min(deadline, preempt_at)
                checkpoint = None
                if self.budget is not None and self.slow_watch is not None and not counting:
                    armed, _, slow_bytes = self.slow_watch
                    if armed():
                        slow_since = self.budget.spent if slow_since is None else slow_since
                        checkpoint = slow_since + slow_bytes
                        self.budget.cap(checkpoint)
                    else:
                        slow_since = None
                self._native(address, stop_at, limit if counting else 0)
                if self.at_trap:
                    return None  # as the UcError Speakeasy's loop tolerates, skipping what follows
            # A preempt from the watchdog, whether or not it was meant for this stretch.
            preempted = self.budget is not None and self.budget.preempted
            if self.budget is not None:
                self.budget.restore()
            if self.stop_requested:
                return None
            address = int(self.emu.get_pc())
            if self.yielded:
                continue
            if self._watchdog_fired or preempted:
                if deadline is None or time.monotonic() < deadline:
                    self.preemptions += 1
                    continue  # preempted at a block boundary: resume exactly there
                return None  # Speakeasy sees the deadline and ends the run as a timeout
            if counting:
                self._instruction_limit_reached()
                return None
            if (
                checkpoint is not None
                and self.slow_watch is not None
                and self.budget is not None
                and self.budget.spent >= checkpoint
                and not self.budget.exhausted
            ):
                # Long enough on the slow memory path: the watch lets go until the next API call,
                # and the code goes on from here on fresh (fast) translations.
                self.slow_watch[1]()
                self.flush_needed = True
                slow_since = None
                continue
            if self.budget is not None and self.budget.exhausted:
                # At most `limit` instructions so far: count `limit` more, exactly, from here.
                self.budget.suspend()
                counting = True
                # Code translated without Unicorn's counting hook would never be counted.
                self.flush_needed = True
                continue
            return None

    def _instruction_limit_reached(self) -> None:
        pc = self.emu.get_pc()
        if compat_fast.at_api_trap_or_exit(self.emu, pc):
            return
        compat_fast.end_run_with_error(self.emu, "max_instructions", pc, self.instruction_limit)
