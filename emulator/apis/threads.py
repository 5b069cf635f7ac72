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
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.apis.clock import _services
from emulator.apis.core import GuestApi, apihook

ERROR_NOT_ENOUGH_MEMORY = 8
ERROR_INVALID_PARAMETER = 87
STATUS_SUCCESS = 0
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_PARAMETER = 0xC000000D
THREAD_CREATE_FLAGS_CREATE_SUSPENDED = 0x1
WAIT_OBJECT_0 = 0
# A fiber object: what GetCurrentFiber-style code may read (the fiber data at offset 0).
FIBER_SIZE = 0x100


@dataclass
class ThreadpoolWork:
    function: int
    context: int


@dataclass
class ThreadpoolWait:
    function: int
    context: int


@dataclass
class ThreadpoolTimer:
    function: int
    context: int


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


def _start_pool_callback(api: GuestApi, function: int, context: int, *rest: int) -> int:
    """Start a thread-pool callback ``function(instance, context, *rest)`` on a new thread."""
    if not function:
        api.set_last_error(ERROR_INVALID_PARAMETER)
        return 0
    instance = _services(api).new_handle(CallbackInstance())
    handle, _, _ = api.start_thread(function, instance, args=(instance, context, *rest))
    if not handle:
        api.set_last_error(ERROR_NOT_ENOUGH_MEMORY)
        return 0
    return 1


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
        _start_pool_callback(api, work.function, work.context, argv[0])
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
        _start_pool_callback(api, wait.function, wait.context, argv[0], WAIT_OBJECT_0)
    return 0  # VOID


@apihook("kernel32", "SetThreadpoolWaitEx", argc=4)
def set_threadpool_wait_ex(api: GuestApi, argv: list[int]) -> int:
    """SetThreadpoolWaitEx(pwa, h, pftTimeout, Reserved): as SetThreadpoolWait; TRUE when a
    callback was started."""
    wait = _services(api).get(argv[0], ThreadpoolWait)
    if wait is None or not argv[1]:
        return 0
    return _start_pool_callback(api, wait.function, wait.context, argv[0], WAIT_OBJECT_0)


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
    return _start_pool_callback(api, timer.function, timer.context, argv[0])


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
    handle, _, _ = api.start_thread(start, argument, suspended, process)
    if not handle:
        return STATUS_INVALID_HANDLE
    api.write_ptr(handle_ptr, handle)
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
