/*
 * plugin.c - generality suite: two layers under a custom cipher (benign, emulator-only).
 *
 * Export Run(): decodes layer 1 from the DLL's own read-only data with a cipher no lineage
 * rule names (swap the nibbles of each byte, then add 0x2b + 5*i) into a new
 * PAGE_EXECUTE_READWRITE allocation and calls it with a context block pointing at layer 2,
 * still encoded in the DLL's data. Layer 1 (../lineage-common/layer1_nibble.c) decodes layer 2
 * the same way with another key (0x71 + 3*i) into an allocation of its own and calls it;
 * layer 2 (../lineage-common/payload.c) writes C:\Users\Public\lineage_custom.txt.
 * Returns 0 ok, 1 no marker, 4 memory.
 */
#include "common.h"
#include "blobs.h"

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    (void)inst;
    (void)reason;
    (void)reserved;
    return TRUE;
}

__declspec(dllexport) DWORD WINAPI Run(void)
{
    static struct sc_ctx ctx;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    unsigned char *mem;
    unsigned char b;
    DWORD i;

    if (!marker_present())
        return 1;
    mem = (unsigned char *)VirtualAlloc(0, sizeof(layer1), MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        return 4;
    for (i = 0; i < sizeof(layer1); i++) {
        b = layer1[i];
        mem[i] = (unsigned char)(((b << 4) | (b >> 4)) + 0x2b + i * 5);
    }
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_custom.txt", "decoded by a custom cipher\n");
    ctx.next = layer2;
    ctx.next_len = sizeof(layer2);
    ctx.key0 = 0x71;
    ctx.key_step = 3;
    return ((entry_t)(void *)mem)(&ctx);
}
