/*
 * payload.c - the generality suite's final shellcode stage (benign, emulator-only).
 *
 * Position independent, one function, no data: flattened with objcopy -O binary -j .text.
 * Checks the sandbox marker through the context block, then writes ctx->text to ctx->path.
 */
#include "common.h"

DWORD WINAPI sc_main(struct sc_ctx *c)
{
    char buf[16];
    DWORD n, i, len, written = 0;
    HANDLE h;
    n = c->pGetEnvironmentVariableA(c->marker_name, buf, sizeof(buf));
    for (i = 0; i < n && c->marker_value[i] && buf[i] == c->marker_value[i]; i++)
        ;
    if (n == 0 || i != n || c->marker_value[i])
        return 1;
    h = c->pCreateFileA(c->path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (h == INVALID_HANDLE_VALUE)
        return 2;
    for (len = 0; c->text[len]; len++)
        ;
    c->pWriteFile(h, c->text, len, &written, 0);
    c->pCloseHandle(h);
    return 0;
}
