/*
 * ntresume.c - tests/test_lolbins.py: ntdll!NtResumeThread of a thread the program created
 * suspended (benign, emulator-only: inert without CHAINREPLAY_SANDBOX=replay-only). The thread
 * writes C:\Users\Public\ntresume.txt. Exit codes: 0 ok, 1 no marker, 2 no NtResumeThread,
 * 3 thread, 4 NtResumeThread's status, 5 its previous count, 6 a bad handle not refused.
 */
#include "common.h"

typedef LONG (WINAPI *NtResumeThread_t)(HANDLE, PULONG);

static DWORD WINAPI worker(LPVOID param)
{
    static const char text[] = "resumed\n";
    HANDLE f;
    DWORD written;
    (void)param;
    f = CreateFileA("C:\\Users\\Public\\ntresume.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f != INVALID_HANDLE_VALUE) {
        WriteFile(f, text, sizeof(text) - 1, &written, 0);
        CloseHandle(f);
    }
    return 0;
}

void Entry(void)
{
    NtResumeThread_t resume;
    HANDLE thread;
    ULONG previous = 7;
    if (!marker_present())
        ExitProcess(1);
    resume = (NtResumeThread_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "NtResumeThread");
    if (!resume)
        ExitProcess(2);
    thread = CreateThread(0, 0, worker, 0, CREATE_SUSPENDED, 0);
    if (!thread)
        ExitProcess(3);
    if (resume(thread, &previous) != 0)
        ExitProcess(4);
    if (previous != 1)
        ExitProcess(5);
    if (resume((HANDLE)(ULONG_PTR)0x7770, &previous) == 0)
        ExitProcess(6);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
