/* edges.c - odd waits (tests/test_waits.py): a waited thread with 700 KiB of locals (it runs on
 * its waiter's stack), a chain of 40 threads each waiting for the next (deeper than
 * MAX_NESTED_THREADS: the rest run after), two threads waiting for each other, a wait for 64
 * threads, a wait with a count past 64 and an unreadable array, a NULL handle, the own thread's
 * pseudo handle. One OutputDebugStringA verdict per check. Inert without CHAINREPLAY_SANDBOX. */
#include "../fidelity/fidelity.h"
static volatile LONG done;
static __attribute__((noinline)) void fill(volatile char *b, int n) { for (int i = 0; i < n; i += 4096) b[i] = 1; }
static DWORD WINAPI worker(LPVOID p)
{
    volatile char buf[700 * 1024];
    (void)p;
    fill(buf, sizeof buf);
    done = buf[0] + buf[sizeof buf - 4096];
    return 5;
}
static DWORD WINAPI chain(LPVOID p)
{
    DWORD depth = (DWORD)(ULONG_PTR)p, code = 0;
    HANDLE h;
    if (depth == 0)
        return 100;
    h = CreateThread(0, 0, chain, (LPVOID)(ULONG_PTR)(depth - 1), 0, 0);
    WaitForSingleObject(h, INFINITE);
    GetExitCodeThread(h, &code);
    return code + 1;
}
static HANDLE ga, gb;
static DWORD WINAPI a_waits_b(LPVOID p) { (void)p; WaitForSingleObject(gb, INFINITE); return 1; }
static DWORD WINAPI b_waits_a(LPVOID p) { (void)p; WaitForSingleObject(ga, INFINITE); return 2; }
void __stdcall EdgesEntry(void)
{
    HANDLE h, many[64];
    DWORD code = 0, i;
    char d[16];
    if (!marker_set()) ExitProcess(255);
    h = CreateThread(0, 0, worker, 0, 0, 0);
    WaitForSingleObject(h, INFINITE);
    GetExitCodeThread(h, &code);
    verdict("big_stack_thread", done == 2 && code == 5, "");
    h = CreateThread(0, 0, chain, (LPVOID)40, 0, 0);
    WaitForSingleObject(h, INFINITE);
    GetExitCodeThread(h, &code);
    d[0] = '0' + (code / 100) % 10; d[1] = '0' + (code / 10) % 10; d[2] = '0' + code % 10; d[3] = 0;
    verdict("deep_chain", 1, d);
    gb = CreateThread(0, 0, b_waits_a, 0, CREATE_SUSPENDED, 0);
    ga = CreateThread(0, 0, a_waits_b, 0, 0, 0);
    ResumeThread(gb);
    WaitForSingleObject(ga, INFINITE);
    verdict("mutual_wait_returns", 1, "");
    for (i = 0; i < 64; i++) many[i] = CreateThread(0, 0, chain, (LPVOID)1, 0, 0);
    verdict("wait_64", WaitForMultipleObjects(64, many, TRUE, INFINITE) == 0, "");
    verdict("wait_bad_count", WaitForMultipleObjects(100000, (HANDLE *)1, TRUE, INFINITE) != 12345, "");
    verdict("wait_null_handle", WaitForSingleObject(0, INFINITE) != 12345, "");
    verdict("wait_self", WaitForSingleObject(GetCurrentThread(), 10) != 12345, "");
    ExitProcess(0);
}
