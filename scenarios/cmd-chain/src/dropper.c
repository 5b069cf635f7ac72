/*
 * dropper.c - generality suite: a dropper's cmd one-liner whose commands depend on each other's
 * exit codes (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * It writes the program it carries (helper.c, in its data) to %TEMP%\helper.exe and runs
 *   cmd.exe /c H fail && H skipped || H recover || H retry || H nope & (whoami && H last) && H never
 * (H: %TEMP%\helper.exe) with CreateProcessA, waits for cmd (WaitForSingleObject) and checks its
 * exit code. On Windows: "fail" exits 3, so "skipped" (&&) does not run and "recover" (||) does;
 * it returns 4, so "retry" (||) runs too; it exits 0, so "nope" (||) does not run; whoami (a
 * system program) succeeds, so "last" runs; it ends with 5, so "never" (&&) does not run, and
 * cmd ends with 5. Then, if cmd's exit code is 5 and last's file is there, it writes
 * C:\Users\Public\chain_waited.txt. Last, without waiting, it runs (WinExec)
 *   cmd.exe /c H fail && H skipped || H late
 * which runs after the dropper ends: fail exits 3, skipped does not run, late does. Exit codes: 0 ok, 1 no marker, 2 drop, 3 start, 4 wait,
 * 5 exit code, 6 no file of "last".
 */
#include "common.h"
#include "helper_exe.h" /* helper_exe[]: the helper program */

void Entry(void)
{
    static char path[MAX_PATH + 16];
    static char line[] = "cmd.exe /c %TEMP%\\helper.exe fail && %TEMP%\\helper.exe skipped"
                         " || %TEMP%\\helper.exe recover || %TEMP%\\helper.exe retry || %TEMP%\\helper.exe nope"
                         " & (whoami && %TEMP%\\helper.exe last) && %TEMP%\\helper.exe never";
    DWORD n, i, written, code = 0;
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
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
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, helper_exe, sizeof(helper_exe), &written, 0))
        ExitProcess(2);
    CloseHandle(f);
    for (i = 0; i < sizeof(si); i++)
        ((unsigned char *)&si)[i] = 0;
    si.cb = sizeof(si);
    if (!CreateProcessA(0, line, 0, 0, FALSE, CREATE_NO_WINDOW, 0, 0, &si, &pi))
        ExitProcess(3);
    if (WaitForSingleObject(pi.hProcess, INFINITE) != WAIT_OBJECT_0)
        ExitProcess(4);
    if (!GetExitCodeProcess(pi.hProcess, &code) || code != 5)
        ExitProcess(5);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    if (GetFileAttributesA("C:\\Users\\Public\\chain_last.txt") == INVALID_FILE_ATTRIBUTES)
        ExitProcess(6);
    f = CreateFileA("C:\\Users\\Public\\chain_waited.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, "waited 5", 8, &written, 0))
        ExitProcess(6);
    CloseHandle(f);
    if (WinExec("cmd.exe /c %TEMP%\\helper.exe fail && %TEMP%\\helper.exe skipped || %TEMP%\\helper.exe late", SW_HIDE) < 32)
        ExitProcess(3);
    ExitProcess(0);
}
