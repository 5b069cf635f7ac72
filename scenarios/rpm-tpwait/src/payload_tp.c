/*
 * payload_tp.c - rpm-tpwait's shellcode stage (benign, emulator-only; x64).
 *
 * Position independent, one function, no data. Started as a thread-pool wait callback
 * (PTP_WAIT_CALLBACK: instance, context, wait, result), so its context block is the second
 * argument. Checks the sandbox marker, writes ctx->text to ctx->path.
 */
#include "common.h"

VOID CALLBACK sc_main(PVOID instance, struct sc_ctx *c, PVOID wait, DWORD result)
{
    char buf[16];
    DWORD n, i, len, written = 0;
    HANDLE h;
    (void)instance;
    (void)wait;
    (void)result;
    n = c->pGetEnvironmentVariableA(c->marker_name, buf, sizeof(buf));
    for (i = 0; i < n && c->marker_value[i] && buf[i] == c->marker_value[i]; i++)
        ;
    if (n == 0 || i != n || c->marker_value[i])
        return;
    h = c->pCreateFileA(c->path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (h == INVALID_HANDLE_VALUE)
        return;
    for (len = 0; c->text[len]; len++)
        ;
    c->pWriteFile(h, c->text, len, &written, 0);
    c->pCloseHandle(h);
}
