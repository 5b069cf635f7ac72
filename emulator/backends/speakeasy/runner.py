"""Fast mode: guest code runs in Unicorn with no per-instruction Python callback at all."""

from __future__ import annotations

import threading
import time
from typing import Any

from emulator.backends.speakeasy import compat

# A stretch of guest code between two API calls runs this long before Unicorn starts counting
# its instructions against max_instructions (counting costs a C call per instruction).
UNCOUNTED_SLICE_SECONDS = 0.25
# No Unicorn build runs faster than this, so an uncounted slice of limit / rate seconds cannot
# have run past the limit; a limit needing a slice shorter than the minimum is counted at once.
FASTEST_INSTRUCTIONS_PER_SECOND = 1_000_000_000
MIN_UNCOUNTED_SLICE_SECONDS = 0.05
# How often the fast-mode watchdog thread checks the wall-clock deadline.
WATCHDOG_POLL_SECONDS = 0.005


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
    per API call); one watchdog thread per replay stops Unicorn at the deadline instead.
    Unicorn's instruction counter costs a C call per instruction (3x slower on RC4), so a
    stretch of guest code runs uncounted for its first ``UNCOUNTED_SLICE_SECONDS`` and only
    a stretch still running after that is counted against ``max_instructions`` (so a stretch
    may run up to about twice the limit before it is stopped; small limits are counted at once).
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
        self._lock = threading.Lock()
        self._stop_at: float | None = None
        self._watchdog_fired = False
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="chainreplay-watchdog", daemon=True)
        self._watchdog.start()
        compat.take_over_code_hook(emu, self, self.enable, self.disable)
        self._engine_start, self._engine_stop = compat.replace_engine_start_stop(emu, self.start, self.stop)

    def close(self) -> None:
        self._closed.set()
        self._watchdog.join(timeout=1)

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
            compat.remove_native_hook(self.unicorn, self.native_hook)
            self.native_hook = None
            self.flush_needed = True

    def retranslate(self) -> None:
        """From inside a Unicorn callback: end the current block and resume with the translation
        cache flushed. Code translated while a memory hook existed takes Unicorn's slow memory
        path even after the hook is gone (the flow watch calls this when its last hook goes)."""
        if self.in_native:
            self.flush_needed = True
            self.yielded = True
            self._engine_stop()

    def stop(self) -> Any:
        self.stop_requested = True
        return self._engine_stop()

    def _watch(self) -> None:
        while not self._closed.wait(WATCHDOG_POLL_SECONDS):
            with self._lock:
                if self._stop_at is not None and time.monotonic() >= self._stop_at:
                    self._stop_at = None
                    self._watchdog_fired = True
                    self._engine_stop()

    def _on_code(self, _uc: Any, address: int, size: int, _user: Any) -> None:
        compat.run_deferred_code_work(self.emu, address, size)

    def _run_deferred_work(self, address: int) -> int | None:
        """Speakeasy's deferred work at ``address``; the address to resume at, None to stay stopped."""
        self.stop_requested = False
        self.emu.set_pc(address)
        compat.run_deferred_code_work(self.emu, address, 0)
        if self.stop_requested or compat.emulation_complete(self.emu):
            return None
        if self.pending and self.native_hook is None:
            self.native_hook = compat.add_native_code_hook(self.unicorn, self._on_code)
        return int(self.emu.get_pc())

    def _native(self, address: int, stop_at: float | None, count: int) -> None:
        if self.flush_needed:
            compat.flush_translations(self.unicorn)
            self.flush_needed = False
        self.stop_requested = self.yielded = self._watchdog_fired = False
        with self._lock:
            self._stop_at = stop_at
        self.in_native = True
        try:
            self._engine_start(address, timeout=0, count=count)
        finally:
            self.in_native = False
            with self._lock:
                self._stop_at = None

    def start(self, address: int, timeout: float = 0, count: int = 0) -> Any:
        now = time.monotonic()
        deadline = now + timeout if timeout else None
        uncounted = min(UNCOUNTED_SLICE_SECONDS, self.instruction_limit / FASTEST_INSTRUCTIONS_PER_SECOND)
        counting = uncounted < MIN_UNCOUNTED_SLICE_SECONDS
        slice_end = now + uncounted
        while True:
            if self.pending:
                resume = self._run_deferred_work(address)
                if resume is None:
                    return None
                address = resume
            stop_at = deadline
            if self.instruction_limit and not counting:
                stop_at = slice_end if deadline is None else min(deadline, slice_end)
            self._native(address, stop_at, self.instruction_limit if counting else 0)
            if self.stop_requested:
                return None
            address = int(self.emu.get_pc())
            if self.yielded:
                continue
            if self._watchdog_fired:
                if deadline is not None and time.monotonic() >= deadline:
                    return None  # Speakeasy sees the deadline and ends the run as a timeout
                counting = True  # still running after the uncounted slice: count from here
                # Code translated without Unicorn's counting hook would never be counted.
                self.flush_needed = True
                continue
            if counting:
                self._instruction_limit_reached()
            return None

    def _instruction_limit_reached(self) -> None:
        pc = self.emu.get_pc()
        if compat.at_api_trap_or_exit(self.emu, pc):
            return
        compat.end_run_with_error(self.emu, "max_instructions", pc, self.instruction_limit)
