/*
 * loader.c - probe: shellcode started by the unhandled-exception filter (benign, emulator-only;
 * see ../../lineage-common/common.h). Works on x86 and x64.
 *
 * Decodes this program's payload (rolling XOR, byte i ^ (0x4d + 7i)) into new RW memory, makes
 * it PAGE_EXECUTE_READ, installs a top-level filter with SetUnhandledExceptionFilter and
 * divides by zero. The filter points the faulting thread at the payload with the context block
 * as its argument and a return into finish(), and returns EXCEPTION_CONTINUE_EXECUTION.
 * The stage writes C:\Users\Public\lineage_uef.txt.
 * Exit codes: 0 ok, 1 no marker, 3 memory, 5 fault not dispatched, 6 filter ran twice.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload, rolling XOR 0x4d + 7i */

static struct sc_ctx g_ctx;
static unsigned char *g_code;
static volatile LONG g_faults;
static volatile int g_zero;

static void finish(void)
{
    ExitProcess(g_faults == 1 ? 0 : 6);
}

static LONG WINAPI filter(EXCEPTION_POINTERS *info)
{
    CONTEXT *c = info->ContextRecord;
    ULONG_PTR sp;
    if (info->ExceptionRecord->ExceptionCode != EXCEPTION_INT_DIVIDE_BY_ZERO || g_faults++)
        return EXCEPTION_CONTINUE_SEARCH;
#if defined(__x86_64__)
    sp = ((c->Rsp - 0x200) & ~(ULONG_PTR)0xF) - 8;
    *(ULONG_PTR *)sp = (ULONG_PTR)&finish;
    c->Rsp = sp;
    c->Rcx = (ULONG_PTR)&g_ctx;
    c->Rip = (ULONG_PTR)g_code;
#else
    sp = ((c->Esp - 0x200) & ~(ULONG_PTR)0xF) - 8;
    ((ULONG_PTR *)sp)[0] = (ULONG_PTR)&finish;
    ((ULONG_PTR *)sp)[1] = (ULONG_PTR)&g_ctx;
    c->Esp = sp;
    c->Eip = (ULONG_PTR)g_code;
#endif
    return EXCEPTION_CONTINUE_EXECUTION;
}

void Entry(void)
{
    DWORD i, old;
    if (!marker_present())
        ExitProcess(1);
    g_code = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!g_code)
        ExitProcess(3);
    for (i = 0; i < sizeof(payload_enc); i++)
        g_code[i] = payload_enc[i] ^ (unsigned char)(0x4d + 7 * i);
    if (!VirtualProtect(g_code, sizeof(payload_enc), PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    fill_ctx(&g_ctx, "C:\\Users\\Public\\lineage_uef.txt", "ran from the unhandled-exception filter\n");
    SetUnhandledExceptionFilter(filter);
    g_zero = 100 / g_zero;
    ExitProcess(5);
}
