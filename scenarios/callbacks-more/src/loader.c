/*
 * loader.c - probe: shellcode run as the callback of APIs of the "callback execution" family
 * that the suite lacked (benign, emulator-only; see ../../lineage-common/common.h). Each copy is
 * XOR-decoded from this program's data into RW memory, made RX and handed to one API:
 *   s1 CryptEnumOIDInfo(0, 0, ctx, fn): fn(info, ctx)                  -> lineage_oidinfo.txt
 *   s2 GrayStringA(GetDC(0), 0, fn, ctx, 1, 0, 0, 0, 0): fn(hdc, ctx, 1) -> lineage_graystring.txt
 *   s3 LineDDA(0, 0, 1, 1, fn, ctx): fn(x, y, ctx)                    -> lineage_linedda.txt
 *   s4 CallWindowProcA(fn, 0, WM_NULL, 0, ctx): fn(hwnd, msg, wp, ctx)  -> lineage_wndproc.txt
 *   then EnumerateLoadedModules(64)(GetCurrentProcess(), fn, ctx) with a fifth copy: an API the
 *   emulator does not call back (a callback_not_called note; no file written).
 * Exit codes: 0 ok, 1 no marker, 3 memory.
 */
#include "common.h"
#include <wincrypt.h>
#include <dbghelp.h>
#include "blobs.h" /* cb2_ctx2[], cb3_ctx2[], cb3_ctx3[], cb4_ctx4[]: XOR 0x6d */

static void *decode(const unsigned char *enc, DWORD size)
{
    DWORD i, old;
    unsigned char *code = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < size; i++)
        code[i] = enc[i] ^ 0x6d;
    if (!VirtualProtect(code, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    return code;
}

void Entry(void)
{
    static struct sc_ctx c1, c2, c3, c4, c5;
    void *fn;

    if (!marker_present())
        ExitProcess(1);
    fill_ctx(&c1, "C:\\Users\\Public\\lineage_oidinfo.txt", "ran as a CryptEnumOIDInfo callback\n");
    fn = decode(cb2_ctx2, sizeof(cb2_ctx2));
    CryptEnumOIDInfo(0, 0, &c1, (PFN_CRYPT_ENUM_OID_INFO)fn);
    fill_ctx(&c2, "C:\\Users\\Public\\lineage_graystring.txt", "ran as a GrayStringA output function\n");
    fn = decode(cb3_ctx2, sizeof(cb3_ctx2));
    GrayStringA(GetDC(0), 0, (GRAYSTRINGPROC)fn, (LPARAM)&c2, 1, 0, 0, 0, 0);
    fill_ctx(&c3, "C:\\Users\\Public\\lineage_linedda.txt", "ran as a LineDDA callback\n");
    fn = decode(cb3_ctx3, sizeof(cb3_ctx3));
    LineDDA(0, 0, 1, 1, (LINEDDAPROC)fn, (LPARAM)&c3);
    fill_ctx(&c4, "C:\\Users\\Public\\lineage_wndproc.txt", "ran as a window procedure\n");
    fn = decode(cb4_ctx4, sizeof(cb4_ctx4));
    CallWindowProcA((WNDPROC)fn, 0, WM_NULL, 0, (LPARAM)&c4);
    fill_ctx(&c5, "C:\\Users\\Public\\lineage_loadedmods.txt", "ran as an EnumerateLoadedModules callback\n");
    fn = decode(cb4_ctx4, sizeof(cb4_ctx4));
#ifdef _WIN64
    EnumerateLoadedModules64(GetCurrentProcess(), (PENUMLOADED_MODULES_CALLBACK64)fn, &c5);
#else
    EnumerateLoadedModules(GetCurrentProcess(), (PENUMLOADED_MODULES_CALLBACK)fn, &c5);
#endif
    ExitProcess(0);
}
