/*
 * loader.c - probe: shellcode run as a window procedure (benign, emulator-only; see
 * ../../lineage-common/common.h). Each copy is XOR-decoded from this program's data into RW
 * memory and made RX:
 *   s1 the procedure of a window class (RegisterClassExA, lpfnWndProc = fn), called while
 *      CreateWindowExA creates a window of it: WM_NCCREATE then WM_CREATE, the context block the
 *      CREATESTRUCT's lpCreateParams (CreateWindowExA's last argument)     -> lineage_wndclass.txt
 *   s2 a window of a class whose procedure is DefWindowProcW (RegisterClassW), subclassed with
 *      SetWindowLongPtrA(GWLP_WNDPROC, fn) (x86: SetWindowLongA), then SendMessageA(WM_USER, 0,
 *      ctx)                                                               -> lineage_subclass.txt
 * Exit codes: 0 ok, 1 no marker, 3 memory, 4 class, 5 window.
 */
#include "common.h"
#include "blobs.h" /* cb4_cs4[] (the context through CREATESTRUCT), cb4_ctx4[]: XOR 0x5e */

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

void Entry(void)
{
    static struct sc_ctx c1, c2;
    WNDCLASSEXA wcx = {0};
    WNDCLASSW wc = {0};
    HINSTANCE self = GetModuleHandleA(0);
    HWND window;

    if (!marker_present())
        ExitProcess(1);

    fill_ctx(&c1, "C:\\Users\\Public\\lineage_wndclass.txt", "ran as a window class's procedure\n");
    wcx.cbSize = sizeof(wcx);
    wcx.lpfnWndProc = (WNDPROC)decode(cb4_cs4, sizeof(cb4_cs4));
    wcx.hInstance = self;
    wcx.lpszClassName = "SyncNotifyWnd";
    if (!RegisterClassExA(&wcx))
        ExitProcess(4);
    if (!CreateWindowExA(0, "SyncNotifyWnd", "", 0, 0, 0, 0, 0, HWND_MESSAGE, 0, self, &c1))
        ExitProcess(5);

    fill_ctx(&c2, "C:\\Users\\Public\\lineage_subclass.txt", "ran as a subclassed window's procedure\n");
    wc.lpfnWndProc = DefWindowProcW;
    wc.hInstance = self;
    wc.lpszClassName = L"SyncTrayWnd";
    if (!RegisterClassW(&wc))
        ExitProcess(4);
    window = CreateWindowExW(0, L"SyncTrayWnd", L"", 0, 0, 0, 0, 0, HWND_MESSAGE, 0, self, 0);
    if (!window)
        ExitProcess(5);
#ifdef _WIN64
    SetWindowLongPtrA(window, GWLP_WNDPROC, (LONG_PTR)decode(cb4_ctx4, sizeof(cb4_ctx4)));
#else
    SetWindowLongA(window, GWL_WNDPROC, (LONG)decode(cb4_ctx4, sizeof(cb4_ctx4)));
#endif
    SendMessageA(window, WM_USER, 0, (LPARAM)&c2);
    ExitProcess(0);
}
