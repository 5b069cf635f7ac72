/*
 * loader.c - probe: shellcode run by a message loop (benign, emulator-only; see
 * ../../lineage-common/common.h). Each copy is XOR-decoded from this program's data into RW
 * memory and made RX, then set as the procedure of a window (subclassing: SetWindowLongPtrA
 * GWLP_WNDPROC; x86: SetWindowLongA) of a class whose procedure is DefWindowProcA, and reached
 * only through the thread's message queue:
 *   s1 PostMessageA(window, WM_USER, 0, ctx); GetMessageA -> TranslateMessage ->
 *      DispatchMessageA calls the procedure (its answer, TRUE, is DispatchMessage's)
 *                                                                        -> lineage_posted.txt
 *   s2 SetTimerA(window, ctx, 50 ms, NULL): a window timer without a TIMERPROC whose id is the
 *      context block; GetMessageA returns its WM_TIMER (wParam the id) and DispatchMessageA
 *      calls the window's procedure                                        -> lineage_wmtimer.txt
 * The loop ends at the WM_QUIT PostQuitMessage left once both ran.
 * Exit codes: 0 ok, 1 no marker, 3 memory, 4 class, 5 window, 6 a wrong answer, 7 loop.
 */
#include "common.h"
#include "blobs.h" /* cb4_ctx4[] (the context in lParam), cb4_ctx3[] (in wParam): XOR 0x5e */

static void *decode(const unsigned char *enc, DWORD size)
{
    DWORD i, old;
    unsigned char *code = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < size; i++)
        code[i] = enc[i] ^ 0x5e;
    if (!VirtualProtect(code, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    return code;
}

static HWND window_with(HINSTANCE self, void *procedure)
{
    HWND window = CreateWindowExA(0, "SyncQueueWnd", "", 0, 0, 0, 0, 0, HWND_MESSAGE, 0, self, 0);
    if (!window)
        ExitProcess(5);
#ifdef _WIN64
    SetWindowLongPtrA(window, GWLP_WNDPROC, (LONG_PTR)procedure);
#else
    SetWindowLongA(window, GWL_WNDPROC, (LONG)procedure);
#endif
    return window;
}

void Entry(void)
{
    static struct sc_ctx c1, c2;
    WNDCLASSA wc = {0};
    HINSTANCE self = GetModuleHandleA(0);
    HWND posted, timed;
    MSG msg;
    int rounds = 0, done = 0;

    if (!marker_present())
        ExitProcess(1);
    wc.lpfnWndProc = DefWindowProcA;
    wc.hInstance = self;
    wc.lpszClassName = "SyncQueueWnd";
    if (!RegisterClassA(&wc))
        ExitProcess(4);

    fill_ctx(&c1, "C:\\Users\\Public\\lineage_posted.txt", "ran as a window procedure a posted message reached\n");
    posted = window_with(self, decode(cb4_ctx4, sizeof(cb4_ctx4)));
    fill_ctx(&c2, "C:\\Users\\Public\\lineage_wmtimer.txt", "ran as a window procedure a WM_TIMER reached\n");
    timed = window_with(self, decode(cb4_ctx3, sizeof(cb4_ctx3)));

    if (!PostMessageA(posted, WM_USER, 0, (LPARAM)&c1))
        ExitProcess(6);
    if (!SetTimer(timed, (UINT_PTR)&c2, 50, NULL))
        ExitProcess(6);
    while (GetMessageA(&msg, 0, 0, 0) > 0) {
        if (++rounds > 8)
            ExitProcess(7);
        TranslateMessage(&msg);
        if (DispatchMessageA(&msg) != TRUE)
            ExitProcess(6);
        if (msg.message == WM_TIMER)
            KillTimer(timed, msg.wParam);
        if (++done == 2)
            PostQuitMessage(0);
    }
    ExitProcess(msg.message == WM_QUIT && done == 2 ? 0 : 7);
}
