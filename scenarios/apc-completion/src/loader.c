/*
 * loader.c - probe: shellcode run as an APC completion routine or a registered wait's callback
 * (benign, emulator-only; see ../../lineage-common/common.h). Each copy is XOR-decoded from this
 * program's data into RW memory, made RX and handed to one API:
 *   s1 SetWaitableTimer(timer, -1 s, 0, fn, ctx, FALSE) + SleepEx(INFINITE, TRUE):
 *      fn(ctx, low, high) runs as an APC when the thread is alertable   -> lineage_wtimer.txt
 *   s2 ReadFileEx(own file, buf, n, &ov, fn) + SleepEx(INFINITE, TRUE) (ov.hEvent = ctx):
 *      fn(error, bytes, &ov) runs as an APC                             -> lineage_readex.txt
 *   s3 RegisterWaitForSingleObject(&w, event, fn, ctx, INFINITE, WT_EXECUTEONLYONCE) + SetEvent:
 *      fn(ctx, FALSE) on a pool thread                                  -> lineage_regwait.txt
 * Exit codes: 0 ok, 1 no marker, 3 memory, 4 timer, 5 file, 6 wait, 7 a routine did not run.
 */
#include "common.h"
#include "blobs.h" /* cb3_ctx1[], cb3_ov3[], cb2_ctx1[]: XOR 0x4b */

static void *decode(const unsigned char *enc, DWORD size)
{
    DWORD i, old;
    unsigned char *code = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < size; i++)
        code[i] = enc[i] ^ 0x4b;
    if (!VirtualProtect(code, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    return code;
}

void Entry(void)
{
    static struct sc_ctx c1, c2, c3;
    static OVERLAPPED ov;
    static char data[64], self[MAX_PATH];
    LARGE_INTEGER due;
    HANDLE timer, file, event, wait = 0;
    void *fn;

    if (!marker_present())
        ExitProcess(1);

    fill_ctx(&c1, "C:\\Users\\Public\\lineage_wtimer.txt", "ran as a waitable timer's APC\n");
    fn = decode(cb3_ctx1, sizeof(cb3_ctx1));
    timer = CreateWaitableTimerW(0, TRUE, 0);
    due.QuadPart = -10000000LL;
    if (!timer || !SetWaitableTimer(timer, &due, 0, (PTIMERAPCROUTINE)fn, &c1, FALSE))
        ExitProcess(4);
    if (SleepEx(INFINITE, TRUE) != WAIT_IO_COMPLETION)
        ExitProcess(7);

    fill_ctx(&c2, "C:\\Users\\Public\\lineage_readex.txt", "ran as a ReadFileEx completion routine\n");
    fn = decode(cb3_ov3, sizeof(cb3_ov3));
    GetModuleFileNameA(0, self, sizeof(self));
    file = CreateFileA(self, GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                       FILE_FLAG_OVERLAPPED, 0);
    if (file == INVALID_HANDLE_VALUE)
        ExitProcess(5);
    ov.hEvent = (HANDLE)&c2;
    if (!ReadFileEx(file, data, sizeof(data), &ov, (LPOVERLAPPED_COMPLETION_ROUTINE)fn))
        ExitProcess(5);
    if (SleepEx(INFINITE, TRUE) != WAIT_IO_COMPLETION)
        ExitProcess(7);
    CloseHandle(file);

    fill_ctx(&c3, "C:\\Users\\Public\\lineage_regwait.txt", "ran as a registered wait's callback\n");
    fn = decode(cb2_ctx1, sizeof(cb2_ctx1));
    event = CreateEventA(0, FALSE, FALSE, 0);
    if (!event || !RegisterWaitForSingleObject(&wait, event, (WAITORTIMERCALLBACK)fn, &c3, INFINITE,
                                               WT_EXECUTEONLYONCE))
        ExitProcess(6);
    SetEvent(event);
    Sleep(100);
    UnregisterWaitEx(wait, INVALID_HANDLE_VALUE);
    ExitProcess(0);
}
