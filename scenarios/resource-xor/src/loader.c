/*
 * loader.c - generality suite: a payload embedded as a resource of the program itself
 * (benign, emulator-only; see ../../lineage-common/common.h).
 *
 * FindResourceA(NULL, 101, RT_RCDATA) + LoadResource + LockResource + SizeofResource, decoded
 * with a rolling XOR (byte i ^ (0x91 + 13*i)) into a new PAGE_READWRITE allocation, made
 * PAGE_EXECUTE_READ and run in a thread: the stage writes C:\Users\Public\lineage_resource.txt.
 * Exit codes: 0 ok, 1 no marker, 2 resource, 3 memory, 4 thread.
 */
#include "common.h"

#define PAYLOAD_RESOURCE 101
#define KEY0 0x91
#define KEY_STEP 13

void Entry(void)
{
    static struct sc_ctx ctx;
    HRSRC found;
    HGLOBAL loaded;
    const unsigned char *data;
    unsigned char *mem;
    DWORD size, i, old;
    HANDLE thread;

    if (!marker_present())
        ExitProcess(1);
    found = FindResourceA(0, MAKEINTRESOURCEA(PAYLOAD_RESOURCE), (LPCSTR)RT_RCDATA);
    if (!found)
        ExitProcess(2);
    loaded = LoadResource(0, found);
    size = SizeofResource(0, found);
    data = (const unsigned char *)LockResource(loaded);
    if (!data || size < 64)
        ExitProcess(2);
    mem = (unsigned char *)VirtualAlloc(0, size, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(3);
    for (i = 0; i < size; i++)
        mem[i] = data[i] ^ (unsigned char)(KEY0 + i * KEY_STEP);
    if (!VirtualProtect(mem, size, PAGE_EXECUTE_READ, &old))
        ExitProcess(3);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_resource.txt", "decoded from the program's own resource\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)mem, &ctx, 0, 0);
    if (!thread)
        ExitProcess(4);
    WaitForSingleObject(thread, INFINITE);
    ExitProcess(0);
}
