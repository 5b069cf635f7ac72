"""Threads and child processes run when the guest waits for them.

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
frame), as the current thread with a TEB of its own (its id, exception list, TLS slots and last
error; the waiter's TEB bytes are put back after), and its stage is drawn as any thread's
(``via: thread``, from its start address). Its return value, or the code it gives
``ExitThread`` / ``RtlExitUserThread`` / ``FreeLibraryAndExitThread`` (which end that thread
only, not the waiter's run, as Speakeasy's ``ExitThread`` would), is its exit code:
``GetExitCodeThread`` answers it afterwards, and ``STILL_ACTIVE`` for a thread that has not run.

A wait with a finite timeout for a thread that never ends (a beacon loop) would keep its waiter
waiting for ever: a thread such a wait runs that sleeps past the timeout (virtual time) is cut
at that sleep and the wait returns ``WAIT_TIMEOUT`` (``STATUS_TIMEOUT``); the thread, still
running as far as ``GetExitCodeThread`` says, never goes on (its state was the waiter's stack).

Sleeping can be waiting too: a loop that sleeps (or yields) until a flag a thread sets is set
runs until a limit if the thread never runs. A sleep forever, or a second sleep or yield from one
call site, while threads of the process have yet to run, runs them (all, in order) inside it; a
single sleep does not (the threads run after its run, as before).

Polling is waiting too: a zero-timeout wait on a thread that has not run answers
``WAIT_TIMEOUT`` (as it would right after the thread started), and so does the first
``GetExitCodeThread`` (``STILL_ACTIVE``); asked about the same thread again, the guest is seen to
wait for it, and it runs then.

A child process (a program of the guest's files, children.py) runs after its parent's runs; a
wait for it, a second poll or ``GetExitCodeProcess``, runs it there instead, the same way: its
TLS callbacks and entry point called from the waiting API, as that process (the current process
and thread, its command line, PEB and TEB; the parent's TEB bytes put back after), its stage
started as :meth:`ChildProcesses.run_pending` starts it. Its entry point's return value, or the
code it gives ``ExitProcess`` (which ends it, not its parent's run), is its exit code.

A thread the guest started in another process (``CreateRemoteThread``, ``NtCreateThreadEx``,
``RtlCreateUserThread``) and waits for runs in the wait the same way, as that process's thread.

A thread nobody waits for runs after the run that started it, as before; so does a thread that
is suspended, an APC, a child process nobody waits for, and
what a wait would start while ``MAX_NESTED_THREADS`` are already running inside each other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from emulator.apis.core import GuestMemory
from emulator.backends.speakeasy import compat
from emulator.backends.speakeasy.children import NOT_RUN_EXIT_CODE, ChildProcesses, Launch

logger = logging.getLogger(__name__)

WAIT_OBJECT_0 = 0
WAIT_TIMEOUT = 0x102
STATUS_TIMEOUT = 0x102
WAIT_FAILED = 0xFFFFFFFF
ERROR_INVALID_HANDLE = 6
STATUS_INVALID_HANDLE = 0xC0000008
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
    alertable: int | None = None  # the argument that makes the wait alertable (non-zero)
    alertable_flag: int | None = None  # MsgWaitForMultipleObjectsEx: MWMO_ALERTABLE in its flags


WAIT_APIS: dict[tuple[str, str], WaitApi] = {
    ("kernel32", "WaitForSingleObject"): WaitApi(2, handle=0, timeout=1),
    ("kernel32", "WaitForSingleObjectEx"): WaitApi(3, handle=0, timeout=1, alertable=2),
    ("kernel32", "WaitForMultipleObjects"): WaitApi(4, count=0, handles=1, wait_all=2, timeout=3),
    ("kernel32", "WaitForMultipleObjectsEx"): WaitApi(5, count=0, handles=1, wait_all=2, timeout=3, alertable=4),
    ("kernel32", "SignalObjectAndWait"): WaitApi(4, handle=1, timeout=2, alertable=3),
    ("user32", "MsgWaitForMultipleObjects"): WaitApi(5, count=0, handles=1, wait_all=2, timeout=3),
    ("user32", "MsgWaitForMultipleObjectsEx"): WaitApi(
        5, count=0, handles=1, timeout=2, wait_all_flag=4, alertable_flag=4
    ),
    ("ntdll", "NtWaitForSingleObject"): WaitApi(3, handle=0, nt_timeout=2, native=True, alertable=1),
    ("ntdll", "ZwWaitForSingleObject"): WaitApi(3, handle=0, nt_timeout=2, native=True, alertable=1),
    # NtWaitForMultipleObjects(Count, Handles, WaitType, Alertable, Timeout): WaitAll is 0.
    ("ntdll", "NtWaitForMultipleObjects"): WaitApi(
        5, count=0, handles=1, wait_all=2, wait_all_value=0, nt_timeout=4, native=True, alertable=3
    ),
    ("ntdll", "ZwWaitForMultipleObjects"): WaitApi(
        5, count=0, handles=1, wait_all=2, wait_all_value=0, nt_timeout=4, native=True, alertable=3
    ),
}
# WaitForThreadpoolWorkCallbacks(work, cancel) and kin: the object's callbacks that have not run
# yet run inside the wait, as they would have finished on Windows before it returned.
POOL_WAIT_APIS = (
    "WaitForThreadpoolWorkCallbacks",
    "WaitForThreadpoolTimerCallbacks",
    "WaitForThreadpoolWaitCallbacks",
    "WaitForThreadpoolIoCallbacks",
)
MWMO_WAITALL = 0x1
MWMO_ALERTABLE = 0x2
# What an alertable wait returns when it ran the thread's pending APCs.
WAIT_IO_COMPLETION = 0xC0
STATUS_USER_APC = 0xC0
# (module, name) -> index of the exit code argument.
EXIT_THREAD_APIS: dict[tuple[str, str], int] = {
    ("kernel32", "ExitThread"): 0,
    ("ntdll", "RtlExitUserThread"): 0,
    ("kernel32", "FreeLibraryAndExitThread"): 1,
    ("msvcrt", "_endthreadex"): 0,
}
# The C runtime's thread exits Speakeasy has no handler for (cdecl): they end the thread's run as
# its ExitThread does.
CRT_EXIT_THREAD_APIS = (("msvcrt", "_endthreadex"),)
EXIT_PROCESS_APIS = (("kernel32", "ExitProcess"), ("ntdll", "RtlExitUserProcess"))
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
    """A thread, or a child process's TLS callback or entry point, running inside the API call
    of the thread that waited for it."""

    thread: Any
    waiter: Any  # the thread that waited (current again when this one ends)
    registers: dict[str, int]  # the waiter's non-volatile registers, as the API returns them
    process: Any = None  # the other process it runs in: a child it starts, or an injected thread's
    state: compat.ProcessState | None = None  # the waiter's thread (and process), put back at the end
    entry: bool = True  # a thread's start routine or a process's entry point (not a TLS callback)
    module: Any = None  # the child's image
    deadline: int | None = None  # the virtual tick count at which a finite wait for it times out
    timed_out: bool = False  # cut at a sleep past its deadline: it is still running
    launch: Launch | None = None  # the child process's launch (its end is children.py's to record)
    waited: Any = None  # the object the wait named, when not ``process`` (cmd's, running a child)


@dataclass
class _WaitFrame:
    """What one wait runs, in order, and what it does when they are done."""

    running: list[_Running] = field(default_factory=list)
    then: Any = None  # called with what ran last when it is done: the API's result, or None
    timeout_result: int = WAIT_TIMEOUT  # the API's result if one of them timed out
    timed_out: bool = False


class ThreadWaits:
    def __init__(
        self,
        se: Any,
        emu: Any,
        memory: GuestMemory,
        children: ChildProcesses | None = None,
        now_ms: Callable[[], int] | None = None,
        handlers: dict[tuple[str, str], Callable[[Any, str, Any, list[int]], int]] | None = None,
        deliver_apcs: Callable[[], bool] | None = None,
        pool_threads: Callable[[int], list[int]] | None = None,
        project_handle: Callable[[int], bool] | None = None,
    ) -> None:
        self.se = se
        self.emu = emu
        self.memory = memory
        self.children = children
        self.now_ms = now_ms  # the virtual tick count (sleeps advance it)
        # The project's handlers of the APIs this module hooks (``hooked_apis``), registered by
        # this module only: each runs as the hook's ``orig`` (setup.install_api_handlers skips them).
        self.handlers = handlers or {}
        # Runs the calling thread's pending APCs from the API being handled; whether there were any.
        self.deliver_apcs = deliver_apcs
        # The threads a thread-pool object's callbacks were started on (emulator/apis/threads.py).
        self.pool_threads = pool_threads
        # Whether a handle is one of the project's own objects (ReplayServices.handles), which
        # Speakeasy does not know; None: every handle Speakeasy does not know names nothing.
        self.project_handle = project_handle
        # id(thread or process object) -> exit code: children.py's record when there are children
        self.exit_codes: dict[int, int] = children.exit_codes if children is not None else {}
        self.polled: set[int] = set()  # id(thread or process object): asked about before it ran
        self.still_running: set[int] = set()  # id(thread or process object): cut by a wait's timeout
        self.running: list[_Running] = []  # innermost last
        self.sleep_sites: set[int] = set()  # call sites of sleeps and yields seen

    def install(self) -> None:
        for (module, name), spec in WAIT_APIS.items():
            self._hook(module, name, spec.argc, partial(self._on_wait, spec))
        for (module, name), index in EXIT_THREAD_APIS.items():
            cdecl = (module, name) in CRT_EXIT_THREAD_APIS
            self._hook(module, name, index + 1, partial(self._on_exit_thread, index), cdecl)
        for module, name in EXIT_PROCESS_APIS:
            self._hook(module, name, 1, self._on_exit_process)
        for name in POOL_WAIT_APIS:
            self._hook("kernel32", name, 2, self._on_pool_wait)
        self._hook("kernel32", "GetExitCodeThread", 2, self._on_exit_code)
        self._hook("kernel32", "GetExitCodeProcess", 2, self._on_exit_code)
        self._hook("kernel32", "TerminateThread", 2, self._on_terminate)
        self._hook("kernel32", "TerminateProcess", 2, self._on_terminate_process)
        for (module, name), (argc, timeout) in SLEEP_APIS.items():
            self._hook(module, name, argc, partial(self._on_sleep, timeout, argc))
        compat.after_each_api_callback(self.emu, self._callback_returned)

    def _hook(
        self, module: str, name: str, argc: int, on_call: Callable[[Any, list[int]], Any], cdecl: bool = False
    ) -> None:
        """Hook an API: ``on_call(orig, argv)``, where ``orig`` runs what the API does otherwise:
        the project's handler of it if it has one (then registered here only, once: Speakeasy
        keeps only the last hook's value, and calls only the last hook of an API it has no
        handler for), or Speakeasy's."""
        project = self.handlers.get((module, name))

        def hook(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
            if project is not None:
                speakeasy = orig
                orig = lambda args: project(emu, api_name, speakeasy, args)  # noqa: E731
            return on_call(orig, list(argv))

        self.se.add_api_hook(hook, module, name, argc=argc, call_conv=compat.CDECL if cdecl else None)

    @staticmethod
    def hooked_apis() -> set[tuple[str, str]]:
        """Every API this module hooks (the project's handlers of them are called from here)."""
        return {
            *WAIT_APIS,
            *EXIT_THREAD_APIS,
            *EXIT_PROCESS_APIS,
            *(("kernel32", name) for name in POOL_WAIT_APIS),
            ("kernel32", "GetExitCodeThread"),
            ("kernel32", "GetExitCodeProcess"),
            ("kernel32", "TerminateThread"),
            ("kernel32", "TerminateProcess"),
            *SLEEP_APIS,
        }

    # -- what a wait can run ---------------------------------------------------------------------

    def _startable(self, handle: int) -> tuple[Any, Any] | None:
        """(object, what runs it) for a handle naming a thread of the current process whose run
        is queued (its run), or a child process that has yet to start (its launch); else None."""
        if len(self.running) >= MAX_NESTED_THREADS:
            return None
        target = compat.object_of(self.emu, handle)
        if target is None:
            return None
        run = compat.queued_thread_run(self.emu, target)
        if run is not None:
            return target, run
        remote = compat.queued_remote_thread_run(self.emu, target)
        if remote is not None:
            return target, remote
        launch = self.children.pending_program(target) if self.children is not None else None
        return (target, launch) if launch is not None else None

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

    def _timeout_ms(self, spec: WaitApi, argv: list[int]) -> int | None:
        """A wait's timeout in milliseconds (0: a poll); None for one that waits for ever (an
        NT timeout at an absolute time counts as that too)."""
        if spec.timeout is not None and len(argv) > spec.timeout:
            ms = argv[spec.timeout] & 0xFFFFFFFF
            return None if ms == INFINITE else ms
        if spec.nt_timeout is not None and len(argv) > spec.nt_timeout and argv[spec.nt_timeout]:
            try:
                value = int.from_bytes(self.memory.read(argv[spec.nt_timeout], 8), "little", signed=True)
            except Exception:
                return None
            return -value // 10_000 if value <= 0 else None  # relative, in 100 ns units
        return None

    def _waits_for_all(self, spec: WaitApi, argv: list[int]) -> bool:
        if spec.handle is not None:
            return True
        if spec.wait_all_flag is not None:
            return len(argv) > spec.wait_all_flag and bool(argv[spec.wait_all_flag] & MWMO_WAITALL)
        if spec.wait_all is None or len(argv) <= spec.wait_all:
            return False
        value = argv[spec.wait_all] & 0xFFFFFFFF
        return value == spec.wait_all_value if spec.native else bool(value)

    def _alertable(self, spec: WaitApi, argv: list[int]) -> bool:
        if spec.alertable_flag is not None:
            return len(argv) > spec.alertable_flag and bool(argv[spec.alertable_flag] & MWMO_ALERTABLE)
        return spec.alertable is not None and len(argv) > spec.alertable and bool(argv[spec.alertable] & 0xFF)

    def _names_nothing(self, handle: int) -> bool:
        if not handle:
            return True
        if self.project_handle is not None and self.project_handle(handle):
            return False
        return not compat.speakeasy_handle_known(self.emu, handle)

    def _on_wait(self, spec: WaitApi, orig: Any, argv: list[int]) -> Any:
        if any(self._names_nothing(handle) for handle in self._handles(spec, argv)):
            # a handle that names nothing (NULL, closed, made up): the wait fails at once
            # (Speakeasy's answered WAIT_OBJECT_0)
            if spec.native:
                return STATUS_INVALID_HANDLE
            self.emu.set_last_error(ERROR_INVALID_HANDLE)
            return WAIT_FAILED
        if self._alertable(spec, argv) and self.deliver_apcs is not None and self.deliver_apcs():
            # an alertable wait with APCs queued to the thread runs them and returns at once
            return STATUS_USER_APC if spec.native else WAIT_IO_COMPLETION
        startable = [self._startable(handle) for handle in self._handles(spec, argv)]
        if not any(item is not None for item in startable):
            return orig(argv) if orig is not None else WAIT_OBJECT_0
        timeout = self._timeout_ms(spec, argv)
        if timeout == 0:
            # a poll: the first one finds them still running; the next one waits for them
            first = [target for target, _ in filter(None, startable) if id(target) not in self.polled]
            if first:
                self.polled.update(id(target) for target in first)
                return STATUS_TIMEOUT if spec.native else WAIT_TIMEOUT
        if self._waits_for_all(spec, argv):
            chosen, index = [item for item in startable if item is not None], 0
        else:
            # a wait-any returns the first object listed that is signalled: a thread or process
            # not yet run becomes signalled by running; any other object (Speakeasy's) already is
            index = next(i for i, item in enumerate(startable) if item is not None)
            chosen = [item for item in startable[index : index + 1] if item is not None]
            if index:  # an object before it is signalled: nothing waits
                return orig(argv) if orig is not None else WAIT_OBJECT_0
        deadline = self.now_ms() + timeout if timeout and self.now_ms is not None else None
        self._run_now(chosen, deadline=deadline, timeout_result=STATUS_TIMEOUT if spec.native else WAIT_TIMEOUT)
        return WAIT_OBJECT_0 + index

    def _on_pool_wait(self, orig: Any, argv: list[int]) -> Any:
        """A wait for a pool object's callbacks runs those not run yet, one after another (a
        cancel of pending callbacks, the second argument, runs them too: they were started)."""
        rv = orig(argv) if orig is not None else 0
        handles = self.pool_threads(argv[0]) if self.pool_threads is not None and argv else []
        chosen = [item for item in (self._startable(handle) for handle in handles) if item is not None]
        if chosen:
            self._run_now(chosen)
        return rv

    # -- running them inside the API call --------------------------------------------------------

    def _run_now(
        self,
        chosen: list[tuple[Any, Any]],
        then: Any = None,
        deadline: int | None = None,
        timeout_result: int = WAIT_TIMEOUT,
    ) -> None:
        """Run these threads (their queued runs) and child processes (their launches) one after
        another from the API being handled; with a ``deadline``, one that sleeps past it is cut
        there (still running) and the API returns ``timeout_result``."""
        frame = _WaitFrame(then=then, timeout_result=timeout_result)
        waiter = compat.current_thread(self.emu)
        registers = compat.nonvolatile_registers(self.emu)
        calls: list[tuple[int, list[int]]] = []
        for target, how in chosen:
            self.polled.discard(id(target))
            if isinstance(how, tuple):  # a thread injected into another process: run there
                run, process = how
                compat.unqueue_run(self.emu, run)
                frame.running.append(_Running(target, waiter, registers, process=process, deadline=deadline))
                calls.append((int(run.start_addr), list(run.args or ())))
                continue
            if not isinstance(how, Launch):
                compat.unqueue_run(self.emu, how)
                frame.running.append(_Running(target, waiter, registers, deadline=deadline))
                calls.append((int(how.start_addr), list(how.args or ())))
                continue
            assert self.children is not None
            module = self.children.start_now(how)
            if module is None:
                self.children.ended(how, NOT_RUN_EXIT_CODE)  # not run (noted): it ended
                continue
            items, more = self._launch_calls(how, module, target, waiter, registers, deadline)
            frame.running += items
            calls += more
        if not frame.running:
            return
        self._enter(frame.running[0], frame)
        for function, args in calls:
            compat.call_guest_after_api(self.emu, function, args)
        compat.tag_api_frame(self.emu, frame)
        logger.debug("a wait runs %d thread(s) and process calls now", len(frame.running))

    def _launch_calls(
        self, launch: Launch, module: Any, target: Any, waiter: Any, registers: dict[str, int], deadline: int | None
    ) -> tuple[list[_Running], list[tuple[int, list[int]]]]:
        """What running a child's image inside a wait takes: its TLS callbacks and entry point,
        as its own process (cmd's children too: the wait names cmd's process, ``waited``)."""
        process = launch.process if launch.process is not None else target
        thread = compat.main_thread(process) or compat.main_thread(target)
        calls = [(address, args) for _kind, address, args in compat.process_entry_calls(self.emu, module)]
        items = [
            _Running(
                thread,
                waiter,
                registers,
                process=process,
                entry=i == len(calls) - 1,
                module=module,
                deadline=deadline,
                launch=launch,
                waited=target if target is not process else None,
            )
            for i in range(len(calls))
        ]
        return items, calls

    def _go_on_with_cmd(self, done: _Running, frame: _WaitFrame) -> None:
        """A wait for cmd's process runs its line to the end: the next command that runs (queued
        when the one before ended) runs in the same wait, after it."""
        while done.waited is not None and self.children is not None and len(self.running) < MAX_NESTED_THREADS:
            launch = self.children.pending_program(done.waited)
            if launch is None:
                return
            module = self.children.start_now(launch)
            if module is None:
                self.children.ended(launch, NOT_RUN_EXIT_CODE)
                continue
            items, calls = self._launch_calls(launch, module, done.waited, done.waiter, done.registers, done.deadline)
            frame.running += items
            for function, args in calls:
                compat.queue_api_callback(self.emu, function, args)
            return

    def _enter(self, running: _Running, frame: _WaitFrame) -> None:
        """``running`` starts: its thread (and process) become the current ones."""
        self.running.append(running)
        if running.process is None:
            running.state = compat.enter_thread(self.emu, running.thread)
            return
        if running.state is None:  # the process's first call: it becomes the current process
            command_line = running.launch.command_line if running.launch is not None else None
            state = compat.enter_process(self.emu, running.process, running.module, command_line, running.thread)
            for item in frame.running:
                if item.process is running.process:
                    item.state = state

    def _callback_returned(self, tag: Any, returned: int) -> int | None:
        """A callback of an API frame returned ``returned``: for a frame of ours, the thread (or
        process) that ran ends with that exit code, the next one starts, and after the last the
        waiter is current again (and the frame's ``then`` may change the API's result)."""
        if not isinstance(tag, _WaitFrame) or not tag.running:
            return None
        done = tag.running.pop(0)
        if self.running and self.running[-1] is done:
            self.running.pop()
        target = done.waited if done.waited is not None else done.process if done.process is not None else done.thread
        if done.timed_out:
            tag.timed_out = True
            self.still_running.add(id(target))
        if done.entry or done.timed_out:
            if not done.timed_out and done.launch is not None and self.children is not None:
                # the child's code; cmd's (the handle waited for) once its line is done
                self.children.ended(done.launch, returned)
                self._go_on_with_cmd(done, tag)
            elif not done.timed_out:
                self.exit_codes[id(target)] = returned & 0xFFFFFFFF
            if done.state is not None:
                compat.leave_process(self.emu, done.state)
            # a thread that ended with ExitThread kept none of them (and a wrong one any of them)
            compat.restore_registers(self.emu, done.registers)
        if tag.running:
            self._enter(tag.running[0], tag)
            return None
        compat.set_current_thread(self.emu, done.waiter)
        if tag.timed_out:
            return tag.timeout_result
        if tag.then is None:
            return None
        return int(tag.then(target))

    def _on_sleep(self, timeout: int | None, argc: int, orig: Any, argv: list[int]) -> Any:
        """A sleep forever, or a second sleep (or yield) from one call site (a loop that waits for
        something, a flag a thread sets), while threads of the process have yet to run: they run
        in it, one after another, as other threads run while one sleeps on Windows. A thread a
        finite wait runs that sleeps past the wait's timeout is cut there: its waiter goes on.
        Child processes that have yet to run run the same way (a parent polling for a file its
        child writes)."""
        rv = orig(argv) if orig is not None else 0
        innermost = self.running[-1] if self.running else None
        if (
            innermost is not None
            and innermost.deadline is not None
            and self.now_ms is not None
            and self.now_ms() >= innermost.deadline
            and innermost.thread is compat.current_thread(self.emu)
        ):
            innermost.timed_out = True
            compat.return_from_callback(self.emu, argc, 0)
            return 0
        pending: list[tuple[Any, Any]] = [(run.thread, run) for run in compat.queued_thread_runs(self.emu)]
        if self.children is not None:
            pending += [(launch.started or launch.process, launch) for launch in self.children.pending_programs()]
        site = compat.call_site(self.emu)
        forever = timeout is not None and len(argv) > timeout and argv[timeout] & 0xFFFFFFFF == INFINITE
        if pending and len(self.running) < MAX_NESTED_THREADS and (forever or site in self.sleep_sites):
            self._run_now(pending)
        self.sleep_sites.add(site)
        return rv

    # -- what ran ends ---------------------------------------------------------------------------

    def _ends_running(self, process: bool) -> bool:
        """Whether the guest code calling now is what a wait runs (its thread, or with
        ``process`` a child process's call)."""
        if not self.running:
            return False
        innermost = self.running[-1]
        if process:
            return innermost.process is not None and innermost.process is compat.current_process(self.emu)
        return innermost.thread is compat.current_thread(self.emu)

    def _on_exit_thread(self, index: int, orig: Any, argv: list[int]) -> Any:
        """ExitThread inside a thread run by a wait ends that thread (its callback returns with
        the code), not the run of the thread that waited (a child's main thread: its process)."""
        if not self._ends_running(process=False):
            if orig is not None:
                return orig(argv)
            compat.end_thread_run(self.emu)  # a thread's own run (not one a wait runs): it ends
            return 0
        code = argv[index] & 0xFFFFFFFF if len(argv) > index else 0
        compat.return_from_callback(self.emu, index + 1, code)
        return code

    def _on_exit_process(self, orig: Any, argv: list[int]) -> Any:
        """ExitProcess in a child process a wait runs ends that process, not its parent's run;
        in a child run after its parent, its code is recorded (then its run ends, as before)."""
        code = argv[0] & 0xFFFFFFFF if argv else 0
        if not self._ends_running(process=True):
            if self.children is not None:
                self.children.exiting(compat.current_process(self.emu), code)
            return orig(argv) if orig is not None else 0
        compat.return_from_callback(self.emu, 1, code)
        return code

    def _on_terminate_process(self, orig: Any, argv: list[int]) -> Any:
        """TerminateProcess(hProcess, uExitCode) of the caller's own process: as ExitProcess (a
        child a wait runs ends, a child run after its parent has its code recorded)."""
        handle, code = (argv + [0, 0])[:2]
        if not compat.is_current_process(self.emu, handle):
            return orig(argv) if orig is not None else 1
        code &= 0xFFFFFFFF
        if not self._ends_running(process=True):
            child = self.children is not None and self.children.exiting(compat.current_process(self.emu), code)
            rv = orig(argv) if orig is not None else 1
            if child:
                compat.end_thread_run(self.emu)  # it does not return (Speakeasy's went on)
            return rv
        compat.return_from_callback(self.emu, 2, code)
        return code

    def _on_terminate(self, orig: Any, argv: list[int]) -> Any:
        """TerminateThread(hThread, dwExitCode): a thread that has not run never runs, and ends
        with that code; the thread a wait runs, terminating itself, ends as with ExitThread."""
        handle, code = (argv + [0, 0])[:2]
        thread = compat.object_of(self.emu, handle)
        run = compat.queued_thread_run(self.emu, thread)
        if run is not None:
            compat.unqueue_run(self.emu, run)
            self.exit_codes[id(thread)] = code & 0xFFFFFFFF
            return 1
        if thread is not None and thread is compat.current_thread(self.emu) and self._ends_running(process=False):
            compat.return_from_callback(self.emu, 2, code & 0xFFFFFFFF)
            return code & 0xFFFFFFFF
        return orig(argv) if orig is not None else 1

    def _on_exit_code(self, orig: Any, argv: list[int]) -> Any:
        """GetExitCodeThread / GetExitCodeProcess(handle, lpExitCode): the code a thread or
        process ended with; STILL_ACTIVE for one that has not run (asked again: the guest waits
        for it, and it runs now) and for the caller's own thread or process."""
        handle, out = (argv + [0, 0])[:2]
        target = compat.object_of(self.emu, handle)

        def answer(code: int) -> int:
            if out:
                self.memory.write(out, (code & 0xFFFFFFFF).to_bytes(4, "little"))
            return 1

        if target is not None and id(target) in self.exit_codes:
            return answer(self.exit_codes[id(target)])
        if target is not None and id(target) in self.still_running:
            return answer(STILL_ACTIVE)
        startable = self._startable(handle)
        if startable is None:
            current = (compat.current_thread(self.emu), compat.current_process(self.emu))
            waiting = any(target is r.waiter for r in self.running) or any(
                r.state is not None and target is r.state.process for r in self.running
            )
            if target is not None and (any(target is c for c in current) or waiting):
                return answer(STILL_ACTIVE)
            return orig(argv) if orig is not None else 1
        if id(target) not in self.polled:
            self.polled.add(id(target))
            return answer(STILL_ACTIVE)
        # a cmd line whose next command has yet to run is still running
        self._run_now([startable], then=lambda done: answer(self.exit_codes.get(id(done), STILL_ACTIVE)))
        return 1
