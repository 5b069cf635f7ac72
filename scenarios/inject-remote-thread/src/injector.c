/*
 * injector.c - generality suite: classic remote-thread injection (benign, emulator-only).
 *
 * Starts C:\Windows\System32\notepad.exe suspended (CreateProcessA), allocates code and
 * parameter memory in it (VirtualAllocEx), writes the shellcode embedded in this EXE's data
 * and its context block there (WriteProcessMemory twice) and runs it with CreateRemoteThread.
 * The shellcode (../lineage-common/payload.c) writes C:\Users\Public\lineage_inject.txt.
 * With WAIT_AND_FREE (scenario inject-remote-wait) the injector then checks the remote thread's
 * exit code (the payload returns 0 once it wrote its file), frees both remote allocations
 * (VirtualFreeEx: the thread is done with them) and ends notepad (TerminateProcess), as
 * injectors that clean up do.
 * Exit codes: 0 ok, 1 no marker, 2 process, 3 memory, 4 thread, 5 exit code, 6 free.
 */
#include "common.h"
#include "blobs.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    static char cmd[] = "C:\\Windows\\System32\\notepad.exe";
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *si_bytes = (unsigned char *)&si;
    void *code, *param;
    SIZE_T written;
    HANDLE thread;
    DWORD i;

    if (!marker_present())
        ExitProcess(1);
    for (i = 0; i < sizeof(si); i++)
        si_bytes[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_SUSPENDED, 0, 0, &si, &pi))
        ExitProcess(2);
    code = VirtualAllocEx(pi.hProcess, 0, sizeof(payload), MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    param = VirtualAllocEx(pi.hProcess, 0, sizeof(ctx), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!code || !param)
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_inject.txt", "injected into notepad\n");
    if (!WriteProcessMemory(pi.hProcess, code, payload, sizeof(payload), &written) ||
        !WriteProcessMemory(pi.hProcess, param, &ctx, sizeof(ctx), &written))
        ExitProcess(3);
    thread = CreateRemoteThread(pi.hProcess, 0, 0, (LPTHREAD_START_ROUTINE)code, param, 0, 0);
    if (!thread)
        ExitProcess(4);
    WaitForSingleObject(thread, INFINITE);
#ifdef WAIT_AND_FREE
    if (!GetExitCodeThread(thread, &i) || i != 0)
        ExitProcess(5);
    if (!VirtualFreeEx(pi.hProcess, code, 0, MEM_RELEASE) || !VirtualFreeEx(pi.hProcess, param, 0, MEM_RELEASE))
        ExitProcess(6);
    TerminateProcess(pi.hProcess, 0);
#endif
    CloseHandle(thread);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    ExitProcess(0);
}
