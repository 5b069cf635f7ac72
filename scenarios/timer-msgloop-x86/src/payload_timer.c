/*
 * payload_timer.c - timer-msgloop's shellcode stage (benign, emulator-only; x86 and x64).
 *
 * Position independent, one function, no data. Started as a TIMERPROC (window, WM_TIMER, timer
 * id, tick count): no argument carries its context block, which lies at offset CTX_OFFSET of the
 * page the code starts on (the loader writes it there; call / pop finds the page on x86).
 * Checks the sandbox marker, writes ctx->text to ctx->path.
 */
#include "common.h"

#define CTX_OFFSET 0x800

#if defined(__i386__)
static inline __attribute__((always_inline)) ULONG_PTR current_pc(void)
{
    ULONG_PTR pc;
    __asm__ volatile("call 1f\n1: pop %0" : "=r"(pc));
    return pc;
}
#define CODE_ADDRESS() current_pc()
#else
#define CODE_ADDRESS() ((ULONG_PTR)&sc_main)
#endif

VOID CALLBACK sc_main(HWND window, UINT message, UINT_PTR id, DWORD ticks)
{
    struct sc_ctx *c = (struct sc_ctx *)((CODE_ADDRESS() & ~(ULONG_PTR)0xFFF) + CTX_OFFSET);
    char buf[16];
    DWORD n, i, len, written = 0;
    HANDLE h;
    (void)window;
    (void)id;
    (void)ticks;
    if (message != WM_TIMER)
        return;
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
