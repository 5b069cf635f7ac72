/*
 * plugin.c - generality suite: two self-decoding layers (benign, emulator-only).
 *
 * Export Run(): decodes layer 1 from the DLL's own data (4-byte repeating XOR key) into a new
 * PAGE_EXECUTE_READWRITE allocation and calls it with a context block that points at layer 2,
 * still encoded in the DLL's data. Layer 1 (../lineage-common/layer1.c) decodes layer 2
 * (rolling XOR key) into an allocation of its own and calls it; layer 2
 * (../lineage-common/payload.c) writes C:\Users\Public\lineage_layers.txt.
 * Returns 0 ok, 1 no marker, 4 memory.
 */
#include "common.h"
#include "blobs.h"

static const unsigned char key1[4] = {0x5a, 0x17, 0xc3, 0x88};

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
    DWORD i;

    if (!marker_present())
        return 1;
    mem = (unsigned char *)VirtualAlloc(0, sizeof(layer1), MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        return 4;
    for (i = 0; i < sizeof(layer1); i++)
        mem[i] = layer1[i] ^ key1[i & 3];
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_layers.txt", "decoded in two layers\n");
    ctx.next = layer2;
    ctx.next_len = sizeof(layer2);
    ctx.key0 = 0x3d;
    ctx.key_step = 7;
    return ((entry_t)(void *)mem)(&ctx);
}
