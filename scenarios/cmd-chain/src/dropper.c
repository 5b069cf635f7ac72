/*
 * dropper.c - generality suite: a dropper's cmd one-liner whose commands depend on each other's
 * exit codes (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * It writes the program it carries (helper.c, in its data) to %TEMP%\helper.exe and runs
 *   cmd.exe /c %TEMP%\helper.exe fail && %TEMP%\helper.exe skipped || %TEMP%\helper.exe recover
 *            || %TEMP%\helper.exe retry & (whoami && %TEMP%\helper.exe last) || %TEMP%\helper.exe never
 * with WinExec, then exits without waiting. On Windows: "fail" exits 3, so "skipped" (&&) does
 * not run and "recover" (||) does; it returns 4, so "retry" (||) runs too; whoami (a system
 * program) succeeds, so "last" runs; it exits 0, so "never" (||) does not run. Exit codes: 0 ok, 1 no marker, 2 drop, 3 start.
 */
#include "common.h"
#include "helper_exe.h" /* helper_exe[]: the helper program */

void Entry(void)
{
    static char path[MAX_PATH + 16];
    DWORD n, written;
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
    if (WinExec("cmd.exe /c %TEMP%\\helper.exe fail && %TEMP%\\helper.exe skipped || %TEMP%\\helper.exe recover"
                " || %TEMP%\\helper.exe retry & (whoami && %TEMP%\\helper.exe last) || %TEMP%\\helper.exe never",
                SW_HIDE) < 32)
        ExitProcess(3);
    ExitProcess(0);
}
