"""Threads run when the guest waits for them.

Speakeasy runs a thread the guest starts (``CreateThread`` and every other way,
emulator/apis/threads.py) after the run that started it, and answers every wait at once:
``WaitForSingleObject(thread, INFINITE)`` returned before the thread had run, and
``GetExitCodeThread`` answered 0. A loader whose worker thread decodes or downloads the payload
while the main thread waits for it then ran memory nothing had written yet (a fault, or a wrong
exit code and an early exit), and the lineage of the payload was lost.

Here a wait on a thread of the guest's own process that has not started yet runs that thread
there and then, to its end, before the wait returns, as it would have finished on Windows
before an infinite wait came back: ``WaitForSingleObject(Ex)``, ``WaitForMultipleObjects(Ex)``
(all of them for a wait-all, the first one listed for a wait-any), ``MsgWaitForMultipleObjects(Ex)``,
``SignalObjectAndWait``, ``NtWaitForSingleObject``, ``NtWaitForMultipleObjects``. The thread
runs as a call from the waiting API (Speakeasy's API callback: on the waiter's stack, below its
frame), as the current thread (``GetCurrentThreadId`` is its id), and its stage is drawn as any
thread's (``via: thread``, from its start address). Its return value, or the code it gives
``ExitThread`` / ``RtlExitUserThread`` / ``FreeLibraryAndExitThread`` (which end that thread
only, not the waiter's run, as Speakeasy's ``ExitThread`` would), is its exit code:
``GetExitCodeThread`` answers it afterwards, and ``STILL_ACTIVE`` for a thread that has not run.

Sleeping can be waiting too: a loop that sleeps (or yields) until a flag a thread sets is set
runs until a limit if the thread never runs. A sleep forever, or a second sleep or yield from one
call site, while threads of the process have yet to run, runs them (all, in order) inside it; a
single sleep does not (the threads run after its run, as before).

Polling is waiting too: a zero-timeout wait on a thread that has not run answers
``WAIT_TIMEOUT`` (as it would right after the thread started), and so does the first
``GetExitCodeThread`` (``STILL_ACTIVE``); asked about the same thread again, the guest is seen to
wait for it, and it runs then. A thread nobody waits for runs after the run that started it, as
before; so does a thread that is suspended or in another process (injected threads), and one
started while ``MAX_NESTED_THREADS`` waited-for threads are already running inside each other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat

logger = logging.getLogger(__name__)

WAIT_OBJECT_0 = 0
WAIT_TIMEOUT = 0x102
STATUS_TIMEOUT = 0x102
STILL_ACTIVE = 259
# A waited-for thread that waits for another runs it inside itself: at most this deep (each
# level is a frame on the one stack every run shares).
MAX_NESTED_THREADS = 16


@dataclass(frozen=True)
class WaitApi:
    """Where a wait API's arguments are: a single handle (``handle``), or a count and an array
    (``count``, ``handles``); the timeout (``timeout``: milliseconds, or ``None`` for a pointer to
    an NT LARGE_INTEGER at ``nt_timeout``); whether it waits for all (``wait_all``: an argument
    index, or the constant in ``all_always``; ``wait_all_value`` is what that argument holds for
    "all"); NT status codes or Win32 ones."""

    argc: int
    handle: int | None = None
    count: int | None = None
    handles: int | None = None
    timeout: int | None = None
    nt_timeout: int | None = None
    wait_all: int | None = None
    wait_all_value: int = 1
    wait_all_flag: int | None = None  # MsgWaitForMultipleObjectsEx: MWMO_WAITALL in its flags
    native: bool = False


WAIT_APIS: dict[tuple[str, str], WaitApi] = {
    ("kernel32", "WaitForSingleObject"): WaitApi(2, handle=0, timeout=1),
    ("kernel32", "WaitForSingleObjectEx"): WaitApi(3, handle=0, timeout=1),
    ("kernel32", "WaitForMultipleObjects"): WaitApi(4, count=0, handles=1, wait_all=2, timeout=3),
    ("kernel32", "WaitForMultipleObjectsEx"): WaitApi(5, count=0, handles=1, wait_all=2, timeout=3),
    ("kernel32", "SignalObjectAndWait"): WaitApi(4, handle=1, timeout=2),
    ("user32", "MsgWaitForMultipleObjects"): WaitApi(5, count=0, handles=1, wait_all=2, timeout=3),
    ("user32", "MsgWaitForMultipleObjectsEx"): WaitApi(5, count=0, handles=1, timeout=2, wait_all_flag=4),
    ("ntdll", "NtWaitForSingleObject"): WaitApi(3, handle=0, nt_timeout=2, native=True),
    ("ntdll", "ZwWaitForSingleObject"): WaitApi(3, handle=0, nt_timeout=2, native=True),
    # NtWaitForMultipleObjects(Count, Handles, WaitType, Alertable, Timeout): WaitAll is 0.
    ("ntdll", "NtWaitForMultipleObjects"): WaitApi(
        5, count=0, handles=1, wait_all=2, wait_all_value=0, nt_timeout=4, native=True
    ),
    ("ntdll", "ZwWaitForMultipleObjects"): WaitApi(
        5, count=0, handles=1, wait_all=2, wait_all_value=0, nt_timeout=4, native=True
    ),
}
MWMO_WAITALL = 0x1
# (module, name) -> index of the exit code argument.
EXIT_THREAD_APIS: dict[tuple[str, str], int] = {
    ("kernel32", "ExitThread"): 0,
    ("ntdll", "RtlExitUserThread"): 0,
    ("kernel32", "FreeLibraryAndExitThread"): 1,
}
EXIT_CODE_APIS = (("kernel32", "GetExitCodeThread"),)
# (module, name) -> (argc, index of a milliseconds timeout or None): a sleep or a yield.
SLEEP_APIS: dict[tuple[str, str], tuple[int, int | None]] = {
    ("kernel32", "Sleep"): (1, 0),
    ("kernel32", "SleepEx"): (2, 0),
    ("kernel32", "SwitchToThread"): (0, None),
    ("ntdll", "NtDelayExecution"): (2, None),
    ("ntdll", "ZwDelayExecution"): (2, None),
    ("ntdll", "NtYieldExecution"): (0, None),
}
INFINITE = 0xFFFFFFFF
# At most this many handles are read from a wait's array (Windows' MAXIMUM_WAIT_OBJECTS).
MAXIMUM_WAIT_OBJECTS = 64


@dataclass
class _Running:
    """A waited-for thread running inside its waiter's API call."""

    thread: Any
    waiter: Any  # the thread that waited (current again when this one ends)
    registers: dict[str, int]  # the waiter's non-volatile registers, as the API returns them


@dataclass
class _WaitFrame:
    """The threads one wait runs, in order, and what it does when they are done."""

    running: list[_Running] = field(default_factory=list)
    then: Any = None  # called with the frame's API result when the last thread is done


class ThreadWaits:
    def __init__(self, se: Any, emu: Any, memory: GuestMemory) -> None:
        self.se = se
        self.emu = emu
        self.memory = memory
        self.exit_codes: dict[int, int] = {}  # id(thread object) -> exit code
        self.polled: set[int] = set()  # id(thread object): asked about before it ran
        self.running: list[_Running] = []  # innermost last
        self.sleep_sites: set[int] = set()  # call sites of sleeps and yields seen

    def install(self) -> None:
        for (module, name), spec in WAIT_APIS.items():

            def wait(emu: Any, api_name: str, orig: Any, argv: list[int], _s: WaitApi = spec) -> Any:
                return self._on_wait(_s, orig, list(argv))

            self.se.add_api_hook(wait, module, name, argc=spec.argc)
        for (module, name), index in EXIT_THREAD_APIS.items():

            def exit_thread(emu: Any, api_name: str, orig: Any, argv: list[int], _i: int = index) -> Any:
                return self._on_exit_thread(_i, orig, list(argv))

            self.se.add_api_hook(exit_thread, module, name, argc=index + 1)
        for module, name in EXIT_CODE_APIS:
            self.se.add_api_hook(self._on_exit_code, module, name, argc=2)
        self.se.add_api_hook(self._on_terminate, "kernel32", "TerminateThread", argc=2)
        for (module, name), (argc, timeout) in SLEEP_APIS.items():

            def sleep(emu: Any, api_name: str, orig: Any, argv: list[int], _t: int | None = timeout) -> Any:
                return self._on_sleep(_t, orig, list(argv))

            self.se.add_api_hook(sleep, module, name, argc=argc)
        compat.after_each_api_callback(self.emu, self._callback_returned)

    # -- which threads a wait runs ---------------------------------------------------------------

    def _pending_run(self, handle: int) -> Any:
        """The queued run of a thread of the current process that ``handle`` names and that has
        not started, or None."""
        thread = compat.object_of(self.emu, handle)
        if thread is None or len(self.running) >= MAX_NESTED_THREADS:
            return None
        return compat.queued_thread_run(self.emu, thread)

    def _handles(self, spec: WaitApi, argv: list[int]) -> list[int]:
        if spec.handle is not None:
            return [argv[spec.handle]] if len(argv) > spec.handle else []
        if spec.count is None or spec.handles is None or len(argv) <= spec.handles:
            return []
        count = min(argv[spec.count] & 0xFFFFFFFF, MAXIMUM_WAIT_OBJECTS)
        size = self.memory.ptr_size
        try:
            data = self.memory.read(argv[spec.handles], count * size) if count else b""
        except Exception:
            return []
        return [int.from_bytes(data[i : i + size], "little") for i in range(0, len(data), size)]

    def _zero_timeout(self, spec: WaitApi, argv: list[int]) -> bool:
        if spec.timeout is not None and len(argv) > spec.timeout:
            return argv[spec.timeout] & 0xFFFFFFFF == 0
        if spec.nt_timeout is not None and len(argv) > spec.nt_timeout and argv[spec.nt_timeout]:
            try:
                return self.memory.read(argv[spec.nt_timeout], 8) == bytes(8)
            except Exception:
                return False
        return False

    def _waits_for_all(self, spec: WaitApi, argv: list[int]) -> bool:
        if spec.handle is not None:
            return True
        if spec.wait_all_flag is not None:
            return len(argv) > spec.wait_all_flag and bool(argv[spec.wait_all_flag] & MWMO_WAITALL)
        if spec.wait_all is None or len(argv) <= spec.wait_all:
            return False
        value = argv[spec.wait_all] & 0xFFFFFFFF
        return value == spec.wait_all_value if spec.native else bool(value)

    def _on_wait(self, spec: WaitApi, orig: Any, argv: list[int]) -> Any:
        handles = self._handles(spec, argv)
        runs = [self._pending_run(handle) for handle in handles]
        if not any(run is not None for run in runs):
            return orig(argv) if orig is not None else WAIT_OBJECT_0
        if self._zero_timeout(spec, argv):
            # a poll: the first one finds the thread still running; the next one waits for it
            polled = [run for run in runs if run is not None and id(run.thread) not in self.polled]
            if polled:
                self.polled.update(id(run.thread) for run in polled)
                return STATUS_TIMEOUT if spec.native else WAIT_TIMEOUT
        if self._waits_for_all(spec, argv):
            chosen, index = [run for run in runs if run is not None], 0
        else:
            # a wait-any returns the first object listed that is signalled: a thread not yet run
            # becomes signalled by running; any other object (Speakeasy's) is signalled already
            index = next(i for i, run in enumerate(runs) if run is not None)
            chosen = [runs[index]]
            if index and orig is not None:
                return orig(argv)  # an object before it is signalled: nothing waits
        self._run_now(chosen)
        return WAIT_OBJECT_0 + index

    def _run_now(self, runs: list[Any], then: Any = None) -> None:
        """Run these queued threads one after another from the API being handled."""
        frame = _WaitFrame(then=then)
        waiter = compat.current_thread(self.emu)
        registers = compat.nonvolatile_registers(self.emu)
        for run in runs:
            compat.unqueue_run(self.emu, run)
            frame.running.append(_Running(run.thread, waiter, registers))
            self.polled.discard(id(run.thread))
        first = frame.running[0]
        self.running.append(first)
        compat.set_current_thread(self.emu, first.thread)
        for run in runs:
            compat.call_guest_after_api(self.emu, int(run.start_addr), list(run.args or ()))
        compat.tag_api_frame(self.emu, frame)
        logger.debug("a wait runs %d thread(s) now", len(runs))

    def _callback_returned(self, tag: Any, returned: int) -> int | None:
        """A callback of an API frame returned ``returned``: for a frame of ours, the thread that
        ran ends with that exit code, the next one starts as the current thread, and after the
        last the waiter is current again (and the frame's ``then`` may change the API's result)."""
        if not isinstance(tag, _WaitFrame) or not tag.running:
            return None
        done = tag.running.pop(0)
        self.exit_codes[id(done.thread)] = returned & 0xFFFFFFFF
        # a thread that ended with ExitThread kept none of them (and a wrong one any of them)
        compat.restore_registers(self.emu, done.registers)
        if self.running and self.running[-1] is done:
            self.running.pop()
        if tag.running:
            self.running.append(tag.running[0])
            compat.set_current_thread(self.emu, tag.running[0].thread)
            return None
        compat.set_current_thread(self.emu, done.waiter)
        return tag.then(done.thread) if tag.then is not None else None

    def _on_sleep(self, timeout: int | None, orig: Any, argv: list[int]) -> Any:
        """A sleep forever, or a second sleep (or yield) from one call site (a loop that waits for
        something, a flag a thread sets), while threads of the process have yet to run: they run
        in it, one after another, as other threads run while one sleeps on Windows."""
        rv = orig(argv) if orig is not None else 0
        pending = compat.queued_thread_runs(self.emu)
        site = compat.call_site(self.emu)
        forever = timeout is not None and len(argv) > timeout and argv[timeout] & 0xFFFFFFFF == INFINITE
        if pending and len(self.running) < MAX_NESTED_THREADS and (forever or site in self.sleep_sites):
            self._run_now(pending)
        self.sleep_sites.add(site)
        return rv

    # -- a waited-for thread ends ----------------------------------------------------------------

    def _on_exit_thread(self, index: int, orig: Any, argv: list[int]) -> Any:
        """ExitThread inside a thread run by a wait ends that thread (its callback returns with
        the code), not the run of the thread that waited."""
        current = compat.current_thread(self.emu)
        if not self.running or self.running[-1].thread is not current:
            return orig(argv) if orig is not None else 0
        code = argv[index] & 0xFFFFFFFF if len(argv) > index else 0
        compat.return_from_callback(self.emu, index + 1, code)
        return code

    def _on_terminate(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """TerminateThread(hThread, dwExitCode): a thread that has not run never runs, and ends
        with that code; the thread a wait runs, terminating itself, ends as with ExitThread."""
        handle, code = (argv + [0, 0])[:2]
        thread = compat.object_of(self.emu, handle)
        run = self._pending_run(handle)
        if run is not None:
            compat.unqueue_run(self.emu, run)
            self.exit_codes[id(thread)] = code & 0xFFFFFFFF
            return 1
        if thread is not None and self.running and self.running[-1].thread is thread is compat.current_thread(self.emu):
            compat.return_from_callback(self.emu, 2, code & 0xFFFFFFFF)
            return code & 0xFFFFFFFF
        return orig(argv) if orig is not None else 1

    def _on_exit_code(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        """GetExitCodeThread(hThread, lpExitCode): the code a thread ended with; STILL_ACTIVE
        for one that has not run (asked again: the guest waits for it, and it runs now)."""
        handle, out = (argv + [0, 0])[:2]
        thread = compat.object_of(self.emu, handle)
        if thread is not None and id(thread) in self.exit_codes:
            if out:
                self.memory.write(out, self.exit_codes[id(thread)].to_bytes(4, "little"))
            return 1
        run = self._pending_run(handle)
        if run is None:
            running = thread is compat.current_thread(self.emu) or any(r.waiter is thread for r in self.running)
            if thread is not None and running:
                if out:
                    self.memory.write(out, STILL_ACTIVE.to_bytes(4, "little"))  # itself, or its waiter
                return 1
            return orig(argv) if orig is not None else 1
        if id(thread) not in self.polled:
            self.polled.add(id(thread))
            if out:
                self.memory.write(out, STILL_ACTIVE.to_bytes(4, "little"))
            return 1

        def answer(done: Any) -> int:
            if out:
                self.memory.write(out, self.exit_codes.get(id(done), 0).to_bytes(4, "little"))
            return 1

        self._run_now([run], then=answer)
        return 1
