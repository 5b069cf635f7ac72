/*
 * loader.c - generality suite: one payload in two files, read one after the other into one RW
 * allocation -> XOR, then a byte-wise add, in place -> RX -> run where it lies. Benign,
 * emulator-only (see ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\head.bin, then C:\Users\analyst\AppData\Roaming\tail.bin
 * right after it into one PAGE_READWRITE allocation (ReadFile twice), XORs every byte with 0x6d
 * and adds 0x29 to it there, makes the allocation PAGE_EXECUTE_READ and runs it in a thread.
 * The stage (../../lineage-common/payload.c) writes C:\Users\Public\lineage_split_inplace.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 4 memory, 5 thread.
 */
#include "common.h"

static DWORD read_file(const char *path, unsigned char *to, DWORD room)
{
    HANDLE file;
    DWORD got = 0;

    file = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (file == INVALID_HANDLE_VALUE || !ReadFile(file, to, room, &got, 0) || got == 0)
        ExitProcess(2);
    CloseHandle(file);
    return got;
}

void Entry(void)
{
    static struct sc_ctx ctx;
    volatile unsigned char *mem;
    DWORD n, i, old;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    mem = (unsigned char *)VirtualAlloc(0, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    n = read_file("C:\\ProgramData\\ChainreplayDemo\\head.bin", (unsigned char *)mem, 2048);
    n += read_file("C:\\Users\\analyst\\AppData\\Roaming\\tail.bin", (unsigned char *)mem + n, 2048);
    for (i = 0; i < n; i++)
        mem[i] = (unsigned char)((mem[i] ^ 0x6d) + 0x29);
    if (!VirtualProtect((void *)mem, n, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_split_inplace.txt", "two files, decoded in place\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
