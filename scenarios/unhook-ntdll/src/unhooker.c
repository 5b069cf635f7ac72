/*
 * unhooker.c - "fresh copy" unhooking (benign, emulator-only).
 *
 * Unless CHAINREPLAY_SANDBOX=replay-only, exits 1 at once. Otherwise it does what loaders do to undo
 * a security product's hooks: checks that C:\Windows\System32\ntdll.dll exists, reads it from disk,
 * finds its .text section in the file's headers, makes the loaded ntdll's .text writable, copies the
 * file's over it and restores the protection; then allocates memory through ntdll
 * (NtAllocateVirtualMemory) and writes C:\Users\Public\unhook_result.txt naming the section and
 * the allocation's outcome. Exit codes: 0 ok, 1 no marker, 2 no file, 3 not a PE, 4 no .text,
 * 5 protect, 6 allocate, 7 result file.
 */
#include "common.h"

typedef LONG(NTAPI *NtAllocateVirtualMemory_t)(HANDLE, PVOID *, ULONG_PTR, SIZE_T *, ULONG, ULONG);

static unsigned char disk[0x100000];

static int same_name(const BYTE *a, const char *b)
{
    for (int i = 0; i < 8; i++) {
        if (a[i] != (BYTE)b[i])
            return 0;
        if (!b[i])
            return 1;
    }
    return 1;
}

void Entry(void)
{
    char line[128];
    DWORD got = 0, written, old;
    if (!marker_present())
        ExitProcess(1);
    if (GetFileAttributesA("C:\\Windows\\System32\\ntdll.dll") == INVALID_FILE_ATTRIBUTES)
        ExitProcess(2);
    HANDLE f = CreateFileA("C:\\Windows\\System32\\ntdll.dll", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING, 0, 0);
    if (f == INVALID_HANDLE_VALUE || !ReadFile(f, disk, sizeof disk, &got, 0))
        ExitProcess(2);
    CloseHandle(f);
    IMAGE_DOS_HEADER *dos = (IMAGE_DOS_HEADER *)disk;
    if (got < sizeof *dos || dos->e_magic != IMAGE_DOS_SIGNATURE)
        ExitProcess(3);
    IMAGE_NT_HEADERS *nt = (IMAGE_NT_HEADERS *)(disk + dos->e_lfanew);
    IMAGE_SECTION_HEADER *section = IMAGE_FIRST_SECTION(nt);
    int i;
    for (i = 0; i < nt->FileHeader.NumberOfSections && !same_name(section[i].Name, ".text"); i++)
        ;
    if (i == nt->FileHeader.NumberOfSections || section[i].PointerToRawData + section[i].SizeOfRawData > got)
        ExitProcess(4);
    HMODULE loaded = GetModuleHandleA("ntdll.dll");
    unsigned char *text = (unsigned char *)loaded + section[i].VirtualAddress;
    DWORD size = section[i].Misc.VirtualSize < section[i].SizeOfRawData ? section[i].Misc.VirtualSize : section[i].SizeOfRawData;
    if (!VirtualProtect(text, size, PAGE_EXECUTE_READWRITE, &old))
        ExitProcess(5);
    for (DWORD k = 0; k < size; k++)
        text[k] = disk[section[i].PointerToRawData + k];
    VirtualProtect(text, size, old, &old);
    NtAllocateVirtualMemory_t alloc = (NtAllocateVirtualMemory_t)(void *)GetProcAddress(loaded, "NtAllocateVirtualMemory");
    PVOID base = 0;
    SIZE_T region = 0x1000;
    LONG status = alloc((HANDLE)-1, &base, 0, &region, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE);
    if (status != 0 || !base)
        ExitProcess(6);
    int n = wsprintfA(line, "file %lu bytes, .text %lu bytes restored, allocation %s", got, size, base ? "ok" : "failed");
    f = CreateFileA("C:\\Users\\Public\\unhook_result.txt", GENERIC_WRITE, 0, 0, CREATE_ALWAYS, 0, 0);
    if (f == INVALID_HANDLE_VALUE || !WriteFile(f, line, (DWORD)n, &written, 0))
        ExitProcess(7);
    CloseHandle(f);
    ExitProcess(0);
}
