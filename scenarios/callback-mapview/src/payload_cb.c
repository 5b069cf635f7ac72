/*
 * payload_cb.c - callback-mapview's shellcode stage (benign, emulator-only; x64).
 *
 * Position independent, one function, no data. Started as an EnumWindows callback, so its
 * context block comes as the second argument (the enumeration's lParam). Checks the sandbox
 * marker through the context block, writes ctx->text to ctx->path, and returns FALSE to end
 * the enumeration.
 */
#include "common.h"

BOOL CALLBACK sc_main(HWND window, struct sc_ctx *c)
{
    char buf[16];
    DWORD n, i, len, written = 0;
    HANDLE h;
    (void)window;
    n = c->pGetEnvironmentVariableA(c->marker_name, buf, sizeof(buf));
    for (i = 0; i < n && c->marker_value[i] && buf[i] == c->marker_value[i]; i++)
        ;
    if (n == 0 || i != n || c->marker_value[i])
        return FALSE;
    h = c->pCreateFileA(c->path, GENERIC_WRITE, 0, 0, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, 0);
    if (h == INVALID_HANDLE_VALUE)
        return FALSE;
    for (len = 0; c->text[len]; len++)
        ;
    c->pWriteFile(h, c->text, len, &written, 0);
    c->pCloseHandle(h);
    return FALSE;
}
