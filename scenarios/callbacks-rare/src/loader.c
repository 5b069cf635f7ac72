/*
 * loader.c - probe: shellcode run as the callback of less common APIs (benign, emulator-only;
 * see ../../lineage-common/common.h). Each copy is XOR-decoded from this program's data into
 * RW memory, made RX and handed to one API as its callback:
 *   s1 InitOnceExecuteOnce(once, fn, ctx, 0): fn(once, ctx, &context)          -> lineage_initonce.txt
 *   s2 EnumResourceTypesA(own module, fn, ctx): fn(module, type, ctx)         -> lineage_restypes.txt
 *   s3 EnumPropsExA(desktop window, fn, ctx) after SetPropA: fn(window, name, data, ctx) -> lineage_propenum.txt
 * Exit codes: 0 ok, 1 no marker, 3 memory, 4 callback API failed.
 */
#include "common.h"
#include "blobs.h" /* cb3_ctx2[] (3 args, ctx 2nd), cb3_ctx3[] (3 args, ctx 3rd), cb4_ctx4[]: XOR 0x39 */

static void *decode(const unsigned char *enc, DWORD size)
{
    DWORD i, old;
    unsigned char *code = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < size; i++)
        code[i] = enc[i] ^ 0x39;
    if (!VirtualProtect(code, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    return code;
}

void Entry(void)
{
    static struct sc_ctx c1, c2, c3;
    static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
    void *fn;

    if (!marker_present())
        ExitProcess(1);
    fill_ctx(&c1, "C:\\Users\\Public\\lineage_initonce.txt", "ran as an InitOnceExecuteOnce callback\n");
    fn = decode(cb3_ctx2, sizeof(cb3_ctx2));
    if (!InitOnceExecuteOnce(&once, (PINIT_ONCE_FN)fn, &c1, 0))
        ExitProcess(4);
    fill_ctx(&c2, "C:\\Users\\Public\\lineage_restypes.txt", "ran as an EnumResourceTypesA callback\n");
    fn = decode(cb3_ctx3, sizeof(cb3_ctx3));
    EnumResourceTypesA(GetModuleHandleA(0), (ENUMRESTYPEPROCA)fn, (LONG_PTR)&c2);
    fill_ctx(&c3, "C:\\Users\\Public\\lineage_propenum.txt", "ran as an EnumPropsExA callback\n");
    fn = decode(cb4_ctx4, sizeof(cb4_ctx4));
    SetPropA(GetDesktopWindow(), "ChainreplayProbe", (HANDLE)1);
    EnumPropsExA(GetDesktopWindow(), (PROPENUMPROCEXA)fn, (LPARAM)&c3);
    ExitProcess(0);
}
