/*
 * payload_any.c - the probes' shellcode stage for callbacks of any shape (benign,
 * emulator-only; see common.h), built once per callback shape: CB_ARGS pointer-sized
 * arguments, the context block found through the CB_CTX-th (1-based), at byte CB_OFF of the
 * structure it points to when CB_OFF is defined (an OVERLAPPED's hEvent). Stdcall on x86: it pops
 * every argument. Returns CB_RET. Checks the sandbox marker, writes ctx->text to ctx->path.
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

#define P ULONG_PTR
#if CB_ARGS == 2
P WINAPI sc_main(P a1, P a2) { P a[] = {a1, a2};
#elif CB_ARGS == 3
P WINAPI sc_main(P a1, P a2, P a3) { P a[] = {a1, a2, a3};
#elif CB_ARGS == 4
P WINAPI sc_main(P a1, P a2, P a3, P a4) { P a[] = {a1, a2, a3, a4};
#elif CB_ARGS == 5
P WINAPI sc_main(P a1, P a2, P a3, P a4, P a5) { P a[] = {a1, a2, a3, a4, a5};
#elif CB_ARGS == 9
P WINAPI sc_main(P a1, P a2, P a3, P a4, P a5, P a6, P a7, P a8, P a9) { P a[] = {a1, a2, a3, a4, a5, a6, a7, a8, a9};
#elif CB_ARGS == 13
P WINAPI sc_main(P a1, P a2, P a3, P a4, P a5, P a6, P a7, P a8, P a9, P a10, P a11, P a12, P a13)
{ P a[] = {a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13};
#endif
#ifdef CB_OFF
    run(*(struct sc_ctx **)(a[CB_CTX - 1] + CB_OFF));
#else
    run((struct sc_ctx *)a[CB_CTX - 1]);
#endif
    return CB_RET;
}
