/* waits2: waits, timers and window messages as Windows does them. Finite timeouts on objects
 * that never signal (a thread, an event) return WAIT_TIMEOUT once the clock has moved by the
 * timeout; a wait on a closed or made-up handle fails with ERROR_INVALID_HANDLE; a waitable
 * timer's completion routine runs once the timer is due (relative, absolute, periodic), not
 * when it is set; SendMessage returns the window procedure's answer; posted messages come out of
 * GetMessage / PeekMessage and DispatchMessage runs the window procedure; WM_QUIT ends
 * GetMessage; SetTimer with a procedure and with a window; SetWindowsHookEx answers a hook
 * handle and invents no input. x64 and x86; one OutputDebugStringA verdict per check
 * ("check NAME: pass|FAIL DETAIL"). Benign: nothing without the marker. */
#include "fidelity.h"

#define BOGUS_HANDLE ((HANDLE)(ULONG_PTR)0x0BADC0DC)
#define WM_PROBE (WM_USER + 7)
#define WM_PROBE_POSTED (WM_USER + 8)

typedef LONG(NTAPI *nt_wait_t)(HANDLE, BOOLEAN, PLARGE_INTEGER);

static volatile LONG spins, timer_calls, timer_proc_calls, wnd_timer_calls, posted_calls, hook_calls;
static volatile ULONG_PTR timer_arg, posted_wparam;
static volatile DWORD timer_low;
static HANDLE setter_event;
static char detail[128];

static DWORD WINAPI spinner(LPVOID param)
{
    (void)param;
    for (;;) {
        spins++;
        Sleep(10);
    }
    return 0;
}

static DWORD WINAPI setter(LPVOID param)
{
    (void)param;
    SetEvent(setter_event);
    return 7;
}

static VOID CALLBACK on_timer(LPVOID arg, DWORD low, DWORD high)
{
    (void)high;
    timer_calls++;
    timer_arg = (ULONG_PTR)arg;
    timer_low = low;
}

static VOID CALLBACK timer_proc(HWND hwnd, UINT msg, UINT_PTR id, DWORD time)
{
    (void)hwnd; (void)id; (void)time;
    if (msg == WM_TIMER)
        timer_proc_calls++;
}

static LRESULT CALLBACK window_proc(HWND hwnd, UINT msg, WPARAM wparam, LPARAM lparam)
{
    if (msg == WM_PROBE)
        return 0x1234;
    if (msg == WM_PROBE_POSTED) {
        posted_calls++;
        posted_wparam = wparam;
        return 0x55;
    }
    if (msg == WM_TIMER && wparam == 42) {
        wnd_timer_calls++;
        return 0;
    }
    return DefWindowProcA(hwnd, msg, wparam, lparam);
}

static LRESULT CALLBACK hook_proc(int code, WPARAM wparam, LPARAM lparam)
{
    hook_calls++;
    return CallNextHookEx(NULL, code, wparam, lparam);
}

static void with_number(const char *text, unsigned long long value)
{
    int n = 0;
    while (text[n] && n < 100) { detail[n] = text[n]; n++; }
    fmt_u64(detail + n, value);
}

static void wait_checks(void)
{
    DWORD before, elapsed, rv, err;
    HANDLE thread, ev, ev2, pair[2];
    LARGE_INTEGER rel;
    nt_wait_t nt_wait = (nt_wait_t)(void (*)(void))GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtWaitForSingleObject");

    /* a thread that never ends: the wait gives it its time, then times out */
    thread = CreateThread(NULL, 0, spinner, NULL, 0, NULL);
    before = GetTickCount();
    rv = WaitForSingleObject(thread, 100);
    elapsed = GetTickCount() - before;
    with_number("elapsed ", elapsed);
    verdict("thread_wait_times_out", rv == WAIT_TIMEOUT && elapsed >= 100 && elapsed < 1000 && spins > 0, detail);

    /* an event nobody sets */
    ev = CreateEventA(NULL, TRUE, FALSE, NULL);
    before = GetTickCount();
    rv = WaitForSingleObject(ev, 100);
    elapsed = GetTickCount() - before;
    with_number("elapsed ", elapsed);
    verdict("event_wait_times_out", rv == WAIT_TIMEOUT && elapsed >= 100 && elapsed < 1000, detail);
    before = GetTickCount();
    rv = WaitForSingleObject(ev, 0);
    verdict("event_poll_times_out", rv == WAIT_TIMEOUT && GetTickCount() - before < 50, NULL);
    SetEvent(ev);
    verdict("set_event_signals", WaitForSingleObject(ev, 100) == WAIT_OBJECT_0 &&
                                     WaitForSingleObject(ev, INFINITE) == WAIT_OBJECT_0, NULL);
    ResetEvent(ev);
    verdict("reset_event_unsignals", WaitForSingleObject(ev, 0) == WAIT_TIMEOUT, NULL);

    /* an auto-reset event: one wait takes the signal */
    ev2 = CreateEventA(NULL, FALSE, TRUE, NULL);
    rv = WaitForSingleObject(ev2, 0);
    verdict("auto_reset_event_once", rv == WAIT_OBJECT_0 && WaitForSingleObject(ev2, 0) == WAIT_TIMEOUT, NULL);

    /* a thread that sets the event the main thread waits for */
    setter_event = CreateEventA(NULL, TRUE, FALSE, NULL);
    thread = CreateThread(NULL, 0, setter, NULL, 0, NULL);
    rv = WaitForSingleObject(setter_event, 5000);
    verdict("event_set_by_thread", rv == WAIT_OBJECT_0, NULL);
    WaitForSingleObject(thread, INFINITE);

    /* wait-any and wait-all */
    pair[0] = ev;
    pair[1] = ev2;
    before = GetTickCount();
    rv = WaitForMultipleObjects(2, pair, FALSE, 100);
    elapsed = GetTickCount() - before;
    with_number("elapsed ", elapsed);
    verdict("wait_any_times_out", rv == WAIT_TIMEOUT && elapsed >= 100 && elapsed < 1000, detail);
    SetEvent(ev2);
    rv = WaitForMultipleObjects(2, pair, FALSE, 100);
    with_number("rv ", rv);
    verdict("wait_any_second_signalled", rv == WAIT_OBJECT_0 + 1, detail);
    SetEvent(ev);
    rv = WaitForMultipleObjectsEx(2, pair, TRUE, 100, FALSE);
    with_number("rv ", rv);
    verdict("wait_all_one_unsignalled_times_out", rv == WAIT_TIMEOUT, detail); /* ev2 was taken */
    SetEvent(ev2);
    rv = WaitForMultipleObjects(2, pair, TRUE, 100);
    verdict("wait_all_signalled", rv == WAIT_OBJECT_0, NULL);

    ResetEvent(ev);
    before = GetTickCount();
    rv = MsgWaitForMultipleObjects(1, &ev, FALSE, 100, QS_ALLINPUT);
    elapsed = GetTickCount() - before;
    with_number("elapsed ", elapsed);
    verdict("msg_wait_times_out", rv == WAIT_TIMEOUT && elapsed >= 100 && elapsed < 1000, detail);

    /* SignalObjectAndWait: signals the first, waits for the second */
    ResetEvent(ev2);
    rv = SignalObjectAndWait(ev, ev2, 100, FALSE);
    verdict("signal_and_wait_times_out", rv == WAIT_TIMEOUT && WaitForSingleObject(ev, 0) == WAIT_OBJECT_0, NULL);

    /* NtWaitForSingleObject with a relative timeout */
    ResetEvent(ev);
    rel.QuadPart = -100LL * 10000;
    before = GetTickCount();
    rv = nt_wait ? (DWORD)nt_wait(ev, FALSE, &rel) : 1;
    elapsed = GetTickCount() - before;
    with_number("elapsed ", elapsed);
    verdict("nt_wait_relative_times_out", rv == 0x102 && elapsed >= 100 && elapsed < 1000, detail);

    /* closed and made-up handles */
    CloseHandle(ev2);
    SetLastError(0);
    rv = WaitForSingleObject(ev2, 0);
    err = GetLastError();
    with_number("error ", err);
    verdict("wait_closed_handle_fails", rv == WAIT_FAILED && err == ERROR_INVALID_HANDLE, detail);
    SetLastError(0);
    rv = WaitForSingleObject(BOGUS_HANDLE, 100);
    err = GetLastError();
    with_number("error ", err);
    verdict("wait_bogus_handle_fails", rv == WAIT_FAILED && err == ERROR_INVALID_HANDLE, detail);
    pair[0] = ev;
    pair[1] = BOGUS_HANDLE;
    SetLastError(0);
    rv = WaitForMultipleObjects(2, pair, FALSE, 0);
    verdict("wait_many_bogus_handle_fails", rv == WAIT_FAILED && GetLastError() == ERROR_INVALID_HANDLE, NULL);
    rv = nt_wait ? (DWORD)nt_wait(BOGUS_HANDLE, FALSE, &rel) : 1;
    verdict("nt_wait_bogus_handle_fails", rv == 0xC0000008, NULL);
    SetLastError(0);
    verdict("close_twice_fails", !CloseHandle(ev2) && GetLastError() == ERROR_INVALID_HANDLE, NULL);
    CloseHandle(ev);
}

static void timer_checks(void)
{
    HANDLE timer = CreateWaitableTimerA(NULL, FALSE, NULL);
    LARGE_INTEGER due;
    FILETIME now;
    DWORD before, elapsed, rv;

    /* relative due time: the routine waits for it */
    due.QuadPart = -200LL * 10000;
    SetWaitableTimer(timer, &due, 0, on_timer, (LPVOID)0x77, FALSE);
    rv = SleepEx(0, TRUE);
    verdict("timer_routine_not_before_due", rv == 0 && timer_calls == 0, NULL);
    before = GetTickCount();
    rv = SleepEx(1000, TRUE);
    elapsed = GetTickCount() - before;
    with_number("elapsed ", elapsed);
    verdict("timer_routine_when_due", rv == WAIT_IO_COMPLETION && timer_calls == 1 && timer_arg == 0x77 &&
                                          elapsed >= 190 && elapsed < 1000, detail);
    rv = SleepEx(300, TRUE);
    verdict("timer_routine_once", rv == 0 && timer_calls == 1, NULL);

    /* absolute due time */
    GetSystemTimeAsFileTime(&now);
    due.QuadPart = (LONGLONG)(((ULONGLONG)now.dwHighDateTime << 32) | now.dwLowDateTime) + 300LL * 10000;
    SetWaitableTimer(timer, &due, 0, on_timer, (LPVOID)0x78, FALSE);
    before = GetTickCount();
    rv = SleepEx(INFINITE, TRUE);
    elapsed = GetTickCount() - before;
    with_number("elapsed ", elapsed);
    verdict("timer_absolute_due", rv == WAIT_IO_COMPLETION && timer_calls == 2 && timer_arg == 0x78 &&
                                     elapsed >= 290 && elapsed < 1000, detail);

    /* periodic: it fires again, until cancelled */
    due.QuadPart = -50LL * 10000;
    SetWaitableTimer(timer, &due, 100, on_timer, (LPVOID)0x79, FALSE);
    SleepEx(INFINITE, TRUE);
    SleepEx(INFINITE, TRUE);
    rv = SleepEx(INFINITE, TRUE);
    with_number("calls ", timer_calls);
    verdict("timer_periodic_repeats", rv == WAIT_IO_COMPLETION && timer_calls == 5, detail);
    CancelWaitableTimer(timer);
    rv = SleepEx(500, TRUE);
    verdict("timer_cancel_stops", rv == 0 && timer_calls == 5, NULL);

    /* a timer without a routine signals when due */
    due.QuadPart = -300LL * 10000;
    SetWaitableTimer(timer, &due, 0, NULL, NULL, FALSE);
    rv = WaitForSingleObject(timer, 10);
    before = GetTickCount();
    verdict("timer_wait_before_due_times_out", rv == WAIT_TIMEOUT, NULL);
    rv = WaitForSingleObject(timer, 5000);
    elapsed = GetTickCount() - before;
    with_number("elapsed ", elapsed);
    verdict("timer_wait_until_due", rv == WAIT_OBJECT_0 && elapsed >= 250 && elapsed < 1000, detail);
    CloseHandle(timer);
}

static void window_checks(void)
{
    WNDCLASSA wc;
    HWND hwnd;
    MSG msg;
    LRESULT lr;
    BOOL got;
    int i;
    UINT_PTR id;

    for (i = 0; i < (int)sizeof wc; i++) ((char *)&wc)[i] = 0;
    wc.lpfnWndProc = window_proc;
    wc.hInstance = GetModuleHandleA(NULL);
    wc.lpszClassName = "waits2probe";
    RegisterClassA(&wc);
    hwnd = CreateWindowExA(0, "waits2probe", "w", 0, 0, 0, 10, 10, NULL, NULL, wc.hInstance, NULL);

    lr = SendMessageA(hwnd, WM_PROBE, 0, 0);
    with_number("answer ", (unsigned long long)lr);
    verdict("send_message_returns_answer", lr == 0x1234, detail);

    /* a posted message comes out of GetMessage and DispatchMessage runs the procedure */
    PostMessageA(hwnd, WM_PROBE_POSTED, 9, 10);
    got = GetMessageA(&msg, NULL, 0, 0);
    verdict("get_message_posted", got > 0 && msg.hwnd == hwnd && msg.message == WM_PROBE_POSTED && msg.wParam == 9 &&
                                     msg.lParam == 10, NULL);
    TranslateMessage(&msg);
    lr = DispatchMessageA(&msg);
    verdict("dispatch_runs_procedure", posted_calls == 1 && posted_wparam == 9 && lr == 0x55, NULL);

    /* PeekMessage: PM_NOREMOVE leaves it, PM_REMOVE takes it */
    PostMessageA(hwnd, WM_PROBE_POSTED, 11, 0);
    got = PeekMessageA(&msg, NULL, 0, 0, PM_NOREMOVE);
    verdict("peek_no_remove", got && msg.message == WM_PROBE_POSTED && msg.wParam == 11, NULL);
    got = PeekMessageA(&msg, NULL, 0, 0, PM_REMOVE);
    verdict("peek_remove", got && msg.message == WM_PROBE_POSTED && !PeekMessageA(&msg, NULL, 0, 0, PM_REMOVE), NULL);
    DispatchMessageA(&msg);
    verdict("peek_dispatch", posted_calls == 2 && posted_wparam == 11, NULL);

    /* a thread message */
    PostThreadMessageA(GetCurrentThreadId(), WM_APP + 3, 5, 6);
    got = GetMessageA(&msg, NULL, 0, 0);
    verdict("thread_message", got > 0 && msg.hwnd == NULL && msg.message == WM_APP + 3 && msg.wParam == 5, NULL);

    /* SetTimer with a procedure and with a window */
    id = SetTimer(NULL, 0, 50, timer_proc);
    for (i = 0; i < 5 && timer_proc_calls == 0 && GetMessageA(&msg, NULL, 0, 0) > 0; i++)
        DispatchMessageA(&msg);
    KillTimer(NULL, id);
    verdict("set_timer_procedure", timer_proc_calls == 1, NULL);
    SetTimer(hwnd, 42, 50, NULL);
    for (i = 0; i < 5 && wnd_timer_calls == 0 && GetMessageA(&msg, NULL, 0, 0) > 0; i++)
        DispatchMessageA(&msg);
    KillTimer(hwnd, 42);
    verdict("set_timer_window", wnd_timer_calls == 1 && msg.message == WM_TIMER && msg.hwnd == hwnd, NULL);

    /* WM_QUIT ends the loop */
    PostQuitMessage(3);
    got = GetMessageA(&msg, NULL, 0, 0);
    verdict("quit_ends_get_message", got == 0 && msg.message == WM_QUIT && msg.wParam == 3, NULL);
    DestroyWindow(hwnd);
}

static void hook_checks(void)
{
    HHOOK keyboard, mouse, getmsg;
    MSG msg;
    keyboard = SetWindowsHookExA(WH_KEYBOARD_LL, hook_proc, GetModuleHandleA(NULL), 0);
    mouse = SetWindowsHookExA(WH_MOUSE_LL, hook_proc, GetModuleHandleA(NULL), 0);
    getmsg = SetWindowsHookExA(WH_GETMESSAGE, hook_proc, NULL, GetCurrentThreadId());
    verdict("hooks_set", keyboard && mouse && getmsg && keyboard != mouse && mouse != getmsg, NULL);
    verdict("call_next_hook", CallNextHookEx(keyboard, 0, 0, 0) == 0, NULL);
    /* no input arrives: nothing calls the hooks, the queue is empty */
    verdict("no_invented_input", !PeekMessageA(&msg, NULL, 0, 0, PM_REMOVE) && hook_calls == 0, NULL);
    verdict("unhook", UnhookWindowsHookEx(keyboard) && UnhookWindowsHookEx(mouse) && UnhookWindowsHookEx(getmsg) &&
                          !UnhookWindowsHookEx(keyboard), NULL);
}

void __stdcall Waits2Entry(void)
{
    if (!marker_set())
        ExitProcess(2);
    wait_checks();
    timer_checks();
    window_checks();
    hook_checks();
    ExitProcess(0);
}
