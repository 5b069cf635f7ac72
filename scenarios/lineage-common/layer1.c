/*
 * layer1.c - first shellcode layer of the two-layer chain (benign, emulator-only).
 *
 * Position independent, one function, no data. Decodes the next layer (ctx->next, rolling
 * XOR key (key0 + i * key_step) & 0xff) into an allocation of its own and calls it with the
 * same context block.
 */
#include "common.h"

DWORD WINAPI sc_main(struct sc_ctx *c)
{
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    unsigned char *dst;
    DWORD i;
    if (!c->next || !c->next_len)
        return 3;
    dst = (unsigned char *)c->pVirtualAlloc(0, c->next_len, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!dst)
        return 4;
    for (i = 0; i < c->next_len; i++)
        dst[i] = c->next[i] ^ (unsigned char)(c->key0 + i * c->key_step);
    return ((entry_t)(void *)dst)(c);
}
