"""The other ways to start code on a thread: work items, timers, thread pools, fibers, and the
native thread calls.

Loaders avoid ``CreateThread`` (watched by every sandbox) and start a payload through one of
these. Speakeasy has none of them: the run ended as an unsupported API and the payload never
ran. Here each starts the function as Speakeasy starts a ``CreateThread`` thread (a new run,
recorded as a thread start, so the stage it runs is drawn with ``via: "thread"``), except a
fiber, which runs when the thread switches to it (``SwitchToFiber`` calls it back).

A thread-pool callback gets Windows' arguments: an instance handle, its context, then the pool
object (work, wait, timer) and, for a wait, its result (``WAIT_OBJECT_0``). A wait's callback
runs once its wait is set on an object (the object is taken as signalled: nothing is waited
for), a timer's once it is set with a due time; neither repeats.

An APC queued to the calling thread itself (``QueueUserAPC``, ``QueueUserAPC2``,
``NtQueueApcThread(Ex/Ex2)`` on ``GetCurrentThread()`` or a handle of it) waits, as on Windows,
until the thread is alertable: ``NtTestAlert``, an alertable ``SleepEx`` or ``NtDelayExecution`` call every pending
APC in the order queued (called back: ``via: "apc"``), a special user APC (``QueueUserAPC2``
flag 1) at once; one never delivered never runs. ``NtContinue`` and ``RtlRestoreContext`` load
the CONTEXT given (registers, pc, stack pointer): the thread goes on where it says
(``via: "context"`` for a stage first run there). An APC to another thread starts its routine as
a thread, as Speakeasy's ``QueueUserAPC`` does (``QueueUserAPC`` to the calling thread is
queued by the backend, emulator/backends/speakeasy/setup.py, and delivered here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

ERROR_INVALID_HANDLE = 6
CREATE_SUSPENDED = 0x4
ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_INVALID_PARAMETER = 87
ERROR_NOACCESS = 998
STATUS_SUCCESS = 0
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_NO_MEMORY = 0xC0000017
THREAD_CREATE_FLAGS_CREATE_SUSPENDED = 0x1
THREAD_CREATE_FLAGS_HIDE_FROM_DEBUGGER = 0x4
# The note a thread hidden from debuggers gives (NtCreateThreadEx's flag, NtSetInformationThread's
# ThreadHideFromDebugger: emulator/apis/guestenv.py): T1622.
THREAD_HIDDEN_NOTE = "thread_hidden_from_debugger"
QUEUE_USER_APC_FLAGS_SPECIAL_USER_APC = 0x1
WAIT_IO_COMPLETION = 0xC0
STATUS_USER_APC = 0xC0
# The longest delay NtDelayExecution fast-forwards (Sleep(INFINITE)'s, 49.7 days).
MAX_DELAY_MS = 0xFFFFFFFF
WAIT_OBJECT_0 = 0
# A fiber object: what GetCurrentFiber-style code may read (the fiber data at offset 0).
FIBER_SIZE = 0x100


@dataclass
class ThreadpoolWork:
    function: int
    context: int
    # The threads its callbacks were started on (a wait for its callbacks runs them).
    threads: list[int] = field(default_factory=list)


@dataclass
class ThreadpoolWait:
    function: int
    context: int
    # The threads its callbacks were started on (a wait for its callbacks runs them).
    threads: list[int] = field(default_factory=list)


@dataclass
class ThreadpoolTimer:
    function: int
    context: int
    # The threads its callbacks were started on (a wait for its callbacks runs them).
    threads: list[int] = field(default_factory=list)


@dataclass
class CallbackInstance:
    """The PTP_CALLBACK_INSTANCE a thread-pool callback is given first."""


@dataclass
class Fiber:
    function: int
    parameter: int


@dataclass
class TimerQueue:
    """A timer queue's handle (its timers run at once, so it holds nothing)."""


def _start(api: GuestApi, function: int, param: int) -> int:
    """Start ``function(param)`` on a new thread: 1, or 0 with ERROR_NOT_ENOUGH_MEMORY."""
    if not function:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    handle, _, _ = api.start_thread(function, param)
    if not handle:
        api.set_last_error(ERROR_NOT_ENOUGH_MEMORY)
        return 0
    return 1


def _start_pool_callback(api: GuestApi, function: int, context: int, *rest: int, owner: object = None) -> int:
    """Start a thread-pool callback ``function(instance, context, *rest)`` on a new thread; the
    pool object ``owner`` (work, wait, timer) keeps its handle."""
    if not function:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    instance = _services(api).new_handle(CallbackInstance())
    handle, _, _ = api.start_thread(function, instance, args=(instance, context, *rest))
    if not handle:
        api.set_last_error(ERROR_NOT_ENOUGH_MEMORY)
        return 0
    threads = getattr(owner, "threads", None)
    if isinstance(threads, list):
        threads.append(handle)
    return 1


def pool_callback_threads(services: object, handle: int) -> list[int]:
    """The threads the callbacks of a pool object (work, wait, timer) were started on: what
    ``WaitForThreadpool*Callbacks`` waits for (emulator/backends/speakeasy/waits.py)."""
    handles = getattr(services, "handles", {})
    threads = getattr(handles.get(handle), "threads", None)
    return list(threads) if isinstance(threads, list) else []


@apihook("kernel32", "QueueUserWorkItem", argc=3)
def queue_user_work_item(api: GuestApi, argv: list[int]) -> int:
    """QueueUserWorkItem(Function, Context, Flags)."""
    return _start(api, argv[0], argv[1])


@apihook("kernel32", "CreateTimerQueue", argc=0)
def create_timer_queue(api: GuestApi, argv: list[int]) -> int:
    return _services(api).new_handle(TimerQueue())


@apihook("kernel32", "CreateTimerQueueTimer", argc=7)
def create_timer_queue_timer(api: GuestApi, argv: list[int]) -> int:
    """CreateTimerQueueTimer(phNewTimer, TimerQueue, Callback, Parameter, DueTime, Period, Flags):
    the callback runs once on a new thread (a period is not repeated)."""
    timer_ptr, _queue, callback, parameter = argv[:4]
    if not timer_ptr or not _start(api, callback, parameter):
        if not timer_ptr:
            api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    api.write_ptr(timer_ptr, _services(api).new_handle(ThreadpoolWork(callback, parameter)))
    return 1


@apihook("kernel32", "DeleteTimerQueueTimer", argc=3)
def delete_timer_queue_timer(api: GuestApi, argv: list[int]) -> int:
    return 1


@apihook("kernel32", "DeleteTimerQueueEx", argc=2)
def delete_timer_queue_ex(api: GuestApi, argv: list[int]) -> int:
    return 1


@apihook("kernel32", "ChangeTimerQueueTimer", argc=4)
def change_timer_queue_timer(api: GuestApi, argv: list[int]) -> int:
    return 1


@apihook("kernel32", "DeleteTimerQueue", argc=1)
def delete_timer_queue(api: GuestApi, argv: list[int]) -> int:
    return 1


@apihook("kernel32", "TrySubmitThreadpoolCallback", argc=3)
def try_submit_threadpool_callback(api: GuestApi, argv: list[int]) -> int:
    """TrySubmitThreadpoolCallback(pfns, pv, pcbe): pfns(instance, pv)."""
    return _start_pool_callback(api, argv[0], argv[1])


@apihook("kernel32", "CreateThreadpoolWork", argc=3)
def create_threadpool_work(api: GuestApi, argv: list[int]) -> int:
    """CreateThreadpoolWork(pfnwk, pv, pcbe): the work object; it runs when submitted."""
    if not argv[0]:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    return _services(api).new_handle(ThreadpoolWork(argv[0], argv[1]))


@apihook("kernel32", "SubmitThreadpoolWork", argc=1)
def submit_threadpool_work(api: GuestApi, argv: list[int]) -> int:
    work = _services(api).get(argv[0], ThreadpoolWork)
    if work is not None:
        _start_pool_callback(api, work.function, work.context, argv[0], owner=work)
    return 0  # VOID


@apihook("kernel32", "CloseThreadpoolWork", argc=1)
def close_threadpool_work(api: GuestApi, argv: list[int]) -> int:
    _services(api).close(argv[0])
    return 0  # VOID


@apihook("kernel32", "WaitForThreadpoolWorkCallbacks", argc=2)
def wait_for_threadpool_work_callbacks(api: GuestApi, argv: list[int]) -> int:
    return 0  # VOID


@apihook("kernel32", "CreateThreadpoolWait", argc=3)
def create_threadpool_wait(api: GuestApi, argv: list[int]) -> int:
    """CreateThreadpoolWait(pfnwa, pv, pcbe): the wait object; its callback runs when it is set."""
    if not argv[0]:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    return _services(api).new_handle(ThreadpoolWait(argv[0], argv[1]))


@apihook("kernel32", "SetThreadpoolWait", argc=3)
def set_threadpool_wait(api: GuestApi, argv: list[int]) -> int:
    """SetThreadpoolWait(pwa, h, pftTimeout): on an object, pfnwa(instance, pv, pwa, WAIT_OBJECT_0)
    runs (the object taken as signalled); with no object, the wait is cancelled."""
    wait = _services(api).get(argv[0], ThreadpoolWait)
    if wait is not None and argv[1]:
        _start_pool_callback(api, wait.function, wait.context, argv[0], WAIT_OBJECT_0, owner=wait)
    return 0  # VOID


@apihook("kernel32", "SetThreadpoolWaitEx", argc=4)
def set_threadpool_wait_ex(api: GuestApi, argv: list[int]) -> int:
    """SetThreadpoolWaitEx(pwa, h, pftTimeout, Reserved): as SetThreadpoolWait; TRUE when a
    callback was started."""
    wait = _services(api).get(argv[0], ThreadpoolWait)
    if wait is None or not argv[1]:
        return 0
    return _start_pool_callback(api, wait.function, wait.context, argv[0], WAIT_OBJECT_0, owner=wait)


@apihook("kernel32", "CreateThreadpoolTimer", argc=3)
def create_threadpool_timer(api: GuestApi, argv: list[int]) -> int:
    """CreateThreadpoolTimer(pfnti, pv, pcbe): the timer object; its callback runs when it is set."""
    if not argv[0]:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    return _services(api).new_handle(ThreadpoolTimer(argv[0], argv[1]))


@apihook("kernel32", ["SetThreadpoolTimer", "SetThreadpoolTimerEx"], argc=4)
def set_threadpool_timer(api: GuestApi, argv: list[int]) -> int:
    """SetThreadpoolTimer(pti, pftDueTime, msPeriod, msWindowLength): with a due time,
    pfnti(instance, pv, pti) runs once (when the guest's thread next yields; the due time is not
    waited for, a period not repeated); without one, the timer is cancelled. SetThreadpoolTimerEx
    returns TRUE when a callback was started (SetThreadpoolTimer returns nothing)."""
    timer = _services(api).get(argv[0], ThreadpoolTimer)
    if timer is None or not argv[1]:
        return 0
    return _start_pool_callback(api, timer.function, timer.context, argv[0], owner=timer)


@apihook("kernel32", ["CloseThreadpoolWait", "CloseThreadpoolTimer"], argc=1)
def close_threadpool_object(api: GuestApi, argv: list[int]) -> int:
    _services(api).close(argv[0])
    return 0  # VOID


@apihook("kernel32", ["WaitForThreadpoolWaitCallbacks", "WaitForThreadpoolTimerCallbacks"], argc=2)
def wait_for_threadpool_callbacks(api: GuestApi, argv: list[int]) -> int:
    return 0  # VOID


@apihook("kernel32", "IsThreadpoolTimerSet", argc=1)
def is_threadpool_timer_set(api: GuestApi, argv: list[int]) -> int:
    return 0  # its one callback was started when it was set


@apihook("msvcrt", "_beginthreadex", argc=6, conv="cdecl")
def crt_beginthreadex(api: GuestApi, argv: list[int]) -> int:
    """_beginthreadex(security, stack_size, start, arglist, initflag, *thrdaddr): a thread, created
    suspended with CREATE_SUSPENDED in ``initflag`` (Speakeasy's ignored the flag: winpthreads,
    so every mingw-w64 std::thread, creates its threads suspended and resumes them, and the
    thread ran a second time from the resume); 0 (EINVAL) without a start address."""
    _security, _stack, start, arglist, initflag, thread_id_ptr = argv
    if not start:
        return 0
    handle, tid, _pid = api.start_thread(start, arglist, bool(initflag & CREATE_SUSPENDED))
    if handle and thread_id_ptr:
        api.write_u32(thread_id_ptr, tid)
    return handle


@apihook("ntdll", "RtlCreateUserThread", argc=10)
def rtl_create_user_thread(api: GuestApi, argv: list[int]) -> int:
    """RtlCreateUserThread(Process, SecurityDescriptor, CreateSuspended, ZeroBits, MaximumStack,
    CommittedStack, StartAddress, Parameter, ThreadHandle*, ClientId*): NTSTATUS."""
    process, _sd, suspended, _zero, _maximum, _committed, start, parameter, handle_ptr, client_ptr = argv
    if not start:
        return STATUS_INVALID_PARAMETER
    handle, tid, pid = api.start_thread(start, parameter, bool(suspended & 0xFF), process)
    if not handle:
        return STATUS_INVALID_HANDLE
    api.write_ptr(handle_ptr, handle)
    if client_ptr:  # CLIENT_ID: UniqueProcess, UniqueThread
        api.write_ptr(client_ptr, pid)
        api.write_ptr(client_ptr + api.ptr_size, tid)
    return STATUS_SUCCESS


@apihook("ntdll", ["NtCreateThreadEx", "ZwCreateThreadEx"], argc=11)
def nt_create_thread_ex(api: GuestApi, argv: list[int]) -> int:
    """NtCreateThreadEx(ThreadHandle*, Access, ObjectAttributes, Process, StartRoutine, Argument,
    CreateFlags, ZeroBits, StackSize, MaximumStackSize, AttributeList): NTSTATUS."""
    handle_ptr, _access, _attributes, process, start, argument, flags = argv[:7]
    if not handle_ptr or not start:
        return STATUS_INVALID_PARAMETER
    suspended = bool(flags & THREAD_CREATE_FLAGS_CREATE_SUSPENDED)
    handle, tid, _ = api.start_thread(start, argument, suspended, process)
    if not handle:
        return STATUS_INVALID_HANDLE
    api.write_ptr(handle_ptr, handle)
    if flags & THREAD_CREATE_FLAGS_HIDE_FROM_DEBUGGER:
        services = _services(api)
        services.hidden_threads.add(tid)
        services.recorder.note(
            THREAD_HIDDEN_NOTE,
            f"{api.qualified_name} started thread {tid} at {start:#x} with THREAD_CREATE_FLAGS_HIDE_FROM_DEBUGGER: "
            "a debugger attached would not see its events",
        )
    return STATUS_SUCCESS


# ---- waitable timers and registered waits -------------------------------------------------


def _due_filetime(api: GuestApi, due_at: int) -> int | None:
    """The FILETIME a waitable timer's due time (a LARGE_INTEGER: negative relative, in 100 ns
    units, positive absolute) names; None when it cannot be read."""
    try:
        due = int.from_bytes(api.read(due_at, 8), "little", signed=True)
    except Exception:
        return None
    now = _services(api).clock.now_filetime()
    return now - due if due < 0 else max(due, now)


@apihook("kernel32", "SetWaitableTimer", argc=6)
def set_waitable_timer(api: GuestApi, argv: list[int]) -> int:
    """SetWaitableTimer(hTimer, lpDueTime, lPeriod, pfnCompletionRoutine, lpArgToCompletionRoutine,
    fResume): the timer is due at the FILETIME the due time names (negative: relative), then every
    ``lPeriod`` ms; once the virtual clock passes it, ``routine(arg, low, high)`` (the FILETIME it
    fired at) is queued as an APC to the calling thread, delivered at its next alertable moment
    (an alertable ``SleepEx`` or wait, ``NtTestAlert``; emulator/backends/speakeasy/signals.py).
    Speakeasy's handler ignored the routine: the payload never ran."""
    return _set_waitable_timer(api, argv[0], argv[1], argv[2], argv[3], argv[4])


@apihook("kernel32", "SetWaitableTimerEx", argc=7)
def set_waitable_timer_ex(api: GuestApi, argv: list[int]) -> int:
    """SetWaitableTimerEx(hTimer, lpDueTime, lPeriod, pfnCompletionRoutine, lpArg, WakeContext,
    TolerableDelay): as SetWaitableTimer."""
    return _set_waitable_timer(api, argv[0], argv[1], argv[2], argv[3], argv[4])


def _set_waitable_timer(api: GuestApi, timer: int, due_at: int, period: int, routine: int, argument: int) -> int:
    target = api.object_of(timer)
    if target is None or target.kind != "other":
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    fires = _due_filetime(api, due_at) if due_at else None
    if fires is None:
        api.set_last_error(ERROR_NOACCESS)
        return 0
    services = _services(api)
    period_ms = period & 0xFFFFFFFF
    period_ms = 0 if period_ms & 0x80000000 else period_ms  # a negative period fails on Windows
    arm = services.set_waitable_timer
    if arm is not None and arm(timer, fires, period_ms, routine, argument, api.current_thread_id()):
        return 1
    if routine:  # a timer the backend does not keep: its routine waits for the next alertable moment
        args = (argument, fires & 0xFFFFFFFF, fires >> 32 & 0xFFFFFFFF)
        services.pending_apcs.setdefault(api.current_thread_id(), []).append((routine, args))
    return 1


@dataclass
class RegisteredWait:
    """A wait registered with RegisterWaitForSingleObject (its callback already started)."""

    function: int
    context: int


@apihook("kernel32", "RegisterWaitForSingleObject", argc=6)
def register_wait_for_single_object(api: GuestApi, argv: list[int]) -> int:
    """RegisterWaitForSingleObject(phNewWaitObject, hObject, Callback, Context, dwMilliseconds,
    dwFlags): ``Callback(Context, FALSE)`` runs once on a pool thread, the object taken as
    signalled (as a thread-pool wait's; nothing is waited for, nor repeated)."""
    wait_ptr, obj, callback, context = argv[:4]
    if not wait_ptr or not obj or not callback:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    handle, _, _ = api.start_thread(callback, context, args=(context, 0))
    if not handle:
        api.set_last_error(ERROR_NOT_ENOUGH_MEMORY)
        return 0
    api.write_ptr(wait_ptr, _services(api).new_handle(RegisteredWait(callback, context)))
    return 1


@apihook("ntdll", "RtlRegisterWait", argc=6)
def rtl_register_wait(api: GuestApi, argv: list[int]) -> int:
    """RtlRegisterWait(WaitHandle*, Handle, Function, Context, Milliseconds, Flags): NTSTATUS;
    as RegisterWaitForSingleObject."""
    wait_ptr, obj, callback, context = argv[:4]
    if not wait_ptr or not obj or not callback:
        return STATUS_INVALID_PARAMETER
    handle, _, _ = api.start_thread(callback, context, args=(context, 0))
    if not handle:
        return STATUS_NO_MEMORY
    api.write_ptr(wait_ptr, _services(api).new_handle(RegisteredWait(callback, context)))
    return STATUS_SUCCESS


@apihook("kernel32", ["UnregisterWait", "UnregisterWaitEx"], argc=2)
def unregister_wait(api: GuestApi, argv: list[int]) -> int:
    """UnregisterWait(WaitHandle) / UnregisterWaitEx(WaitHandle, CompletionEvent): TRUE for a
    registered wait (its one callback has been started)."""
    if _services(api).get(argv[0], RegisteredWait) is None:
        api.set_last_error(ERROR_INVALID_HANDLE)
        return 0
    _services(api).close(argv[0])
    return 1


@apihook("ntdll", ["RtlDeregisterWait", "RtlDeregisterWaitEx"], argc=2)
def rtl_deregister_wait(api: GuestApi, argv: list[int]) -> int:
    if _services(api).get(argv[0], RegisteredWait) is None:
        return STATUS_INVALID_HANDLE
    _services(api).close(argv[0])
    return STATUS_SUCCESS


# ---- fibers ---------------------------------------------------------------------------------


def _new_fiber(api: GuestApi, function: int, parameter: int) -> int:
    address = api.alloc(FIBER_SIZE, "api.fiber")
    api.write_ptr(address, parameter)  # the fiber data GetFiberData reads
    _services(api).handles[address] = Fiber(function, parameter)
    return address


@apihook("kernel32", "ConvertThreadToFiber", argc=1)
def convert_thread_to_fiber(api: GuestApi, argv: list[int]) -> int:
    return _new_fiber(api, 0, argv[0])


@apihook("kernel32", "ConvertThreadToFiberEx", argc=2)
def convert_thread_to_fiber_ex(api: GuestApi, argv: list[int]) -> int:
    return _new_fiber(api, 0, argv[0])


@apihook("kernel32", "CreateFiber", argc=3)
def create_fiber(api: GuestApi, argv: list[int]) -> int:
    """CreateFiber(StackSize, StartAddress, Parameter)."""
    if not argv[1]:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    return _new_fiber(api, argv[1], argv[2])


@apihook("kernel32", "CreateFiberEx", argc=5)
def create_fiber_ex(api: GuestApi, argv: list[int]) -> int:
    """CreateFiberEx(StackCommit, StackReserve, Flags, StartAddress, Parameter)."""
    if not argv[3]:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    return _new_fiber(api, argv[3], argv[4])


@apihook("kernel32", "SwitchToFiber", argc=1)
def switch_to_fiber(api: GuestApi, argv: list[int]) -> int:
    """SwitchToFiber(fiber): a created fiber's function runs (called back); switching to a
    thread's own fiber does nothing."""
    fiber = _services(api).get(argv[0], Fiber)
    if fiber is not None and fiber.function:
        api.call_guest(fiber.function, [fiber.parameter])
    return 0  # VOID


@apihook("kernel32", "DeleteFiber", argc=1)
def delete_fiber(api: GuestApi, argv: list[int]) -> int:
    _services(api).handles.pop(argv[0], None)
    return 0  # VOID


# ---- APCs and contexts ----------------------------------------------------------------------


def _calling_thread(api: GuestApi, handle: int) -> int | None:
    """The calling thread's id when ``handle`` names it (its pseudo handle or a real handle)."""
    target = api.object_of(handle)
    if target is None or target.kind != "thread":
        return None
    current = api.current_thread_id()
    return current if current and target.id == current else None


def _queue_apc(api: GuestApi, thread: int, routine: int, args: tuple[int, ...], special: bool = False) -> bool:
    """Queue ``routine(*args)`` to ``thread``: kept for the calling thread's next alertable
    moment (called at once when ``special``), started as a thread for another thread.
    False for a handle that names no thread."""
    tid = _calling_thread(api, thread)
    if tid is not None:
        if special:
            api.call_guest(routine, list(args))
        else:
            _services(api).pending_apcs.setdefault(tid, []).append((routine, args))
        return True
    target = api.object_of(thread)
    if target is None or target.kind != "thread":
        return False
    handle, _, _ = api.start_thread(routine, args[0] if args else 0, args=args)
    return bool(handle)


def deliver_apcs(api: GuestApi) -> bool:
    """Call every APC pending on the calling thread, oldest first, when this API returns;
    whether there was one."""
    services = _services(api)
    if services.fire_due_timers is not None:
        services.fire_due_timers()  # the waitable timers due by now queue their routines
    pending = services.pending_apcs.pop(api.current_thread_id(), [])
    for routine, args in pending:
        api.call_guest(routine, list(args))
    return bool(pending)


@apihook("kernel32", "QueueUserAPC2", argc=4)
def queue_user_apc2(api: GuestApi, argv: list[int]) -> int:
    """QueueUserAPC2(ApcRoutine, Thread, Data, Flags): a special user APC runs without waiting
    for an alertable moment."""
    routine, thread, data, flags = argv
    special = bool(flags & QUEUE_USER_APC_FLAGS_SPECIAL_USER_APC)
    if not routine or not _queue_apc(api, thread, routine, (data,), special):
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    return 1


@apihook("ntdll", ["NtQueueApcThread", "ZwQueueApcThread"], argc=5)
def nt_queue_apc_thread(api: GuestApi, argv: list[int]) -> int:
    """NtQueueApcThread(Thread, ApcRoutine, Argument1, Argument2, Argument3): NTSTATUS."""
    thread, routine, *args = argv
    if not routine:
        return STATUS_INVALID_PARAMETER
    return STATUS_SUCCESS if _queue_apc(api, thread, routine, tuple(args)) else STATUS_INVALID_HANDLE


@apihook("ntdll", ["NtQueueApcThreadEx", "ZwQueueApcThreadEx"], argc=6)
def nt_queue_apc_thread_ex(api: GuestApi, argv: list[int]) -> int:
    """NtQueueApcThreadEx(Thread, ReserveHandle or special flag, ApcRoutine, Argument1..3)."""
    thread, reserve, routine, *args = argv
    if not routine:
        return STATUS_INVALID_PARAMETER
    special = reserve == QUEUE_USER_APC_FLAGS_SPECIAL_USER_APC
    return STATUS_SUCCESS if _queue_apc(api, thread, routine, tuple(args), special) else STATUS_INVALID_HANDLE


@apihook("ntdll", ["NtQueueApcThreadEx2", "ZwQueueApcThreadEx2"], argc=7)
def nt_queue_apc_thread_ex2(api: GuestApi, argv: list[int]) -> int:
    """NtQueueApcThreadEx2(Thread, ReserveHandle, ApcFlags, ApcRoutine, Argument1..3)."""
    thread, _reserve, flags, routine, *args = argv
    if not routine:
        return STATUS_INVALID_PARAMETER
    special = bool(flags & QUEUE_USER_APC_FLAGS_SPECIAL_USER_APC)
    return STATUS_SUCCESS if _queue_apc(api, thread, routine, tuple(args), special) else STATUS_INVALID_HANDLE


@apihook("ntdll", ["NtTestAlert", "ZwTestAlert"], argc=0)
def nt_test_alert(api: GuestApi, argv: list[int]) -> int:
    """NtTestAlert(): the calling thread's pending APCs run."""
    deliver_apcs(api)
    return STATUS_SUCCESS


@apihook("kernel32", "SleepEx", argc=2)
def sleep_ex(api: GuestApi, argv: list[int]) -> int:
    """SleepEx(Milliseconds, Alertable): an alertable sleep with APCs pending runs them and
    returns WAIT_IO_COMPLETION at once; otherwise the virtual clock sleeps."""
    milliseconds, alertable = argv
    if alertable & 0xFFFFFFFF and deliver_apcs(api):
        return WAIT_IO_COMPLETION
    _services(api).clock.sleep(milliseconds & 0xFFFFFFFF)
    return 0


@apihook("ntdll", ["NtDelayExecution", "ZwDelayExecution"], argc=2)
def nt_delay_execution(api: GuestApi, argv: list[int]) -> int:
    """NtDelayExecution(Alertable, DelayInterval*): a negative interval is relative (100 ns
    units), a positive one an absolute FILETIME; the virtual clock sleeps that long. Alertable
    with APCs pending: they run, STATUS_USER_APC at once."""
    alertable, interval_at = argv
    if not interval_at:
        return STATUS_INVALID_PARAMETER
    if alertable & 0xFF and deliver_apcs(api):
        return STATUS_USER_APC
    try:
        interval = int.from_bytes(api.read(interval_at, 8), "little", signed=True)
    except Exception:
        return STATUS_ACCESS_VIOLATION
    clock = _services(api).clock
    units = -interval if interval < 0 else max(0, interval - clock.now_filetime())
    clock.sleep(min(units // 10_000, MAX_DELAY_MS))
    return STATUS_SUCCESS


@apihook("ntdll", ["NtContinue", "ZwContinue"], argc=2)
def nt_continue(api: GuestApi, argv: list[int]) -> int:
    """NtContinue(Context, TestAlert): the thread resumes with the CONTEXT (no return). Pending
    APCs stay pending even with TestAlert (a callback would return to this call's caller, not to
    the CONTEXT): the next alertable moment runs them."""
    context, _test_alert = argv
    if not api.load_context(context):
        return STATUS_ACCESS_VIOLATION  # the kernel's probe of an unreadable record (NULL too)
    return STATUS_SUCCESS


@apihook("kernel32", "RtlRestoreContext", argc=2)  # x64's kernel32 exports it too (mingw binds there)
@apihook("ntdll", "RtlRestoreContext", argc=2)
def rtl_restore_context(api: GuestApi, argv: list[int]) -> int:
    """RtlRestoreContext(Context, ExceptionRecord): the thread resumes with the CONTEXT. It reads
    the record in user mode: an unreadable one (NULL too) faults in the call, as on Windows."""
    if not api.load_context(argv[0]):
        api.read(argv[0], 0x4D0 if api.ptr_size == 8 else 0x2CC)  # raises: a fault naming the call
        return STATUS_INVALID_PARAMETER
    return 0  # VOID
