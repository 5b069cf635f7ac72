/*
 * payload_cb.c - callbacks-rare's shellcode stage (benign, emulator-only), built once per
 * callback shape: CB_ARGS arguments, the context block the CB_CTX-th (1-based). Windows calls it
 * with that many arguments (stdcall on x86: it must pop them all). Returns CB_RET.
 * Checks the sandbox marker, writes ctx->text to ctx->path.
 */
#include "common.h"

static inline void run(struct sc_ctx *c)
{
    char buf[16];
    DWORD n, i, len, written = 0;
    HANDLE h;
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

#if CB_ARGS == 3
ULONG_PTR WINAPI sc_main(ULONG_PTR a1, ULONG_PTR a2, ULONG_PTR a3)
{
    ULONG_PTR a[3] = {a1, a2, a3};
#elif CB_ARGS == 4
ULONG_PTR WINAPI sc_main(ULONG_PTR a1, ULONG_PTR a2, ULONG_PTR a3, ULONG_PTR a4)
{
    ULONG_PTR a[4] = {a1, a2, a3, a4};
#endif
    run((struct sc_ctx *)a[CB_CTX - 1]);
    return CB_RET;
}
