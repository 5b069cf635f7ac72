"""A thread's message queue: posted messages, WM_QUIT and window timers, as a message loop sees them.

Bare Speakeasy posts nothing (``PostMessage`` answers TRUE and drops the message,
``PostThreadMessage`` is served from its signature, ``PostQuitMessage`` does nothing), its
``GetMessage`` answers ``WM_TIMER`` with ``wParam`` and ``lParam`` zero while a timer exists, FALSE
when none does, and keystrokes it makes up when a keyboard hook is set; its ``PeekMessage``
answers nothing and its ``DispatchMessage`` calls nothing. Loaders post a message to their own
window (or thread) and let the loop dispatch it to the procedure that is the payload, or set a
timer whose procedure is: the payload never ran.

Here each thread has a queue. ``PostMessage`` (``hWnd`` NULL: a thread message) and
``PostThreadMessage`` append to it (at most ``MAX_POSTED_MESSAGES``, Windows' quota: then they fail
with ``ERROR_NOT_ENOUGH_QUOTA``), ``PostQuitMessage`` marks it. ``GetMessage`` takes the first
message its filter admits (window, range), then ``WM_QUIT`` (its answer 0, ``wParam`` the exit
code), then the window timer due first (``SetTimer``: the clock moved on to its due time, as the
wait would; ``wParam`` its id, ``lParam`` its ``TIMERPROC``, ``hwnd`` its window); with none of
them nothing would ever come, and it answers 0 (the loop ends; no input is made up).
``PeekMessage`` answers the same without waiting (a timer once it is due) and takes the message
with ``PM_REMOVE`` only. ``DispatchMessage`` calls the message's ``TIMERPROC`` (``WM_TIMER`` with
a procedure) or its window's procedure (wndprocs.py) when the API returns and answers what the
procedure returns (the stage it starts is ``via: callback``). ``TranslateMessage`` answers TRUE
for the key messages only. ``SetWindowsHookEx`` keeps Speakeasy's hook handle and notes the hook
(``window_hook``: its type and procedure; a keyboard hook is ATT&CK T1056.001); no input is made
up for it. ``MsgWaitForMultipleObjects(Ex)`` sees queued input (waits.py asks
:meth:`MessageLoop.input_within`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from emulator.backends.speakeasy import compat
from emulator.services import ReplayServices

WM_QUIT = 0x0012
WM_TIMER = 0x0113
WM_KEYDOWN, WM_KEYUP, WM_CHAR, WM_SYSKEYDOWN, WM_SYSKEYUP = 0x0100, 0x0101, 0x0102, 0x0104, 0x0105
KEY_MESSAGES = (WM_KEYDOWN, WM_KEYUP, WM_SYSKEYDOWN, WM_SYSKEYUP)
# MSG: hwnd, message, wParam, lParam, time at these offsets (x64, x86); then POINT pt.
MSG_OFFSETS = {8: (0, 8, 16, 24, 32), 4: (0, 4, 8, 12, 16)}
# A period below USER_TIMER_MINIMUM is raised to it, as Windows does.
USER_TIMER_MINIMUM = 10
PM_REMOVE = 0x1
# GetMessage / PeekMessage's hWnd -1: messages posted to the thread only (hwnd NULL).
HWND_THREAD_ONLY = -1
# Windows' default quota of posted messages per queue (USERPostMessageLimit).
MAX_POSTED_MESSAGES = 10_000
ERROR_NOT_ENOUGH_QUOTA = 1816
# SetWindowsHookEx's idHook values.
WINDOW_HOOKS = {
    -1: "WH_MSGFILTER",
    0: "WH_JOURNALRECORD",
    1: "WH_JOURNALPLAYBACK",
    2: "WH_KEYBOARD",
    3: "WH_GETMESSAGE",
    4: "WH_CALLWNDPROC",
    5: "WH_CBT",
    6: "WH_SYSMSGFILTER",
    7: "WH_MOUSE",
    9: "WH_DEBUG",
    10: "WH_SHELL",
    11: "WH_FOREGROUNDIDLE",
    12: "WH_CALLWNDPROCRET",
    13: "WH_KEYBOARD_LL",
    14: "WH_MOUSE_LL",
}
WINDOW_HOOK_NOTE = "window_hook"


@dataclass
class WindowTimer:
    window: int
    ident: int
    period_ms: int
    procedure: int
    due_ms: int  # tick count at which it next fires


@dataclass
class Posted:
    window: int
    message: int
    wparam: int
    lparam: int
    time: int


@dataclass
class _Queue:
    posted: list[Posted] = field(default_factory=list)
    quit_code: int | None = None


class MessageLoop:
    def __init__(self, se: Any, emu: Any, memory: Any, services: ReplayServices, procedures: dict[int, int]) -> None:
        self.se = se
        self.emu = emu
        self.memory = memory
        self.clock = services.clock
        self.recorder = services.recorder
        self.procedures = procedures  # window -> its procedure (wndprocs.py)
        self.ptr_size = int(memory.ptr_size)
        self.mask = (1 << (8 * self.ptr_size)) - 1
        self.timers: list[WindowTimer] = []
        self.queues: dict[int, _Queue] = {}

    def install(self) -> None:
        se = self.se
        se.add_api_hook(self._set_timer, "user32", "SetTimer")
        se.add_api_hook(self._kill_timer, "user32", "KillTimer")
        se.add_api_hook(self._post_quit, "user32", "PostQuitMessage")
        for suffix in ("A", "W"):
            se.add_api_hook(self._get_message, "user32", "GetMessage" + suffix)
            se.add_api_hook(self._peek_message, "user32", "PeekMessage" + suffix)
            se.add_api_hook(self._dispatch_message, "user32", "DispatchMessage" + suffix)
            se.add_api_hook(self._post_message, "user32", "PostMessage" + suffix)
            se.add_api_hook(self._post_thread_message, "user32", "PostThreadMessage" + suffix, argc=4)
            se.add_api_hook(self._set_hook, "user32", "SetWindowsHookEx" + suffix)
        se.add_api_hook(self._translate_message, "user32", "TranslateMessage")
        compat.after_each_api_callback(self.emu, self._procedure_returned)

    # -- helpers ---------------------------------------------------------------------------------

    def _queue(self, thread_id: int | None = None) -> _Queue:
        tid = self.memory.current_thread_id() if thread_id is None else thread_id
        return self.queues.setdefault(tid, _Queue())

    def _read_ptr(self, address: int) -> int:
        return int.from_bytes(self.memory.read(address, self.ptr_size), "little")

    def _write_msg(self, address: int, window: int, message: int, wparam: int, lparam: int, time: int) -> None:
        hwnd_at, message_at, wparam_at, lparam_at, time_at = MSG_OFFSETS[self.ptr_size]
        ptr = "<Q" if self.ptr_size == 8 else "<I"
        self.memory.write(address + hwnd_at, struct.pack(ptr, window & self.mask))
        self.memory.write(address + message_at, struct.pack("<I", message & 0xFFFFFFFF))
        self.memory.write(address + wparam_at, struct.pack(ptr, wparam & self.mask))
        self.memory.write(address + lparam_at, struct.pack(ptr, lparam & self.mask))
        self.memory.write(address + time_at, struct.pack("<I", time & 0xFFFFFFFF))

    def _admits(self, posted: Posted, window: int, low: int, high: int) -> bool:
        signed = window - (1 << (8 * self.ptr_size)) if window >> (8 * self.ptr_size - 1) else window
        if signed == HWND_THREAD_ONLY or (self.ptr_size == 8 and window == 0xFFFFFFFF):
            if posted.window:
                return False
        elif window and posted.window != window:
            return False
        return not (low or high) or low <= posted.message <= high

    def _next_timer(self, window: int) -> WindowTimer | None:
        candidates = [t for t in self.timers if not window or t.window == window]
        return min(candidates, key=lambda t: t.due_ms) if candidates else None

    def _deliver_timer(self, msg: int, timer: WindowTimer, remove: bool) -> None:
        now = self.clock.tick_count_ms()
        self._write_msg(msg, timer.window, WM_TIMER, timer.ident, timer.procedure, now)
        if remove:
            timer.due_ms = now + timer.period_ms

    def _take(self, msg: int, window: int, low: int, high: int, remove: bool) -> int | None:
        """The first message of the queue the filter admits, or WM_QUIT: written to ``msg``
        (taken with ``remove``); what GetMessage answers for it; None when there is none."""
        queue = self._queue()
        for i, posted in enumerate(queue.posted):
            if self._admits(posted, window, low, high):
                if remove:
                    del queue.posted[i]
                if msg:
                    self._write_msg(msg, posted.window, posted.message, posted.wparam, posted.lparam, posted.time)
                return 0 if posted.message == WM_QUIT else 1
        if queue.quit_code is not None:
            if msg:
                self._write_msg(msg, 0, WM_QUIT, queue.quit_code, 0, self.clock.tick_count_ms())
            if remove:
                queue.quit_code = None
            return 0
        return None

    def input_within(self, timeout_ms: int | None) -> bool:
        """Whether input reaches the calling thread's queue within ``timeout_ms`` (None: ever):
        a posted message or WM_QUIT now, or a window timer due by then (the clock moved on to it)."""
        queue = self._queue()
        if queue.posted or queue.quit_code is not None:
            return True
        timer = self._next_timer(0)
        if timer is None:
            return False
        wait = max(0, timer.due_ms - self.clock.tick_count_ms())
        if timeout_ms is not None and wait > timeout_ms:
            return False
        self.clock.sleep(wait)
        return True

    # -- the APIs --------------------------------------------------------------------------------

    def _set_timer(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # SetTimer(hWnd, nIDEvent, uElapse, lpTimerFunc): a window's timer keeps the id given,
        # a thread timer (no window) gets the id SetTimer returns; setting an id again replaces it.
        rv = orig(argv)
        window, ident = argv[0] & self.mask, argv[1] & self.mask
        if rv:
            ident = ident if window else int(rv) & self.mask
            self.timers[:] = [t for t in self.timers if (t.window, t.ident) != (window, ident)]
            period = max(argv[2] & 0xFFFFFFFF, USER_TIMER_MINIMUM)
            now = self.clock.tick_count_ms()
            self.timers.append(WindowTimer(window, ident, period, argv[3] & self.mask, now + period))
        return rv

    def _kill_timer(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        window, ident = argv[0] & self.mask, argv[1] & self.mask
        self.timers[:] = [t for t in self.timers if (t.window, t.ident) != (window, ident)]
        return orig(argv)

    def _post_message(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # PostMessage(hWnd, Msg, wParam, lParam): to the window's thread (here the caller's).
        window, message, wparam, lparam = argv[:4]
        return self._post(self._queue(), window & self.mask, message, wparam, lparam)

    def _post_thread_message(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # PostThreadMessage(idThread, Msg, wParam, lParam)
        tid, message, wparam, lparam = argv[:4]
        return self._post(self._queue(tid & 0xFFFFFFFF), 0, message, wparam, lparam)

    def _post(self, queue: _Queue, window: int, message: int, wparam: int, lparam: int) -> int:
        if len(queue.posted) >= MAX_POSTED_MESSAGES:
            self.memory.set_last_error(ERROR_NOT_ENOUGH_QUOTA)
            return 0
        now = self.clock.tick_count_ms()
        queue.posted.append(Posted(window, message & 0xFFFFFFFF, wparam & self.mask, lparam & self.mask, now))
        return 1

    def _post_quit(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        self._queue().quit_code = (argv[0] if argv else 0) & 0xFFFFFFFF
        return 0

    def _get_message(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # GetMessage(lpMsg, hWnd, wMsgFilterMin, wMsgFilterMax) waits for a message.
        msg, window, low, high = argv[0], argv[1] & self.mask, argv[2] & 0xFFFFFFFF, argv[3] & 0xFFFFFFFF
        taken = self._take(msg, window, low, high, remove=True)
        if taken is not None:
            return taken
        timer = self._next_timer(window)
        if timer is not None and (not (low or high) or low <= WM_TIMER <= high):
            self.clock.sleep(max(0, timer.due_ms - self.clock.tick_count_ms()))
            if msg:
                self._deliver_timer(msg, timer, remove=True)
            return 1
        return 0  # nothing would ever come: the loop ends (no input is made up)

    def _peek_message(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # PeekMessage(lpMsg, hWnd, wMsgFilterMin, wMsgFilterMax, wRemoveMsg) does not wait.
        msg, window, low, high = argv[0], argv[1] & self.mask, argv[2] & 0xFFFFFFFF, argv[3] & 0xFFFFFFFF
        remove = bool(argv[4] & PM_REMOVE)
        if self._take(msg, window, low, high, remove) is not None:
            return 1
        timer = self._next_timer(window)
        if timer is None or timer.due_ms > self.clock.tick_count_ms():
            return 0
        if (low or high) and not low <= WM_TIMER <= high:
            return 0
        if msg:
            self._deliver_timer(msg, timer, remove)
        return 1

    def _translate_message(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # TranslateMessage answers TRUE for the key messages it translates, FALSE for the rest.
        msg = argv[0] if argv else 0
        if not msg:
            return 0
        try:
            message = struct.unpack("<I", self.memory.read(msg + MSG_OFFSETS[self.ptr_size][1], 4))[0]
        except Exception:
            return 0
        return 1 if message in KEY_MESSAGES else 0

    def _dispatch_message(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        msg = argv[0] if argv else 0
        if not msg:
            return orig(argv)
        hwnd_at, message_at, wparam_at, lparam_at, time_at = MSG_OFFSETS[self.ptr_size]
        try:
            window, wparam, lparam = (self._read_ptr(msg + at) for at in (hwnd_at, wparam_at, lparam_at))
            message, time = struct.unpack(
                "<II", self.memory.read(msg + message_at, 4) + self.memory.read(msg + time_at, 4)
            )
        except Exception:
            return orig(argv)
        if message == WM_TIMER and lparam:
            # the TIMERPROC the message names: (hwnd, WM_TIMER, id, time)
            compat.call_guest_after_api(emu, lparam, [window, WM_TIMER, wparam, time])
            return 0
        procedure = self.procedures.get(window)
        if procedure is None:
            return orig(argv)
        compat.call_guest_after_api(emu, procedure, [window, message, wparam, lparam])
        compat.tag_api_frame(emu, ANSWER)
        return 0

    def _set_hook(self, emu: Any, api_name: str, orig: Any, argv: list[int]) -> Any:
        # SetWindowsHookEx(idHook, lpfn, hmod, dwThreadId): Speakeasy's answers a hook handle; the
        # note names the hook, for its procedure is called only by input that never arrives here.
        rv = orig(argv)
        kind = argv[0] & 0xFFFFFFFF
        kind = kind - (1 << 32) if kind & 0x80000000 else kind
        name = WINDOW_HOOKS.get(kind, f"hook type {kind}")
        if rv:
            procedure, module, thread = argv[1] & self.mask, argv[2] & self.mask, argv[3] & 0xFFFFFFFF
            self.recorder.note(
                WINDOW_HOOK_NOTE,
                f"{api_name.rsplit('.', 1)[-1]}({name}, procedure {procedure:#x}, module {module:#x}, "
                f"thread {thread}) answered hook {int(rv):#x}; no input arrives here, so the procedure is not called",
            )
        return rv

    def _procedure_returned(self, tag: Any, returned: int) -> int | None:
        """A window procedure DispatchMessage or SendMessage called returned: its answer (an
        LRESULT, the whole return register) is the API's."""
        if tag is not ANSWER:
            return None
        return int(self.emu.reg_read("rax" if self.ptr_size == 8 else "eax"))


class _Answer:
    """Tags an API call whose result is what the procedure it called returns."""


ANSWER = _Answer()
