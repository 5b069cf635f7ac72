/*
 * loader.c - generality suite: two hops of guest decoding in place, a one-byte XOR then a
 * byte-wise add, over a file read into new memory. Benign, emulator-only (see
 * ../../lineage-common/common.h).
 *
 * ReadFile of C:\ProgramData\ChainreplayDemo\blob.dat into a new PAGE_READWRITE allocation;
 * each byte XORed with 0x5a in place, then 0x33 added to each in place; the allocation made
 * PAGE_EXECUTE_READ with VirtualProtect and run in a thread. The stage
 * (../../lineage-common/payload.c) writes C:\Users\Public\lineage_xor_add.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 4 memory, 5 thread.
 */
#include "common.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    volatile unsigned char *mem;
    DWORD n = 0, i, old;
    HANDLE file, thread;

    if (!marker_present())
        ExitProcess(1);
    file = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\blob.dat", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                       FILE_ATTRIBUTE_NORMAL, 0);
    if (file == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    mem = (unsigned char *)VirtualAlloc(0, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    if (!ReadFile(file, (void *)mem, 4096, &n, 0) || n == 0)
        ExitProcess(2);
    CloseHandle(file);
    for (i = 0; i < n; i++)
        mem[i] ^= 0x5a;
    for (i = 0; i < n; i++)
        mem[i] += 0x33;
    if (!VirtualProtect((void *)mem, n, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_xor_add.txt", "decoded twice in place\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
