/*
 * loader.c - generality suite: a payload appended to the loader's own file (a PE overlay) ->
 * 6-byte repeating XOR -> RW memory -> RX -> called. Benign, emulator-only (see
 * ../../lineage-common/common.h).
 *
 * Finds its own path with GetModuleFileNameA, reads the whole file into a new PAGE_READWRITE
 * allocation (CreateFileA + ReadFile), finds where the sections' raw data ends in its PE headers
 * (the overlay starts there), XORs the overlay with c47a19e3502b into a second allocation,
 * makes that PAGE_EXECUTE_READ and calls it. The stage (../../lineage-common/payload.c) writes
 * C:\Users\Public\lineage_overlay.txt. The Makefile appends the encoded payload to the linked
 * program.
 * Exit codes: 0 ok, 1 no marker, 2 own file, 3 no overlay, 4 memory.
 */
#include "common.h"

#define ROOM 0x10000

void Entry(void)
{
    static struct sc_ctx ctx;
    static const unsigned char key[6] = {0xc4, 0x7a, 0x19, 0xe3, 0x50, 0x2b};
    typedef DWORD (WINAPI *entry_t)(struct sc_ctx *);
    char path[MAX_PATH];
    unsigned char *image, *mem;
    HANDLE file;
    DWORD got = 0, end = 0, i, old, n;
    IMAGE_DOS_HEADER *dos;
    IMAGE_NT_HEADERS *nt;
    IMAGE_SECTION_HEADER *section;

    if (!marker_present())
        ExitProcess(1);
    if (!GetModuleFileNameA(0, path, sizeof(path)))
        ExitProcess(2);
    file = CreateFileA(path, GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, 0);
    if (file == INVALID_HANDLE_VALUE)
        ExitProcess(2);
    image = (unsigned char *)VirtualAlloc(0, ROOM, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!image || !ReadFile(file, image, ROOM, &got, 0) || got < sizeof(IMAGE_DOS_HEADER))
        ExitProcess(2);
    CloseHandle(file);
    dos = (IMAGE_DOS_HEADER *)image;
    nt = (IMAGE_NT_HEADERS *)(image + dos->e_lfanew);
    section = IMAGE_FIRST_SECTION(nt);
    for (i = 0; i < nt->FileHeader.NumberOfSections; i++)
        if (section[i].PointerToRawData + section[i].SizeOfRawData > end)
            end = section[i].PointerToRawData + section[i].SizeOfRawData;
    if (end == 0 || end + 64 > got)
        ExitProcess(3);
    n = got - end;
    mem = (unsigned char *)VirtualAlloc(0, n, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (!mem)
        ExitProcess(4);
    for (i = 0; i < n; i++)
        mem[i] = image[end + i] ^ key[i % 6];
    if (!VirtualProtect(mem, n, PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    fill_ctx(&ctx, "C:\\Users\\Public\\lineage_overlay.txt", "appended to the loader\n");
    ExitProcess(((entry_t)(void *)mem)(&ctx) ? 5 : 0);
}
