/*
 * loader.c - probe: shellcode run as a window timer's TIMERPROC through a message loop (benign,
 * emulator-only; see ../../lineage-common/common.h). x86 and x64.
 *
 * Decodes this program's payload (XOR 0x3e) into a new RWX page, writes the context block at
 * offset 0x800 of that page, and sets a thread timer (SetTimer with no window, the payload as
 * the TIMERPROC). A GetMessageA / DispatchMessageA loop then dispatches the WM_TIMER message,
 * which calls the procedure; after it, the loop kills the timer and exits. Built with PEEK_LOOP
 * (timer-peekmsg), the loop polls instead: PeekMessageA(PM_REMOVE), and Sleep(50) when no message
 * is there, as a loader that must not block does.
 * The stage writes C:\Users\Public\lineage_timer.txt.
 * Exit codes: 0 ok, 1 no marker, 2 memory, 3 timer, 4 no WM_TIMER.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 0x3e */

#define CTX_OFFSET 0x800

void Entry(void)
{
    unsigned char *page;
    UINT_PTR timer;
    MSG msg;
    DWORD i;
    int rounds;

    if (!marker_present())
        ExitProcess(1);
    if (sizeof(payload_enc) > CTX_OFFSET)
        ExitProcess(2);
    page = (unsigned char *)VirtualAlloc(0, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!page)
        ExitProcess(2);
    for (i = 0; i < sizeof(payload_enc); i++)
        page[i] = payload_enc[i] ^ 0x3e;
    fill_ctx((struct sc_ctx *)(page + CTX_OFFSET), "C:\\Users\\Public\\lineage_timer.txt",
             "ran as a TIMERPROC from a message loop\n");
    timer = SetTimer(0, 0, 250, (TIMERPROC)(void *)page);
    if (!timer)
        ExitProcess(3);
#ifdef PEEK_LOOP
    for (rounds = 0; rounds < 64; rounds++) {
        if (!PeekMessageA(&msg, 0, 0, 0, PM_REMOVE)) {
            Sleep(50);
            continue;
        }
#else
    for (rounds = 0; rounds < 8 && GetMessageA(&msg, 0, 0, 0) > 0; rounds++) {
#endif
        TranslateMessage(&msg);
        DispatchMessageA(&msg);
        if (msg.message == WM_TIMER) {
            KillTimer(0, timer);
            ExitProcess(0);
        }
    }
    ExitProcess(4);
}
