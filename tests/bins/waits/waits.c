/* waits.c - threads run when the guest waits for them (tests/test_waits.py): every wait API on a
 * thread that has not run yet, a zero-timeout poll, GetExitCodeThread before and after, ExitThread,
 * RtlExitUserThread and _endthreadex ending only the waited thread, a wait-any, a wait for a
 * thread that waits for another, TLS slots and the thread id of the waited thread, TerminateThread
 * of one that never ran, a loop of sleeps (or yields) until a thread sets a flag, a sleep forever,
 * a finite wait for a thread that never ends, an APC run by an alertable wait.
 * One OutputDebugStringA verdict per check ("check NAME: pass").
 * Inert without CHAINREPLAY_SANDBOX. */
#include "../fidelity/fidelity.h"

void __cdecl _endthreadex(unsigned code); /* msvcrt */

typedef LONG (NTAPI *NtWaitForSingleObject_t)(HANDLE, BOOLEAN, PLARGE_INTEGER);
typedef LONG (NTAPI *NtWaitForMultipleObjects_t)(ULONG, HANDLE *, int, BOOLEAN, PLARGE_INTEGER);
typedef VOID (NTAPI *RtlExitUserThread_t)(LONG);

static volatile LONG g_done[32];
static volatile DWORD g_tid[32];
static DWORD g_slot;
static HANDLE g_inner;
static RtlExitUserThread_t g_rtl_exit;

static void check(const char *name, int ok) { verdict(name, ok, ""); }

static DWORD WINAPI mark(LPVOID param)
{
    DWORD i = (DWORD)(ULONG_PTR)param;
    g_tid[i] = GetCurrentThreadId();
    InterlockedExchange(&g_done[i], 1);
    return 0x1000 + i;
}

static void __attribute__((noinline)) deep_exit(DWORD code) { ExitThread(code); }

static DWORD WINAPI exits(LPVOID param)
{
    DWORD i = (DWORD)(ULONG_PTR)param;
    InterlockedExchange(&g_done[i], 1);
    deep_exit(0x2000 + i);
    InterlockedExchange(&g_done[i], 2); /* never */
    return 0;
}

static DWORD WINAPI rtl_exits(LPVOID param)
{
    DWORD i = (DWORD)(ULONG_PTR)param;
    InterlockedExchange(&g_done[i], 1);
    g_rtl_exit(0x3000 + (LONG)i);
    InterlockedExchange(&g_done[i], 2); /* never */
    return 0;
}

static DWORD WINAPI crt_exits(LPVOID param)
{
    DWORD i = (DWORD)(ULONG_PTR)param;
    InterlockedExchange(&g_done[i], 1);
    _endthreadex(0x6000 + i);
    InterlockedExchange(&g_done[i], 2); /* never */
    return 0;
}

static DWORD WINAPI beacon(LPVOID param)
{
    DWORD i = (DWORD)(ULONG_PTR)param;
    for (;;) {
        InterlockedIncrement(&g_done[i]);
        Sleep(1000);
    }
    return 0;
}

static VOID CALLBACK apc(ULONG_PTR param)
{
    InterlockedIncrement(&g_done[param]);
}

static DWORD WINAPI tls_user(LPVOID param)
{
    DWORD i = (DWORD)(ULONG_PTR)param;
    /* a new thread's TLS slot starts empty, whatever the creating thread stored */
    InterlockedExchange(&g_done[i], TlsGetValue(g_slot) == 0 ? 1 : 3);
    TlsSetValue(g_slot, (LPVOID)0x77);
    return 0;
}

static DWORD WINAPI waits_inner(LPVOID param)
{
    DWORD i = (DWORD)(ULONG_PTR)param;
    DWORD code = 0;
    WaitForSingleObject(g_inner, INFINITE);
    GetExitCodeThread(g_inner, &code);
    InterlockedExchange(&g_done[i], g_done[9] == 1 && code == 0x1009 ? 1 : 3);
    return 0x4000;
}

static HANDLE start(LPTHREAD_START_ROUTINE fn, DWORD i)
{
    return CreateThread(0, 0, fn, (LPVOID)(ULONG_PTR)i, 0, 0);
}

#ifdef _WIN64
void __stdcall WaitsEntry(void)
#else
void __stdcall WaitsEntry32(void)
#endif
{
    HANDLE h, pair[2], self_thread;
    DWORD code = 0, rv, main_tid, n;
    LARGE_INTEGER zero;
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    NtWaitForSingleObject_t nt_wait = (NtWaitForSingleObject_t)(void *)GetProcAddress(ntdll, "NtWaitForSingleObject");
    NtWaitForMultipleObjects_t nt_wait_many =
        (NtWaitForMultipleObjects_t)(void *)GetProcAddress(ntdll, "NtWaitForMultipleObjects");
    g_rtl_exit = (RtlExitUserThread_t)(void *)GetProcAddress(ntdll, "RtlExitUserThread");
    if (!marker_set())
        ExitProcess(255);
    main_tid = GetCurrentThreadId();

    /* WaitForSingleObject, then the exit code; the thread ran as itself */
    h = start(mark, 0);
    check("exit_code_still_active_before", GetExitCodeThread(h, &code) && code == STILL_ACTIVE && !g_done[0]);
    rv = WaitForSingleObject(h, INFINITE);
    check("wait_single_runs_thread", rv == WAIT_OBJECT_0 && g_done[0] == 1);
    check("exit_code_after", GetExitCodeThread(h, &code) && code == 0x1000);
    check("thread_id_is_its_own", g_tid[0] != 0 && g_tid[0] != main_tid && GetCurrentThreadId() == main_tid);
    check("wait_again_returns", WaitForSingleObject(h, INFINITE) == WAIT_OBJECT_0);

    /* a zero-timeout poll: first WAIT_TIMEOUT, then the thread runs */
    h = start(mark, 1);
    rv = WaitForSingleObject(h, 0);
    check("poll_first_times_out", rv == WAIT_TIMEOUT && !g_done[1]);
    while (WaitForSingleObject(h, 0) == WAIT_TIMEOUT)
        Sleep(1);
    check("poll_then_runs", g_done[1] == 1 && GetExitCodeThread(h, &code) && code == 0x1001);

    /* ExitThread from below the start routine ends that thread only */
    h = start(exits, 2);
    rv = WaitForSingleObjectEx(h, INFINITE, FALSE);
    check("exit_thread_ends_thread_only", rv == WAIT_OBJECT_0 && g_done[2] == 1);
    check("exit_thread_code", GetExitCodeThread(h, &code) && code == 0x2002);

    /* RtlExitUserThread, waited for with NtWaitForSingleObject */
    h = start(rtl_exits, 3);
    rv = (DWORD)nt_wait(h, FALSE, 0);
    check("nt_wait_runs_thread", rv == 0 && g_done[3] == 1);
    check("rtl_exit_code", GetExitCodeThread(h, &code) && code == 0x3003);

    /* the C runtime's _endthreadex ends the thread only */
    h = start(crt_exits, 20);
    rv = WaitForSingleObject(h, INFINITE);
    check("crt_endthreadex_ends_thread_only", rv == WAIT_OBJECT_0 && g_done[20] == 1);
    check("crt_endthreadex_code", GetExitCodeThread(h, &code) && code == 0x6014);

    /* wait-all: both run, in order */
    pair[0] = start(mark, 4);
    pair[1] = start(exits, 5);
    rv = WaitForMultipleObjects(2, pair, TRUE, INFINITE);
    check("wait_all_runs_both", rv == WAIT_OBJECT_0 && g_done[4] == 1 && g_done[5] == 1);
    check("wait_all_codes", GetExitCodeThread(pair[0], &code) && code == 0x1004 &&
                                GetExitCodeThread(pair[1], &code) && code == 0x2005);

    /* wait-any: the first listed thread runs, the other waits its turn */
    pair[0] = start(mark, 6);
    pair[1] = start(mark, 7);
    rv = WaitForMultipleObjects(2, pair, FALSE, INFINITE);
    check("wait_any_runs_first", rv == WAIT_OBJECT_0 && g_done[6] == 1 && !g_done[7]);
    rv = WaitForSingleObject(pair[1], INFINITE);
    check("wait_any_second_later", rv == WAIT_OBJECT_0 && g_done[7] == 1);

    /* NtWaitForMultipleObjects, WaitAll (0), with a zero timeout after a first poll */
    pair[0] = start(mark, 8);
    pair[1] = start(mark, 10);
    zero.QuadPart = 0;
    rv = (DWORD)nt_wait_many(2, pair, 0, FALSE, &zero);
    check("nt_wait_many_poll_times_out", rv == STATUS_TIMEOUT && !g_done[8]);
    rv = (DWORD)nt_wait_many(2, pair, 0, FALSE, 0);
    check("nt_wait_many_all", rv == 0 && g_done[8] == 1 && g_done[10] == 1);

    /* a waited thread that waits for another */
    g_inner = start(mark, 9);
    h = start(waits_inner, 11);
    rv = WaitForSingleObject(h, INFINITE);
    check("nested_waits", rv == WAIT_OBJECT_0 && g_done[11] == 1 && g_done[9] == 1);
    check("nested_exit_code", GetExitCodeThread(h, &code) && code == 0x4000);

    /* a TLS slot: the waited thread's own, the main thread's value kept */
    g_slot = TlsAlloc();
    TlsSetValue(g_slot, (LPVOID)0x55);
    h = start(tls_user, 12);
    rv = WaitForSingleObject(h, INFINITE);
    check("tls_slot_is_the_threads", rv == WAIT_OBJECT_0 && g_done[12] == 1);
    check("tls_slot_kept_for_main", TlsGetValue(g_slot) == (LPVOID)0x55);

    /* SignalObjectAndWait on a thread */
    h = start(mark, 13);
    rv = SignalObjectAndWait(CreateEventA(0, FALSE, FALSE, 0), h, INFINITE, FALSE);
    check("signal_and_wait_runs_thread", rv == WAIT_OBJECT_0 && g_done[13] == 1);

    /* TerminateThread of a thread that never ran: it never runs, its code is the one given */
    h = start(mark, 14);
    TerminateThread(h, 0x5e);
    check("terminated_code", GetExitCodeThread(h, &code) && code == 0x5e);
    WaitForSingleObject(h, INFINITE);
    check("terminated_never_runs", !g_done[14]);

    /* a finite wait for a thread that never ends: it times out, the thread still running */
    h = start(beacon, 22);
    rv = WaitForSingleObject(h, 5000);
    check("finite_wait_times_out", rv == WAIT_TIMEOUT && g_done[22] >= 4 && g_done[22] <= 6);
    check("timed_out_thread_still_active", GetExitCodeThread(h, &code) && code == STILL_ACTIVE);

    /* an APC queued to this thread runs at an alertable wait, not at another wait */
    QueueUserAPC(apc, GetCurrentThread(), 23);
    h = start(mark, 24);
    rv = WaitForSingleObject(h, INFINITE);
    check("apc_not_at_plain_wait", rv == WAIT_OBJECT_0 && g_done[24] == 1 && !g_done[23]);
    rv = WaitForSingleObjectEx(CreateEventA(0, TRUE, FALSE, 0), INFINITE, TRUE);
    check("apc_at_alertable_wait", rv == WAIT_IO_COMPLETION && g_done[23] == 1);

    /* a loop that sleeps until a thread sets a flag: the thread runs while it sleeps */
    start(mark, 15);
    for (n = 0; n < 50 && !g_done[15]; n++)
        Sleep(100);
    check("sleep_loop_runs_thread", g_done[15] == 1 && n == 2); /* at the loop's second sleep */
    start(mark, 16);
    for (n = 0; n < 50 && !g_done[16]; n++)
        SwitchToThread();
    check("yield_loop_runs_thread", g_done[16] == 1);
    /* a sleep forever lets the threads run */
    start(mark, 17);
    start(exits, 18);
    SleepEx(INFINITE, FALSE);
    check("sleep_forever_runs_threads", g_done[17] == 1 && g_done[18] == 1);
    /* one sleep is not a wait: the thread runs later */
    start(mark, 19);
    Sleep(10);
    check("one_sleep_is_not_a_wait", !g_done[19]);

    /* the current thread's pseudo handle is not a thread that has yet to run */
    self_thread = GetCurrentThread();
    check("own_thread_still_active", GetExitCodeThread(self_thread, &code) && code == STILL_ACTIVE);
    check("own_process_still_active", GetExitCodeProcess(GetCurrentProcess(), &code) && code == STILL_ACTIVE);
    start(crt_exits, 21); /* nobody waits: it runs after this run, and _endthreadex ends that run */
    ExitProcess(0);
}
