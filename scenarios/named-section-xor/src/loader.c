/*
 * loader.c - generality suite: file -> a named section backed by the paging file
 * (CreateFileMappingA(INVALID_HANDLE_VALUE, "Local\\..."), a writable view) -> reopened by name
 * (OpenFileMappingA) and mapped again -> 3-byte XOR into RW memory -> RX -> called. Benign,
 * emulator-only (see ../../lineage-common/common.h).
 *
 * Reads C:\ProgramData\ChainreplayDemo\shared.dat into a stack buffer, copies it into a view of a
 * new named paging-file section, opens the section again by its name, maps a read-only view of
 * it, XORs what that view shows with 9e5c27 into a new PAGE_READWRITE allocation, makes it
 * PAGE_EXECUTE_READ and calls it. The stage (../../lineage-common/payload.c) writes
 * C:\Users\Public\lineage_named_section.txt.
 * Exit codes: 0 ok, 1 no marker, 2 file, 3 section, 4 memory.
 */
#include "common.h"

void Entry(void)
{
    static struct sc_ctx ctx;
    static const unsigned char key[3] = {0x9e, 0x5c, 0x27};
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    unsigned char raw[1024];
    volatile unsigned char *view;
    const volatile unsigned char *seen;
    HANDLE file, section, again;
    DWORD got = 0, i, old;
    unsigned char *mem;

    if (!marker_present())
        ExitProcess(1);
    file = CreateFileA("C:\\ProgramData\\ChainreplayDemo\\shared.dat", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                       FILE_ATTRIBUTE_NORMAL, 0);
    if (file == INVALID_HANDLE_VALUE || !ReadFile(file, raw, sizeof(raw), &got, 0) || got == 0)
        ExitProcess(2);
    CloseHandle(file);
    section = CreateFileMappingA(INVALID_HANDLE_VALUE, 0, PAGE_READWRITE, 0, 4096, "Local\\ChainreplayDemoShared");
    view = section ? (volatile unsigned char *)MapViewOfFile(section, FILE_MAP_WRITE, 0, 0, 4096) : 0;
    if (!view)
        ExitProcess(3);
    for (i = 0; i < got; i++)
        view[i] = raw[i];
    again = OpenFileMappingA(FILE_MAP_READ, FALSE, "Local\\ChainreplayDemoShared");
    seen = again ? (const volatile unsigned char *)MapViewOfFile(again, FILE_MAP_READ, 0, 0, 4096) : 0;
    if (!seen)
        ExitProcess(3);
    mem = (unsigned char *)VirtualAlloc(0, got, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < got; i++)
        mem[i] = seen[i] ^ key[i % 3];
    if (!VirtualProtect(mem, got, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_named_section.txt", "through a named section\n");
    ExitProcess(((entry_t)(void *)mem)(&ctx) ? 5 : 0);
}
