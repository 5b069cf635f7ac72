/*
 * loader.c - probe: shellcode run by the thread pool's three callback kinds and by a fiber made
 * with the Ex calls (benign, emulator-only; see ../../lineage-common/common.h). Each copy is
 * XOR-decoded from this program's data into RW memory and made RX:
 *   s1 TrySubmitThreadpoolCallback(fn, ctx): fn(instance, ctx)                 -> lineage_tpsimple.txt
 *   s2 CreateThreadpoolWork(fn, ctx) + SubmitThreadpoolWork + WaitForThreadpoolWorkCallbacks:
 *      fn(instance, ctx, work)                                                 -> lineage_tpwork.txt
 *   s3 CreateThreadpoolTimer(fn, ctx) + SetThreadpoolTimer(-100 ms) + WaitForThreadpoolTimerCallbacks
 *      after a Sleep: fn(instance, ctx, timer)                                 -> lineage_tptimer.txt
 *   s4 ConvertThreadToFiberEx + CreateFiberEx(fn, ctx) + SwitchToFiber: fn(ctx) -> lineage_fiberex.txt
 *      (last: on Windows the thread ends when a fiber's function returns)
 * Exit codes: 0 ok, 1 no marker, 3 memory, 4 pool, 5 fiber.
 */
#include "common.h"
#include "blobs.h" /* cb2_ctx2[], cb3_ctx2[], payload_enc[]: XOR 0x2f */

static void *decode(const unsigned char *enc, DWORD size)
{
    DWORD i, old;
    unsigned char *code = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < size; i++)
        code[i] = enc[i] ^ 0x2f;
    if (!VirtualProtect(code, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    return code;
}

void Entry(void)
{
    static struct sc_ctx c1, c2, c3, c4;
    PTP_WORK work;
    PTP_TIMER timer;
    FILETIME due;
    void *fiber;

    if (!marker_present())
        ExitProcess(1);

    fill_ctx(&c1, "C:\\Users\\Public\\lineage_tpsimple.txt", "ran as a thread-pool simple callback\n");
    if (!TrySubmitThreadpoolCallback((PTP_SIMPLE_CALLBACK)decode(cb2_ctx2, sizeof(cb2_ctx2)), &c1, 0))
        ExitProcess(4);

    fill_ctx(&c2, "C:\\Users\\Public\\lineage_tpwork.txt", "ran as a thread-pool work callback\n");
    work = CreateThreadpoolWork((PTP_WORK_CALLBACK)decode(cb3_ctx2, sizeof(cb3_ctx2)), &c2, 0);
    if (!work)
        ExitProcess(4);
    SubmitThreadpoolWork(work);
    WaitForThreadpoolWorkCallbacks(work, FALSE);
    CloseThreadpoolWork(work);

    fill_ctx(&c3, "C:\\Users\\Public\\lineage_tptimer.txt", "ran as a thread-pool timer callback\n");
    timer = CreateThreadpoolTimer((PTP_TIMER_CALLBACK)decode(cb3_ctx2, sizeof(cb3_ctx2)), &c3, 0);
    if (!timer)
        ExitProcess(4);
    due.dwLowDateTime = (DWORD)-1000000; /* -100 ms, relative */
    due.dwHighDateTime = 0xFFFFFFFF;
    SetThreadpoolTimer(timer, &due, 0, 0);
    Sleep(200);
    WaitForThreadpoolTimerCallbacks(timer, FALSE);
    CloseThreadpoolTimer(timer);

    fill_ctx(&c4, "C:\\Users\\Public\\lineage_fiberex.txt", "ran as a fiber made by CreateFiberEx\n");
    if (!ConvertThreadToFiberEx(0, 0))
        ExitProcess(5);
    fiber = CreateFiberEx(0, 0, 0, (LPFIBER_START_ROUTINE)decode(payload_enc, sizeof(payload_enc)), &c4);
    if (!fiber)
        ExitProcess(5);
    SwitchToFiber(fiber);
    ExitProcess(0);
}
