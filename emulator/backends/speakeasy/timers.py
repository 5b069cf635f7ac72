"""Window timers that call their TIMERPROC, as a message loop dispatches them.

A thread timer (``SetTimer(NULL, 0, elapse, TimerProc)``) or a window's timer with a procedure
runs that procedure when the thread's message loop dispatches the ``WM_TIMER`` message: Windows'
``GetMessage`` returns ``WM_TIMER`` with the timer's id in ``wParam`` and its procedure in
``lParam``, and ``DispatchMessage`` calls ``lParam(hwnd, WM_TIMER, id, time)``. Loaders use this to
run a payload with no thread and no callback-taking enumeration. Bare Speakeasy counts timers and
its ``GetMessage`` answers ``WM_TIMER`` while one exists, but with ``wParam`` and ``lParam`` zero,
and its ``DispatchMessage`` does nothing: the procedure never ran.

Here Speakeasy's handlers still run (their counts and messages stand); ``SetTimer`` remembers
each timer's window, id, period and procedure, ``GetMessage``'s ``WM_TIMER`` is filled in with
the timer due first (the virtual clock advanced to its due time, as the wait would),
``PeekMessage`` answers a timer's ``WM_TIMER`` once it is due on the virtual clock (Speakeasy's
answers nothing), and ``DispatchMessage`` calls the procedure the message names when the API
returns.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from emulator.backends.speakeasy import compat
from emulator.services import ReplayServices

WM_TIMER = 0x0113
# MSG: hwnd, message, wParam, lParam, time at these offsets (x64, x86).
MSG_OFFSETS = {8: (0, 8, 16, 24, 32), 4: (0, 4, 8, 12, 16)}
# A period below USER_TIMER_MINIMUM is raised to it, as Windows does.
USER_TIMER_MINIMUM = 10
PM_REMOVE = 0x1


@dataclass
class WindowTimer:
    window: int
    ident: int
    period_ms: int
    procedure: int
    due_ms: int  # tick count at which it next fires


def install(se: Any, ptr_size: int, services: ReplayServices) -> None:
    timers: list[WindowTimer] = []
    hwnd_at, message_at, wparam_at, lparam_at, time_at = MSG_OFFSETS[ptr_size]
    ptr = "<Q" if ptr_size == 8 else "<I"
    mask = (1 << (8 * ptr_size)) - 1
    clock = services.clock

    def read_ptr(emu: Any, address: int) -> int:
        return int(struct.unpack(ptr, bytes(emu.mem_read(address, ptr_size)))[0])

    def next_due(window_filter: int) -> WindowTimer | None:
        candidates = [t for t in timers if not window_filter or t.window == window_filter]
        return min(candidates, key=lambda t: t.due_ms) if candidates else None

    def deliver(emu: Any, msg: int, timer: WindowTimer, remove: bool) -> None:
        emu.mem_write(msg + hwnd_at, struct.pack(ptr, timer.window))
        emu.mem_write(msg + message_at, struct.pack("<I", WM_TIMER))
        emu.mem_write(msg + wparam_at, struct.pack(ptr, timer.ident))
        emu.mem_write(msg + lparam_at, struct.pack(ptr, timer.procedure))
        now = clock.tick_count_ms()
        emu.mem_write(msg + time_at, struct.pack("<I", now & 0xFFFFFFFF))
        if remove:
            timer.due_ms = now + timer.period_ms

    def set_timer(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # SetTimer(hWnd, nIDEvent, uElapse, lpTimerFunc): a window's timer keeps the id given,
        # a thread timer (no window) gets the id SetTimer returns; setting an id again replaces it.
        rv = orig(argv)
        window, ident = argv[0] & mask, argv[1] & mask
        if rv:
            ident = ident if window else int(rv) & mask
            timers[:] = [t for t in timers if (t.window, t.ident) != (window, ident)]
            period = max(argv[2] & 0xFFFFFFFF, USER_TIMER_MINIMUM)
            timers.append(WindowTimer(window, ident, period, argv[3] & mask, clock.tick_count_ms() + period))
        return rv

    def kill_timer(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        window, ident = argv[0] & mask, argv[1] & mask
        timers[:] = [t for t in timers if (t.window, t.ident) != (window, ident)]
        return orig(argv)

    def get_message(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # GetMessage waits: with timers, it returns the next one's WM_TIMER once it is due.
        rv = orig(argv)
        msg = argv[0]
        timer = next_due(argv[1] & mask)
        if not rv or not msg or timer is None:
            return rv
        if struct.unpack("<I", bytes(emu.mem_read(msg + message_at, 4)))[0] != WM_TIMER:
            return rv
        clock.sleep(max(0, timer.due_ms - clock.tick_count_ms()))
        deliver(emu, msg, timer, remove=True)
        return rv

    def peek_message(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # PeekMessage(lpMsg, hWnd, min, max, wRemoveMsg) does not wait: a timer's WM_TIMER only
        # once it is due (Speakeasy's answers no message at all).
        rv = orig(argv)
        msg, timer = argv[0], next_due(argv[1] & mask)
        if rv or not msg or timer is None or timer.due_ms > clock.tick_count_ms():
            return rv
        low, high = argv[2] & 0xFFFFFFFF, argv[3] & 0xFFFFFFFF
        if (low or high) and not low <= WM_TIMER <= high:
            return rv
        deliver(emu, msg, timer, remove=bool(argv[4] & PM_REMOVE))
        return 1

    def dispatch_message(emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        rv = orig(argv)
        msg = argv[0]
        if not msg:
            return rv
        message = struct.unpack("<I", bytes(emu.mem_read(msg + message_at, 4)))[0]
        procedure = read_ptr(emu, msg + lparam_at)
        if message == WM_TIMER and procedure:
            window, ident = read_ptr(emu, msg + hwnd_at), read_ptr(emu, msg + wparam_at)
            time = struct.unpack("<I", bytes(emu.mem_read(msg + time_at, 4)))[0]
            compat.call_guest_after_api(emu, procedure, [window, WM_TIMER, ident, time])
        return rv

    se.add_api_hook(set_timer, "user32", "SetTimer")
    se.add_api_hook(kill_timer, "user32", "KillTimer")
    for name in ("GetMessageA", "GetMessageW"):
        se.add_api_hook(get_message, "user32", name)
    for name in ("PeekMessageA", "PeekMessageW"):
        se.add_api_hook(peek_message, "user32", name)
    for name in ("DispatchMessageA", "DispatchMessageW"):
        se.add_api_hook(dispatch_message, "user32", name)
