/*
 * waiter.c - generality suite: a payload prepared on other threads, or run as one,
 * waited for, then run (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * 1. A worker thread decodes the first half of the payload (XOR 0x3d, in this program's data)
 *    into an executable allocation and returns 0x600d; a second worker decodes the second half
 *    and ends with ExitThread(0x600e). First a third thread sets a flag and returns 0x600f; the
 *    main thread polls it with GetExitCodeThread until it is no longer STILL_ACTIVE. The main
 *    thread waits for the two workers (WaitForMultipleObjects, wait all),
 *    checks their exit codes (GetExitCodeThread) and runs the payload, which writes
 *    C:\Users\Public\lineage_wait_threads.txt.
 * 2. The payload is decoded again and started as a thread of its own (CreateThread at the
 *    decoded bytes); the main thread waits for it (WaitForSingleObject) and checks that the file
 *    it writes, C:\Users\Public\lineage_wait_thread.txt, exists.
 * A wait that returns before the work is done, or an exit code still STILL_ACTIVE (259), ends
 * the program with a distinct code instead of running garbage.
 * Exit codes: 0 ok, 1 no marker, 2 memory, 3 thread, 4 wait, 5 thread exit code, 6 no file.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 0x3d */

#define KEY 0x3d

struct half {
    unsigned char *dst;
    DWORD from, to;
    DWORD result;
};

static struct sc_ctx g_ctx;
static volatile LONG g_ready;

static void finish(struct half *h)
{
    if (h->result == 0x600e)
        ExitThread(h->result); /* the second worker ends itself, from below its start routine */
}

static DWORD WINAPI decode_half(LPVOID param)
{
    struct half *h = (struct half *)param;
    DWORD i;
    Sleep(50); /* the main thread reaches its wait first, as on a real machine */
    for (i = h->from; i < h->to; i++)
        h->dst[i] = payload_enc[i] ^ KEY;
    finish(h);
    return h->result;
}

static DWORD WINAPI get_ready(LPVOID param)
{
    (void)param;
    Sleep(20);
    InterlockedExchange(&g_ready, 1);
    return 0x600f;
}

static unsigned char *rwx(DWORD size)
{
    unsigned char *mem = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(2);
    return mem;
}

static void run_payload(unsigned char *mem, const char *path, const char *text)
{
    fill_ctx(&g_ctx, path, text);
    ((void (*)(struct sc_ctx *))(void *)mem)(&g_ctx);
}

void Entry(void)
{
    static struct half halves[2];
    HANDLE threads[2], ready;
    DWORD code, i;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);

    /* 1. a thread polled for (GetExitCodeThread until it is no longer STILL_ACTIVE), then two
     *    worker threads waited for together */
    ready = CreateThread(0, 0, get_ready, 0, 0, 0);
    if (!ready)
        ExitProcess(3);
    while (GetExitCodeThread(ready, &code) && code == STILL_ACTIVE)
        Sleep(10);
    if (code != 0x600f || !g_ready)
        ExitProcess(5);
    mem = rwx(sizeof(payload_enc));
    for (i = 0; i < 2; i++) {
        halves[i].dst = mem;
        halves[i].from = i ? sizeof(payload_enc) / 2 : 0;
        halves[i].to = i ? sizeof(payload_enc) : sizeof(payload_enc) / 2;
        halves[i].result = 0x600d + i;
        threads[i] = CreateThread(0, 0, decode_half, &halves[i], 0, 0);
        if (!threads[i])
            ExitProcess(3);
    }
    if (WaitForMultipleObjects(2, threads, TRUE, INFINITE) != WAIT_OBJECT_0)
        ExitProcess(4);
    for (i = 0; i < 2; i++)
        if (!GetExitCodeThread(threads[i], &code) || code != 0x600d + i)
            ExitProcess(5);
    run_payload(mem, "C:\\Users\\Public\\lineage_wait_threads.txt", "decoded by worker threads\n");

    /* 2. the payload run as a thread of its own, waited for; the file it writes checked */
    mem = rwx(sizeof(payload_enc));
    for (i = 0; i < sizeof(payload_enc); i++)
        mem[i] = payload_enc[i] ^ KEY;
    fill_ctx(&g_ctx, "C:\\Users\\Public\\lineage_wait_thread.txt", "run as a thread, waited for\n");
    threads[0] = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &g_ctx, 0, 0);
    if (!threads[0])
        ExitProcess(3);
    if (WaitForSingleObject(threads[0], INFINITE) != WAIT_OBJECT_0)
        ExitProcess(4);
    if (GetFileAttributesA("C:\\Users\\Public\\lineage_wait_thread.txt") == INVALID_FILE_ATTRIBUTES)
        ExitProcess(6);
    ExitProcess(0);
}
