/*
 * loader.c - generality suite: five ways to start code without CreateThread (benign,
 * emulator-only; see ../../lineage-common/common.h).
 *
 * The payload is in this program's data, XORed with the one-byte key 0x6b. It is decoded into
 * five separate PAGE_EXECUTE_READWRITE allocations, and each copy is started differently:
 * QueueUserWorkItem, CreateTimerQueueTimer, ntdll!RtlCreateUserThread, ntdll!NtCreateThreadEx
 * (current process), and CreateFiber + SwitchToFiber. Each copy gets its own context block and
 * writes its own file C:\Users\Public\lineage_start_N.txt.
 * Exit codes: 0 ok, 1 no marker, 2 memory, 3 start refused.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 0x6b */

#define KEY 0x6b
#define WAYS 5

typedef LONG (NTAPI *RtlCreateUserThread_t)(HANDLE, PVOID, BOOLEAN, ULONG, SIZE_T, SIZE_T, PVOID, PVOID, PHANDLE, PVOID);
typedef LONG (NTAPI *NtCreateThreadEx_t)(PHANDLE, ACCESS_MASK, PVOID, HANDLE, PVOID, PVOID, ULONG, SIZE_T, SIZE_T, SIZE_T, PVOID);

static struct sc_ctx g_ctx[WAYS];

static unsigned char *decoded_copy(void)
{
    DWORD i;
    unsigned char *mem = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE,
                                                       PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(2);
    for (i = 0; i < sizeof(payload_enc); i++)
        mem[i] = payload_enc[i] ^ KEY;
    return mem;
}

void Entry(void)
{
    static const char *paths[WAYS] = {
        "C:\\Users\\Public\\lineage_start_1.txt", "C:\\Users\\Public\\lineage_start_2.txt",
        "C:\\Users\\Public\\lineage_start_3.txt", "C:\\Users\\Public\\lineage_start_4.txt",
        "C:\\Users\\Public\\lineage_start_5.txt",
    };
    HMODULE ntdll;
    RtlCreateUserThread_t rtl_create_user_thread;
    NtCreateThreadEx_t nt_create_thread_ex;
    HANDLE timer = 0, thread = 0;
    LPVOID fiber;
    int i;

    if (!marker_present())
        ExitProcess(1);
    for (i = 0; i < WAYS; i++)
        fill_ctx(&g_ctx[i], paths[i], "started without CreateThread\n");
    ntdll = GetModuleHandleA("ntdll.dll");
    rtl_create_user_thread = (RtlCreateUserThread_t)(void *)GetProcAddress(ntdll, "RtlCreateUserThread");
    nt_create_thread_ex = (NtCreateThreadEx_t)(void *)GetProcAddress(ntdll, "NtCreateThreadEx");
    if (!rtl_create_user_thread || !nt_create_thread_ex)
        ExitProcess(3);

    if (!QueueUserWorkItem((LPTHREAD_START_ROUTINE)(void *)decoded_copy(), &g_ctx[0], WT_EXECUTEDEFAULT))
        ExitProcess(3);
    if (!CreateTimerQueueTimer(&timer, 0, (WAITORTIMERCALLBACK)(void *)decoded_copy(), &g_ctx[1], 10, 0,
                               WT_EXECUTEONLYONCE))
        ExitProcess(3);
    if (rtl_create_user_thread(GetCurrentProcess(), 0, FALSE, 0, 0, 0, decoded_copy(), &g_ctx[2], &thread, 0) != 0)
        ExitProcess(3);
    if (nt_create_thread_ex(&thread, 0x1FFFFF, 0, GetCurrentProcess(), decoded_copy(), &g_ctx[3], 0, 0, 0, 0, 0) != 0)
        ExitProcess(3);
    if (!ConvertThreadToFiber(0))
        ExitProcess(3);
    fiber = CreateFiber(0, (LPFIBER_START_ROUTINE)(void *)decoded_copy(), &g_ctx[4]);
    if (!fiber)
        ExitProcess(3);
    SwitchToFiber(fiber);
    Sleep(100);
    ExitProcess(0);
}
