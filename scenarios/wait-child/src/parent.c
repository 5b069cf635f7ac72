/*
 * parent.c - generality suite: a dropped program prepares the payload, its parent waits for it
 * (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * The parent writes the program it carries (child.exe, in its data) to %TEMP%\helper.exe, starts
 * it with CreateProcessA("... --stash"), waits for it (WaitForSingleObject on the process),
 * checks its exit code (GetExitCodeProcess: 7), then reads the stash the child wrote
 * (C:\Users\Public\stash.bin: the payload XORed with 0x77), decodes it and runs it; the payload
 * writes C:\Users\Public\lineage_wait_child.txt.
 * Exit codes: 0 ok, 1 no marker, 2 drop, 3 start, 4 wait, 5 exit code, 6 stash, 7 memory.
 */
#include "common.h"
#include "child_exe.h" /* child_exe[]: the child program */

static struct sc_ctx g_ctx;

void Entry(void)
{
    static char path[MAX_PATH + 16];
    static char cmd[MAX_PATH + 32];
    static unsigned char stash[0x1000];
    DWORD n, i, written, got, code = 0;
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    unsigned char *mem;
    HANDLE f;

    if (!marker_present())
        ExitProcess(1);
    n = GetTempPathA(MAX_PATH, path);
    if (n == 0 || n > MAX_PATH)
        ExitProcess(2);
    if (path[n - 1] != '\\')
        path[n++] = '\\';
    copy_str(path + n, "helper.exe", 16);
    f = CreateFileA(path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, child_exe, sizeof(child_exe), &written, 0))
        ExitProcess(2);
    CloseHandle(f);
    cmd[0] = '"';
    copy_str(cmd + 1, path, MAX_PATH);
    for (i = 1; cmd[i]; i++)
        ;
    copy_str(cmd + i, "\" --stash", 16);
    for (i = 0; i < sizeof(si); i++)
        ((unsigned char *)&si)[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, cmd, 0, 0, FALSE, 0, 0, 0, &si, &pi))
        ExitProcess(3);
    if (WaitForSingleObject(pi.hProcess, INFINITE) != WAIT_OBJECT_0)
        ExitProcess(4);
    if (!GetExitCodeProcess(pi.hProcess, &code) || code != 7)
        ExitProcess(5);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    f = CreateFileA("C:\\Users\\Public\\stash.bin", GENERIC_READ, 0, 0, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !ReadFile(f, stash, sizeof(stash), &got, 0) || got == 0)
        ExitProcess(6);
    CloseHandle(f);
    mem = (unsigned char *)VirtualAlloc(0, got, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        ExitProcess(7);
    for (i = 0; i < got; i++)
        mem[i] = stash[i] ^ 0x77;
    fill_ctx(&g_ctx, "C:\\Users\\Public\\lineage_wait_child.txt", "stashed by the child, waited for\n");
    ((void (*)(struct sc_ctx *))(void *)mem)(&g_ctx);
    ExitProcess(0);
}
