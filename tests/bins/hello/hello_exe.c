/*
 * hello_exe.c - tiny, benign test EXE for chainreplay's "PE EXE target" tests.
 * Harmless by construction; skips the CHAINREPLAY_SANDBOX marker.
 *
 * Entry (no CRT): GetCommandLineA; lstrlenA(cmdline); ExitProcess(7).
 */
#include <windows.h>

void WINAPI HelloEntry(void)
{
    LPSTR cmd = GetCommandLineA();
    int n = lstrlenA(cmd);
    (void)n;
    ExitProcess(7);
}
