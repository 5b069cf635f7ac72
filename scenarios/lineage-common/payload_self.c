/*
 * payload_self.c - final shellcode stage for injections that start it with no argument
 * (benign, emulator-only; x64 and x86).
 *
 * Position independent, one function, no data. A thread started by SetThreadContext +
 * ResumeThread gets no parameter: the context block then lies at offset CTX_OFFSET of the
 * page the code starts on (the injector writes it there). The code finds its own address
 * RIP-relative on x64 and with a call / pop on x86 (which has no PC-relative addressing). An APC routine gets it as its
 * argument. Checks the sandbox marker through the context block, then writes ctx->text to
 * ctx->path.
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

DWORD WINAPI sc_main(struct sc_ctx *c)
{
    char buf[16];
    DWORD n, i, len, written = 0;
    HANDLE h;
    if (!c)
        c = (struct sc_ctx *)((CODE_ADDRESS() & ~(ULONG_PTR)0xFFF) + CTX_OFFSET);
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
