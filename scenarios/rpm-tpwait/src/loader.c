/*
 * loader.c - probe: payload copied with ReadProcessMemory from this process's own memory, run
 * as a thread-pool wait callback (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * Decodes this program's payload (XOR 0xa7) into a process-heap block, copies it into new RW
 * memory with ReadProcessMemory(GetCurrentProcess(), ...) (no memcpy, no RtlMoveMemory), makes
 * that PAGE_EXECUTE_READ and registers it as the callback of a thread-pool wait
 * (CreateThreadpoolWait + SetThreadpoolWait) on an event it then signals.
 * The stage writes C:\Users\Public\lineage_tpwait.txt.
 * Exit codes: 0 ok, 1 no marker, 2 heap, 3 memory, 4 copy, 5 pool.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 0xa7 */

void Entry(void)
{
    static struct sc_ctx ctx;
    unsigned char *plain, *code;
    SIZE_T got = 0;
    DWORD i, old;
    HANDLE event;
    PTP_WAIT wait;

    if (!marker_present())
        ExitProcess(1);
    plain = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, sizeof(payload_enc));
    if (!plain)
        ExitProcess(2);
    for (i = 0; i < sizeof(payload_enc); i++)
        plain[i] = payload_enc[i] ^ 0xa7;
    code = (unsigned char *)VirtualAlloc(0, sizeof(payload_enc), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code)
        ExitProcess(3);
    if (!ReadProcessMemory(GetCurrentProcess(), plain, code, sizeof(payload_enc), &got) || got != sizeof(payload_enc))
        ExitProcess(4);
    SecureZeroMemory(plain, sizeof(payload_enc));
    HeapFree(GetProcessHeap(), 0, plain);
    if (!VirtualProtect(code, sizeof(payload_enc), PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_tpwait.txt", "ran as a thread-pool wait callback\n");
    event = CreateEventA(0, FALSE, FALSE, 0);
    wait = CreateThreadpoolWait((PTP_WAIT_CALLBACK)(void *)code, &ctx, 0);
    if (!event || !wait)
        ExitProcess(5);
    SetThreadpoolWait(wait, event, 0);
    SetEvent(event);
    WaitForThreadpoolWaitCallbacks(wait, FALSE);
    CloseThreadpoolWait(wait);
    CloseHandle(event);
    ExitProcess(0);
}
